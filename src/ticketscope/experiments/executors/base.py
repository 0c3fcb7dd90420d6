"""The executor contract: the unit of work, what becomes of it, the worker body and the failure texts.

The unit of work is a :data:`Task`: a tuple of :class:`Job` (digest, config, run directory) that one
worker trains together as one ensemble (:func:`ticketscope.runs.run_ensemble`) and for which it
returns one :class:`Outcome` per digest.

An :class:`Executor` is a name, its options class (a subclass of :class:`Options`) and a function
``run(tasks, options, worker)`` that yields ``(digest, outcome)`` pairs as tasks finish, one pair per
job of every task (order: completion). Every executor

* retries a task whose worker process died (killed by the OS, e.g. out of memory) up to
  ``options.retries`` times; the retry resumes the run from its last complete round;
* reports a task running for longer than ``options.task_timeout_s`` as hung (failed) and stops its
  worker, instead of waiting forever;
* never lets one task's failure stop the others.

A job whose run directory is locked by another process (another sweep, or ``ticketscope run``) ends
with the status ``busy``: the caller decides whether to wait for it (see ``run_sweep``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ...config import RunConfig
from ...errors import TicketscopeError
from ...io import LockBusy

RETRIES = 3  # attempts after a worker process dies; a run error is never retried
POLL_S = 0.5  # how often the executors look for dead, hung and finished tasks


@dataclass(frozen=True)
class Outcome:
    """What became of one run."""

    status: str  # ok | failed | skipped | busy (locked by another process; never in a summary)
    error: str | None = None
    train_s: float | None = None  # this run's share of its ensemble's wall time (training, pruning, checkpoints)
    analysis_s: float | None = None  # wall time of this run's analysis

    @property
    def wall_s(self) -> float | None:
        """Worker seconds spent on this run: its share of the ensemble plus its analysis."""
        return None if self.train_s is None else self.train_s + (self.analysis_s or 0.0)


@dataclass(frozen=True)
class Job:
    """One run of a task: its config digest, resolved config and run directory."""

    digest: str
    config: RunConfig
    run_dir: str


Task = tuple[Job, ...]  # the runs one worker trains together as one ensemble
Result = list[tuple[str, Outcome]]  # one (digest, outcome) per job of the task
Worker = Callable[[Task, int], Result]  # (task, torch threads) -> result; runs in the worker process


@dataclass(frozen=True)
class Options:
    """What every executor takes: parallel tasks, threads per task and the fault policy."""

    workers: int = 1  # parallel tasks (local: processes; ray: CPUs of a private instance = workers * threads)
    threads: int = 1  # torch threads (and Ray CPUs) per task
    retries: int = RETRIES  # re-executions of a task whose worker process died
    task_timeout_s: float | None = None  # a task running longer is reported hung and its worker stopped
    poll_s: float = POLL_S


Run = Callable[[Sequence[Task], Options, Worker], Iterator[tuple[str, Outcome]]]


@dataclass(frozen=True)
class Executor:
    """A named executor: ``run(tasks, options, worker)`` with ``options`` an instance of ``options``."""

    name: str
    options: type[Options]  # its options class: Options, or a subclass adding this executor's own fields
    run: Run


def error_text(e: BaseException) -> str:
    """An error as one line: a TicketscopeError's own text, any other prefixed with its type."""
    return str(e) if isinstance(e, TicketscopeError) else f"{type(e).__name__}: {e}"


def execute_task(task: Task, threads: int) -> Result:
    """Run (or resume) the runs of ``task`` as one ensemble in this worker, then analyze each (tables only;
    ``ticketscope analyze RUN`` draws a run's figures). Any error fails its run only; runs already complete
    (e.g. finished by another process, or before a retried task's worker died) are skipped once their
    analysis is current."""
    import torch

    from ...analysis import analyze_run  # imported here: the sweep's own process never needs them
    from ...runs import RunDir, run_ensemble

    torch.set_num_threads(threads)
    complete = {job.digest: RunDir(job.run_dir).is_complete() for job in task}
    result: Result = []
    for job in (job for job in task if complete[job.digest]):
        try:
            analyze_run(job.run_dir, figures=False)  # returns at once when the stored analysis is current
            result.append((job.digest, Outcome("skipped")))
        except Exception as e:  # noqa: BLE001  (this run's outcome, never the sweep's)
            result.append((job.digest, Outcome("failed", error_text(e))))
    jobs = [job for job in task if not complete[job.digest]]
    start = time.perf_counter()
    trained = run_ensemble([(job.config, job.run_dir) for job in jobs], progress=False, errors="return") if jobs else []
    train_s = (time.perf_counter() - start) / max(len(jobs), 1)
    for job, outcome in zip(jobs, trained):
        if isinstance(outcome, LockBusy):
            result.append((job.digest, Outcome("busy", str(outcome))))
            continue
        start = time.perf_counter()
        try:
            if isinstance(outcome, Exception):
                raise outcome
            analyze_run(job.run_dir, figures=False)
        except Exception as e:  # noqa: BLE001  (any run error is this run's outcome, never the sweep's)
            result.append((job.digest, Outcome("failed", error_text(e), train_s, time.perf_counter() - start)))
            continue
        result.append((job.digest, Outcome("ok", None, train_s, time.perf_counter() - start)))
    return result


def failures(task: Task, error: str) -> Result:
    """Every job of ``task`` failed with ``error``."""
    return [(job.digest, Outcome("failed", error)) for job in task]


def hung_text(limit: float) -> str:
    """The error of a task stopped for running past its time limit."""
    return (f"hung: still running after the task limit of {limit:g} s, so its worker was stopped; "
            "raise the limit (task_timeout_s, $TICKETSCOPE_TASK_TIMEOUT) or re-run the sweep to resume the run")


def died_text(attempts: int, how: str) -> str:
    """The error of a task whose worker process died more often than it was retried."""
    oom = "; out of memory?" if how.endswith("SIGKILL") else ""
    return f"the worker running this point died {attempts} time(s) ({how}{oom}); re-run the sweep to resume it"
