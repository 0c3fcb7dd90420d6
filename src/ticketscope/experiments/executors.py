"""Executors: where and how the runs of a sweep are executed (a local process pool, or Ray).

The unit of work is a :data:`Task`: a tuple of :class:`Job` (digest, config, run directory) that one
worker trains together as one ensemble (:func:`ticketscope.runs.run_ensemble`) and for which it
returns one :class:`Outcome` per digest.

An executor is a function ``(tasks, options, worker=execute_task)`` that yields ``(digest, outcome)``
pairs as tasks finish, one pair per job of every task (order: completion). Both executors

* retry a task whose worker process died (killed by the OS, e.g. out of memory) up to
  ``options.retries`` times; the retry resumes the run from its last complete round;
* report a task running for longer than ``options.task_timeout_s`` as hung (failed) and stop its
  worker, instead of waiting forever;
* never let one task's failure stop the others.

A job whose run directory is locked by another process (another sweep, or ``ticketscope run``) ends
with the status ``busy``: the caller decides whether to wait for it (see ``run_sweep``).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import TicketscopeError
from ..io import LockBusy

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
    """How to execute: parallel tasks, threads per task and the fault policy."""

    workers: int = 1  # local: processes; ray: CPUs of a private local instance = workers * threads
    threads: int = 1  # torch threads (and Ray CPUs) per task
    address: str | None = None  # ray: the cluster to join (default: $RAY_ADDRESS, else a private instance)
    retries: int = RETRIES  # re-executions of a task whose worker process died
    task_timeout_s: float | None = None  # a task running longer is reported hung and its worker stopped
    gpus_per_task: float = 1.0  # ray: GPUs a task requests when one of its runs needs a GPU
    poll_s: float = POLL_S


def message(e: BaseException) -> str:
    return str(e) if isinstance(e, TicketscopeError) else f"{type(e).__name__}: {e}"


def run_complete(run_dir: str | Path) -> bool:
    """Whether the run in ``run_dir`` is complete (``run_experiment`` wrote its run.json)."""
    return (Path(run_dir) / "run.json").exists()


def execute_task(task: Task, threads: int) -> Result:
    """Run (or resume) the runs of ``task`` as one ensemble in this worker, then analyze each (tables only;
    ``ticketscope analyze RUN`` draws a run's figures). Any error fails its run only; runs already complete
    (e.g. finished by another process, or before a retried task's worker died) are skipped."""
    import torch

    from ..analysis import analyze_run  # imported here: the sweep's own process never needs them
    from ..runs import run_ensemble

    torch.set_num_threads(threads)
    result: Result = [(job.digest, Outcome("skipped")) for job in task if run_complete(job.run_dir)]
    jobs = [job for job in task if not run_complete(job.run_dir)]
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
            result.append((job.digest, Outcome("failed", message(e), train_s, time.perf_counter() - start)))
            continue
        result.append((job.digest, Outcome("ok", None, train_s, time.perf_counter() - start)))
    return result


def failed(task: Task, error: str) -> Result:
    return [(job.digest, Outcome("failed", error)) for job in task]


def _hung(limit: float) -> str:
    return (f"hung: still running after the task limit of {limit:g} s, so its worker was stopped; "
            "raise the limit (task_timeout_s, $TICKETSCOPE_TASK_TIMEOUT) or re-run the sweep to resume the run")


def _died(attempts: int, how: str) -> str:
    oom = "; out of memory?" if how.endswith("SIGKILL") else ""
    return f"the worker running this point died {attempts} time(s) ({how}{oom}); re-run the sweep to resume it"


# ---------------------------------------------------------------------------------------------
# local: a pool of spawned worker processes that survives the death of any of them


def _watch_parent(parent: int) -> None:
    """Exit this worker when the sweep that started it is gone (its run lock is then released)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _worker_main(conn: Connection, worker: Worker, threads: int, parent: int) -> None:
    """A pool worker: execute tasks received on ``conn`` until told to stop (None) or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the sweep, which stops its workers
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        conn.send(("started", None))  # the task's time limit counts from here
        try:
            result = worker(task, threads)
        except Exception as e:  # noqa: BLE001  (a broken worker function fails its task, not the pool)
            result = failed(task, f"the worker function failed: {message(e)}")
        conn.send(("done", result))


class _Process:
    """One worker process of the pool and the task it is executing."""

    def __init__(self, ctx: Any, worker: Worker, threads: int) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, worker, threads, os.getpid()),
                                name="ticketscope-worker")
        self.proc.start()
        child.close()
        self.task: int | None = None
        self.since: float | None = None  # when the task started executing

    def give(self, index: int, task: Task) -> None:
        """Send the process a task (a process found dead then counts as dying on it)."""
        self.task, self.since = index, None
        try:
            self.conn.send(task)
        except OSError:
            pass

    def receive(self) -> tuple[bool, Result | None]:
        """Read what the process sent: (alive, the finished task's result or None).

        ``alive`` is False when the pipe broke: the process died (maybe while sending).
        """
        while self.conn.poll():
            try:
                kind, payload = self.conn.recv()
            except Exception:  # noqa: BLE001  (EOF, or a truncated message from a process killed mid-send)
                return False, None
            if kind == "started":
                self.since = time.monotonic()
            else:
                return True, payload
        return True, None

    def death(self) -> str:
        self.proc.join(5)
        code = self.proc.exitcode
        if code is not None and code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit status {code}"

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def run_local(tasks: Sequence[Task], options: Options, worker: Worker = execute_task) -> Iterator[tuple[str, Outcome]]:
    """Execute ``tasks`` in ``options.workers`` spawned processes; yield (digest, outcome) as they finish.

    Unlike ``concurrent.futures.ProcessPoolExecutor`` (which breaks as a whole when one worker is
    killed) a dead worker only costs the task it was executing: that task is retried in a fresh
    process up to ``options.retries`` times while the other tasks go on.
    """
    ctx = multiprocessing.get_context("spawn")
    queue: deque[int] = deque(range(len(tasks)))
    deaths = [0] * len(tasks)
    procs: list[_Process] = []
    size = max(1, min(options.workers, len(tasks)))
    try:
        while queue or any(p.task is not None for p in procs):
            for p in procs:
                if p.task is None and queue:
                    i = queue.popleft()
                    p.give(i, tasks[i])
            while queue and len(procs) < size:
                procs.append(_Process(ctx, worker, options.threads))
                i = queue.popleft()
                procs[-1].give(i, tasks[i])
            busy = [p for p in procs if p.task is not None]
            wait([x for p in busy for x in (p.conn, p.proc.sentinel)], timeout=options.poll_s)
            for p in busy:
                i = p.task
                assert i is not None
                alive, result = p.receive()
                if result is not None:
                    p.task = None
                    yield from result
                    continue
                if alive and p.proc.is_alive():
                    limit = options.task_timeout_s
                    if limit is not None and p.since is not None and time.monotonic() - p.since > limit:
                        p.stop(kill=True)
                        procs.remove(p)
                        yield from failed(tasks[i], _hung(limit))
                    continue
                # the process died before returning its task's result
                how = p.death()
                p.stop(kill=True)
                procs.remove(p)
                deaths[i] += 1
                if deaths[i] > options.retries:
                    yield from failed(tasks[i], _died(deaths[i], how))
                else:
                    queue.appendleft(i)  # a fresh process resumes it next
    finally:
        for p in procs:
            p.stop(kill=p.task is not None)


