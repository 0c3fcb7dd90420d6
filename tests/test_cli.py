"""The command line: each command's output, and one clear line (exit 2) for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import TINY, merge
from ticketscope.cli import app
from ticketscope.experiments.presets import preset_names, preset_path
from ticketscope.experiments.sweep import load_sweep
from ticketscope.io import load_tensors

runner = CliRunner()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ticketscope.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": "src"})


def test_data_sample_writes_safetensors(tmp_path):
    out = tmp_path / "x.safetensors"
    res = runner.invoke(app, ["data", "sample", "--n", "10", "--L", "6", "--dim", "1", "--xi", "1", "--xi", "2",
                              "--xi", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    t = load_tensors(out)
    assert t["X"].shape == (10, 6) and sorted(set(t["y"].tolist())) == [0, 1, 2]


def test_run_show_json_analyze(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(merge(TINY, {"prune": {"rounds": 1}})))
    assert runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "r"), "--quiet"]).exit_code == 0
    res = runner.invoke(app, ["show", str(tmp_path / "r"), "--json"])
    shown = json.loads(res.output)
    rows = shown["rounds"]
    assert shown["status"] == "complete: 2 rounds, reached prune.rounds = 1" and shown["diverged"] is None
    assert [r["round"] for r in rows] == [0, 1] and rows[1]["density[layers.0]"] == pytest.approx(0.8, abs=1 / 1024)
    res = runner.invoke(app, ["analyze", str(tmp_path / "r"), "--n-probe", "256"])
    assert res.exit_code == 0 and (tmp_path / "r" / "analysis" / "rf_grid.png").exists()
    # the stored IPR of every first-layer unit is the checkpoint's, recomputed in numpy
    units = pd.read_parquet(tmp_path / "r" / "analysis" / "units.parquet")
    u = units[(units["round"] == 1) & (units["layer"] == "layers.0")].sort_values("unit")
    W = load_tensors(tmp_path / "r" / "rounds" / "001" / "final.safetensors")["layers.0.weight"].double().numpy()
    np.testing.assert_allclose(u["ipr"], (W**4).sum(1) / (W**2).sum(1) ** 2, rtol=1e-10)


def test_presets_are_listed_and_every_point_is_valid():
    res = runner.invoke(app, ["presets"])
    assert res.exit_code == 0
    assert {"demo", "paper-nlgp", "natural-images", "cifar10", "gain-response"} <= set(preset_names())
    for name in preset_names():
        sweep = load_sweep(preset_path(name))
        points = sweep.points()
        assert f"{name}: {len(points)} runs; {sweep.budget or 'budget not measured'}" in res.output
        assert sweep.description and points, name  # load_sweep refuses a sweep with an invalid point
        assert len({p.digest for p in points}) == len(points)


@pytest.mark.parametrize("args,needle", [
    (["data", "sample", "--n", "-3", "--out", "x.safetensors"], "n must be an integer >= 0, got -3"),
    (["data", "sample", "--task", "mnist", "--data-dir", "/nonexistent", "--out", "x.safetensors"], "ticketscope data download"),
    (["run", "tests", "--out", "o"], "cannot read config file tests"),
    (["show", "/nonexistent"], "not a run directory"),
    (["sweep", "no-such-preset", "--out", "o"], "no preset named"),
])
def test_bad_input_gives_one_clear_line(args, needle):
    res = _cli(*args)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error:") and needle in res.stderr and "Traceback" not in res.stderr


def _inline(tasks, options, worker):
    for task in tasks:
        yield from worker(task, 1)


@pytest.fixture
def inline_sweeps(monkeypatch):
    """Sweeps run their tasks in this process (the sweep's logic without spawning workers)."""
    from ticketscope.experiments import sweep as sweep_mod
    from ticketscope.experiments.executors import Executor, Options

    monkeypatch.setitem(sweep_mod.EXECUTORS, "inline", Executor("inline", Options, _inline))


def test_a_diverged_run_is_recorded_shown_and_not_trained_again(tmp_path):
    """On main before: show printed a blank line (exit 0), analyze advised `run`, which diverged again."""
    cfg, run = tmp_path / "c.yaml", tmp_path / "r"
    cfg.write_text(yaml.safe_dump(merge(TINY, {"train": {"lr": 1e9}})))
    res = runner.invoke(app, ["run", str(cfg), "--out", str(run), "--quiet"])
    assert res.exit_code != 0 and "diverged in round 0 at step" in str(res.exception)
    record = json.loads((run / "diverged.json").read_text())
    assert record["round"] == 0 and record["step"] >= 0 and record["loss"] in ("nan", "inf", "-inf")
    shown = json.loads(runner.invoke(app, ["show", str(run), "--json"]).output)
    assert shown["status"].startswith(f"diverged in round 0 at step {record['step']}") and shown["rounds"] == []
    assert "diverged in round 0" in runner.invoke(app, ["show", str(run)], env={"COLUMNS": "80"}).output
    res = runner.invoke(app, ["analyze", str(run)])
    assert res.exit_code != 0 and "lower train.lr" in str(res.exception) and "ticketscope run" not in str(res.exception)
    before = sorted(p.name for p in run.rglob("*"))
    res = runner.invoke(app, ["run", str(cfg), "--out", str(run), "--quiet"])  # refused at once, nothing retrained
    assert res.exit_code != 0 and "recorded in" in str(res.exception) and sorted(p.name for p in run.rglob("*")) == before


def test_show_fits_80_columns_and_names_every_layer(tmp_path):
    """On main before: 11 columns wrapped past 80, and rich read `density[layers.0]` as markup."""
    cfg, run = tmp_path / "c.yaml", tmp_path / "r"
    cfg.write_text(yaml.safe_dump(merge(TINY, {"model": {"hidden": [16, 8]}, "prune": {"rounds": 1}})))
    assert runner.invoke(app, ["run", str(cfg), "--out", str(run), "--quiet"]).exit_code == 0
    out = runner.invoke(app, ["show", str(run)], env={"COLUMNS": "80"}).output
    lines = out.splitlines()
    assert max(map(len, lines)) <= 80, out
    header = next(line for line in lines if "round" in line and "density" in line)
    assert "L0" in header and "L1" in header and header.count("density") == 1
    assert "complete: 2 rounds" in out


def test_a_report_names_its_failed_points_and_the_verdicts_they_cost(tmp_path, inline_sweeps):
    """On main before: the report never mentioned a failed point and judged the survivors without a word."""
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"name": "acc", "base": merge(TINY, {"prune": {"rounds": 1}}),
                                    "grid": {"prune.method": ["imp", "random"], "seed": [0, 1, 2]}}))
    out = tmp_path / "sweep"
    assert runner.invoke(app, ["sweep", str(spec), "--out", str(out), "--executor", "inline", "--quiet"]).exit_code == 0
    sweep = load_sweep(out / "sweep.yaml")
    victim = next(p for p in sweep.points() if p.config.prune.method == "random" and p.config.seed == 2)
    (out / "runs" / victim.digest / "diverged.json").write_text(json.dumps({"round": 1, "step": 7, "loss": "nan"}))
    (out / "runs" / victim.digest / "run.json").unlink()
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0
    md = (out / "report" / "report.md").read_text()
    assert "6 points planned, 5 reported, **1 failed**" in md
    assert "## Points not in this report (1)" in md and f"| {victim.digest} |" in md
    assert "diverged in round 1 at step 7 (loss nan)" in md
    points = pd.read_parquet(out / "report" / "points.parquet")
    assert points.status.value_counts().to_dict() == {"reported": 5, "failed": 1}
    claims = json.loads((out / "report" / "claims.json").read_text())
    random_vs_imp = [c for c in claims if c["claim"].startswith("IMP localizes more than random")][0]
    assert (random_vs_imp["n_a"], random_vs_imp["planned_a"]) == (2, 3) and "on fewer seeds than planned" in md


