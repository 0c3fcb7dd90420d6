"""Throughput of the local sweep executor for several (workers, torch threads) layouts.

Each layout runs the same sweep (``--runs`` seeds of one small IMP run) in a fresh directory;
the time includes starting the worker processes, as a real sweep does. Prints runs/minute,
the ratio to (1 worker, 1 thread), and the mean wall time of one run inside its worker.

    python benchmarks/bench_sweep_workers.py --runs 4 --steps 1500 --repeat 2
"""

from __future__ import annotations

import argparse
import tempfile
import time

from ticketscope.experiments.sweep import Sweep, load_sweep, run_sweep

LAYOUTS = [(1, 1), (1, 2), (2, 1)]


def make_sweep(runs: int, steps: int) -> Sweep:
    base = {
        "data": {"name": "nlgp", "L": 10, "dim": 2, "n_train": 4096, "n_test": 1024, "xis": [1.0, 2.0]},
        "model": {"hidden": [100]},
        "train": {"steps": steps, "batch_size": 128, "n_eval_train": 1024},
        "prune": {"rounds": 1},
    }
    return load_sweep({"name": "bench", "base": base, "grid": {"seed": list(range(runs))}})


def time_layout(sweep: Sweep, workers: int, threads: int) -> tuple[float, float]:
    """Seconds for the whole sweep and mean seconds of one run, in a fresh directory."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        df = run_sweep(sweep, out, workers=workers, threads=threads, progress=False)
        elapsed = time.perf_counter() - start
    if not (df.status == "ok").all():
        raise RuntimeError(f"a benchmark run failed: {df.error.dropna().tolist()}")
    return elapsed, float(df.wall_s.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="runs in the sweep")
    parser.add_argument("--steps", type=int, default=1500, help="training steps per round (2 rounds per run)")
    parser.add_argument("--repeat", type=int, default=1, help="time each layout this many times; keep the best")
    args = parser.parse_args()
    sweep = make_sweep(args.runs, args.steps)
    print(f"{args.runs} runs of {args.steps} steps x 2 rounds per layout")
    print(f"{'workers':>7} {'threads':>7} {'sweep s':>8} {'run s':>6} {'runs/min':>9} {'vs (1,1)':>8}")
    baseline = None
    for workers, threads in LAYOUTS:
        elapsed, per_run = min(time_layout(sweep, workers, threads) for _ in range(args.repeat))
        rate = 60 * args.runs / elapsed
        baseline = baseline or rate
        print(f"{workers:>7} {threads:>7} {elapsed:>8.1f} {per_run:>6.2f} {rate:>9.2f} {rate / baseline:>8.2f}")


if __name__ == "__main__":
    main()
