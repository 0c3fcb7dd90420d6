"""Running sweeps: one resumable run per point of a :mod:`spec <ticketscope.experiments.spec>`, and the sweep's summary.

A sweep file is described in :mod:`ticketscope.experiments.spec`; a sweep is validated whole when it
is loaded, so every point here has a valid config and a run of its own. Sweep directory::

    sweep.yaml        the sweep as run
    runs/<digest>/    one run per point, named by ``RunConfig.digest()`` of its resolved config
    summary.parquet   one row per point: point, digest, one column per axis (its dotted path),
    summary.json      status (ok | failed | skipped), error, run_dir (relative), worker seconds of the
                      run (wall_s = train_s, its share of its ensemble, + analysis_s; None when skipped)
    .sweep.lock       held while sweep.yaml and the summary files are written

Run directories are named by content, locked and resumable, so running a sweep again skips
complete runs with a current analysis (status ``skipped``), resumes killed ones, repairs damaged ones
(:meth:`~ticketscope.runs.RunDir.damage`), fills in missing analyses and runs only the points that are new.

Two sweep commands on one directory cooperate: a point whose run another process is executing
(its run directory is locked) is left to that process and waited for, then reported ``skipped``
when that process completed it, or run here when it did not (it was killed, or the run failed).
Each point runs once; ``sweep.yaml`` and the summary files are written under ``.sweep.lock``, so
they always come from one command and are never half-written.

Where the runs execute (a local process pool, Ray) is :mod:`ticketscope.experiments.executors`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import yaml
from pydantic import BaseModel

from ..errors import TicketscopeError
from ..io import atomic_write_text, file_lock, wait_unlocked, write_json, write_table
from ..progress import point_progress
from ..runs import sweep_run_dir, sweep_run_name
from .executors import EXECUTORS, Job, Outcome, Task, execute_task
from .report.claims import family
from .spec import Sweep, SweepPoint, load_sweep

__all__ = ["Outcome", "Sweep", "SweepPoint", "load_sweep", "run_sweep", "sweep_runs", "time_spent"]

TIMES = ("train_s", "analysis_s")  # worker seconds per run, in the summary
SWEEP_LOCK = ".sweep.lock"  # held while sweep.yaml or the summary files are written
HANDOFFS = 10  # times a point locked by another process is waited for before it is reported failed
TASK_TIMEOUT_ENV = "TICKETSCOPE_TASK_TIMEOUT"  # default task_timeout_s (seconds) of run_sweep


def _axis_value(point: SweepPoint, axis: str) -> Any:
    """The point's value of ``axis``, as resolved by its config."""
    value: Any = point.config
    for part in axis.split("."):
        value = getattr(value, part)
    return value.model_dump() if isinstance(value, BaseModel) else value


def _row(index: int, point: SweepPoint, outcome: Outcome, axes: list[str]) -> dict[str, Any]:
    return {"point": index, "digest": point.digest, **{a: _axis_value(point, a) for a in axes},
            "status": outcome.status, "error": outcome.error, "run_dir": sweep_run_name(point.digest),
            "wall_s": outcome.wall_s, "train_s": outcome.train_s, "analysis_s": outcome.analysis_s}


