"""Sweeps: a base run config, grid axes over any config field, one resumable run per point.

Sweep file (YAML)::

    name: demo                  # optional; default: the file's stem
    base:                       # a partial RunConfig; defaults fill the rest
      data: {name: nlgp, L: 12}
      prune: {rounds: 4}
    grid:                       # cartesian product of the axes, each a dotted config path
      data.gaussian_clone: [false, true]
      prune.method: [imp, oneshot, random]
      seed: [0, 1, 2]
    zip:                        # optional: groups of axes whose values advance together
      - {train.lr: [0.1, 0.01], train.steps: [500, 2000]}

The points are the product of the grid axes and the zip groups (each group is one factor).
Sweep directory::

    sweep.yaml        the sweep as run
    runs/<digest>/    one run per point, named by ``RunConfig.digest()`` of its resolved config
    summary.parquet   one row per point: point, digest, one column per axis (its dotted path),
    summary.json      status (ok | failed | skipped), error, run_dir (relative), wall_s

Run directories are named by content, locked and resumable, so running a sweep again skips
complete runs (status ``skipped``), resumes killed ones and runs only the points that are new.
"""

from __future__ import annotations

import copy
import difflib
import functools
import itertools
import json
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import torch
import yaml
from pydantic import BaseModel

from ..config import RunConfig, load_yaml, parse_config
from ..errors import TicketscopeError
from ..io import atomic_write_text, write_json, write_table
from ..analysis import analyze_run
from ..runs import run_experiment

TOP_LEVEL = ("name", "description", "base", "grid", "zip")
RAY_RETRIES = 3  # attempts after a Ray worker process dies; a run error is never retried


@dataclass(frozen=True)
class SweepPoint:
    """One point: its axis values and its resolved config, or why that config is invalid."""

    overrides: dict[str, Any]
    config: RunConfig | None
    error: str | None
    digest: str | None


@dataclass(frozen=True)
class Sweep:
    """A base config (partial dict) and the axes it varies; validated on construction."""

    name: str
    base: dict[str, Any]
    axes: dict[str, list[Any]]
    zipped: list[dict[str, list[Any]]] = field(default_factory=list)
    description: str = ""  # free text: what the sweep tests and how it was chosen (shown in reports)

    def __post_init__(self) -> None:
        _check_axes(self)

    def axis_names(self) -> list[str]:
        return [*self.axes, *(axis for group in self.zipped for axis in group)]

    def points(self) -> list[SweepPoint]:
        """Every point, in order: the last grid axis varies fastest, zip groups after the grid."""
        factors = [[{axis: v} for v in values] for axis, values in self.axes.items()]
        factors += [[dict(zip(group, row)) for row in zip(*group.values())] for group in self.zipped]
        return [self._point({k: v for part in combo for k, v in part.items()})
                for combo in itertools.product(*factors)]

    def _point(self, overrides: dict[str, Any]) -> SweepPoint:
        label = ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "(base)"
        try:
            cfg = parse_config(_apply(self.base, overrides), f"for sweep point {label}")
        except TicketscopeError as e:
            return SweepPoint(overrides, None, str(e), None)
        return SweepPoint(overrides, cfg, None, cfg.digest())

    def to_dict(self) -> dict[str, Any]:
        """The sweep in its file format."""
        raw = {"name": self.name, "base": self.base, "grid": self.axes}
        raw |= {"zip": self.zipped} if self.zipped else {}
        raw |= {"description": self.description} if self.description else {}
        return copy.deepcopy(raw)


@dataclass(frozen=True)
class Outcome:
    """What became of one run."""

    status: str  # ok | failed | skipped
    error: str | None = None
    wall_s: float | None = None


