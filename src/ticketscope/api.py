"""Finished runs and sweeps from Python: ``open_run(DIR)`` and ``open_sweep(DIR)``.

    run = ticketscope.open_run("runs/a")
    run.config, run.provenance, run.summary          # RunConfig, dict, per-round pandas table
    run.analysis("units")                            # analysis tables (computed on first use)
    run.weights(3)["layers.0"], run.masks(3)          # checkpoints of round 3, checksums verified
    run.model(3)(X)                                  # a ready-to-evaluate network at round 3
    X, y = run.dataset().test(1000)                  # the run's data set

    sweep = ticketscope.open_sweep("sweeps/demo")
    sweep.summary, sweep.runs, sweep.table()          # one row per point, Run objects, joined table

Both read through the run store (:class:`ticketscope.runs.RunDir`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .analysis import TABLES
from .config import RunConfig
from .data import Dataset, make_dataset
from .errors import TicketscopeError
from .models import FCN
from .runs import RunDir, complete_runs



@dataclass(frozen=True)
class Run:
    """A run directory, read only (checkpoints verified against the checksums of their round.json)."""

    path: Path

    @property
    def store(self) -> RunDir:
        return RunDir(self.path)

    @cached_property
    def config(self) -> RunConfig:
        return self.store.config()

    @cached_property
    def complete(self) -> bool:
        return self.store.is_complete()

    @cached_property
    def provenance(self) -> dict[str, Any]:
        """Code, libraries, device and threads that produced the run (empty for runs that predate it)."""
        return self.store.info().get("provenance", {})

    @property
    def rounds(self) -> list[int]:
        return [s["round"] for s in self.store.rounds()]

    @property
    def summary(self) -> pd.DataFrame:
        """Per round: density (overall and per layer), losses, accuracies, training time."""
        return self.store.summary_table(self.config)

    def analysis(self, table: str = "rounds") -> pd.DataFrame:
        """An analysis table (``units``, ``rounds``, ``cavity`` or ``lagged``); runs ``analyze`` first if it is missing or old."""
        if table not in TABLES:
            raise TicketscopeError(f"no analysis table {table!r}; choose one of {', '.join(TABLES)}")
        from .analysis import analyze_run

        return pd.read_parquet(analyze_run(self.path) / f"{table}.parquet")

    def state(self, round_: int, which: str = "final") -> dict[str, torch.Tensor]:
        """The full model state (weights, biases, masks, norms) at the ``start`` or ``final`` of a round."""
        if which not in ("start", "final"):
            raise TicketscopeError(f"which must be 'start' or 'final', not {which!r}")
        done = self.store.rounds()
        if not 0 <= round_ < len(done):
            raise TicketscopeError(f"{self.path} has rounds 0..{len(done) - 1}; round {round_} is not complete")
        return self.store.load(done[round_], f"{which}.safetensors")

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
    return Run(RunDir(path).require().path)


@dataclass(frozen=True)
class SweepResults:
    """A sweep directory, read only: its points, their runs and the joined tables of the report."""

    path: Path

    @property
    def summary(self) -> pd.DataFrame:
        """One row per point: digest, axis values, status, error, run_dir, wall time."""
        return pd.read_parquet(self.path / "summary.parquet")

    @property
    def runs(self) -> list[Run]:
        """Every complete run, in directory order."""
        return [Run(store.path) for store in complete_runs(self.path)]

    def table(self) -> pd.DataFrame:
        """The joined per-(run, round, layer) table of every complete run with its config fields."""
        from .experiments.report import collect

        return collect(self.path)[0]


def open_sweep(path: str | Path) -> SweepResults:
    """A sweep directory (written by ``ticketscope sweep``); one clear error if ``path`` is not one."""
    path = Path(path)
    if not (path / "summary.parquet").exists():
        raise TicketscopeError(f"{path} is not a finished sweep directory (no summary.parquet); run `ticketscope sweep`")
    return SweepResults(path)
