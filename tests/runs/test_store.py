"""The run store: one place that knows a run directory; every reader sees what the runner wrote."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from conftest import TINY, merge
from ticketscope.config import parse_config
from ticketscope.errors import TicketscopeError
from ticketscope.io import read_json
from ticketscope.runs import DamagedRun, RunDir, complete_runs, run_experiment, sweep_run_dir, sweep_run_name


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "runs" / "abc"
    cfg = parse_config(merge(TINY, {"prune": {"rounds": 2}, "train": {"snapshots": 2}}))
    return cfg, run_experiment(cfg, out, progress=False), RunDir(out)


def test_the_store_reads_back_what_the_runner_wrote(run):
    cfg, table, store = run
    assert store.exists() and store.is_complete() and store.config() == cfg
    done = store.rounds()
    assert [s["round"] for s in done] == [0, 1, 2] == table["round"].tolist()
    assert store.info()["rounds"] == 3 and store.info()["config_digest"] == cfg.digest()
    pd.testing.assert_frame_equal(store.summary_table(), table)
    pd.testing.assert_frame_equal(pd.read_parquet(store.path / "metrics.parquet"), table)
    final = store.load(done[1], "final.safetensors")
    masks = store.load(done[2], "masks.safetensors")
    assert final["layers.0.weight"].shape == masks["layers.0"].shape == (16, 64)
    assert float(masks["layers.0"].mean()) == pytest.approx(0.8 ** 2, abs=1e-3)  # fraction 0.2, two rounds
    snaps = store.snapshots(done[0])
    assert list(snaps) == sorted(snaps) and 0 in snaps and "layers.0.weight" in snaps[0]


def test_a_finished_run_missing_a_round_is_damaged_never_shorter(run, tmp_path):
    """run.json says how many rounds there are: a missing round.json is damage, named with its repair."""
    _, _, store = run
    copy = RunDir(tmp_path / "copy")
    shutil.copytree(store.path, copy.path)
    (copy.round_dir(1) / "round.json").unlink()
    assert not copy.is_complete()
    with pytest.raises(DamagedRun, match=r"rounds/001/round.json is missing; repair it with `ticketscope run"):
        copy.rounds()


def test_an_unfinished_run_is_its_contiguous_rounds(run, tmp_path):
    """Killed while training round 1 (no run.json, round 1 without its round.json): round 0 is done."""
    _, _, store = run
    copy = RunDir(tmp_path / "copy")
    shutil.copytree(store.path, copy.path)
    (copy.path / "run.json").unlink()
    shutil.rmtree(copy.round_dir(2))
    (copy.round_dir(1) / "round.json").unlink()
    assert [s["round"] for s in copy.rounds()] == [0] and copy.damage() == []
    (copy.round_dir(0) / "round.json").unlink()  # a gap below a completed round is damage, finished or not
    shutil.copy(store.round_dir(1) / "round.json", copy.round_dir(1) / "round.json")
    with pytest.raises(DamagedRun, match="rounds/000/round.json is missing"):
        copy.rounds()


def test_a_corrupt_checkpoint_is_refused_by_name(run, tmp_path):
    _, _, store = run
    copy = RunDir(tmp_path / "copy")
    shutil.copytree(store.path, copy.path)
    path = copy.round_dir(1) / "final.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(TicketscopeError, match="final.safetensors"):
        copy.load(copy.rounds()[1], "final.safetensors")


def test_claim_refuses_a_different_run_and_unclaim_leaves_no_trace(tmp_path):
    cfg = parse_config(TINY)
    store = RunDir(tmp_path / "r")
    store.path.mkdir()
    assert store.claim(cfg) == cfg and store.exists() and not store.is_complete()
    assert store.claim(cfg) == cfg  # the same run again: fine
    with pytest.raises(TicketscopeError, match="different config"):
        store.claim(cfg.model_copy(update={"seed": 7}))
    store.unclaim()
    assert not store.path.exists()
    with pytest.raises(TicketscopeError, match="not a run directory"):
        store.require()


def test_a_sweep_finds_its_complete_runs_by_digest(run):
    _, _, store = run
    sweep = store.path.parents[1]
    assert sweep_run_name("abc") == "runs/abc" and sweep_run_dir(sweep, "abc").path == store.path
    assert [r.path for r in complete_runs(sweep)] == [store.path]


def test_analysis_files_are_read_through_the_store(run):
    _, _, store = run
    assert store.analysis_info() is None and not store.has_analysis("rounds")
    with pytest.raises(TicketscopeError, match=r"no analysis table 'rounds'; run `ticketscope analyze"):
        store.analysis_table("rounds")
    store.write_analysis_table("rounds", pd.DataFrame({"round": [0, 1, 2]}))
    store.write_analysis_info({"rounds": 3})
    assert store.has_analysis("rounds") and store.analysis_table("rounds")["round"].tolist() == [0, 1, 2]
    assert store.analysis_info() == read_json(store.analysis_dir / "analysis.json") == {"rounds": 3}


def test_a_run_of_an_unloaded_plugin_rule_names_the_plugin_not_damage(run, tmp_path, monkeypatch):
    _, _, store = run
    copy = RunDir(tmp_path / "copy")
    shutil.copytree(store.path, copy.path)
    text = (copy.path / "config.yaml").read_text()
    (copy.path / "config.yaml").write_text(text.replace("method: imp", "method: my-plugin-rule"))
    monkeypatch.delenv("TICKETSCOPE_PLUGINS", raising=False)
    with pytest.raises(TicketscopeError, match="TICKETSCOPE_PLUGINS") as e:
        copy.rounds()
    assert not isinstance(e.value, DamagedRun) and "damaged" not in str(e.value)
