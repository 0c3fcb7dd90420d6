"""Benchmark analyze_run: every pruned layer measured at all rounds at once against round by round.

    python benchmarks/bench_analysis.py [--threads 1] [--repeats 5] [--steps 40]

Trains one demo-sized run into a temporary folder (the demo preset's config: 1D rings of 64
pixels, 32 hidden units, 12 rounds of 20% pruning, so 13 rounds; ``--steps`` training steps a
round, since only the weights' shapes and sparsities matter here) and analyses it (figures off,
probe set of analyze_run's default size, 4096) two ways:

* batched: ``analyze_run(run, figures=False, force=True)``, the package's code: one call per
  measure for all rounds of a layer (one GEMM for every round's first-layer pre-activations, one
  kurtosis pass, one non-Gaussianity null with every round's placements, one cavity call), class
  moments reduced in cache-sized blocks, the tables built once;
* per round: the tests' reference analysis (``tests/reference.py``: ``per_round_tables``), the metric
  functions called once per (round, layer), a DataFrame per (round, layer), its tables written
  like analyze_run's.

Both write the three tables the reference recomputes (units; rounds, with its magnitude-band AUC
columns; cavity), checked equal (rtol 1e-10, atol 1e-12: cavity scores are differences of kurtosis
values near 1) before timing. Prints the best of ``--repeats`` seconds per run of each (one run,
interleaved) and their ratio: what batching over rounds gains with the same metric kernels.
analyze_run also writes the lagged table (a pure function of the units table, milliseconds) and, for
runs with weight snapshots, the snapshots table; the reference skips both, so the ratio is if
anything an underestimate. (Until the benchmark imported the tests' reference, it also timed a
frozen copy of the kernels of an older analyze_run, against which the target was >= 3x.)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference import per_round_tables  # noqa: E402  (tests/reference.py: the tests' oracle)
from ticketscope.analysis import analyze_run  # noqa: E402
from ticketscope.config import parse_config  # noqa: E402
from ticketscope.experiments.presets import preset_path  # noqa: E402
from ticketscope.io import write_json, write_table  # noqa: E402
from ticketscope.provenance import provenance  # noqa: E402
from ticketscope.runs import RunDir, run_experiment# noqa: E402

TABLES = ("units", "rounds", "cavity")


def demo_run(out: Path, steps: int) -> Path:
    """A run of the demo preset's base config (IMP, seed 0) with ``steps`` training steps a round."""
    base = yaml.safe_load(preset_path("demo").read_text())["base"]
    base["train"]["steps"] = steps
    run_experiment(parse_config({**base, "prune": {**base["prune"], "method": "imp"}}), out, progress=False)
    return out


def per_round_analysis(run: Path, out: Path, n_probe: int = 4096) -> None:
    """The reference analysis of ``run`` (one (round, layer) at a time), its tables written into ``out``."""
    for table, frame in per_round_tables(run, n_probe).items():
        write_table(out / f"{table}.parquet", frame)
    write_json(out / "analysis.json", {"rounds": len(RunDir(run).rounds()), "n_probe": n_probe,
                                       "provenance": provenance("cpu")})


def best_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Smallest wall time of ``repeats`` calls of each function (after one warm-up call each),
    the functions taking turns so that a busy machine slows them alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: a sweep analyses one run per core)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (best kept)")
    parser.add_argument("--steps", type=int, default=40, help="training steps a round of the benchmark's run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        run = demo_run(Path(tmp) / "run", args.steps)
        batched = analyze_run(run, figures=False, force=True)
        reference = Path(tmp) / "per-round"
        reference.mkdir()
        fns: dict[str, Callable[[], object]] = {"batched": lambda: analyze_run(run, figures=False, force=True),
                                                "per_round": lambda: per_round_analysis(run, reference)}
        fns["per_round"]()
        for table in TABLES:
            pd.testing.assert_frame_equal(pd.read_parquet(batched / f"{table}.parquet"),
                                          pd.read_parquet(reference / f"{table}.parquet"), rtol=1e-10, atol=1e-12)
        rounds = len(RunDir(run).rounds())
        t = best_times(fns, args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; demo-sized run of {rounds} rounds;"
          f" the two analyses' tables agree")
    print(f"    per round (tests/reference.py)  {t['per_round']:7.3f} s per run")
    print(f"    batched (analyze_run)           {t['batched']:7.3f} s per run")
    print(f"    ratio {t['per_round'] / t['batched']:.1f}x from batching over rounds")


if __name__ == "__main__":
    main()
