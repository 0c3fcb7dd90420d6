"""Cost of the copula and elliptical sample streams per training step, relative to the NLGP's on the same
machine, in the same process (a ratio: 1.00x = as fast as the NLGP).

For each scale (the demo's data: 1D L = 64, xis 2 and 5; the paper's: 2D L = 28 x 28, xis 1 and 3), each data
set draws ``sample(steps * batch, seed)`` (many steps' batches in one call, what the online trainer does),
divided by steps: the NLGP (gain 3), copula members on both sides of zero excess kurtosis (the erf and the
Tukey-h map, field solved), the copula's clone, and elliptical inputs with a gamma and an inverse-gamma
radius. With ``--open`` the open-boundary versions are timed too (dense factors: slower for every family).

The machine may be shared: every measurement is repeated ``--repeats`` times, interleaved with the others,
and the minimum is kept; with one thread the clock is the process's CPU time (time spent descheduled by
other processes is not counted). Each repeat uses fresh seeds, so no block is cached from before.
Usage: ``python benchmarks/bench_copula.py [--threads 1] [--repeats 7] [--open]``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

SCALES = {
    "demo (1D L=64)": dict(L=64, dim=1, xis=(2.0, 5.0)),
    "paper (2D L=28)": dict(L=28, dim=2, xis=(1.0, 3.0)),
}
SETS: dict[str, tuple[str, dict]] = {  # label -> (class, keyword arguments besides the geometry)
    "nlgp g=3": ("nlgp", dict(gain=3.0)),
    "copula k=-1.5 (erf)": ("copula", dict(excess_kurtosis=-1.5)),
    "copula k=+2 (tukey-h)": ("copula", dict(excess_kurtosis=2.0)),
    "copula clone": ("copula", dict(excess_kurtosis=2.0, gaussian_clone=True)),
    "elliptical k=1 gamma": ("elliptical", dict(excess_kurtosis=1.0, radius="gamma")),
    "elliptical k=1 inv-gamma": ("elliptical", dict(excess_kurtosis=1.0, radius="inverse-gamma")),
}
CLOCK = time.perf_counter


def timed(fn: Callable[[], object]) -> float:
    start = CLOCK()
    fn()
    return CLOCK() - start


def build(kind: str, geometry: dict, kw: dict):
    from ticketscope.data import CopulaTask, EllipticalTask, NLGPTask

    return {"nlgp": NLGPTask, "copula": CopulaTask, "elliptical": EllipticalTask}[kind](**geometry, **kw)


def measure(geometry: dict, batch: int, steps: int, repeats: int) -> dict[str, float]:
    """Best seconds per step of each data set's bulk draw."""
    tasks = {label: build(kind, geometry, kw) for label, (kind, kw) in SETS.items()}
    for task in tasks.values():
        task.sample(batch, seed=10**9)  # build the samplers (and solve the fields) outside the timing
    seeds = iter(range(10**6))
    best = dict.fromkeys(tasks, float("inf"))
    for _ in range(repeats):
        for label, task in tasks.items():
            best[label] = min(best[label], timed(lambda: task.sample(steps * batch, seed=next(seeds))) / steps)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128, help="items per training step")
    parser.add_argument("--steps", type=int, nargs=2, default=[256, 32], help="steps per measurement: demo, paper")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--open", action="store_true", help="also time open boundaries")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.threads == 1 else time.perf_counter
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy / torch load their BLAS
    import torch

    torch.set_num_threads(args.threads)
    print(f"batch {args.batch}, {args.threads} torch thread(s), best of {args.repeats}, "
          f"{'CPU' if CLOCK is time.process_time else 'wall'} time; microseconds per step, and relative to the NLGP's")
    for (name, geometry), steps in zip(SCALES.items(), args.steps, strict=True):
        for torus in (True, False) if args.open else (True,):
            r = measure({**geometry, "torus": torus}, args.batch, steps, args.repeats)
            base = r["nlgp g=3"]
            print(f"{name}{'' if torus else ', open'}:")
            for label, seconds in r.items():
                print(f"  {label:<26} {seconds * 1e6:8.0f} us  {seconds / base:5.2f}x", flush=True)


if __name__ == "__main__":
    main()
