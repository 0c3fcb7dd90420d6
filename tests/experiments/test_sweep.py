"""Sweeps: grid expansion, content-addressed runs, skip and resume, the local process pool, failures,
worker processes killed by the OS, hung tasks, and two sweep commands sharing one directory."""

import copy
import dataclasses
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import TINY as CONFTEST_TINY
from conftest import merge
from ticketscope.analysis import analyze_run
from ticketscope.config import DataConfig, RunConfig, TrainConfig
from ticketscope.errors import TicketscopeError
from ticketscope.experiments import executors
from ticketscope.experiments import sweep as sweep_mod
from ticketscope.experiments.executors import Job, Options, run_local
from ticketscope.experiments.sweep import Outcome, Sweep, load_sweep, run_sweep, sweep_runs
from ticketscope.io import exclusive_lock
from ticketscope.runs import run_experiment

# conftest's tiny run, smaller still: sweeps run many of them
TINY = merge(CONFTEST_TINY, {"data": {"L": 6, "n_train": 256, "n_test": 128, "xis": [1.0, 2.0]}, "model": {"hidden": [8]},
                             "train": {"steps": 30, "batch_size": 32, "n_eval_train": 128}, "prune": {"rounds": 1}})
# runs long enough (a few seconds, two pruning rounds) to be interrupted between rounds
SLOW = merge(TINY, {"train": {"steps": 60}, "prune": {"rounds": 2}})


def tiny_sweep(grid: dict, **extra) -> Sweep:
    return load_sweep({"name": "tiny", "base": copy.deepcopy(TINY), "grid": grid, **extra})


def run_signature(run_dir: Path) -> tuple[pd.DataFrame, dict[str, bytes], dict]:
    """Everything a run computed: metrics (minus timings), every checkpoint's bytes, run.json."""
    metrics = pd.read_parquet(run_dir / "metrics.parquet").drop(columns="train_time_s")
    files = {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in sorted(run_dir.glob("rounds/*/*.safetensors"))}
    return metrics, files, json.loads((run_dir / "run.json").read_text())


def assert_same_run(a: Path, b: Path) -> None:
    (ma, fa, ja), (mb, fb, jb) = run_signature(a), run_signature(b)
    pd.testing.assert_frame_equal(ma, mb, check_exact=True)
    assert fa.keys() == fb.keys() and fa == fb, f"checkpoints of {a} and {b} differ"
    assert ja == jb


def mtimes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*")}


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


