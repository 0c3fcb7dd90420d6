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
