"""The Ray executor on a real local Ray instance: a worker process killed mid-run is retried, the
retry resumes the run, and the sweep ends with every run present once, bit-identical to serial runs;
hung tasks are reported, tasks request GPUs when their runs need one, and a cluster that cannot be
joined gives an error that names the fix."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from experiments.test_sweep import Killer, assert_same_run, gone, mtimes  # tests/ is on sys.path under pytest

from ticketscope.config import RunConfig
from ticketscope.errors import TicketscopeError
from ticketscope.experiments.executors import Job, Outcome, RayOptions, gpus_for, run_ray
from ticketscope.experiments.sweep import load_sweep, run_sweep
from ticketscope.runs import run_experiment

ray = pytest.importorskip("ray")
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers run this file's worker functions

BASE = {
    "data": {"name": "nlgp", "L": 6, "dim": 2, "n_train": 256, "n_test": 128, "xis": [1.0, 2.0]},
    "model": {"hidden": [8]},
    "train": {"steps": 60, "batch_size": 32, "n_eval_train": 128},
    "prune": {"rounds": 2},
}


@pytest.fixture
def ray_env(monkeypatch):
    """No usage reporting, no RAY_ADDRESS; whatever Ray instance a test leaves behind is shut down."""
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield
    ray.shutdown()


# --- tests that need no running Ray instance (keep them before the first use of `cluster`) ---


def test_ray_executor_starts_and_stops_its_own_local_instance(tmp_path, ray_env):
    sweep = load_sweep({"name": "own", "base": BASE, "grid": {"seed": [0, 1]}})
    df = run_sweep(sweep, tmp_path, executor="ray", workers=2, progress=False)
    assert df.status.tolist() == ["ok", "ok"], df.error.tolist()
    assert not ray.is_initialized()
    again = run_sweep(sweep, tmp_path, executor="ray", workers=2, progress=False)
    assert again.status.tolist() == ["skipped", "skipped"] and not ray.is_initialized()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_address_is_one_error_naming_the_fix(tmp_path, ray_env):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    with pytest.raises(TicketscopeError) as e:
        run_sweep(load_sweep({"base": BASE}), tmp_path, executor="ray", address=address, progress=False)
    assert time.monotonic() - start < 20  # not Ray's minutes of retries
    msg = str(e.value)
    assert msg.startswith(f"could not join the Ray cluster at {address}: nothing answers") and "\n" not in msg
    assert "--address auto" in msg and "RAY_ADDRESS" in msg and "token authentication" in msg
    assert not ray.is_initialized() and not (tmp_path / "runs").exists()


def test_ray_address_from_the_environment_is_used_and_named(tmp_path, ray_env, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{free_port()}")
    with pytest.raises(TicketscopeError, match=r"at 127\.0\.0\.1:\d+ \(from RAY_ADDRESS\).*--address auto"):
        run_sweep(load_sweep({"base": BASE}), tmp_path, executor="ray", progress=False)


def test_auto_without_a_cluster_names_the_fix(ray_env, monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray"))  # no cluster of this machine can be found there
    with pytest.raises(TicketscopeError, match=r"could not join the Ray cluster at auto: .*ray start --head"):
        run_sweep(load_sweep({"base": BASE}), tmp_path / "out", executor="ray", address="auto", progress=False)


def test_refused_token_names_the_fix(ray_env, monkeypatch, tmp_path):
    """Ray >= 2.52 clusters authenticate with a token: the error says where to get it."""
    def init(**kwargs):
        raise ray.exceptions.AuthenticationError("Token authentication is enabled but the authentication "
                                                 "token is invalid or incorrect.")

    monkeypatch.setattr(ray, "init", init)
    with socket.socket() as server:  # something answers at the address, as a head node would
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        with pytest.raises(TicketscopeError) as e:
            run_sweep(load_sweep({"base": BASE}), tmp_path, executor="ray", address=address, progress=False)
    msg = str(e.value)
    assert msg.startswith(f"could not join the Ray cluster at {address}: it requires token authentication")
    assert "RAY_AUTH_MODE=token" in msg and "RAY_AUTH_TOKEN" in msg and "ray get-auth-token" in msg
    assert "--address auto" in msg and "\n" not in msg


@pytest.fixture
def head_node(monkeypatch):
    """A Ray cluster started as users do (`ray start --head`, token authentication as Ray defaults),
    in its own temporary directory; yields its HOST:PORT as given on the command line."""
    root = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    monkeypatch.setenv("RAY_TMPDIR", root)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    port = free_port()
    head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", f"--port={port}",
                             "--num-cpus=2", "--include-dashboard=false", "--block"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(os.path.join(root, "ray", "ray_current_cluster")):
            assert head.poll() is None and time.monotonic() < deadline, "ray start --head failed"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)  # whatever of its process group is left
        except ProcessLookupError:
            pass
        head.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_a_cluster_from_ray_start_is_joined_with_auto(tmp_path, head_node):
    """The reported failure, with the CLI in fresh processes (Ray caches its token mode per process):
    after `ray start --head`, an explicit HOST:PORT is refused (Ray sends its token only for auto);
    the error is one line naming the fix, and --address auto runs every point."""
    spec = tmp_path / "cluster.yaml"
    spec.write_text(json.dumps({"name": "cluster", "base": BASE | {"prune": {"rounds": 1}}, "grid": {"seed": [0, 1, 2]}}))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}

    def sweep(address: str, out: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ticketscope.cli", "sweep", str(spec), "--out", str(tmp_path / out),
                               "--executor", "ray", "--address", address, "--quiet"],
                              capture_output=True, text=True, env=env, timeout=300)

    explicit = sweep(head_node, "explicit")
    assert explicit.returncode == 2, explicit.stderr
    (line,) = [x for x in explicit.stderr.splitlines() if x.startswith("error:")]
    assert f"could not join the Ray cluster at {head_node}: it requires token authentication" in line
    assert "--address auto" in line and "RAY_AUTH_MODE=token" in line
    auto = sweep("auto", "auto")
    assert auto.returncode == 0 and "3 points in" in auto.stdout and "3 ok" in auto.stdout, auto.stderr


def test_gpu_requests_follow_the_device():
    def task(device: str) -> tuple[Job, ...]:
        return (Job(device, RunConfig(device=device), ""),)

    assert [gpus_for(task(d), 0, 1.0) for d in ("cpu", "auto", "cuda")] == [0, 0, 1.0]
    assert [gpus_for(task(d), 2, 0.5) for d in ("cpu", "auto", "cuda")] == [0, 0.5, 0.5]


def test_cuda_run_on_a_cluster_without_gpus_fails_at_once(tmp_path, ray_env, monkeypatch):
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # as if joined to a CPU-only cluster
    (got,) = run_ray([(Job("x", RunConfig(device="cuda"), str(tmp_path)),)], RayOptions())
    assert got[1].status == "failed" and "the Ray cluster has no GPU" in got[1].error


# --- tests on one shared local instance: 2 CPUs and 1 (declared) GPU ---


@pytest.fixture(scope="module")
def cluster():
    """A fresh Ray instance on 127.0.0.1 with 2 CPUs, 1 GPU (declared: Ray only hands out its id), no
    dashboard and no usage reporting, shared by the tests below."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        mp.delenv("RAY_ADDRESS", raising=False)
        ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=False)
        yield
        ray.shutdown()