def _parquet_safe(df: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Axis columns that Parquet cannot type (e.g. a plug-in parameter given values of several types) as JSON text."""
    df = df.copy()
    for axis in axes:
        try:
            pa.array(df[axis], from_pandas=True)
        except pa.ArrowException:
            df[axis] = [json.dumps(v, default=str) for v in df[axis]]
    return df


def _write_summary(out: Path, sweep: Sweep, rows: list[dict[str, Any]], axes: list[str]) -> pd.DataFrame:
    """sweep.yaml, summary.parquet and summary.json together, under the sweep lock (so they always agree)."""
    df = pd.DataFrame(rows, columns=["point", "digest", *axes, "status", "error", "run_dir", "wall_s", *TIMES])
    with file_lock(out / SWEEP_LOCK):
        atomic_write_text(out / "sweep.yaml", yaml.safe_dump(sweep.to_dict(), sort_keys=False))
        write_table(out / "summary.parquet", _parquet_safe(df, axes))
        write_json(out / "summary.json", {"name": sweep.name, "counts": dict(Counter(r["status"] for r in rows)),
                                          "points": rows})
    return df


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _task_timeout(task_timeout_s: float | None) -> float | None:
    if task_timeout_s is None and os.environ.get(TASK_TIMEOUT_ENV):
        try:
            task_timeout_s = float(os.environ[TASK_TIMEOUT_ENV])
        except ValueError:
            raise TicketscopeError(f"{TASK_TIMEOUT_ENV} must be a number of seconds, "
                                   f"not {os.environ[TASK_TIMEOUT_ENV]!r}") from None
    if task_timeout_s is not None and not task_timeout_s > 0:
        raise TicketscopeError(f"task_timeout_s must be > 0 seconds, got {task_timeout_s}")
    return task_timeout_s


def _complete(out: Path, digest: str, analyzed: bool = True) -> bool:
    """Whether the point's run is complete and whole (and, with ``analyzed``, its analysis current): a
    point is skipped only then."""
    store = sweep_run_dir(out, digest)
    if not store.is_complete():
        return False
    if not analyzed:
        return True
    from ..analysis import analysis_status

    return analysis_status(store.path) is None


def run_sweep(sweep: Sweep, out_dir: str | Path, executor: str = "local", workers: int | None = None,
              threads: int | None = None, address: str | None = None, progress: bool = True,
              task_timeout_s: float | None = None, gpus_per_task: float = 1.0, ensemble: bool = True) -> pd.DataFrame:
    """Run every point of ``sweep`` not yet complete in ``out_dir``; return the summary (one row per point).

    With ``ensemble`` (default) points whose networks and training settings agree train together as
    ensembles, one per task (a run's numbers are the same either way, on the same machine and thread
    count); without it every point is its own task.

    ``workers`` runs at a time (default: one per core), each with ``threads`` torch threads (default 1;
    a config's own nonzero ``threads`` wins); threads are set in the worker, so they never change a
    run's digest. executor ``local``: a pool of spawned processes. executor ``ray``: one task per run
    (``threads`` CPUs, and ``gpus_per_task`` GPUs when its config has device cuda, or auto on a
    cluster with GPUs) on the Ray instance this process already runs, else the cluster at ``address``
    (``auto``: the cluster this node belongs to; default: $RAY_ADDRESS), else a new local instance
    with ``workers * threads`` CPUs. On a cluster ``out_dir`` must be on a shared file system that
    every node mounts at the same path (run directories are locked with flock).

    Faults: a run whose worker process dies (e.g. killed by the OS for memory) is retried up to the
    executor's ``retries`` option (:data:`~ticketscope.experiments.executors.RETRIES` times) by either
    executor, resuming from its last round; a run executing for longer than ``task_timeout_s`` seconds
    (default: $TICKETSCOPE_TASK_TIMEOUT, else no limit) is reported failed as hung. A failing point is
    recorded (status failed, its error) and never stops the others; an invalid point never gets here
    (``Sweep`` refuses it when it is built). A point another process is running (e.g. a second sweep on this directory) is waited
    for and reported skipped once that process completed it. The summary files are written once
    every point is done.
    """
    if executor not in EXECUTORS:
        raise TicketscopeError(f"unknown executor {executor!r}; choose {' or '.join(EXECUTORS)}")
    own = {f.name for f in fields(EXECUTORS[executor].options)}  # the options this executor takes
    if address is not None and "address" not in own:
        raise TicketscopeError("address names a Ray cluster: use it with executor ray")
    workers, threads = _cores() if workers is None else workers, 1 if threads is None else threads
    if workers < 1 or threads < 1:
        raise TicketscopeError(f"workers and threads must be >= 1, got {workers} and {threads}")
    if not gpus_per_task > 0:
        raise TicketscopeError(f"gpus_per_task must be > 0, got {gpus_per_task}")
    task_timeout_s = _task_timeout(task_timeout_s)
    family(sweep.claims)  # an unknown registered claim is refused before anything trains
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with file_lock(out / SWEEP_LOCK):
        atomic_write_text(out / "sweep.yaml", yaml.safe_dump(sweep.to_dict(), sort_keys=False))
    points = sweep.points()
    outcomes = {p.digest: Outcome("skipped") for p in points if _complete(out, p.digest)}
    todo = {p.digest: Job(p.digest, p.config, str(sweep_run_dir(out, p.digest).path))
            for p in points if p.digest not in outcomes}
    with point_progress(progress, len(points), f"sweep {sweep.name}") as advance:
        advance("skipped", len(outcomes))
        for _ in range(HANDOFFS):
            if not todo:
                break
            extra = {k: v for k, v in (("address", address), ("gpus_per_task", gpus_per_task)) if k in own}
            options = EXECUTORS[executor].options(min(workers, len(todo)), threads, task_timeout_s=task_timeout_s,
                                                  **extra)
            busy = {}
            tasks = _tasks(list(todo.values()), workers, ensemble)
            for digest, outcome in EXECUTORS[executor].run(tasks, options, execute_task):
                if outcome.status == "busy":  # another process runs it: leave it to that one
                    busy[digest] = outcome
                    continue
                outcomes[digest] = outcome
                advance(outcome.status, 1)
            todo = {d: todo[d] for d in busy}
            for digest in list(todo):
                wait_unlocked(todo[digest].run_dir)
                if _complete(out, digest):  # completed by the other process
                    outcomes[digest] = Outcome("skipped")
                    advance("skipped", 1)
                    del todo[digest]
        for digest, job in todo.items():  # still locked after HANDOFFS waits
            outcomes[digest] = Outcome("failed", f"other processes kept {job.run_dir} locked; run the sweep again")
            advance("failed", 1)
    axes = sweep.axis_names()
    rows = [_row(i, p, outcomes[p.digest], axes) for i, p in enumerate(points)]
    return _write_summary(out, sweep, rows, axes)


def _tasks(jobs: list[Job], workers: int, ensemble: bool) -> list[Task]:
    """Jobs grouped into ensembles (same network shapes and training settings; see
    :func:`ticketscope.engine.plan_ensembles`), at most ceil(jobs / workers) runs each so every
    worker gets a share; one job per task without ``ensemble``."""
    if not ensemble:
        return [(job,) for job in jobs]
    from ..engine import plan_ensembles

    groups = plan_ensembles([job.config for job in jobs], max_runs=-(-len(jobs) // workers))
    return [tuple(jobs[i] for i in group) for group in groups]


def time_spent(summary: pd.DataFrame) -> str:
    """One line: the worker seconds this invocation spent training and analyzing, summed over runs."""
    ran = summary.dropna(subset=["train_s"]) if "train_s" in summary else summary.iloc[:0]
    if ran.empty:
        return "no run trained in this invocation"
    return (f"worker time over {len(ran)} runs: training {ran['train_s'].sum():.0f} s "
            f"(with pruning and checkpoints), analysis {ran['analysis_s'].sum():.0f} s")


def sweep_runs(out_dir: str | Path) -> pd.DataFrame:
    """Complete runs of the sweep in ``out_dir``: digest, one column per axis, run_dir (relative)."""
    out = Path(out_dir)
    if not (out / "sweep.yaml").exists():
        raise TicketscopeError(f"{out} is not a sweep directory (no sweep.yaml); run the sweep first")
    sweep = load_sweep(out / "sweep.yaml")
    axes, rows = sweep.axis_names(), []
    for p in sweep.points():
        if _complete(out, p.digest, analyzed=False):
            rows.append({"digest": p.digest, **{a: _axis_value(p, a) for a in axes}, "run_dir": sweep_run_name(p.digest)})
    return pd.DataFrame(rows, columns=["digest", *axes, "run_dir"])