def test_a_failed_axis_stays_among_the_varying_fields(tmp_path, inline_sweeps):
    """On main before: when every point of one train.lr value failed, train.lr vanished from "varying fields"."""
    spec, out = tmp_path / "s.yaml", tmp_path / "sweep"
    spec.write_text(yaml.safe_dump({"name": "lr", "base": merge(TINY, {"prune": {"rounds": 1}}),
                                    "grid": {"train.lr": [0.05, 0.02], "seed": [0, 1]}}))
    assert runner.invoke(app, ["sweep", str(spec), "--out", str(out), "--executor", "inline", "--quiet"]).exit_code == 0
    import shutil

    for p in load_sweep(out / "sweep.yaml").points():
        if p.config.train.lr == 0.02:
            shutil.rmtree(out / "runs" / p.digest)  # as if these points had failed before writing anything
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0
    md = (out / "report" / "report.md").read_text()
    assert "4 points planned, 2 reported, **2 failed**" in md and "varying fields: seed, train.lr" in md
    assert md.count("never ran: run the sweep again") == 2


def test_version_prints_the_package_version():
    from ticketscope import __version__

    res = _cli("--version")
    assert res.returncode == 0 and res.stdout == f"ticketscope {__version__}\n", res
    assert runner.invoke(app, ["--version"]).output == f"ticketscope {__version__}\n"


def test_report_given_a_run_directory_says_it_is_a_run_and_what_reads_one(tmp_path):
    """On main before: "no completed runs under RUN/runs; run `ticketscope sweep` first"."""
    cfg, run = tmp_path / "c.yaml", tmp_path / "r"
    cfg.write_text(yaml.safe_dump(merge(TINY, {"prune": {"rounds": 1}})))
    assert runner.invoke(app, ["run", str(cfg), "--out", str(run), "--quiet"]).exit_code == 0
    res = _cli("report", str(run))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    err = res.stderr.strip()
    assert err.startswith(f"error: {run} is a run directory, not a sweep: `ticketscope report` reads a sweep directory")
    assert f"`ticketscope show {run}`" in err and f"`ticketscope analyze {run}`" in err
    assert "no completed runs" not in err and not (run / "report").exists()
    res = _cli("report", str(tmp_path / "empty"))  # not a run: the sweep message stays
    assert res.returncode == 2 and "no completed runs under" in res.stderr and "run directory" not in res.stderr


def test_demo_runs_its_preset_then_reports(tmp_path, inline_sweeps, monkeypatch):
    """The demo command's own path after its sweep: the demo preset swapped for a tiny sweep of the same shape (the
    preset itself takes minutes); on main before, the report step failed with a typer OptionInfo for --replicate."""
    from ticketscope import cli

    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(yaml.safe_dump({"name": "demo", "base": merge(TINY, {"prune": {"rounds": 1}}),
                                    "grid": {"prune.method": ["imp", "oneshot"], "seed": [0, 1]}}))
    real = cli._run_sweep
    monkeypatch.setattr(cli, "_run_sweep", lambda source, out, executor, *a, **k: real(str(tiny), out, "inline", *a, **k))
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "demo finished in" in res.output and (tmp_path / "demo" / "report" / "report.html").exists()
