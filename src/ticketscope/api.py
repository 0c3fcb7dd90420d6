"""Finished runs and sweeps from Python: ``open_run(DIR)`` and ``open_sweep(DIR)``.

    run = ticketscope.open_run("runs/a")
    run.config, run.provenance, run.summary          # RunConfig, dict, per-round pandas table
    run.analysis("units")                            # analysis tables (computed on first use)
    run.weights(3)["layers.0"], run.masks(3)          # checkpoints of round 3, checksums verified
    run.model(3)(X)                                  # a ready-to-evaluate network at round 3
    X, y = run.dataset().test(1000)                  # the run's data set

    sweep = ticketscope.open_sweep("sweeps/demo")
    sweep.summary, sweep.runs, sweep.table()          # one row per point, Run objects, joined table
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .config import RunConfig, load_run_config
from .data import Dataset, make_dataset
from .errors import TicketscopeError
from .io import read_json
from .models import FCN
from .runs import completed_rounds, load_round_file, summary_table

ANALYSIS_TABLES = ("units", "rounds", "cavity")


@dataclass(frozen=True)
class Run:
    """A run directory, read only (checkpoints verified against the checksums of their round.json)."""

    path: Path

    @cached_property
    def config(self) -> RunConfig:
        return load_run_config(self.path)

    @cached_property
    def complete(self) -> bool:
        return (self.path / "run.json").exists()

    @cached_property
    def provenance(self) -> dict[str, Any]:
        """Code, libraries, device and threads that produced the run (empty for runs that predate it)."""
        return read_json(self.path / "run.json").get("provenance", {}) if self.complete else {}

    @property
    def rounds(self) -> list[int]:
        return [s["round"] for s in completed_rounds(self.path)]

    @property
    def summary(self) -> pd.DataFrame:
        """Per round: density (overall and per layer), losses, accuracies, training time."""
        return summary_table(self.path, self.config)

    def analysis(self, table: str = "rounds") -> pd.DataFrame:
        """An analysis table (``units``, ``rounds`` or ``cavity``); runs ``analyze`` first if it is missing or old."""
        if table not in ANALYSIS_TABLES:
            raise TicketscopeError(f"no analysis table {table!r}; choose one of {', '.join(ANALYSIS_TABLES)}")
        from .analysis import analyze_run

        return pd.read_parquet(analyze_run(self.path) / f"{table}.parquet")

    def state(self, round_: int, which: str = "final") -> dict[str, torch.Tensor]:
        """The full model state (weights, biases, masks, norms) at the ``start`` or ``final`` of a round."""
        if which not in ("start", "final"):
            raise TicketscopeError(f"which must be 'start' or 'final', not {which!r}")
        done = completed_rounds(self.path)
        if not 0 <= round_ < len(done):
            raise TicketscopeError(f"{self.path} has rounds 0..{len(done) - 1}; round {round_} is not complete")
        return load_round_file(self.path, done[round_], f"{which}.safetensors")

    def weights(self, round_: int, which: str = "final") -> dict[str, torch.Tensor]:
        """Layer name -> weight (K, D) at the round, pruned entries exactly 0."""
        return {k.removesuffix(".weight"): v for k, v in self.state(round_, which).items() if k.endswith(".weight")}

    def masks(self, round_: int) -> dict[str, torch.Tensor]:
        """Layer name -> mask (1 = kept) of every layer at the round."""
        return {k.removesuffix(".mask"): v for k, v in self.state(round_).items() if k.endswith(".mask")}

    def dataset(self) -> Dataset:
        """The run's data set, rebuilt from its config (synthetic sets are exact; a real set's clone is refitted)."""
        return make_dataset(self.config.data)

    def model(self, round_: int, which: str = "final") -> FCN:
        """The network at a round, in eval mode on the CPU."""
        state = self.state(round_, which)
        first, last = state["layers.0.weight"], state[f"layers.{len(self.config.model.hidden)}.weight"]
        model = FCN(first.shape[1], last.shape[0], self.config.model)
        model.load_state_dict(state)
        return model.eval()


def open_run(path: str | Path) -> Run:
    """A finished (or partial) run directory; one clear error if ``path`` is not one."""
    path = Path(path)
    if not (path / "config.yaml").exists():
        raise TicketscopeError(f"{path} is not a run directory (no config.yaml); give the --out of `ticketscope run`")
    return Run(path)


@dataclass(frozen=True)
class Sweep:
    """A sweep directory: its points, their runs and the joined tables of the report."""

    path: Path

    @property
    def summary(self) -> pd.DataFrame:
        """One row per point: digest, axis values, status, error, run_dir, wall time."""
        return pd.read_parquet(self.path / "summary.parquet")

    @property
    def runs(self) -> list[Run]:
        """Every complete run, in directory order."""
        return [Run(p) for p in sorted((self.path / "runs").glob("*")) if (p / "run.json").exists()]

    def table(self) -> pd.DataFrame:
        """The joined per-(run, round, layer) table of every complete run with its config fields."""
        from .experiments.report import collect

        return collect(self.path)[0]


def open_sweep(path: str | Path) -> Sweep:
    """A sweep directory (written by ``ticketscope sweep``); one clear error if ``path`` is not one."""
    path = Path(path)
    if not (path / "summary.parquet").exists():
        raise TicketscopeError(f"{path} is not a finished sweep directory (no summary.parquet); run `ticketscope sweep`")
    return Sweep(path)
