"""Executors: where and how the runs of a sweep are executed (a local process pool, or Ray).

The contract (task model, worker body, options, fault policy) is :mod:`.base`; each executor is a
module of its own (:mod:`.local`, :mod:`.ray`) and registers here in :data:`EXECUTORS`.
"""

from __future__ import annotations

from .base import (POLL_S, RETRIES, Executor, Job, Options, Outcome, Result, Task, Worker, error_text, execute_task,
                   failures)
from .local import LOCAL, run_local
from .ray import RAY, RayOptions, gpus_for, run_ray

EXECUTORS: dict[str, Executor] = {e.name: e for e in (LOCAL, RAY)}

__all__ = ["EXECUTORS", "POLL_S", "RETRIES", "Executor", "Job", "Options", "Outcome", "RayOptions", "Result", "Task",
           "Worker", "error_text", "execute_task", "failures", "gpus_for", "run_local", "run_ray"]
