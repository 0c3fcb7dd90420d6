"""Weight snapshots at log-spaced steps (train.snapshots): stored and checksummed per round, the same
bits alone and in an ensemble, redone bit-identically after SIGKILL; analyzed over training time."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import SRC, TINY, kill_cli_run_after_round, merge
from ticketscope.analysis import analyze_run
from ticketscope.config import parse_config
from ticketscope.data import make_dataset
from ticketscope.errors import TicketscopeError
from ticketscope.io import load_tensors
from ticketscope.metrics import ipr, spatial_localization
from ticketscope.engine import snapshot_steps
from ticketscope.runs import RunDir, run_ensemble, run_experiment

SNAP = {"threads": 1, "train": {"snapshots": 5}, "prune": {"rounds": 1}}


def test_snapshot_steps():
    assert snapshot_steps(0, 100) == ()
    assert snapshot_steps(5, 10000) == (0, 1, 10, 100, 1000, 10000)
    assert snapshot_steps(1, 60) == (0, 60)
    steps = snapshot_steps(30, 50)  # duplicates of small steps merged
    assert steps[0] == 0 and steps[-1] == 50 and list(steps) == sorted(set(steps))
    assert snapshot_steps(5, 10000, start=20) == (20, 100, 1000, 10000)  # late rewinding: from the start step


@pytest.fixture(scope="module")
def snap_run(tmp_path_factory):
    cfg = parse_config(merge(TINY, SNAP))
    run = tmp_path_factory.mktemp("snap") / "r"
    run_experiment(cfg, run, progress=False)
    return cfg, run


def test_snapshots_are_stored_checksummed_and_consistent(snap_run):
    cfg, run = snap_run
    done = RunDir(run).rounds()
    assert len(done) == 2
    for summary in done:
        d = RunDir(run).round_dir(summary["round"])
        assert "snapshots.safetensors" in summary["files"]
        snaps = RunDir(run).snapshots(summary)
        assert tuple(snaps) == snapshot_steps(5, 60) == (0, 1, 3, 8, 22, 60)
        start = load_tensors(d / "start.safetensors")
        final = load_tensors(d / "final.safetensors")
        for k in final:
            assert torch.equal(snaps[0][k], start[k]) and torch.equal(snaps[60][k], final[k]), k
        assert not torch.equal(snaps[1]["layers.0.weight"], snaps[0]["layers.0.weight"])
        # pruned weights stay zero in every snapshot
        for state in snaps.values():
            assert torch.equal(state["layers.0.weight"] * (1 - state["layers.0.mask"]),
                               torch.zeros_like(state["layers.0.weight"]))
    # a corrupted snapshot file is named
    bad = run.parent / "bad"
    import shutil
    shutil.copytree(run, bad)
    path = RunDir(bad).round_dir(0) / "snapshots.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(TicketscopeError, match="snapshots.safetensors"):
        RunDir(bad).snapshots(RunDir(bad).rounds()[0])


def test_no_snapshots_by_default(tmp_path):
    run_experiment(parse_config(merge(TINY, {"prune": {"rounds": 0}})), tmp_path / "r", progress=False)
    assert "snapshots.safetensors" not in RunDir(tmp_path / "r").rounds()[0]["files"]
    assert not (RunDir(tmp_path / "r").round_dir(0) / "snapshots.safetensors").exists()


def test_snapshots_bit_identical_alone_and_in_an_ensemble(tmp_path, snap_run):
    cfg, alone = snap_run
    others = [merge(TINY, {**SNAP, "seed": 3, "data": {"gaussian_clone": True, "online": True}}),
              merge(TINY, {"threads": 1, "seed": 4, "prune": {"rounds": 1, "rewind": "step", "rewind_step": 5}}),
              merge(TINY, {**SNAP, "seed": 5, "prune": {"rounds": 1, "rewind": "step", "rewind_step": 5}})]
    items = [(cfg, tmp_path / "a")] + [(parse_config(c), tmp_path / f"o{i}") for i, c in enumerate(others)]
    run_ensemble(items, progress=False)
    for r in (0, 1):
        assert (RunDir(tmp_path / "a").round_dir(r) / "snapshots.safetensors").read_bytes() == \
            (RunDir(alone).round_dir(r) / "snapshots.safetensors").read_bytes()
    # late rewinding: round 1 starts at step 5 and snapshots from there
    assert tuple(RunDir(tmp_path / "o2").snapshots(RunDir(tmp_path / "o2").rounds()[1])) == (5, 8, 22, 60)
    solo = tmp_path / "solo"
    run_experiment(parse_config(others[2]), solo, progress=False)
    for r in (0, 1):
        assert (RunDir(solo).round_dir(r) / "snapshots.safetensors").read_bytes() == \
            (RunDir(tmp_path / "o2").round_dir(r) / "snapshots.safetensors").read_bytes()


def test_kill_and_resume_redoes_snapshots_bit_identically(tmp_path):
    update = {**SNAP, "train": {"steps": 300, "snapshots": 8}, "prune": {"rounds": 4}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(merge(TINY, update)))
    ref = tmp_path / "ref"
    run_experiment(parse_config(merge(TINY, update)), ref, progress=False)
    killed = tmp_path / "killed"
    cmd = kill_cli_run_after_round(path, killed)
    subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(SRC)}, check=True)
    for r in range(5):
        a, b = RunDir(ref).round_dir(r), RunDir(killed).round_dir(r)
        assert (a / "snapshots.safetensors").read_bytes() == (b / "snapshots.safetensors").read_bytes(), r
        ja, jb = (json.loads((x / "round.json").read_text()) for x in (a, b))
        assert ja["files"] == jb["files"]


def test_analysis_of_snapshots(snap_run):
    cfg, run = snap_run
    out = analyze_run(run, n_probe=256)
    df = pd.read_parquet(out / "snapshots.parquet")
    assert list(df.columns) == ["round", "step", "samples", "unit", "ipr", "localization"]
    assert len(df) == 2 * 6 * 16
    ds = make_dataset(cfg.data)
    for r in (0, 1):
        for step, state in RunDir(run).snapshots(RunDir(run).rounds()[r]).items():
            W = state["layers.0.weight"].double()
            rows = df[(df["round"] == r) & (df["step"] == step)].sort_values("unit")
            assert (rows["samples"] == step * cfg.train.batch_size).all()
            np.testing.assert_array_equal(rows["ipr"], ipr(W).numpy())  # the same bits as measured alone
            w2 = W.numpy() ** 2
            np.testing.assert_allclose(rows["ipr"], (w2 ** 2).sum(1) / w2.sum(1) ** 2, rtol=1e-10)
            np.testing.assert_array_equal(rows["localization"],
                                          spatial_localization(W, ds.input_shape, ds.torus).numpy())
    assert (out / "emergence.png").stat().st_size > 10_000