def test_killed_ray_worker_is_retried_and_its_run_resumed(tmp_path, cluster):
    sweep = load_sweep({"name": "ray", "base": BASE, "grid": {"prune.method": ["imp", "random"], "seed": [0]}})
    points = sweep.points()
    victim = tmp_path / "sweep" / "runs" / points[0].digest
    killer = Killer(victim)
    killer.start()
    df = run_sweep(sweep, tmp_path / "sweep", executor="ray", threads=1, progress=False)
    killer.join()

    assert killer.pid is not None, "no worker was killed"
    assert not killer.complete_when_killed, "the run finished before the kill: lengthen the runs"
    assert gone(killer.pid)
    assert df.status.tolist() == ["ok"] * 2, df.error.tolist()
    runs = tmp_path / "sweep" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == sorted(p.digest for p in points)
    for p in points:
        assert sorted(d.name for d in (runs / p.digest / "rounds").iterdir()) == ["000", "001", "002"]
    assert int((victim / ".lock").read_text()) != killer.pid  # another worker finished it...
    after = mtimes(victim / "rounds" / "000")
    assert after == killer.round0  # ...by resuming: round 0 was not redone

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count
    try:
        for p in points:
            run_experiment(p.config, tmp_path / "serial" / p.digest, progress=False)
            assert_same_run(runs / p.digest, tmp_path / "serial" / p.digest)
    finally:
        torch.set_num_threads(threads)


def hang_or_report_gpus(task, threads):
    """A worker function: hang when told to, else report the GPUs Ray gave this task."""
    (job,) = task
    if job.digest == "hang":
        time.sleep(600)
    return [(job.digest, Outcome("ok", ",".join(map(str, ray.get_gpu_ids())), 0.0))]


def test_hung_ray_task_is_reported_and_the_others_go_on(cluster):
    cfg = RunConfig()
    tasks = [(Job(name, cfg, ""),) for name in ("hang", "fine")]
    start = time.monotonic()
    got = dict(run_ray(tasks, RayOptions(threads=1, task_timeout_s=2.0, poll_s=0.1), worker=hang_or_report_gpus))
    assert time.monotonic() - start < 60
    assert got["fine"] == Outcome("ok", "", 0.0)
    assert got["hang"].status == "failed" and got["hang"].error.startswith("hung: still running after")
    assert "2 s" in got["hang"].error


def test_ray_tasks_request_a_gpu_when_their_run_needs_one(cluster):
    tasks = [(Job(device, RunConfig(device=device), ""),) for device in ("cpu", "cuda", "auto")]
    got = dict(run_ray(tasks, RayOptions(threads=1), worker=hang_or_report_gpus))
    assert {d: o.error for d, o in got.items()} == {"cpu": "", "cuda": "0", "auto": "0"}
    half = dict(run_ray(tasks[1:2], RayOptions(threads=1, gpus_per_task=0.5), worker=hang_or_report_gpus))
    assert half["cuda"].error == "0"
