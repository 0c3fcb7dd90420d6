"""Training throughput: achieved FLOP/s of masked FCN training vs a plain float32 GEMM.

Paper-size FCN (1024 inputs, two hidden layers of 1024, 2 classes), SGD with momentum,
masks re-applied after every step. FLOPs per step count the three GEMMs of each layer
(forward, weight gradient, input gradient; the first layer needs no input gradient):
2 B (3 sum_l in_l out_l - in_0 out_0). The reference is torch.mm of the same (B x 1024) @
(1024 x 1024) shape timed in the same process. Also prints the time per IMP round of a small
MLP on 28 x 28 inputs, measured first in the process: round 0's ``train_time_s`` would include
the ~1 s import of ``torch._dynamo`` by the first optimizer if it were not kept out of the timing.

    python benchmarks/bench_training.py [--batch 512] [--steps 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from ticketscope.config import ModelConfig, TrainConfig, parse_config
from ticketscope.engine import BatchSource
from ticketscope.models import FCN
from ticketscope.runs import run_experiment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import train  # noqa: E402  (the test suite's single-FCN adapter over the engine)


def gemm_flops(batch: int, dim: int, reps: int) -> float:
    a, b = torch.randn(batch, dim), torch.randn(dim, dim)
    torch.mm(a, b)
    t = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return 2 * batch * dim * dim * reps / (time.perf_counter() - t)


def training_flops(batch: int, steps: int) -> float:
    widths = [1024, 1024, 1024, 2]
    model = FCN(1024, 2, ModelConfig(hidden=(1024, 1024)))
    model.reset_parameters(torch.Generator().manual_seed(0))
    model.set_masks({n: (torch.rand(m.shape) < 0.5).float() for n, m in list(model.masks().items())[:2]})
    X, y = torch.randn(batch * 8, 1024), torch.randint(0, 2, (batch * 8,))
    batches = BatchSource(batch, torch.device("cpu"), 0, X=X, y=y)
    cfg = TrainConfig(batch_size=batch, steps=steps, lr=0.01)
    train(model, batches, cfg, 0, 3, 0)  # warm-up
    t = time.perf_counter()
    train(model, batches, cfg, 0, steps, 0)
    elapsed = time.perf_counter() - t
    pairs = list(zip(widths[:-1], widths[1:]))
    per_step = 2 * batch * (3 * sum(a * b for a, b in pairs) - pairs[0][0] * pairs[0][1])
    return per_step * steps / elapsed


def imp_round_seconds() -> tuple[float, float]:
    """train_time_s of round 0 and the mean of rounds 1 and 2."""
    cfg = parse_config({"data": {"name": "nlgp", "L": 28, "n_train": 8192, "n_test": 1024},
                        "model": {"hidden": [128]}, "train": {"steps": 500, "batch_size": 128},
                        "prune": {"rounds": 2}})
    with tempfile.TemporaryDirectory() as d:
        table = run_experiment(cfg, d, progress=False)
    return float(table["train_time_s"].iloc[0]), float(table["train_time_s"].iloc[1:].mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    first, later = imp_round_seconds()  # first: no optimizer built yet in this process
    ref_before = gemm_flops(args.batch, 1024, 50)
    ours = training_flops(args.batch, args.steps)
    ref_after = gemm_flops(args.batch, 1024, 50)
    ref = max(ref_before, ref_after)
    print(f"plain float32 GEMM ({args.batch}x1024 @ 1024x1024): {ref / 1e9:8.1f} GFLOP/s")
    print(f"masked FCN training 1024-1024-1024-2, batch {args.batch}:  {ours / 1e9:8.1f} GFLOP/s")
    print(f"ratio training / GEMM: {ours / ref:.2f}   (target >= 0.6)")
    print(f"IMP round, MLP 784-128-2, 500 steps of batch 128: {later:.2f} s of training "
          f"(round 0, the process's first optimizer: {first:.2f} s)")


if __name__ == "__main__":
    main()
