"""open_run / open_sweep against the run directory's own files, and the examples/ script end to end."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ticketscope
from conftest import TINY, merge
from ticketscope.config import parse_config
from ticketscope.errors import TicketscopeError
from ticketscope.io import load_tensors
from ticketscope.runs import RunDir, run_experiment
from ticketscope.seeding import derive_seed
from ticketscope.engine import evaluate

ROOT = Path(__file__).resolve().parents[1]


def test_open_run_reads_what_the_run_wrote(tmp_path):
    cfg = parse_config(merge(TINY, {"prune": {"rounds": 2}}))
    summary = run_experiment(cfg, tmp_path / "r", progress=False)
    run = ticketscope.open_run(tmp_path / "r")
    assert run.config == cfg and run.rounds == [0, 1, 2] and run.complete
    assert run.provenance["ticketscope"] == ticketscope.__version__ and run.provenance["threads"] == torch.get_num_threads()
    assert run.summary.equals(summary)
    final = load_tensors(RunDir(tmp_path / "r").round_dir(1) / "final.safetensors")
    assert torch.equal(run.weights(1)["layers.0"], final["layers.0.weight"])
    assert torch.equal(run.masks(1)["layers.0"], final["layers.0.mask"])
    X, y = run.dataset().test(cfg.data.n_test, seed=derive_seed(cfg.seed, "data"))
    loss, acc = evaluate(run.model(2), X, y, cfg.train.loss)  # the run's own test set: its recorded accuracy
    assert acc == summary.loc[2, "test_accuracy"] and loss == pytest.approx(summary.loc[2, "test_loss"], rel=1e-6)
    assert set(run.analysis("rounds")["round"]) == {0, 1, 2}
    with pytest.raises(TicketscopeError, match="round 3 is not complete"):
        run.weights(3)
    with pytest.raises(TicketscopeError, match="not a run directory"):
        ticketscope.open_run(tmp_path)


def test_example_script_runs(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "explore_run.py"), str(tmp_path / "ex"),
                          "--steps", "60", "--rounds", "2"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "most localized unit at round 2" in res.stdout and "accuracy of the round-2 model" in res.stdout


def test_open_sweep_lists_points_runs_and_the_joined_table(tmp_path):
    from ticketscope.experiments.sweep import load_sweep, run_sweep

    sweep = load_sweep({"base": merge(TINY, {"prune": {"rounds": 1}}), "grid": {"seed": [0, 1]}})
    run_sweep(sweep, tmp_path, workers=1, progress=False)
    opened = ticketscope.open_sweep(tmp_path)
    assert list(opened.summary["status"]) == ["ok", "ok"]
    assert sorted(r.config.seed for r in opened.runs) == [0, 1]
    table = opened.table()
    assert sorted(table["seed"].unique()) == [0, 1] and set(table["round"]) == {0, 1}
    with pytest.raises(TicketscopeError, match="not a finished sweep"):
        ticketscope.open_sweep(tmp_path / "runs")


def test_a_run_directory_from_before_stream_versions_reads_as_version_1(tmp_path):
    """analyze, report and open_run read config.yaml through load_run_config: no data.stream key = version 1,
    so an old directory's probe sets come from the stream it trained on; a key present is kept."""
    import yaml

    from ticketscope.config import load_run_config

    cfg = parse_config(merge(TINY, {"data": {"stream": 1}}))
    raw = cfg.model_dump(mode="json")
    del raw["data"]["stream"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    assert load_run_config(tmp_path).data.stream == 1 and load_run_config(tmp_path).digest() == cfg.digest()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(parse_config(TINY).model_dump(mode="json")))
    assert load_run_config(tmp_path).data.stream == 2