@pytest.fixture
def one_thread():
    """The in-process reference runs use the workers' thread count (1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_grid_is_the_cartesian_product_of_the_axes():
    axes = {"data.gaussian_clone": [False, True], "prune.method": ["imp", "oneshot", "random"], "seed": [0, 1, 2]}
    points = tiny_sweep(axes).points()
    assert [tuple(p.overrides.values()) for p in points] == list(itertools.product(*axes.values()))
    for p in points:
        assert (p.config.data.gaussian_clone, p.config.prune.method, p.config.seed) == tuple(p.overrides.values())
        assert (p.config.data.L, p.config.model.hidden, p.config.train.steps) == (6, (8,), 30)  # base kept
    assert len({p.digest for p in points}) == 18
    (only,) = load_sweep({"base": TINY}).points()  # no axes: the base is the one point
    assert only.overrides == {} and only.config.data.L == 6


def test_tuple_valued_axes_and_zip_groups():
    points = tiny_sweep({"model.hidden": [[8], [16, 4]]},
                        zip=[{"train.lr": [0.1, 0.01], "train.steps": [10, 20]}]).points()
    got = [(p.config.model.hidden, p.config.train.lr, p.config.train.steps) for p in points]
    assert got == [((8,), 0.1, 10), ((8,), 0.01, 20), ((16, 4), 0.1, 10), ((16, 4), 0.01, 20)]


def test_digest_ignores_key_order_and_explicit_defaults():
    def digest(raw: dict) -> str:
        (point,) = load_sweep(raw).points()
        return point.digest

    a = digest({"base": {"data": {"name": "nlgp", "L": 6}, "seed": 1}, "grid": {"train.lr": [0.1]}})
    reordered = digest({"grid": {"train.lr": [0.1]}, "base": {"seed": 1, "data": {"L": 6, "name": "nlgp"}}})
    defaults = digest({"base": {"seed": 1, "threads": 0, "data": {"L": 6, "gain": 3.0, "torus": True},
                                "train": {"optimizer": "sgd"}}, "grid": {"train.lr": [0.1]}})
    as_base = digest({"base": {"seed": 1, "data": {"L": 6}, "train": {"lr": 0.1}}, "grid": {"seed": [1]}})
    other = digest({"base": {"data": {"L": 6}, "seed": 1}, "grid": {"train.lr": [0.2]}})
    assert a == reordered == defaults == as_base != other
    assert a == RunConfig(seed=1, data=DataConfig(L=6), train=TrainConfig(lr=0.1)).digest()


@pytest.mark.parametrize("raw, match", [
    ([1, 2], "a sweep is a mapping"),
    ({"grid": {"seed": [0]}, "sweeps": 1}, r"unknown top-level key\(s\) \['sweeps'\]"),
    ({"grid": {"seed": 3}}, "axis seed needs a non-empty list of values"),
    ({"grid": {"seed": []}}, "axis seed needs a non-empty list of values"),
    ({"grid": {"train.lrr": [0.1]}}, "'train.lrr' is not a config field; did you mean train.lr"),
    ({"grid": {"seed.x": [1]}}, "'seed.x' is not a config field"),
    ({"grid": [["seed", [0]]]}, "grid must be a mapping"),
    ({"base": [1]}, "base must be a mapping"),
    ({"grid": {"data": [{}], "data.L": [4]}}, "axes data and data.L set the same field"),
    ({"grid": {"seed": [0]}, "zip": [{"seed": [1]}]}, "axes seed and seed set the same field"),
    ({"zip": [{"train.lr": [0.1, 0.2], "train.steps": [10]}]}, "same number of values"),
    ({"zip": {"train.lr": [0.1]}}, "zip must be a list"),
])
def test_malformed_sweep_is_one_clear_error(raw, match):
    with pytest.raises(TicketscopeError, match=match):
        load_sweep(raw)


@pytest.mark.parametrize("text, match", [
    (None, "does not exist"),
    ("grid: {seed: [0, 1]\n", "not valid YAML"),
    ("- seed\n", "must hold a mapping"),
])
def test_malformed_sweep_file_is_one_clear_error(tmp_path, text, match):
    path = tmp_path / "sweep.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(TicketscopeError, match=match):
        load_sweep(path)


def test_failing_points_are_reported_and_do_not_stop_the_others(tmp_path):
    """A run that fails as it trains (it diverges) is reported failed; the others go on. (An invalid
    value never gets this far: tests/experiments/test_spec.py.)"""
    df = run_sweep(tiny_sweep({"train.lr": [0.05, 1e9, 0.02]}), tmp_path, workers=1)
    assert df.status.tolist() == ["ok", "failed", "ok"]
    assert pd.isna(df.error[0]) and pd.isna(df.error[2])
    assert "diverged" in df.error[1] and df.run_dir[1] == f"runs/{df.digest[1]}"
    assert (tmp_path / df.run_dir[0] / "run.json").exists() and not (tmp_path / df.run_dir[1] / "run.json").exists()
    on_disk = pd.read_parquet(tmp_path / "summary.parquet")
    assert on_disk.status.tolist() == df.status.tolist() and on_disk["train.lr"].tolist() == [0.05, 1e9, 0.02]
    assert json.loads((tmp_path / "summary.json").read_text())["counts"] == {"ok": 2, "failed": 1}
    assert sweep_runs(tmp_path).digest.tolist() == [df.digest[0], df.digest[2]]


def test_rerun_skips_complete_runs_resumes_killed_ones_and_runs_only_new_points(tmp_path):
    first = run_sweep(tiny_sweep({"seed": [0, 1]}), tmp_path, workers=1, progress=False)
    assert first.status.tolist() == ["ok", "ok"]
    before = mtimes(tmp_path / "runs")

    again = run_sweep(tiny_sweep({"seed": [0, 1]}), tmp_path, workers=1, progress=False)
    assert again.status.tolist() == ["skipped", "skipped"] and again.digest.tolist() == first.digest.tolist()
    assert mtimes(tmp_path / "runs") == before  # no file touched, none added

    done, killed = (tmp_path / d for d in first.run_dir)
    reference = run_signature(killed)
    (killed / "run.json").unlink()  # as if killed during its last round
    for p in (killed / "rounds" / "001").iterdir():
        if p.name != "start.safetensors":
            p.unlink()
    grown = run_sweep(tiny_sweep({"seed": [0, 1, 2]}), tmp_path, workers=1, progress=False)
    assert grown.status.tolist() == ["skipped", "ok", "ok"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(grown.digest)
    after = mtimes(tmp_path / "runs")
    assert all(after[k] == v for k, v in before.items() if k.startswith(done.name))
    assert all(after[k] == v for k, v in before.items() if k.startswith(f"{killed.name}/rounds/000"))  # resumed
    new, old = run_signature(killed), reference
    pd.testing.assert_frame_equal(new[0], old[0], check_exact=True)
    assert new[1:] == old[1:]


def test_a_run_error_in_the_worker_becomes_a_failed_outcome(monkeypatch, tmp_path):
    def boom(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr("ticketscope.analysis.analyze_run", boom)  # an error after training fails the run too
    (point,) = tiny_sweep({}).points()
    job = Job(point.digest, point.config, str(tmp_path / "run"))
    [(digest, outcome)] = executors.execute_task((job,), torch.get_num_threads())
    assert digest == point.digest
    assert (outcome.status, outcome.error) == ("failed", "ValueError: boom")
    assert outcome.train_s > 0 and outcome.analysis_s >= 0 and outcome.wall_s == outcome.train_s + outcome.analysis_s


def test_a_run_locked_by_another_process_is_busy_not_failed(tmp_path):
    (point,) = tiny_sweep({}).points()
    job = Job(point.digest, point.config, str(tmp_path / "run"))
    with exclusive_lock(tmp_path / "run"):  # as another process running this point would
        [(_, outcome)] = executors.execute_task((job,), torch.get_num_threads())
    assert outcome.status == "busy" and "another process is already working" in outcome.error
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_killed_local_worker_is_retried_and_the_other_points_go_on(monkeypatch, tmp_path, one_thread):
    """A pool worker SIGKILLed mid-run (as by the OOM killer): its point is retried in a fresh process and
    resumed while the others go on; every point ends ok exactly once, bit-identical to serial runs."""
    yielded, local = [], sweep_mod.EXECUTORS["local"]

    def recording(*args, **kwargs):
        for digest, outcome in local.run(*args, **kwargs):
            yielded.append((digest, outcome.status))
            yield digest, outcome

    monkeypatch.setitem(sweep_mod.EXECUTORS, "local", dataclasses.replace(local, run=recording))
    path = tmp_path / "methods.yaml"
    path.write_text(json.dumps({"base": SLOW, "grid": {"prune.method": ["imp"], "seed": [0, 1]}}))
    sweep = load_sweep(path)
    points = sweep.points()
    victim = tmp_path / "sweep" / "runs" / points[0].digest
    killer = Killer(victim)
    killer.start()
    df = run_sweep(sweep, tmp_path / "sweep", workers=2, threads=1, progress=False)
    killer.join()

    assert killer.pid is not None and killer.pid != os.getpid(), "no worker was killed"
    assert not killer.complete_when_killed, "the run finished before the kill: lengthen the runs"
    assert gone(killer.pid)
    assert df.status.tolist() == ["ok"] * 2, df.error.tolist()
    assert Counter(yielded) == {(p.digest, "ok"): 1 for p in points}  # once each, nothing failed
    assert int((victim / ".lock").read_text()) != killer.pid  # another worker finished it...
    assert mtimes(victim / "rounds" / "000") == killer.round0  # ...by resuming: round 0 was not redone
    for p, run_dir in zip(points, df.run_dir):  # every checkpoint's bytes, metrics and run.json
        run_experiment(p.config, tmp_path / "serial" / p.digest, progress=False)
        assert_same_run(tmp_path / "sweep" / run_dir, tmp_path / "serial" / p.digest)

    assert list(df.columns) == ["point", "digest", "prune.method", "seed", "status", "error", "run_dir", "wall_s",
                                 "train_s", "analysis_s"]
    assert list(zip(df["prune.method"], df.seed)) == [("imp", 0), ("imp", 1)]
    assert load_sweep(tmp_path / "sweep" / "sweep.yaml") == sweep and sweep.name == "methods"
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "sweep" / "summary.parquet")[["digest", "seed"]],
                                  df[["digest", "seed"]], check_dtype=False)
    pd.testing.assert_frame_equal(sweep_runs(tmp_path / "sweep"), df[["digest", "prune.method", "seed", "run_dir"]])


def die_hang_or_finish(task, threads):
    """A worker function for the pool's fault tests: its job's digest says what to do."""
    (job,) = task
    if job.digest == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if job.digest == "hang":
        time.sleep(600)
    return [(job.digest, Outcome("ok", None, 0.0))]


def test_local_pool_reports_workers_that_die_too_often_and_hung_tasks(tmp_path):
    cfg = RunConfig()
    tasks = [(Job(name, cfg, str(tmp_path / name)),) for name in ("die", "hang", "fine")]
    got = dict(run_local(tasks, Options(workers=3, retries=0, task_timeout_s=1.0, poll_s=0.05),
                         worker=die_hang_or_finish))
    assert got["fine"] == Outcome("ok", None, 0.0)
    assert got["die"].status == "failed" and "died 1 time(s) (killed by SIGKILL" in got["die"].error
    assert got["hang"].status == "failed" and got["hang"].error.startswith("hung: still running after")
    assert "1 s" in got["hang"].error


def test_a_point_another_process_runs_is_waited_for_then_skipped_or_run_here(monkeypatch, tmp_path):
    """The sweep's side of cooperation, in one process: a point whose run is locked elsewhere is
    waited for; reported skipped when the other process completed it, run here when it did not."""
    sweep = tiny_sweep({"seed": [0, 1]})
    (p0, p1), runs = sweep.points(), tmp_path / "runs"
    calls = []

    def executor(tasks, options, worker):
        calls.append(sorted(job.digest for task in tasks for job in task))
        for task in tasks:
            for job in task:
                yield job.digest, Outcome("busy" if len(calls) == 1 else "ok", None, 0.0)

    finished = tmp_path / "finished"  # what the other process leaves when it completes p0: run and analysis
    run_experiment(p0.config, finished, progress=False)
    analyze_run(finished, figures=False)

    def other_process(digest: str, completes: bool) -> threading.Thread:
        locked = threading.Event()

        def work() -> None:
            with exclusive_lock(runs / digest):
                locked.set()
                time.sleep(0.3)
                if completes:
                    shutil.copytree(finished, runs / digest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".lock"))

        t = threading.Thread(target=work)
        t.start()
        locked.wait(10)
        return t

    monkeypatch.setitem(sweep_mod.EXECUTORS, "local", dataclasses.replace(sweep_mod.EXECUTORS["local"], run=executor))
    threads = [other_process(p0.digest, completes=True), other_process(p1.digest, completes=False)]
    df = run_sweep(sweep, tmp_path, workers=1, progress=False)
    for t in threads:
        t.join()
    assert calls == [sorted([p0.digest, p1.digest]), [p1.digest]]  # p1 was run here once the other let go
    assert df.status.tolist() == ["skipped", "ok"] and df.error.isna().all()


SWEEP_PROCESS = """
import json, sys
from ticketscope.experiments import sweep as s
waits = []
wait = getattr(s, "wait_unlocked", None)
s.wait_unlocked = lambda d: (waits.append(str(d)), wait(d))
df = s.run_sweep(s.load_sweep(sys.argv[1]), sys.argv[2], workers=1, progress=False)
print(json.dumps({"status": df.status.tolist(), "error": df.error.tolist(), "waits": waits}))
"""


@pytest.mark.slow
def test_two_sweep_commands_on_one_directory_cooperate(tmp_path):
    """Two processes sweep one directory at once: each point runs once (the other process waits for
    it and reports it skipped), neither fails a point, and the summary files agree."""
    spec = tmp_path / "coop.yaml"
    slow = copy.deepcopy(SLOW) | {"train": {**SLOW["train"], "steps": 150}}
    spec.write_text(json.dumps({"name": "coop", "base": slow, "grid": {"seed": [0, 1]}}))
    points, out = load_sweep(spec).points(), tmp_path / "out"
    cmd = [sys.executable, "-c", SWEEP_PROCESS, str(spec), str(out)]
    a, b = (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab")
    results = []
    for proc in (a, b):
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, stderr
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    for i in range(len(points)):
        assert sorted(r["status"][i] for r in results) == ["ok", "skipped"], results  # ran once
    assert any(r["waits"] for r in results), f"the two sweeps never met: lengthen the runs; {results}"
    summary = json.loads((out / "summary.json").read_text())
    on_disk = pd.read_parquet(out / "summary.parquet")
    assert [p["status"] for p in summary["points"]] == on_disk.status.tolist()
    assert summary["points"][0]["status"] in ("ok", "skipped") and set(on_disk.status) <= {"ok", "skipped"}
    assert sweep_runs(out).digest.tolist() == [p.digest for p in points]


@pytest.mark.parametrize("kwargs, match", [
    ({"executor": "slurm"}, "unknown executor 'slurm'"),
    ({"address": "auto"}, "use it with executor ray"),
    ({"workers": 0}, "must be >= 1"),
    ({"threads": -1}, "must be >= 1"),
    ({"task_timeout_s": 0}, "task_timeout_s must be > 0"),
    ({"gpus_per_task": 0}, "gpus_per_task must be > 0"),
])
def test_bad_run_sweep_arguments(tmp_path, kwargs, match):
    with pytest.raises(TicketscopeError, match=match):
        run_sweep(tiny_sweep({}), tmp_path, progress=False, **kwargs)


def test_ray_executor_without_ray_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(TicketscopeError, match=r"pip install 'ticketscope\[ray\]'"):
        run_sweep(tiny_sweep({}), tmp_path, executor="ray", progress=False)
    assert not (tmp_path / "runs").exists()


def test_sweep_runs_needs_a_sweep_directory(tmp_path):
    with pytest.raises(TicketscopeError, match="not a sweep directory"):
        sweep_runs(tmp_path)


def test_importing_sweeps_does_not_import_ray():
    code = "import sys, ticketscope.experiments.sweep; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sweep_ensembles_give_every_run_the_numbers_it_gets_alone(tmp_path):
    """Four points of one network shape train as ensembles (two workers: two ensembles of two) and as
    four single-run tasks: every checkpoint's bytes, metrics and run.json agree."""
    sweep = tiny_sweep({"prune.method": ["imp", "random"], "data.gaussian_clone": [False, True]})
    together = run_sweep(sweep, tmp_path / "ens", workers=2, progress=False)
    alone = run_sweep(sweep, tmp_path / "one", workers=2, progress=False, ensemble=False)
    assert (together["status"] == "ok").all() and (alone["status"] == "ok").all()
    for digest in together["digest"]:
        a, b = run_signature(tmp_path / "ens" / "runs" / digest), run_signature(tmp_path / "one" / "runs" / digest)
        pd.testing.assert_frame_equal(a[0], b[0], check_exact=True)
        assert a[1] == b[1] and a[2] == b[2]