def _config_paths(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    """Every dotted field path of a config, sections included."""
    paths = []
    for name, f in model.model_fields.items():
        paths.append(prefix + name)
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
            paths += _config_paths(f.annotation, f"{prefix}{name}.")
    return paths


def _check_axis(axis: Any, values: Any) -> None:
    paths = _config_paths()
    if axis not in paths:
        close = difflib.get_close_matches(str(axis), paths, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise TicketscopeError(f"axis {axis!r} is not a config field{hint} (`ticketscope config` lists them)")
    if not isinstance(values, list) or not values:
        raise TicketscopeError(f"axis {axis} needs a non-empty list of values, e.g. {axis}: [a, b]; got {values!r}")


def _check_axes(sweep: Sweep) -> None:
    for group in (sweep.axes, *sweep.zipped):
        for axis, values in group.items():
            _check_axis(axis, values)
    for group in sweep.zipped:
        if len({len(v) for v in group.values()}) != 1:
            raise TicketscopeError(f"zip group {list(group)}: every axis needs the same number of values")
    for a, b in itertools.permutations(sweep.axis_names(), 2):
        if a == b or b.startswith(a + "."):
            raise TicketscopeError(f"axes {a} and {b} set the same field; keep one")


def _apply(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with each dotted path set to its value."""
    obj = copy.deepcopy(base)
    for path, value in overrides.items():
        *sections, leaf = path.split(".")
        node = obj
        for i, section in enumerate(sections):
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                raise TicketscopeError(f"base.{'.'.join(sections[:i + 1])} must be a mapping to set {path}")
        node[leaf] = copy.deepcopy(value)
    return obj


def _parse(raw: dict[str, Any], where: str, default_name: str) -> Sweep:
    unknown = sorted(map(str, set(raw) - set(TOP_LEVEL)))
    if unknown:
        raise TicketscopeError(f"unknown top-level key(s) {unknown}; a sweep has {', '.join(TOP_LEVEL)}")
    name, base = raw.get("name", default_name), raw.get("base") or {}
    description = " ".join(str(raw.get("description") or "").split())
    grid, zipped = raw.get("grid") or {}, raw.get("zip") or []
    for key, value, kind, noun in (("name", name, str, "string"), ("base", base, dict, "mapping"),
                                   ("grid", grid, dict, "mapping"), ("zip", zipped, list, "list")):
        if not isinstance(value, kind):
            raise TicketscopeError(f"{key} must be a {noun}, not {type(value).__name__}")
    if not all(isinstance(group, dict) and group for group in zipped):
        raise TicketscopeError("zip must be a list of mappings, each of one or more axes to lists of values")
    return Sweep(name, *copy.deepcopy((base, grid, zipped)), description=description)


def load_sweep(source: str | Path | dict[str, Any]) -> Sweep:
    """A sweep from a YAML file or a dict; a malformed sweep raises one clear ``TicketscopeError``."""
    if isinstance(source, dict):
        raw, where, default_name = source, "<dict>", "sweep"
    elif isinstance(source, (str, Path)):
        raw, where, default_name = load_yaml(source), str(source), Path(source).stem
    else:
        raise TicketscopeError(f"a sweep is a mapping (name, base, grid, zip), not {type(source).__name__}")
    try:
        return _parse(raw, where, default_name)
    except TicketscopeError as e:
        raise TicketscopeError(f"invalid sweep {where}: {e}") from None


def _message(e: Exception) -> str:
    return str(e) if isinstance(e, TicketscopeError) else f"{type(e).__name__}: {e}"


def _execute(cfg: RunConfig, run_dir: str, threads: int) -> Outcome:
    """Run (or resume) one point in a worker process; any error becomes a failed outcome."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        run_experiment(cfg, run_dir, progress=False)
        analyze_run(run_dir)
    except Exception as e:  # noqa: BLE001  (any run error is this point's outcome, never the sweep's)
        return Outcome("failed", _message(e), time.perf_counter() - start)
    return Outcome("ok", None, time.perf_counter() - start)


def _collect(get: Callable[[], Outcome]) -> Outcome:
    """A worker's outcome, or a failed one when the worker died or could not return it."""
    try:
        return get()
    except Exception as e:  # noqa: BLE001  (a dead worker fails its point, not the sweep)
        return Outcome("failed", f"the worker running this point died or failed: {_message(e)}")


Todo = dict[str, RunConfig]  # digest -> config of each run to execute


def _local(todo: Todo, runs: Path, workers: int, threads: int, address: str | None) -> Iterator[tuple[str, Outcome]]:
    """Runs in a pool of spawned processes; yields (digest, outcome) as they finish."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(_execute, cfg, str(runs / d), threads): d for d, cfg in todo.items()}
        for future in as_completed(futures):
            yield futures[future], _collect(future.result)
    finally:
        pool.shutdown(cancel_futures=True)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise TicketscopeError("executor ray needs Ray: pip install 'ticketscope[ray]'") from None
    return ray


def _start_ray(ray: Any, address: str | None, cpus: int) -> None:
    """Connect to the cluster at ``address``, or start a private local instance with ``cpus`` CPUs."""
    try:
        if address:
            ray.init(address=address)
        else:
            ray.init(address="local", num_cpus=cpus, include_dashboard=False)
    except Exception as e:  # noqa: BLE001  (Ray raises several types: connection, timeout, address)
        where = f"reach the Ray cluster at {address}" if address else "start a local Ray instance"
        raise TicketscopeError(f"could not {where}: {_message(e)}") from None


def _ray(todo: Todo, runs: Path, workers: int, threads: int, address: str | None) -> Iterator[tuple[str, Outcome]]:
    """Runs as Ray tasks, retried when their worker dies; yields (digest, outcome) as they finish."""
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        _start_ray(ray, address, workers * threads)
    try:
        task = ray.remote(num_cpus=threads, max_retries=RAY_RETRIES, retry_exceptions=False)(_execute)
        refs = {task.remote(cfg, str(runs / d), threads): d for d, cfg in todo.items()}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield refs[ref], _collect(functools.partial(ray.get, ref))
    finally:
        if started:
            ray.shutdown()


EXECUTORS = {"local": _local, "ray": _ray}


@contextmanager
def _progress(enabled: bool, total: int, label: str) -> Iterator[Callable[[str, int], None]]:
    """A rich bar over points; the callback advances it by ``n`` points of one status."""
    if not enabled:
        yield lambda status, n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    counts: Counter[str] = Counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task(label, total=total)

        def advance(status: str, n: int) -> None:
            if not n:
                return
            counts[status] += n
            done = ", ".join(f"{c} {s}" for s, c in sorted(counts.items()))
            bar.update(task, advance=n, description=f"{label} ({done})")

        yield advance


def _run_dir(digest: str) -> str:
    return f"runs/{digest}"


def _axis_value(point: SweepPoint, axis: str) -> Any:
    """The point's value of ``axis``: as resolved by its config, or as given if it is invalid."""
    if point.config is None:
        return _tuples(point.overrides[axis])
    value: Any = point.config
    for part in axis.split("."):
        value = getattr(value, part)
    return value.model_dump() if isinstance(value, BaseModel) else value


def _tuples(value: Any) -> Any:
    """Lists made tuples (hashable, like the config's tuple fields), recursively."""
    return tuple(map(_tuples, value)) if isinstance(value, list) else value


def _row(index: int, point: SweepPoint, outcome: Outcome, axes: list[str]) -> dict[str, Any]:
    return {"point": index, "digest": point.digest, **{a: _axis_value(point, a) for a in axes},
            "status": outcome.status, "error": outcome.error,
            "run_dir": _run_dir(point.digest) if point.digest else None, "wall_s": outcome.wall_s}


def _parquet_safe(df: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Axis columns that Parquet cannot type (e.g. a bad value of a failed point) as JSON text."""
    df = df.copy()
    for axis in axes:
        try:
            pa.array(df[axis], from_pandas=True)
        except pa.ArrowException:
            df[axis] = [json.dumps(v, default=str) for v in df[axis]]
    return df


def _write_summary(out: Path, sweep: Sweep, rows: list[dict[str, Any]], axes: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["point", "digest", *axes, "status", "error", "run_dir", "wall_s"])
    write_table(out / "summary.parquet", _parquet_safe(df, axes))
    write_json(out / "summary.json", {"name": sweep.name, "counts": dict(Counter(r["status"] for r in rows)),
                                      "points": rows})
    return df


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_sweep(sweep: Sweep, out_dir: str | Path, executor: str = "local", workers: int | None = None,
              threads: int | None = None, address: str | None = None, progress: bool = True) -> pd.DataFrame:
    """Run every point of ``sweep`` not yet complete in ``out_dir``; return the summary (one row per point).

    ``workers`` runs at a time (default: one per core), each with ``threads`` torch threads (default 1;
    a config's own nonzero ``threads`` wins); threads are set in the worker, so they never change a
    run's digest. executor ``local``: a pool of spawned processes. executor ``ray``: one task per run
    (``threads`` CPUs, retried when its worker process dies: the retry resumes the run) on the Ray
    instance this process already runs, else the cluster at ``address``, else a new local instance
    with ``workers * threads`` CPUs. On a cluster ``out_dir`` must be on a shared file system that
    every node mounts at the same path (run directories are locked with flock).
    A failing point is recorded (status failed, its error) and never stops the others; the summary
    files are written once every point is done.
    """
    if executor not in EXECUTORS:
        raise TicketscopeError(f"unknown executor {executor!r}; choose {' or '.join(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise TicketscopeError("address names a Ray cluster: use it with executor ray")
    workers, threads = _cores() if workers is None else workers, 1 if threads is None else threads
    if workers < 1 or threads < 1:
        raise TicketscopeError(f"workers and threads must be >= 1, got {workers} and {threads}")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sweep.yaml", yaml.safe_dump(sweep.to_dict(), sort_keys=False))
    points = sweep.points()
    outcomes = {p.digest: Outcome("skipped") for p in points
                if p.digest and (out / _run_dir(p.digest) / "run.json").exists()}
    todo = {p.digest: p.config for p in points if p.config is not None and p.digest not in outcomes}
    weight = Counter(p.digest for p in points)
    with _progress(progress, len(points), f"sweep {sweep.name}") as advance:
        advance("failed", weight[None])
        advance("skipped", sum(weight[d] for d in outcomes))
        if todo:
            run = EXECUTORS[executor](todo, out / "runs", min(workers, len(todo)), threads, address)
            for digest, outcome in run:
                outcomes[digest] = outcome
                advance(outcome.status, weight[digest])
    axes = sweep.axis_names()
    rows = [_row(i, p, outcomes[p.digest] if p.digest else Outcome("failed", p.error), axes)
            for i, p in enumerate(points)]
    return _write_summary(out, sweep, rows, axes)


def sweep_runs(out_dir: str | Path) -> pd.DataFrame:
    """Complete runs of the sweep in ``out_dir``: digest, one column per axis, run_dir (relative)."""
    out = Path(out_dir)
    if not (out / "sweep.yaml").exists():
        raise TicketscopeError(f"{out} is not a sweep directory (no sweep.yaml); run the sweep first")
    sweep = load_sweep(out / "sweep.yaml")
    axes, rows, seen = sweep.axis_names(), [], set()
    for p in sweep.points():
        if p.digest and p.digest not in seen and (out / _run_dir(p.digest) / "run.json").exists():
            seen.add(p.digest)
            rows.append({"digest": p.digest, **{a: _axis_value(p, a) for a in axes}, "run_dir": _run_dir(p.digest)})
    return pd.DataFrame(rows, columns=["digest", *axes, "run_dir"])
