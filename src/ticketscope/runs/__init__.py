"""Runs: the run directory (:mod:`.store`), one run's rounds (:mod:`.round`), and the runner that trains
many runs as ensembles (:mod:`.runner`)."""

from .round import RunData, prunable_layers
from .runner import run_ensemble, run_experiment
from .store import DamagedRun, RunDir, checkpoints_digest, complete_runs, sweep_run_dir, sweep_run_name

__all__ = ["DamagedRun", "RunData", "RunDir", "checkpoints_digest", "complete_runs", "prunable_layers", "run_ensemble",
           "run_experiment", "sweep_run_dir", "sweep_run_name"]

