"""Run many experiments at once: claim their directories, group them into ensembles, train every
run's remaining rounds, each pass one ensemble of the runs whose next rounds share a schedule.

``train_time_s`` in ``round.json`` is the run's share of its ensemble's training wall time (the time
of the training steps, mini-batches included, divided by the number of runs trained together;
evaluation, checkpoints and one-off imports excluded).
"""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..config import RunConfig
from ..data import Dataset
from ..device import resolve_device
from ..engine import ensemble_key, train_ensemble
from ..errors import TicketscopeError
from ..progress import RoundProgress
from .round import NextRound, RunData, RunRounds
from .store import RunDir

log = logging.getLogger(__name__)


def run_experiment(cfg: RunConfig, out_dir: str | Path, progress: bool = True) -> pd.DataFrame:
    """Run (or resume) the experiment ``cfg`` in ``out_dir``; return its per-round summary table.

    An ensemble of one (:func:`run_ensemble`): the run gets exactly the bits it would get inside
    any ensemble.
    """
    return run_ensemble([(cfg, out_dir)], progress=progress)[0]


def run_ensemble(items: list[tuple[RunConfig, str | Path]], progress: bool = True,
                 errors: str = "raise") -> list[pd.DataFrame | TicketscopeError]:
    """Run (or resume) many experiments, training together those that can share an ensemble.

    ``items`` are ``(config, run directory)`` pairs; each directory is locked and claimed
    (:meth:`RunDir.claim`), complete runs are read back, and the rest are grouped by
    :func:`ticketscope.engine.ensemble_key`: each group trains as one ensemble (in turn, group
    after group). Inside a group every run trains its own next round, so runs resumed at
    different rounds, or stopping at different rounds, train side by side; runs whose next round
    has the same first step and budget train in lockstep, the others in further passes. Every
    run's files are bit-identical to training it alone.

    A damaged directory (:meth:`RunDir.damage`) is repaired first: its first damaged round and every
    later one are recomputed. A run that diverged is recorded (``diverged.json``) and not trained again.

    Returns each item's per-round summary table, in order. A run that fails (a busy or foreign
    directory, divergence, a config.yaml only its owner can fix) does not stop the others; ``errors="raise"``
    then raises once all are done (the run's own error when there is one item, else one error
    naming every failed run), ``errors="return"`` puts the ``TicketscopeError`` in its place.
    """
    if errors not in ("raise", "return"):
        raise ValueError(f"errors must be 'raise' or 'return', not {errors!r}")
    results: list[pd.DataFrame | TicketscopeError | None] = [None] * len(items)
    stores = [RunDir(out) for _, out in items]
    with ExitStack() as locks:
        todo: dict[str, list[tuple[int, RunConfig, RunDir]]] = {}
        seen: set[Path] = set()
        fresh: set[int] = set()  # runs whose directory this call claims
        for i, ((cfg, _), store) in enumerate(zip(items, stores)):
            try:
                if store.path.resolve() in seen:
                    raise TicketscopeError(f"{store.path} is listed twice in one ensemble")
                seen.add(store.path.resolve())
                resolve_device(cfg.device)  # a run that cannot start writes nothing
                if not store.exists():
                    fresh.add(i)
                locks.enter_context(store.lock())
                cfg = store.claim(cfg)
                diverged = store.divergence_error()
                if diverged is not None:
                    raise diverged
                repaired = store.repair()
                if repaired:
                    log.warning("%s: recomputing what is damaged: %s", store.path,
                                "; ".join(f"{d.file.relative_to(store.path)} {d.problem}" for d in repaired))
                if store.is_complete():
                    results[i] = store.summary_table()
                    continue
                key = json.dumps([ensemble_key(cfg), str(resolve_device(cfg.device))])
            except TicketscopeError as e:
                results[i] = e
                continue
            todo.setdefault(key, []).append((i, cfg, store))
        for group in todo.values():
            _run_group(group, results, progress)
        for i in fresh:  # claimed here but could not start (e.g. a missing data set): leave no trace
            if isinstance(results[i], TicketscopeError) and not (stores[i].path / "rounds").exists():
                stores[i].unclaim()
    failed = [(items[i][1], r) for i, r in enumerate(results) if isinstance(r, TicketscopeError)]
    if failed and errors == "raise":
        if len(items) == 1:
            raise failed[0][1]
        raise TicketscopeError(f"{len(failed)} of {len(items)} runs failed:\n"
                               + "\n".join(f"  {out}: {e}" for out, e in failed))
    return results  # type: ignore[return-value]


