"""Sweeps: grid expansion, content-addressed runs, skip and resume, the local process pool, failures."""

import copy
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from ticketscope.config import DataConfig, RunConfig, TrainConfig
from ticketscope.errors import TicketscopeError
from ticketscope.experiments import sweep as sweep_mod
from ticketscope.experiments.sweep import Outcome, Sweep, load_sweep, run_sweep, sweep_runs
from ticketscope.runs import run_experiment

TINY = {
    "data": {"name": "nlgp", "L": 6, "dim": 2, "n_train": 256, "n_test": 128, "xis": [1.0, 2.0]},
    "model": {"hidden": [8]},
    "train": {"steps": 30, "batch_size": 32, "n_eval_train": 128},
    "prune": {"rounds": 1},
}


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
        assert p.error is None
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
    df = run_sweep(tiny_sweep({"train.lr": [0.05, -1, 1e9, "fast"]}), tmp_path, workers=1)
    assert df.status.tolist() == ["ok", "failed", "failed", "failed"]
    assert pd.isna(df.error[0])
    assert "train.lr" in df.error[1] and "greater than 0" in df.error[1] and pd.isna(df.digest[1])
    assert "diverged" in df.error[2] and df.run_dir[2] == f"runs/{df.digest[2]}"
    assert "train.lr" in df.error[3] and "valid number" in df.error[3]
    assert (tmp_path / df.run_dir[0] / "run.json").exists() and not (tmp_path / df.run_dir[2] / "run.json").exists()
    on_disk = pd.read_parquet(tmp_path / "summary.parquet")  # the mixed lr column is stored as JSON text
    assert on_disk.status.tolist() == df.status.tolist()
    assert on_disk["train.lr"].tolist() == ["0.05", "-1", "1000000000.0", '"fast"']
    assert json.loads((tmp_path / "summary.json").read_text())["counts"] == {"ok": 1, "failed": 3}
    assert sweep_runs(tmp_path).digest.tolist() == [df.digest[0]]


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


def test_local_pool_matches_serial_runs(tmp_path, one_thread):
    path = tmp_path / "methods.yaml"
    path.write_text(json.dumps({"base": TINY, "grid": {"prune.method": ["imp", "random"], "seed": [0, 1]}}))
    sweep = load_sweep(path)
    df = run_sweep(sweep, tmp_path / "sweep", workers=2, threads=1, progress=False)
    assert df.status.tolist() == ["ok"] * 4
    assert list(df.columns) == ["point", "digest", "prune.method", "seed", "status", "error", "run_dir", "wall_s"]
    assert list(zip(df["prune.method"], df.seed)) == [("imp", 0), ("imp", 1), ("random", 0), ("random", 1)]
    for p, run_dir in zip(sweep.points(), df.run_dir):
        run_experiment(p.config, tmp_path / "serial" / p.digest, progress=False)
        assert_same_run(tmp_path / "sweep" / run_dir, tmp_path / "serial" / p.digest)
    assert load_sweep(tmp_path / "sweep" / "sweep.yaml") == sweep and sweep.name == "methods"
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "sweep" / "summary.parquet")[["digest", "seed"]],
                                  df[["digest", "seed"]], check_dtype=False)
    pd.testing.assert_frame_equal(sweep_runs(tmp_path / "sweep"), df[["digest", "prune.method", "seed", "run_dir"]])


def test_a_run_error_in_the_worker_becomes_a_failed_outcome(monkeypatch, tmp_path):
    def boom(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(sweep_mod, "run_experiment", boom)
    (point,) = tiny_sweep({}).points()
    outcome = sweep_mod._execute(point.config, str(tmp_path), torch.get_num_threads())
    assert (outcome.status, outcome.error) == ("failed", "ValueError: boom") and outcome.wall_s >= 0

    def died() -> Outcome:
        raise RuntimeError("worker exited")

    assert sweep_mod._collect(died) == Outcome("failed", "the worker running this point died or failed: "
                                                         "RuntimeError: worker exited")


@pytest.mark.parametrize("kwargs, match", [
    ({"executor": "slurm"}, "unknown executor 'slurm'"),
    ({"address": "auto"}, "use it with executor ray"),
    ({"workers": 0}, "must be >= 1"),
    ({"threads": -1}, "must be >= 1"),
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
