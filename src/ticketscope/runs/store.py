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
    rounds/NNN/round.json         written last: the round's summary, its index, the config digest and
                                  the SHA-256 of every file above
    metrics.parquet               one row per completed round (tidy summary, derived from the round.json files)
    run.json                      written when the run is complete: rounds, stop reason, config digest
    diverged.json                 written instead when training diverged: round, step, loss
    analysis/                     the analysis tables, figures and analysis.json (ticketscope.analysis)

A round counts as done only once its ``round.json`` exists; a run is complete once ``run.json`` does
and the whole directory agrees with it (:meth:`RunDir.damage`): config.yaml has the digest the rounds
were trained with, every round 0..n-1 is present and every file matches its recorded checksum. A
damaged run is never complete: every reader refuses it in one line naming the file and the command
that repairs it, and ``run`` (or the sweep) repairs it by recomputing the first damaged round and
every later one, bit-identical to the original on the same machine (each round is a pure function
of the config and the rounds before it).

Every reader and writer of a run directory goes through :class:`RunDir`; a sweep directory holds one
run directory per point under ``runs/<config digest>`` (:func:`sweep_run_dir`).
"""

from __future__ import annotations

import json
import shutil
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..config import RunConfig, dump_config, load_config, load_run_config
from ..errors import Diverged, TicketscopeError
from ..io import (atomic_write_text, exclusive_lock, file_sha256, load_tensors, read_json, save_tensors, sha256_bytes,
                  write_json, write_table)
from ..plugins import PLUGINS_ENV

CONFIG, RUN, METRICS, ROUND, ANALYSIS, LOCK = "config.yaml", "run.json", "metrics.parquet", "round.json", "analysis", ".lock"
DIVERGED = "diverged.json"
SUMMARY_FIELDS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "train_time_s", "steps")


@dataclass(frozen=True)
class Damage:
    """One file of a run directory that disagrees with what the run recorded.

    ``round``: the first round it invalidates (None: a run-level file); ``repairable``: ``run``
    recomputes it (False: config.yaml itself is missing or foreign, which only its owner can fix).
    """

    file: Path
    problem: str
    round: int | None = None
    repairable: bool = True


class DamagedRun(TicketscopeError):
    """A run directory whose files disagree with their records (the message names the file and the repair)."""




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
            if self.has_results():
                raise DamagedRun(f"damaged run {self.path}: {self.path / CONFIG} is missing; {self._config_fix()}")
            raise TicketscopeError(f"{self.path} is not a run directory (no {CONFIG}); give the --out of "
                                   "`ticketscope run`")
        return self

    def has_results(self) -> bool:
        """Whether the directory holds any round or run record (whatever state its config.yaml is in)."""
        return (self.path / RUN).exists() or (self.path / "rounds").is_dir()

    def is_complete(self) -> bool:
        """Whether the run finished (``run.json`` written after its last round) and nothing of it is damaged."""
        return (self.path / RUN).exists() and not self.damage()

    def config(self) -> RunConfig:
        """The config the run was trained with (legacy stream version filled in, see ``load_run_config``); a
        config.yaml that does not read is named as damage of the run."""
        try:
            return load_run_config(self.path)
        except TicketscopeError as e:
            if not self.has_results() or PLUGINS_ENV in str(e):  # a plug-in not loaded here is no damage
                raise
            first = str(e).splitlines()[0].rstrip(":")
            raise DamagedRun(f"damaged run {self.path}: {self.path / CONFIG} is unreadable ({first}); "
                             f"{self._config_fix()}") from None

    def info(self) -> dict[str, Any]:
        """The contents of run.json (rounds, stop reason, config digest, provenance); {} while running."""
        return read_json(self.path / RUN) if (self.path / RUN).exists() else {}

    def diverged(self) -> dict[str, Any] | None:
        """Where training diverged (``diverged.json``: round, step, loss, error), or None."""
        path = self.path / DIVERGED
        return read_json(path) if path.exists() else None

    def rounds(self) -> list[dict[str, Any]]:
        """Summaries (``round.json``) of the completed rounds 0..r-1, after :meth:`verify`."""
        return self.verify()._read_rounds()

    def _read_rounds(self) -> list[dict[str, Any]]:
        done: list[dict[str, Any]] = []
        while (self.round_dir(len(done)) / ROUND).exists():
            done.append(read_json(self.round_dir(len(done)) / ROUND))
        return done

    def load(self, summary: dict[str, Any], name: str) -> dict[str, torch.Tensor]:
        """A checkpoint of a completed round, verified against the checksum in its round.json."""
        try:
            return load_tensors(self.round_dir(summary["round"]) / name, summary["files"][name])
        except TicketscopeError as e:
            raise DamagedRun(f"{e}; repair: {self.repair_command()}") from None

    # --------------------------------------------------------------------------------- integrity

    def damage(self) -> list[Damage]:
        """Every way the directory disagrees with its records, run-level files first, then the first
        damaged round (later rounds are recomputed with it, so they are not inspected).

        Checks that config.yaml reads and has the digest that run.json and every round.json record;
        that run.json reads; that every round 0..n-1 (n: run.json's rounds, or the last round with a
        round.json while the run is unfinished) has a readable round.json and every file it lists,
        with its checksum; and, for a complete run, that metrics.parquet agrees with the rounds.
        """
        found: list[Damage] = []
        cfg: RunConfig | None = None
        config_file = self.path / CONFIG
        try:
            cfg = self.config()
        except TicketscopeError as e:
            if PLUGINS_ENV in str(e):  # names a plug-in this process has not loaded: say so, not "damaged"
                raise
            found.append(Damage(config_file, "missing" if not config_file.exists() else "unreadable",
                                repairable=False))
        digest = cfg.digest() if cfg is not None else None
        info: dict[str, Any] | None = None
        if (self.path / RUN).exists():
            try:
                info = read_json(self.path / RUN)
                if not isinstance(info.get("rounds"), int):
                    raise TicketscopeError("no round count")
            except TicketscopeError:
                found.append(Damage(self.path / RUN, "corrupt"))
                info = None
        recorded = [(self.path / RUN, info.get("config_digest"))] if info else []
        bad_round = self._round_damage(info["rounds"] if info else None, recorded)
        if digest is not None:
            for file, d in recorded:
                if d is not None and d != digest:
                    found.append(Damage(config_file, f"holds config digest {digest}, but {file.name} records that the "
                                        f"run was trained with {d} (a foreign config.yaml)", repairable=False))
                    break
        if bad_round is not None:
            found.append(bad_round)
        elif info is not None and cfg is not None:
            found += self._metrics_damage(cfg)
        return found

    def _round_damage(self, n: int | None, recorded: list[tuple[Path, str | None]]) -> Damage | None:
        """The first damaged round's damage (None: rounds 0..n-1 are whole); appends each round's recorded
        config digest to ``recorded``."""
        if n is None:
            n = 1 + max((int(p.parent.name) for p in (self.path / "rounds").glob(f"[0-9]*/{ROUND}")
                         if p.parent.name.isdigit()), default=-1)
        for r in range(n):
            path = self.round_dir(r) / ROUND
            if not path.exists():
                return Damage(path, "missing", r)
            try:
                s = read_json(path)
                if s.get("round") != r or not isinstance(s.get("files"), dict):
                    raise TicketscopeError("not this round's summary")
            except TicketscopeError:
                return Damage(path, "corrupt", r)
            recorded.append((path, s.get("config_digest")))
            for name, sha in s["files"].items():
                f = self.round_dir(r) / name
                if not f.exists():
                    return Damage(f, "missing", r)
                if file_sha256(f) != sha:
                    return Damage(f, f"corrupt (its checksum differs from the one in {path})", r)
        return None

    def _metrics_damage(self, cfg: RunConfig) -> list[Damage]:
        path = self.path / METRICS
        if not path.exists():
            return [Damage(path, "missing")]
        try:
            stored = pd.read_parquet(path)
        except Exception:  # noqa: BLE001  (pyarrow raises several types on bad bytes)
            return [Damage(path, "corrupt")]
        if not stored.equals(self.summary_table(cfg, verified=False)):
            return [Damage(path, "disagrees with the rounds' round.json files")]
        return []

    def repair_command(self) -> str:
        """The command that recomputes what is damaged: the sweep's own, for a run of a sweep."""
        sweep = self.path.parent.parent
        if self._in_sweep():
            return f"`ticketscope sweep {sweep / 'sweep.yaml'} --out {sweep}`"
        return f"`ticketscope run {self.path / CONFIG} --out {self.path}`"

    def _in_sweep(self) -> bool:
        return self.path.parent.name == "runs" and (self.path.parent.parent / "sweep.yaml").exists()

    def _config_fix(self) -> str:
        """How to mend a missing, unreadable or foreign config.yaml: the sweep knows its points' configs."""
        if self._in_sweep():
            return f"repair it with {self.repair_command()} (it writes back the config the run's records name)"
        return (f"repair it with `ticketscope run CONFIG --out {self.path}` given the config the run was made with "
                "(its digest is in run.json), or delete the directory")

    def verify(self) -> "RunDir":
        """This run directory, or one :class:`DamagedRun` error naming the first damaged file and its repair."""
        found = self.require().damage()
        if not found:
            return self
        d = found[0]
        fix = (f"repair it with {self.repair_command()} (it recomputes exactly what is damaged)" if d.repairable
               else self._config_fix())
        more = f" ({len(found) - 1} more problem(s) after it)" if len(found) > 1 else ""
        raise DamagedRun(f"damaged run {self.path}: {d.file} is {d.problem}{more}; {fix}")

    def snapshots(self, summary: dict[str, Any]) -> dict[int, dict[str, torch.Tensor]]:
        """A completed round's weight snapshots (checksum verified): step -> model state; {} if none."""
        if "snapshots.safetensors" not in summary["files"]:
            return {}
        steps: dict[int, dict[str, torch.Tensor]] = {}
        for key, v in self.load(summary, "snapshots.safetensors").items():
            head, name = key.split(".", 1)
            steps.setdefault(int(head[len("step"):]), {})[name] = v
        return dict(sorted(steps.items()))

    def summary_table(self, cfg: RunConfig | None = None, verified: bool = True) -> pd.DataFrame:
        """Tidy per-round summary: round, density overall and per layer, losses, accuracies, time."""
        cfg = cfg or self.config()
        rows = []
        for s in (self.rounds() if verified else self._read_rounds()):
            row = {"round": s["round"], "method": cfg.prune.method, "seed": cfg.seed, "density": s["density"]}
            row.update({f"density[{n}]": v for n, v in s["layer_density"].items()})
            row.update({k: s[k] for k in SUMMARY_FIELDS})
            rows.append(row)
        return pd.DataFrame(rows)

    def analysis_info(self) -> dict[str, Any] | None:
        """The stamp of the stored analysis (``analysis/analysis.json``: rounds, n_probe, version, input
        shape, the checksums of its tables and of the checkpoints it measured, ...), or None when the run
        has none."""
        path = self.analysis_dir / "analysis.json"
        return read_json(path) if path.exists() else None

    def has_analysis(self, *tables: str) -> bool:
        """Whether every named analysis table (``units``, ``rounds``, ...) is stored."""
        return all((self.analysis_dir / f"{t}.parquet").exists() for t in tables)

    def analysis_damage(self, tables: tuple[str, ...], done: list[dict[str, Any]]) -> str | None:
        """Why the stored tables are not those the stamp recorded, or not made from the checkpoints of
        ``done`` (None: they are); stamps that predate the checksums are trusted."""
        info = self.analysis_info() or {}
        if "checkpoints" in info and info["checkpoints"] != checkpoints_digest(done):
            return "made from other checkpoints (the run was recomputed since)"
        for t in tables:
            path, sha = self.analysis_dir / f"{t}.parquet", info.get("tables", {}).get(t)
            if not path.exists():
                return f"{t}.parquet missing"
            if sha is not None and file_sha256(path) != sha:
                return f"{t}.parquet corrupt (its checksum differs from analysis.json's)"
        return None

    def analysis_table(self, table: str) -> pd.DataFrame:
        """A stored analysis table (checksum verified), or one error naming the command that writes it."""
        path = self.analysis_dir / f"{table}.parquet"
        if not path.exists():
            raise TicketscopeError(f"{self.path} has no analysis table {table!r}; run `ticketscope analyze {self.path}`")
        sha = (self.analysis_info() or {}).get("tables", {}).get(table)
        if sha is not None and file_sha256(path) != sha:
            raise DamagedRun(f"{path} is corrupt (its checksum differs from analysis.json's); recompute it with "
                             f"`ticketscope analyze {self.path} --force`")
        return pd.read_parquet(path)

    # --------------------------------------------------------------------------------- writing

    def lock(self) -> AbstractContextManager[None]:
        """Hold the run's lock (raises ``LockBusy`` when another process trains it)."""
        return exclusive_lock(self.path)

    def claim(self, cfg: RunConfig) -> RunConfig:
        """Claim the directory for ``cfg`` (write its config.yaml), or check that it holds the same run;
        return the config the run must go on with (the caller must use it).

        A config.yaml that does not read, or disagrees with the digest the run's records (run.json,
        round 0) hold while ``cfg`` has it, is rewritten from ``cfg``: the records say which config the
        rounds were trained with. A run resumes on the sample stream it began with: when ``cfg`` does not set ``data.stream``
        explicitly it adopts the directory's, and a config.yaml written before streams were versioned
        (no ``stream`` key) began on version 1; that file is then rewritten with ``stream: 1``
        (same digest), so later readers see the version too.
        """
        path = self.path / CONFIG
        if not path.exists():
            atomic_write_text(path, dump_config(cfg))
            return cfg
        try:
            old = load_config(path)
        except TicketscopeError as e:
            if self._recorded_digest() != cfg.digest():
                raise DamagedRun(f"damaged run {self.path}: {path} is unreadable ({e}); put back the config the run "
                                 "was made with, or delete the directory") from None
            atomic_write_text(path, dump_config(cfg))  # the records name this config: rewrite it
            return cfg
        legacy = "stream" not in old.data.model_fields_set
        if legacy:
            old = old.model_copy(update={"data": old.data.model_copy(update={"stream": 1})})
        if "stream" not in cfg.data.model_fields_set and cfg.data.stream != old.data.stream:
            cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"stream": old.data.stream})})
        if old.digest() != cfg.digest() and self._recorded_digest() == cfg.digest():
            atomic_write_text(path, dump_config(cfg))  # a damaged or foreign config.yaml; the records name cfg
            return cfg
        if old.digest() != cfg.digest():
            raise TicketscopeError(
                f"{self.path} already holds a run with a different config ({path}); choose another --out "
                "or delete that directory")
        if legacy:
            atomic_write_text(path, dump_config(old))
        return cfg

    def _recorded_digest(self) -> str | None:
        """The config digest run.json (else round 0's round.json) records, or None."""
        for path in (self.path / RUN, self.round_dir(0) / ROUND):
            try:
                return read_json(path)["config_digest"]
            except (TicketscopeError, KeyError, TypeError):
                continue
        return None

    def repair(self) -> list[Damage]:
        """Make a claimed run resumable from what is whole: remove run.json and metrics.parquet when anything is
        damaged, and every round from the first damaged one on, so the run recomputes exactly them; return
        the damage repaired. Raises :class:`DamagedRun` for what only the user can fix (config.yaml)."""
        found = self.damage()
        if any(not d.repairable for d in found):
            self.verify()
        if found:
            first = min((d.round for d in found if d.round is not None), default=None)
            for name in (RUN, METRICS):
                (self.path / name).unlink(missing_ok=True)
            if first is not None:
                for d in (self.path / "rounds").glob("[0-9]*"):
                    if d.name.isdigit() and int(d.name) >= first:
                        shutil.rmtree(d)
        return found

    def record_divergence(self, error: Diverged, last_eval: dict[str, Any] | None) -> None:
        """Write diverged.json: the round and step where training became non-finite, the value that showed
        it (the sum of the logits), the last finite evaluation and the error."""
        write_json(self.path / DIVERGED, {"round": error.round, "step": error.step, "loss": repr(error.value),
                                          "last_eval": last_eval, "error": str(error),
                                          "config_digest": self.config().digest()})

    def divergence_error(self) -> TicketscopeError | None:
        """The error a diverged run gives instead of training again (None: it has not diverged)."""
        d = self.diverged()
        if d is None:
            return None
        return TicketscopeError(
            f"{self.path} diverged in round {d['round']} at step {d['step']} (loss {d['loss']}), recorded in "
            f"{self.path / DIVERGED}: the same config diverges again; lower train.lr (a new run directory), "
            f"or delete {DIVERGED} to try again")

    def unclaim(self) -> None:
        """Remove the config and lock this process wrote (and the directory itself if then empty)."""
        for name in (CONFIG, LOCK):
            (self.path / name).unlink(missing_ok=True)
        if not any(self.path.iterdir()):
            self.path.rmdir()

    def save(self, r: int, name: str, tensors: dict[str, torch.Tensor]) -> str:
        """Write a checkpoint of round ``r``; return its SHA-256 (for the round's round.json)."""
        return save_tensors(self.round_dir(r) / name, tensors)

    def write_history(self, r: int, history: pd.DataFrame) -> str:
        """Write round ``r``'s evaluations; return the file's SHA-256 (for its round.json)."""
        return write_table(self.round_dir(r) / "history.parquet", history)

    def end_round(self, summary: dict[str, Any], cfg: RunConfig) -> None:
        """Mark round ``summary["round"]`` done (its round.json, with the config digest, written last), then
        refresh metrics."""
        write_json(self.round_dir(summary["round"]) / ROUND, {**summary, "config_digest": cfg.digest()})
        write_table(self.path / METRICS, self.summary_table(cfg, verified=False))

    def write_analysis_table(self, table: str, df: pd.DataFrame) -> str:
        """Write an analysis table; return its SHA-256 (for the stamp's ``tables``)."""
        return write_table(self.analysis_dir / f"{table}.parquet", df)

    def write_analysis_info(self, stamp: dict[str, Any]) -> None:
        """The analysis stamp, written after its tables (a reader trusts tables only under a current stamp)."""
        write_json(self.analysis_dir / "analysis.json", stamp)

    def finish(self, cfg: RunConfig, rounds: int, reason: str, provenance: dict[str, Any]) -> pd.DataFrame:
        """Mark the run complete (metrics refreshed, then run.json); return its summary table."""
        table = self.summary_table(cfg, verified=False)
        write_table(self.path / METRICS, table)  # also after a kill between round.json and metrics
        write_json(self.path / RUN, {"status": "complete", "rounds": rounds, "stop_reason": reason,
                                     "config_digest": cfg.digest(), "provenance": provenance})
        return table


def checkpoints_digest(done: list[dict[str, Any]]) -> str:
    """One SHA-256 over the final checkpoints' checksums of the rounds ``done``: what an analysis measured."""
    return sha256_bytes(json.dumps([s["files"]["final.safetensors"] for s in done]).encode())


def sweep_run_name(digest: str) -> str:
    """Where a sweep keeps the run of its point with config digest ``digest``, relative to the sweep."""
    return f"runs/{digest}"


def sweep_run_dir(sweep_dir: str | Path, digest: str) -> RunDir:
    """The run directory of a sweep's point with config digest ``digest``."""
    return RunDir(Path(sweep_dir) / sweep_run_name(digest))


def complete_runs(sweep_dir: str | Path) -> list[RunDir]:
    """Every complete run directory of a sweep, in name order."""
    return [RunDir(p) for p in sorted((Path(sweep_dir) / "runs").glob("*")) if RunDir(p).is_complete()]
