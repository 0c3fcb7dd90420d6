"""The local executor: a pool of spawned worker processes that survives the death of any of them."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from .base import (Executor, Options, Outcome, Result, Task, Worker, died_text, error_text, execute_task, failures,
                   hung_text)


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
            result = failures(task, f"the worker function failed: {error_text(e)}")
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
                        yield from failures(tasks[i], hung_text(limit))
                    continue
                # the process died before returning its task's result
                how = p.death()
                p.stop(kill=True)
                procs.remove(p)
                deaths[i] += 1
                if deaths[i] > options.retries:
                    yield from failures(tasks[i], died_text(deaths[i], how))
                else:
                    queue.appendleft(i)  # a fresh process resumes it next
    finally:
        for p in procs:
            p.stop(kill=p.task is not None)


LOCAL = Executor("local", Options, run_local)