def _run_group(group: list[tuple[int, RunConfig, RunDir]], results: list[Any], progress: bool) -> None:
    """Train the runs of one ensemble group to completion (locks held, configs claimed)."""
    cfg0 = group[0][1]
    torch.set_flush_denormal(True)  # as in training, also for the measurements a resumed run redoes
    threads = torch.get_num_threads()
    if cfg0.threads:
        torch.set_num_threads(cfg0.threads)
    try:
        device = resolve_device(cfg0.device)
        datasets: dict[Any, Dataset] = {}
        runs: dict[int, RunRounds] = {}
        for i, cfg, store in group:
            try:
                runs[i] = RunRounds(cfg, store, RunData.build(cfg, device, datasets), device)
            except TicketscopeError as e:
                results[i] = e
        if not runs:
            return
        _pool_training_sets([run.data for run in runs.values()])
        label = next(iter(runs.values())).cfg.prune.method if len(runs) == 1 else f"{len(runs)} runs:"
        planned = sum(run.cfg.prune.rounds + 1 - len(run.done) for run in runs.values())
        with RoundProgress(progress and bool(runs), max(planned, 1), label) as bar:
            _train_rounds(runs, results, bar)
    finally:
        torch.set_num_threads(threads)


def _pool_training_sets(datas: list[RunData]) -> None:
    """Put every fixed training set of an ensemble into one tensor (each run keeps a view of its
    rows), so the ensemble gathers all runs' mini-batches with one indexing operation."""
    fixed = [d for d in datas if d.batches.dataset is None]
    if len(fixed) < 2:
        return
    X, y = torch.cat([d.batches.X for d in fixed]), torch.cat([d.batches.y for d in fixed])
    row = 0
    for d in fixed:
        n, n_eval = len(d.batches.X), len(d.train_eval[0])
        d.batches.X, d.batches.y = X[row:row + n], y[row:row + n]
        d.train_eval = (d.batches.X[:n_eval], d.batches.y[:n_eval])
        row += n


def _train_rounds(runs: dict[int, RunRounds], results: list[Any], bar: RoundProgress) -> None:
    """Every run's remaining rounds: each pass trains, as one ensemble, the runs whose next round
    has the most common (first step, budget); a run leaves once it stops or fails."""
    active, plans = dict(runs), {}

    def drop(i: int, outcome: Any) -> None:
        run = active.pop(i)
        results[i] = outcome
        bar.advance(max(run.cfg.prune.rounds + 1 - len(run.done), 0))

    while True:
        for i in list(active):
            if i in plans:
                continue
            try:
                plan = active[i].next_round()
            except TicketscopeError as e:
                drop(i, e)
                continue
            if plan is None:
                drop(i, active[i].table)
            else:
                plans[i] = plan
        if not plans:
            return
        cohorts: dict[tuple[int, int], list[int]] = {}
        for i, plan in plans.items():
            cohorts.setdefault((plan.start, plan.total), []).append(i)
        (start, total), chosen = max(cohorts.items(), key=lambda kv: (len(kv[1]), -kv[0][0]))
        taken: list[tuple[int, NextRound]] = [(i, plans.pop(i)) for i in chosen]
        members = [active[i].member(plan) for i, plan in taken]
        rounds = sorted({plan.r for _, plan in taken})
        bar.start(f"{len(taken)} run(s), round {'/'.join(map(str, rounds))}", start, total)
        result = train_ensemble(members, start, total, on_step=bar.step)
        bar.end_steps(total)
        share = result.train_time_s / len(taken)
        for (i, plan), state, error in zip(taken, result.states, result.errors):
            if error is not None:
                active[i].fail(error)
                drop(i, error)
                continue
            active[i].end_round(plan, state, share)
            bar.advance()