# ---------------------------------------------------------------------------------------------
# ray: one Ray task per task, retried by Ray when its worker process dies


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise TicketscopeError("executor ray needs Ray: pip install 'ticketscope[ray]'") from None
    return ray


def _reachable(address: str, timeout_s: float = 5.0) -> str | None:
    """Why a HOST:PORT (or ray://HOST:PORT) address cannot be reached over TCP; None if it can or is not one."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        return f"nothing answers at {hostport} ({e.strerror or e})"
    return None


def _refused_token(e: BaseException) -> bool:
    """Whether Ray's error (or one it was raised from) says the cluster rejected this client's token."""
    seen = 0
    while e is not None and seen < 10:
        text = f"{type(e).__name__}: {e}"
        if any(k in text for k in ("AuthenticationError", "InvalidAuthToken", "Unauthenticated")):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def connection_error(address: str, reason: str, from_env: bool = False, token: bool = False,
                     version: str = "") -> TicketscopeError:
    """The error for a Ray cluster that cannot be joined, naming what to try."""
    where = f"{address} (from RAY_ADDRESS)" if from_env else address
    ray = f"Ray {version}" if version else "recent Ray"
    if token:
        return TicketscopeError(
            f"could not join the Ray cluster at {where}: it requires token authentication ({ray} starts "
            "clusters with it on) and this client sent no valid token. Fix: on a node of the cluster use "
            "--address auto (Ray sends the token by itself only then), or set RAY_AUTH_MODE=token; off the "
            "head node also set RAY_AUTH_TOKEN to the head's token (`ray get-auth-token` on the head)")
    return TicketscopeError(
        f"could not join the Ray cluster at {where}: {reason.rstrip('.')}. Fix: on a node of the cluster "
        "try --address auto (after `ray start --head`, or `ray start --address HEAD:PORT` on this node), "
        "or set RAY_ADDRESS to the address `ray start --head` printed; with an explicit address a cluster "
        f"with token authentication (on by default in {ray}) also needs RAY_AUTH_MODE=token, and off the "
        "head node RAY_AUTH_TOKEN (`ray get-auth-token` on the head)")


def start_ray(ray: Any, address: str | None, cpus: int) -> None:
    """Join the cluster at ``address`` (else $RAY_ADDRESS), or start a private local instance with ``cpus`` CPUs."""
    from_env = address is None and bool(os.environ.get("RAY_ADDRESS"))
    address = address or os.environ.get("RAY_ADDRESS") or None
    version = getattr(ray, "__version__", "")
    if address and address != "local":
        if (reason := _reachable(address)) is not None:
            raise connection_error(address, reason, from_env, version=version)
        try:
            ray.init(address=address)
        except Exception as e:  # noqa: BLE001  (Ray raises several types: connection, timeout, auth)
            raise connection_error(address, message(e), from_env, _refused_token(e), version) from None
        return
    try:
        ray.init(address="local", num_cpus=cpus, include_dashboard=False)
    except Exception as e:  # noqa: BLE001
        raise TicketscopeError(f"could not start a local Ray instance: {message(e)}") from None


def gpus_for(task: Task, cluster_gpus: float, per_task: float) -> float:
    """GPUs a Ray task requests: ``per_task`` when a run needs one (device cuda, or auto on a GPU cluster)."""
    needs = any(j.config.device == "cuda" or (j.config.device == "auto" and cluster_gpus > 0) for j in task)
    return per_task if needs else 0


class _Clock:
    """A Ray actor that learns when each task (attempt) starts, and tells how long each has been running."""

    def __init__(self) -> None:
        self.starts: dict[int, float] = {}

    def start(self, key: int) -> None:
        self.starts[key] = time.monotonic()

    def ages(self) -> dict[int, float]:
        now = time.monotonic()
        return {k: now - t for k, t in self.starts.items()}


def _ray_entry(worker: Worker, task: Task, threads: int, clock: Any, key: int) -> Result:
    """The Ray task: report its start (when timed) and run the worker function."""
    if clock is not None:
        clock.start.remote(key)
    return worker(task, threads)


def run_ray(tasks: Sequence[Task], options: Options, worker: Worker = execute_task) -> Iterator[tuple[str, Outcome]]:
    """Execute ``tasks`` as Ray tasks; yield (digest, outcome) as they finish.

    On the Ray instance this process already runs, else the cluster at ``options.address`` (or
    $RAY_ADDRESS), else a new private local instance with ``workers * threads`` CPUs. Each task
    requests ``threads`` CPUs and, when one of its runs needs a GPU, ``gpus_per_task`` GPUs. Ray
    retries a task whose worker process died; with ``task_timeout_s`` a task running longer (counted
    from the start of its latest attempt, not while it waits for resources) is cancelled and reported
    hung.
    """
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        start_ray(ray, options.address, options.workers * options.threads)
    limit, clock = options.task_timeout_s, None
    try:
        if limit is not None:
            clock = ray.remote(num_cpus=0)(_Clock).remote()
        cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
        remote = ray.remote(max_retries=options.retries, retry_exceptions=False)(_ray_entry)
        refs = {}
        for i, task in enumerate(tasks):
            if cluster_gpus == 0 and any(j.config.device == "cuda" for j in task):
                # Ray would keep such a task pending forever
                yield from failed(task, "device = cuda but the Ray cluster has no GPU; set device: cpu "
                                        "(or auto), or join a cluster with GPUs")
                continue
            ref = remote.options(num_cpus=options.threads,
                                 num_gpus=gpus_for(task, cluster_gpus, options.gpus_per_task)
                                 ).remote(worker, task, options.threads, clock, i)
            refs[ref] = i
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=options.poll_s)
            for ref in done:
                i = refs[ref]
                try:
                    result = ray.get(ref)
                except Exception as e:  # noqa: BLE001  (its worker died more often than retried, or the node)
                    result = failed(tasks[i], f"the worker running this point died or failed: {message(e)}")
                yield from result
            if clock is not None and pending:
                ages = ray.get(clock.ages.remote())
                for ref in [r for r in pending if ages.get(refs[r], 0.0) > limit]:
                    ray.cancel(ref, force=True)  # kills its worker; a cancelled task is not retried
                    pending.remove(ref)
                    yield from failed(tasks[refs[ref]], _hung(limit))
    finally:
        if clock is not None:
            ray.kill(clock)
        if started:
            ray.shutdown()


EXECUTORS: dict[str, Callable[..., Iterator[tuple[str, Outcome]]]] = {"local": run_local, "ray": run_ray}
