"""Cost of the online sample stream per training step against drawing the same number of float32
normals with ``torch.randn`` (the floor: every item needs at least its white noise).

For each scale (the demo's data: 1D L = 64, xis 2 and 5, gain 10; the paper's: 2D L = 28 x 28, xis 1
and 3, gain 3) and each stream version, in one process, per training step of ``--batch`` items:

- randn:    ``torch.randn(batch * D)`` once per step (float32);
- per-step: ``sample(batch, seed, offset=step * batch)`` once per step, the way an online trainer
            that draws each step's batch on its own calls it (the stream reads ahead);
- bulk:     ``sample(steps * batch, seed)``, divided by steps: many steps' batches in one call
            (what the trainer does now);
- ensemble: per-step calls of ENSEMBLE keys in turn (an ensemble of online runs, one stream each),
            per key and step: read-ahead must not evict the windows the next keys need (it did: 40
            keys of a 2D 20 x 20 copula were sampled 7.6x slower per key than after the fix);
- transform: version 2 only, the stream's work after its white noise (scaling, inverse FFT, the 2D
            second-axis product, the erf) on noise drawn beforehand: what a stream with free noise
            would still cost, so ``bulk`` can be no lower than about 1 + this.

The machine may be shared: every measurement is repeated ``--repeats`` times, interleaved with the
others, and the minimum is kept; with one thread the clock is the process's CPU time (time spent
descheduled by other processes is not counted; ``--clock wall`` for wall time). Each repeat uses
fresh seeds, so no block is cached from before; per-step runs long enough for several read-ahead
refills. Usage: ``python benchmarks/bench_stream.py [--threads 1] [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

SCALES = {
    "demo (1D L=64)": dict(L=64, dim=1, xis=(2.0, 5.0), gain=10.0),
    "paper (2D L=28)": dict(L=28, dim=2, xis=(1.0, 3.0), gain=3.0),
}


CLOCK = time.perf_counter
ENSEMBLE = 40


def timed(fn: Callable[[], object]) -> float:
    start = CLOCK()
    fn()
    return CLOCK() - start


def measure(kw: dict, stream: int, batch: int, steps: int, repeats: int) -> dict[str, float]:
    """Best seconds per step of each way of drawing, and of randn."""
    import torch

    from ticketscope.data import NLGPTask
    from ticketscope.data.stream import BLOCK

    task = NLGPTask(**kw, stream=stream)
    n, D = steps * batch, task.input_dim
    task.sample(batch, seed=10**9)  # build the samplers outside the timing
    seeds = iter(range(10**6))
    best = dict.fromkeys(("randn", "per-step", "bulk", "ensemble", "transform"), float("inf"))
    blocks = -(-n // BLOCK)
    noise = torch.randn(blocks * BLOCK, *task._stream.noise_shape)
    labels, out = task.labels(blocks * BLOCK), torch.empty(blocks * BLOCK, D)

    def randn() -> None:
        for _ in range(steps):
            torch.randn(batch * D)

    def per_step() -> None:
        seed = next(seeds)
        for s in range(steps):
            task.sample(batch, seed=seed, offset=s * batch)

    def ensemble() -> None:
        keys = [next(seeds) for _ in range(ENSEMBLE)]
        for s in range(steps):
            for seed in keys:
                task.sample(batch, seed=seed, offset=s * batch)

    for _ in range(repeats):
        best["randn"] = min(best["randn"], timed(randn) / steps)
        best["per-step"] = min(best["per-step"], timed(per_step) / steps)
        best["ensemble"] = min(best["ensemble"], timed(ensemble) / (steps * ENSEMBLE))
        best["bulk"] = min(best["bulk"], timed(lambda: task.sample(n, seed=next(seeds))) / steps)
        if stream == 2:
            w = noise.clone()
            best["transform"] = min(best["transform"], timed(lambda: task._stream.transform(w, labels, out)) / steps)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128, help="items per training step")
    parser.add_argument("--steps", type=int, nargs=2, default=[256, 32], help="steps per measurement: demo, paper")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--versions", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--clock", choices=["cpu", "wall"], default=None, help="default: cpu with 1 thread, else wall")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if (args.clock or ("cpu" if args.threads == 1 else "wall")) == "cpu" else time.perf_counter
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy / torch load their BLAS
    import torch

    torch.set_num_threads(args.threads)
    print(f"batch {args.batch}, {args.threads} torch thread(s), best of {args.repeats}, "
          f"{'CPU' if CLOCK is time.process_time else 'wall'} time; microseconds per step, and in units of "
          "torch.randn for the same count")
    print(f"{'scale':<17} {'stream':>6} {'randn':>7} {'per-step':>16} {'bulk':>16} {f'ensemble ({ENSEMBLE})':>16} "
          f"{'transform':>16}")
    for (name, kw), steps in zip(SCALES.items(), args.steps, strict=True):
        for stream in args.versions:
            r = measure(kw, stream, args.batch, steps, args.repeats)
            cells = [f"{r[k] * 1e6:7.0f} ({r[k] / r['randn']:4.2f}x)" if r[k] < float("inf") else "-"
                     for k in ("per-step", "bulk", "ensemble", "transform")]
            print(f"{name:<17} {stream:>6} {r['randn'] * 1e6:7.0f} " + " ".join(f"{c:>16}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
