"""Ensemble training: the demo's runs as one ensemble vs one at a time, and the engine vs bare GEMMs.

(a) The demo preset's runs (its base config x grid: data vs Gaussian clone, three pruning
    methods, 64 seeds: 384 runs), with a shorter budget for both arms (``--steps``, ``--rounds``),
    trained by ``run_ensemble`` as one ensemble and one run at a time (``run_ensemble`` on each run
    alone, i.e. the same code and the same sample stream). Prints the training wall time (sum of
    the runs' ``train_time_s``: the training steps with their mini-batches; evaluation, pruning and
    checkpoints excluded), the wall time of the whole call, and that plus the runs' analysis (as a
    sweep worker runs it: tables, no figures; the same code in both arms), for each arm. In the
    ensemble the three methods of one seed and data set read one online stream, drawn once for
    the three. Target: >= 5x faster as one ensemble.
(b) Training cost per run-step inside an ensemble of R runs with the demo's network (64-32-2,
    batch 128, SGD with momentum, masks) on a fixed in-memory training set, against the floor:
    the same batched matmuls written bare (contiguous ``torch.bmm`` forward, backward, SGD
    momentum update, one mask multiply) in the same process. Target: within 3x.

(c) The online sampler's cost per step (batch 128, stream version 2, many steps per call as the
    ensemble draws them) against ``torch.randn`` of the same number of float32 normals, at the demo's
    and at the paper's scale: ``bench_stream.py``'s measurement (which also prints per-step calls,
    version 1, and the work after the noise). Target: within 2x.

The machine may be shared: every number is the minimum over ``--repeat`` repetitions, all taken
in one process on the same machine.

    python benchmarks/bench_ensemble.py [--steps 300] [--rounds 1] [--repeat 3] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import bench_stream
import torch

from ticketscope.analysis import analyze_run
from ticketscope.config import ModelConfig, RunConfig, TrainConfig
from ticketscope.engine import BatchSource, Member, train_ensemble
from ticketscope.experiments.presets import preset_path
from ticketscope.experiments.sweep import load_sweep
from ticketscope.models import FCN
from ticketscope.runs import run_ensemble

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import autograd_train  # noqa: E402  (the test suite's autograd reference)


def demo_configs(steps: int, rounds: int) -> list[RunConfig]:
    configs = []
    for point in load_sweep(preset_path("demo")).points():
        cfg = point.config
        configs.append(cfg.model_copy(update={
            "train": cfg.train.model_copy(update={"steps": steps}),
            "prune": cfg.prune.model_copy(update={"rounds": rounds})}))
    return configs


def time_arm(configs: list[RunConfig], together: bool) -> tuple[float, float, float]:
    """(training seconds, wall seconds, analysis seconds) of all runs, in a fresh temporary directory.
    The analysis is what a sweep worker runs after training (tables, no figures), the same in both arms."""
    with tempfile.TemporaryDirectory() as d:
        items = [(cfg, Path(d) / f"run{i}") for i, cfg in enumerate(configs)]
        t = time.perf_counter()
        if together:
            tables = run_ensemble(items, progress=False)
        else:
            tables = [run_ensemble([item], progress=False)[0] for item in items]
        wall = time.perf_counter() - t
        t = time.perf_counter()
        for _, run in items:
            analyze_run(run, figures=False)
        analysis = time.perf_counter() - t
    return float(sum(table["train_time_s"].sum() for table in tables)), wall, analysis


def previous_trainer_step_seconds(cfg: RunConfig, steps: int) -> float:
    """Seconds per step of training without ensembles (autograd on one FCN, a mini-batch drawn
    per step, a host sync per step for the divergence check: the test suite's reference
    ``helpers.autograd_train``), on one demo run: for scale."""
    from ticketscope.runs import RunData

    data = RunData.build(cfg, torch.device("cpu"))
    model = FCN(data.dataset.input_dim, data.dataset.num_classes, cfg.model)
    model.reset_parameters(torch.Generator().manual_seed(0))
    t = time.perf_counter()
    autograd_train(model, data.batches, cfg.train, 0, steps)
    return (time.perf_counter() - t) / steps


def engine_step_seconds(R: int, steps: int, B: int = 128, D: int = 64, K: int = 32) -> float:
    """Seconds per step of the ensemble engine for R runs (fixed training sets, SGD, masks)."""
    model_cfg = ModelConfig(hidden=(K,))
    train_cfg = TrainConfig(steps=steps, batch_size=B, lr=0.05, momentum=0.9)
    members = []
    for r in range(R):
        g = torch.Generator().manual_seed(r)
        X, y = torch.randn(8192, D, generator=g), torch.randint(0, 2, (8192,), generator=g)
        model = FCN(D, 2, model_cfg)
        model.reset_parameters(g)
        model.set_masks({"layers.0": (torch.rand(K, D, generator=g) < 0.5).float()})
        members.append(Member(model_cfg, train_cfg, model.state_dict(), BatchSource(B, torch.device("cpu"), r, X=X, y=y)))
    train_ensemble(members, 0, 5)  # warm-up
    return train_ensemble(members, 0, steps).train_time_s / steps


def bare_step_seconds(R: int, steps: int, B: int = 128, D: int = 64, K: int = 32) -> float:
    """Seconds per step of the same batched network written bare: the floor."""
    X, y = torch.randn(R, B, D), torch.randint(0, 2, (R, B))
    W0, b0 = torch.randn(R, K, D) * 0.1, torch.zeros(R, 1, K)
    W1, b1 = torch.randn(R, 2, K) * 0.1, torch.zeros(R, 1, 2)
    params = [W0, b0, W1, b1]
    bufs = [torch.zeros_like(p) for p in params]
    mask = (torch.rand(R, K, D) < 0.5).float()
    onehot = torch.nn.functional.one_hot(y, 2).float()

    def step() -> None:
        h = torch.baddbmm(b0, X, W0.transpose(1, 2))
        a = h.clamp_min(0)
        z = torch.baddbmm(b1, a, W1.transpose(1, 2))
        dz = (torch.softmax(z, -1) - onehot) / B
        gW1, gb1 = torch.bmm(dz.transpose(1, 2), a), dz.sum(1, keepdim=True)
        dh = torch.bmm(dz, W1) * (h > 0)
        gW0, gb0 = torch.bmm(dh.transpose(1, 2), X), dh.sum(1, keepdim=True)
        for p, g, m in zip(params, (gW0, gb0, gW1, gb1), bufs):
            m.mul_(0.9).add_(g)
            p.add_(m, alpha=-0.05)
        W0.mul_(mask)

    for _ in range(5):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=300, help="training steps per round (both arms)")
    p.add_argument("--rounds", type=int, default=1, help="pruning rounds after round 0 (both arms)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--engine-steps", type=int, default=300)
    p.add_argument("--skip-demo", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; minimum of {args.repeat} repetitions "
          "(the machine may be shared with other jobs)")

    if not args.skip_demo:
        configs = demo_configs(args.steps, args.rounds)
        print(f"\n(a) demo preset: {len(configs)} runs, {args.steps} steps x {args.rounds + 1} rounds each")
        ens = [time_arm(configs, True) for _ in range(args.repeat)]
        one = [time_arm(configs, False) for _ in range(args.repeat)]
        (te, we, ae), (to, wo, ao) = ([min(x[k] for x in arm) for k in range(3)] for arm in (ens, one))
        print(f"  one ensemble:     training {te:7.2f} s   whole call {we:7.2f} s   with analysis {we + ae:7.2f} s")
        print(f"  one at a time:    training {to:7.2f} s   whole call {wo:7.2f} s   with analysis {wo + ao:7.2f} s")
        print(f"  speed-up:         training {to / te:7.2f} x  whole call {wo / we:7.2f} x   with analysis "
              f"{(wo + ao) / (we + ae):7.2f} x   (target >= 5x)")
        run_steps = len(configs) * args.steps * (args.rounds + 1)
        prev = min(previous_trainer_step_seconds(configs[0], args.steps) for _ in range(args.repeat)) * run_steps
        print("  for scale, one at a time through autograd (the tests' reference trainer, a batch drawn per step):")
        print(f"                    training {prev:7.2f} s (per-step cost of one demo run x {run_steps} run-steps)"
              f" = {prev / te:.1f} x the ensemble's")
        print(f"  per run-step:     ensemble {te / run_steps * 1e6:.1f} us, one at a time {to / run_steps * 1e6:.1f} us, "
              f"autograd {prev / run_steps * 1e6:.1f} us")

    print("\n(b) training cost per run-step, demo network 64-32-2, batch 128, fixed training sets")
    print(f"  {'runs':>4} {'engine us/run-step':>19} {'bare bmm us/run-step':>21} {'ratio':>6}")
    for R in (1, 8, 40):
        eng = min(engine_step_seconds(R, args.engine_steps) for _ in range(args.repeat))
        bare = min(bare_step_seconds(R, args.engine_steps) for _ in range(args.repeat))
        print(f"  {R:>4} {eng / R * 1e6:>19.1f} {bare / R * 1e6:>21.1f} {eng / bare:>6.2f}")
    print("  (target: engine within 3x of the bare floor)")

    print("\n(c) online sampler per step (batch 128, many steps per call) vs torch.randn of the same count")
    for (name, kw), steps in zip(bench_stream.SCALES.items(), (256, 32), strict=True):
        r = bench_stream.measure(kw, 2, 128, steps, args.repeat)
        print(f"  {name:<16} sampler {r['bulk'] * 1e6:6.0f} us  randn {r['randn'] * 1e6:6.0f} us  "
              f"ratio {r['bulk'] / r['randn']:.2f}  (work after the noise alone: {r['transform'] / r['randn']:.2f})")
    print("  (target: within 2x)")


if __name__ == "__main__":
    main()
