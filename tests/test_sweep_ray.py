"""The Ray executor on a real local Ray instance: a worker process killed mid-run is retried, the
retry resumes the run, and the sweep ends with every run present once, bit-identical to serial runs."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from test_sweep import assert_same_run, mtimes  # tests/ is on sys.path under pytest

from ticketscope.experiments.sweep import load_sweep, run_sweep
from ticketscope.runs import run_experiment

ray = pytest.importorskip("ray")

BASE = {
    "data": {"name": "nlgp", "L": 6, "dim": 2, "n_train": 256, "n_test": 128, "xis": [1.0, 2.0]},
    "model": {"hidden": [8]},
    "train": {"steps": 60, "batch_size": 32, "n_eval_train": 128},
    "prune": {"rounds": 2},
}


@pytest.fixture
def local_ray(monkeypatch):
    """A fresh Ray instance on 127.0.0.1 with 2 CPUs, no dashboard and no usage reporting."""
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    yield
    ray.shutdown()


class Killer(threading.Thread):
    """SIGKILLs the process working on ``run_dir`` once its round 0 is written (pid from the run lock)."""

    def __init__(self, run_dir: Path, timeout_s: float = 120.0) -> None:
        super().__init__(daemon=True)
        self.run_dir, self.deadline = run_dir, time.monotonic() + timeout_s
        self.pid: int | None = None
        self.complete_when_killed = True
        self.round0: dict[str, int] = {}

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            if (self.run_dir / "rounds" / "000" / "round.json").exists():
                self.pid = int((self.run_dir / ".lock").read_text())
                self.round0 = mtimes(self.run_dir / "rounds" / "000")
                self.complete_when_killed = (self.run_dir / "run.json").exists()
                os.kill(self.pid, signal.SIGKILL)
                return
            time.sleep(0.005)


def gone(pid: int) -> bool:
    """The process exited (a zombie counts: it runs no more code)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_killed_ray_worker_is_retried_and_its_run_resumed(tmp_path, local_ray):
    sweep = load_sweep({"name": "ray", "base": BASE, "grid": {"prune.method": ["imp", "random"], "seed": [0, 1]}})
    points = sweep.points()
    victim = tmp_path / "sweep" / "runs" / points[0].digest
    killer = Killer(victim)
    killer.start()
    df = run_sweep(sweep, tmp_path / "sweep", executor="ray", threads=1, progress=False)
    killer.join()

    assert killer.pid is not None and killer.pid != os.getpid(), "no worker was killed"
    assert not killer.complete_when_killed, "the run finished before the kill: lengthen the runs"
    assert gone(killer.pid)
    assert df.status.tolist() == ["ok"] * 4, df.error.tolist()
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


@pytest.fixture
def ray_env(monkeypatch):
    """No usage reporting; whatever Ray instance a test leaves behind is shut down."""
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    yield
    ray.shutdown()


def test_ray_executor_starts_and_stops_its_own_local_instance(tmp_path, ray_env):
    sweep = load_sweep({"name": "own", "base": BASE, "grid": {"seed": [0, 1]}})
    df = run_sweep(sweep, tmp_path, executor="ray", workers=2, progress=False)
    assert df.status.tolist() == ["ok", "ok"], df.error.tolist()
    assert not ray.is_initialized()
    again = run_sweep(sweep, tmp_path, executor="ray", workers=2, progress=False)
    assert again.status.tolist() == ["skipped", "skipped"] and not ray.is_initialized()
