"""The run directory: the one module that knows its files, how a run claims one, and when it is complete.

Layout::

    config.yaml                   the resolved config (a different config is refused)
    .lock                         held (flock) while a process trains the run
    rounds/NNN/start.safetensors  model state (weights, masks, norms) when the round's training starts
    rounds/NNN/final.safetensors  model state when it ends
    rounds/NNN/masks.safetensors  masks of the prunable layers
    rounds/NNN/rewind.safetensors (round 0 only) the rewind point: init or step k
    rounds/NNN/snapshots.safetensors (train.snapshots > 0) the model state at log-spaced steps:
                                  keys ``step{S}.{state key}``, S the step (engine.snapshot_steps)
    rounds/NNN/history.parquet    evaluations during training
    rounds/NNN/round.json         written last: the round's summary and its files' SHA-256
    metrics.parquet               one row per completed round (tidy summary)
    run.json                      written when the run is complete: rounds and stop reason
    analysis/                     the analysis tables, figures and analysis.json (ticketscope.analysis)

A round counts as done only once its ``round.json`` exists; a run is complete once ``run.json`` does.
Every reader and writer of a run directory goes through :class:`RunDir`; a sweep directory holds one
run directory per point under ``runs/<config digest>`` (:func:`sweep_run_dir`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..config import RunConfig, dump_config, load_config, load_run_config
from ..errors import TicketscopeError
from ..io import atomic_write_text, exclusive_lock, load_tensors, read_json, save_tensors, write_json, write_table

CONFIG, RUN, METRICS, ROUND, ANALYSIS, LOCK = "config.yaml", "run.json", "metrics.parquet", "round.json", "analysis", ".lock"
SUMMARY_FIELDS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "train_time_s", "steps")


class RunDir:
    """One run directory (module docstring): its paths, rounds, checkpoints and completeness."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # --------------------------------------------------------------------------------- layout

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def analysis_dir(self) -> Path:
        return self.path / ANALYSIS

    def round_dir(self, r: int) -> Path:
        return self.path / "rounds" / f"{r:03d}"

    # --------------------------------------------------------------------------------- reading

    def exists(self) -> bool:
        """Whether a run has claimed this directory (its config.yaml exists)."""
        return (self.path / CONFIG).exists()

    def require(self) -> "RunDir":
        """This directory, or one clear error if it holds no run."""
        if not self.exists():
            raise TicketscopeError(f"{self.path} is not a run directory (no {CONFIG}); give the --out of "
                                   "`ticketscope run`")
        return self

    def is_complete(self) -> bool:
        """Whether the run finished (``run.json`` written after its last round)."""
        return (self.path / RUN).exists()

    def config(self) -> RunConfig:
        """The config the run was trained with (legacy stream version filled in, see ``load_run_config``)."""
        return load_run_config(self.path)

    def info(self) -> dict[str, Any]:
        """The contents of run.json (rounds, stop reason, config digest, provenance); {} while running."""
        return read_json(self.path / RUN) if self.is_complete() else {}

    def rounds(self) -> list[dict[str, Any]]:
        """Summaries (``round.json``) of the contiguous completed rounds 0..r-1."""
        done: list[dict[str, Any]] = []
        while (self.round_dir(len(done)) / ROUND).exists():
            done.append(read_json(self.round_dir(len(done)) / ROUND))
        return done

    def load(self, summary: dict[str, Any], name: str) -> dict[str, torch.Tensor]:
        """A checkpoint of a completed round, verified against the checksum in its round.json."""
        return load_tensors(self.round_dir(summary["round"]) / name, summary["files"][name])

    def snapshots(self, summary: dict[str, Any]) -> dict[int, dict[str, torch.Tensor]]:
        """A completed round's weight snapshots (checksum verified): step -> model state; {} if none."""
        if "snapshots.safetensors" not in summary["files"]:
            return {}
        steps: dict[int, dict[str, torch.Tensor]] = {}
        for key, v in self.load(summary, "snapshots.safetensors").items():
            head, name = key.split(".", 1)
            steps.setdefault(int(head[len("step"):]), {})[name] = v
        return dict(sorted(steps.items()))

    def summary_table(self, cfg: RunConfig | None = None) -> pd.DataFrame:
        """Tidy per-round summary: round, density overall and per layer, losses, accuracies, time."""
        cfg = cfg or self.config()
        rows = []
        for s in self.rounds():
            row = {"round": s["round"], "method": cfg.prune.method, "seed": cfg.seed, "density": s["density"]}
            row.update({f"density[{n}]": v for n, v in s["layer_density"].items()})
            row.update({k: s[k] for k in SUMMARY_FIELDS})
            rows.append(row)
        return pd.DataFrame(rows)

    def analysis_info(self) -> dict[str, Any] | None:
        """The stamp of the stored analysis (``analysis/analysis.json``: rounds, n_probe, version, input
        shape, ...), or None when the run has none."""
        path = self.analysis_dir / "analysis.json"
        return read_json(path) if path.exists() else None

    def has_analysis(self, *tables: str) -> bool:
        """Whether every named analysis table (``units``, ``rounds``, ...) is stored."""
        return all((self.analysis_dir / f"{t}.parquet").exists() for t in tables)

    def analysis_table(self, table: str) -> pd.DataFrame:
        """A stored analysis table, or one error naming the command that writes it."""
        path = self.analysis_dir / f"{table}.parquet"
        if not path.exists():
            raise TicketscopeError(f"{self.path} has no analysis table {table!r}; run `ticketscope analyze {self.path}`")
        return pd.read_parquet(path)

    # --------------------------------------------------------------------------------- writing

    def lock(self) -> AbstractContextManager[None]:
        """Hold the run's lock (raises ``LockBusy`` when another process trains it)."""
        return exclusive_lock(self.path)

    def claim(self, cfg: RunConfig) -> RunConfig:
        """Claim the directory for ``cfg`` (write its config.yaml), or check that it holds the same run;
        return the config the run must go on with (the caller must use it).

        A run resumes on the sample stream it began with: when ``cfg`` does not set ``data.stream``
        explicitly it adopts the directory's, and a config.yaml written before streams were versioned
        (no ``stream`` key) began on version 1; that file is then rewritten with ``stream: 1``
        (same digest), so later readers see the version too.
        """
        path = self.path / CONFIG
        if not path.exists():
            atomic_write_text(path, dump_config(cfg))
            return cfg
        old = load_config(path)
        legacy = "stream" not in old.data.model_fields_set
        if legacy:
            old = old.model_copy(update={"data": old.data.model_copy(update={"stream": 1})})
        if "stream" not in cfg.data.model_fields_set and cfg.data.stream != old.data.stream:
            cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"stream": old.data.stream})})
        if old.digest() != cfg.digest():
            raise TicketscopeError(
                f"{self.path} already holds a run with a different config ({path}); choose another --out "
                "or delete that directory")
        if legacy:
            atomic_write_text(path, dump_config(old))
        return cfg

    def unclaim(self) -> None:
        """Remove the config and lock this process wrote (and the directory itself if then empty)."""
        for name in (CONFIG, LOCK):
            (self.path / name).unlink(missing_ok=True)
        if not any(self.path.iterdir()):
            self.path.rmdir()

    def save(self, r: int, name: str, tensors: dict[str, torch.Tensor]) -> str:
        """Write a checkpoint of round ``r``; return its SHA-256 (for the round's round.json)."""
        return save_tensors(self.round_dir(r) / name, tensors)

    def write_history(self, r: int, history: pd.DataFrame) -> None:
        write_table(self.round_dir(r) / "history.parquet", history)

    def end_round(self, summary: dict[str, Any], cfg: RunConfig) -> None:
        """Mark round ``summary["round"]`` done (its round.json, written last), then refresh metrics."""
        write_json(self.round_dir(summary["round"]) / ROUND, summary)
        write_table(self.path / METRICS, self.summary_table(cfg))

    def write_analysis_table(self, table: str, df: pd.DataFrame) -> None:
        write_table(self.analysis_dir / f"{table}.parquet", df)

    def write_analysis_info(self, stamp: dict[str, Any]) -> None:
        """The analysis stamp, written after its tables (a reader trusts tables only under a current stamp)."""
        write_json(self.analysis_dir / "analysis.json", stamp)

    def finish(self, cfg: RunConfig, rounds: int, reason: str, provenance: dict[str, Any]) -> pd.DataFrame:
        """Mark the run complete (metrics refreshed, then run.json); return its summary table."""
        table = self.summary_table(cfg)
        write_table(self.path / METRICS, table)  # also after a kill between round.json and metrics
        write_json(self.path / RUN, {"status": "complete", "rounds": rounds, "stop_reason": reason,
                                     "config_digest": cfg.digest(), "provenance": provenance})
        return table


def sweep_run_name(digest: str) -> str:
    """Where a sweep keeps the run of its point with config digest ``digest``, relative to the sweep."""
    return f"runs/{digest}"


def sweep_run_dir(sweep_dir: str | Path, digest: str) -> RunDir:
    """The run directory of a sweep's point with config digest ``digest``."""
    return RunDir(Path(sweep_dir) / sweep_run_name(digest))


def complete_runs(sweep_dir: str | Path) -> list[RunDir]:
    """Every complete run directory of a sweep, in name order."""
    return [RunDir(p) for p in sorted((Path(sweep_dir) / "runs").glob("*")) if RunDir(p).is_complete()]
