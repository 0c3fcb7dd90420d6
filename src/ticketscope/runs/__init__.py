"""Runs: the run directory (:mod:`.store`), one run's rounds (:mod:`.round`), and the runner that trains
many runs as ensembles (:mod:`.runner`)."""

from .round import RunData, prunable_layers
from .runner import run_ensemble, run_experiment
from .store import RunDir, complete_runs, sweep_run_dir, sweep_run_name

__all__ = ["RunData", "RunDir", "complete_runs", "prunable_layers", "run_ensemble", "run_experiment", "sweep_run_dir",
           "sweep_run_name"]


# --- transitional (removed once every module reads through RunDir) ---
from .store import RunDir as _RunDir  # noqa: E402
from ..device import resolve_device  # noqa: E402,F401


def round_dir(out, r):  # type: ignore[no-untyped-def]
    return _RunDir(out).round_dir(r)


def completed_rounds(out):  # type: ignore[no-untyped-def]
    return _RunDir(out).rounds()


def load_round_file(out, summary, name):  # type: ignore[no-untyped-def]
    return _RunDir(out).load(summary, name)


def load_snapshots(out, summary):  # type: ignore[no-untyped-def]
    return _RunDir(out).snapshots(summary)


def summary_table(out, cfg=None):  # type: ignore[no-untyped-def]
    return _RunDir(out).summary_table(cfg)


def _claim_directory(out, cfg):  # type: ignore[no-untyped-def]
    return _RunDir(out).claim(cfg)