def test_time_spent_sums_the_worker_seconds_of_the_runs_that_ran():
    summary = pd.DataFrame({"status": ["ok", "failed", "skipped"], "train_s": [2.0, 1.5, None],
                            "analysis_s": [0.5, 0.25, None]})
    assert sweep_mod.time_spent(summary) == ("worker time over 2 runs: training 4 s (with pruning and checkpoints), "
                                             "analysis 1 s")
    assert sweep_mod.time_spent(summary.iloc[2:]) == "no run trained in this invocation"


def test_each_executor_gets_only_its_own_options(monkeypatch, tmp_path):
    """Ray-only fields live in RayOptions: the local pool gets plain Options, and an address is refused."""
    seen = []

    def executor(tasks, options, worker):
        seen.append(options)
        yield from ((job.digest, Outcome("ok", None, 0.0)) for task in tasks for job in task)

    for name in ("local", "ray"):
        monkeypatch.setitem(sweep_mod.EXECUTORS, name, dataclasses.replace(sweep_mod.EXECUTORS[name], run=executor))
    run_sweep(tiny_sweep({"seed": [0]}), tmp_path / "a", workers=1, progress=False)
    run_sweep(tiny_sweep({"seed": [0]}), tmp_path / "b", executor="ray", workers=1, address="auto", progress=False)
    assert [type(o) for o in seen] == [Options, executors.RayOptions]
    assert seen[1].address == "auto" and seen[1].gpus_per_task == 1.0 and not hasattr(seen[0], "address")
    with pytest.raises(TicketscopeError, match="address names a Ray cluster"):
        run_sweep(tiny_sweep({"seed": [0]}), tmp_path / "c", address="auto", progress=False)
