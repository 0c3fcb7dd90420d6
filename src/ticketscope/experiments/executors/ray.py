"""The Ray executor: one Ray task per task, retried by Ray when its worker process dies; and the
diagnostics of a cluster that cannot be joined."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ...errors import TicketscopeError
from .base import Executor, Options, Outcome, Result, Task, Worker, error_text, execute_task, failures, hung_text


@dataclass(frozen=True)
class RayOptions(Options):
    """The common options, plus the cluster to join and the GPUs of a task."""

    address: str | None = None  # the cluster to join (default: $RAY_ADDRESS, else a private instance)
    gpus_per_task: float = 1.0  # GPUs a task requests when one of its runs needs a GPU


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
            raise connection_error(address, error_text(e), from_env, _refused_token(e), version) from None
        return
    try:
        ray.init(address="local", num_cpus=cpus, include_dashboard=False)
    except Exception as e:  # noqa: BLE001
        raise TicketscopeError(f"could not start a local Ray instance: {error_text(e)}") from None


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
    hung. Plain :class:`Options` get the defaults of :class:`RayOptions`.
    """
    if not isinstance(options, RayOptions):
        options = RayOptions(**asdict(options))
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
                yield from failures(task, "device = cuda but the Ray cluster has no GPU; set device: cpu "
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
                    result = failures(tasks[i], f"the worker running this point died or failed: {error_text(e)}")
                yield from result
            if clock is not None and pending:
                ages = ray.get(clock.ages.remote())
                for ref in [r for r in pending if ages.get(refs[r], 0.0) > limit]:
                    ray.cancel(ref, force=True)  # kills its worker; a cancelled task is not retried
                    pending.remove(ref)
                    yield from failures(tasks[refs[ref]], hung_text(limit))
    finally:
        if clock is not None:
            ray.kill(clock)
        if started:
            ray.shutdown()


RAY = Executor("ray", RayOptions, run_ray)
