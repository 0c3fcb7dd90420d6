"""Runs: IMP rounds, baselines, rewinding, determinism, resume after SIGKILL, integrity."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import SRC, TINY, kill_cli_run_after_round, merge
from ticketscope.config import load_config, load_run_config, parse_config
from ticketscope.errors import TicketscopeError
from ticketscope.io import exclusive_lock, load_tensors
from ticketscope.runs import RunDir, run_experiment
from ticketscope.seeding import generator


def _run(tmp_path: Path, name: str, update: dict | None = None):
    cfg = parse_config(merge(TINY, update or {}))
    return run_experiment(cfg, tmp_path / name, progress=False), tmp_path / name


def _tensors(run: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(run.glob("rounds/*/*.safetensors")):
        for k, v in load_tensors(f).items():
            out[f"{f.parent.name}/{f.name}/{k}"] = v
    return out


def _assert_same_run(a: Path, b: Path) -> None:
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    cols = ["round", "density", "train_loss", "train_accuracy", "test_loss", "test_accuracy"]
    import pandas as pd
    pd.testing.assert_frame_equal(pd.read_parquet(a / "metrics.parquet")[cols], pd.read_parquet(b / "metrics.parquet")[cols])


def test_imp_rounds_densities_and_rewind(tmp_path):
    table, run = _run(tmp_path, "imp")
    assert list(table["round"]) == [0, 1, 2, 3]
    for r, s in enumerate(RunDir(run).rounds()):
        n = 16 * 64  # first layer: 16 units x 64 pixels; the readout is not pruned
        assert abs(s["layer_density"]["layers.0"] * n - n * 0.8**r) <= 1
    rewind = load_tensors(RunDir(run).round_dir(0) / "rewind.safetensors")
    init = load_tensors(RunDir(run).round_dir(0) / "start.safetensors")
    assert torch.equal(rewind["layers.0.weight"], init["layers.0.weight"])  # rewind to init
    for r in (1, 2, 3):
        start = load_tensors(RunDir(run).round_dir(r) / "start.safetensors")
        final = load_tensors(RunDir(run).round_dir(r) / "final.safetensors")
        mask = start["layers.0.mask"]
        assert torch.equal(start["layers.0.weight"], rewind["layers.0.weight"] * mask)  # exact rewind
        assert torch.equal(start["layers.1.weight"], rewind["layers.1.weight"])  # readout unpruned
        assert torch.all(final["layers.0.weight"][mask == 0] == 0)
        prev = load_tensors(RunDir(run).round_dir(r - 1) / "final.safetensors")
        alive = prev["layers.0.mask"].bool()
        kept = mask.bool()
        # IMP keeps exactly the largest |w| among the previous round's survivors
        assert prev["layers.0.weight"].abs()[kept].min() >= prev["layers.0.weight"].abs()[alive & ~kept].max()


def test_late_rewinding_restores_step_k(tmp_path):
    _, run = _run(tmp_path, "late", {"prune": {"rewind": "step", "rewind_step": 20, "rounds": 1}})
    rewind = load_tensors(RunDir(run).round_dir(0) / "rewind.safetensors")
    init = load_tensors(RunDir(run).round_dir(0) / "start.safetensors")
    assert not torch.equal(rewind["layers.0.weight"], init["layers.0.weight"])
    start = load_tensors(RunDir(run).round_dir(1) / "start.safetensors")
    assert torch.equal(start["layers.0.weight"], rewind["layers.0.weight"] * start["layers.0.mask"])
    assert RunDir(run).rounds()[1]["steps"] == 60 - 20


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_baselines_match_imp_densities(tmp_path, scope):
    two = {"model": {"hidden": [16, 12]}, "prune": {"scope": scope, "rounds": 2, "n_probe": 256}}
    methods = ("imp", "oneshot", "random", "cavity")
    runs = {m: _run(tmp_path, m, merge(two, {"prune": {"method": m}}))[1] for m in methods}
    dens = {m: [s["layer_density"] for s in RunDir(r).rounds()] for m, r in runs.items()}
    if scope == "layerwise":
        assert dens["imp"] == dens["oneshot"] == dens["random"] == dens["cavity"]
    totals = {m: [s["density"] for s in RunDir(r).rounds()] for m, r in runs.items()}
    for m in runs:  # overall prunable density: (1-p)^r within one weight
        n = 16 * 64 + 12 * 16
        assert all(abs(d * n - n * 0.8**r) <= 1 for r, d in enumerate(totals[m]))
    # one-shot keeps the largest |w| of the *dense* trained network
    dense = load_tensors(RunDir(runs["oneshot"]).round_dir(0) / "final.safetensors")["layers.0.weight"].abs()
    mask = load_tensors(RunDir(runs["oneshot"]).round_dir(2) / "masks.safetensors")["layers.0"].bool()
    if scope == "layerwise":
        assert dense[mask].min() >= dense[~mask].max()
    # random pruning keeps the positions with the highest of its fixed seeded uniform scores: the masks are
    # nested, so round 2 keeps exactly the round(N 0.8^2) best scores of all N positions (layerwise)
    rmask = load_tensors(RunDir(runs["random"]).round_dir(2) / "masks.safetensors")["layers.0"].bool()
    if scope == "layerwise":
        cfg_seed = load_run_config(runs["random"]).seed
        u = torch.rand(rmask.shape, generator=generator(cfg_seed, "random-prune", "layers.0"))
        assert int(rmask.sum()) == round(rmask.numel() * 0.64)
        assert u[rmask].min() > u[~rmask].max()


def test_seed_determinism(tmp_path):
    _, a = _run(tmp_path, "a", {"prune": {"rounds": 1}})
    _, b = _run(tmp_path, "b", {"prune": {"rounds": 1}})
    _assert_same_run(a, b)
    _, c = _run(tmp_path, "c", {"prune": {"rounds": 1}, "seed": 1})
    assert not torch.equal(_tensors(a)["001/final.safetensors/layers.0.weight"], _tensors(c)["001/final.safetensors/layers.0.weight"])


def test_online_training_and_stop_conditions(tmp_path):
    table, run = _run(tmp_path, "online", {"data": {"online": True}, "prune": {"rounds": 10, "target_density": 0.6}})
    assert list(table["round"]) == [0, 1, 2, 3]  # 0.8^3 = 0.512 <= 0.6 stops
    table, run = _run(tmp_path, "conn", {"model": {"hidden": [4]}, "data": {"L": 4},
                                         "prune": {"rounds": 30, "min_connected": 1.0}})
    import json
    reason = json.loads((run / "run.json").read_text())["stop_reason"]
    assert "min_connected" in reason and len(table) < 31


@pytest.mark.parametrize("method", ["imp", "cavity"])
def test_kill_and_resume_is_bit_identical(tmp_path, method):
    update = {"train": {"steps": 150}, "prune": {"rounds": 4, "method": method, "n_probe": 512}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(merge(TINY, update)))
    _, ref = _run(tmp_path, "ref", update)
    killed = tmp_path / "killed"
    cmd = kill_cli_run_after_round(path, killed)
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    _assert_same_run(ref, killed)


def test_second_process_is_refused(tmp_path):
    with exclusive_lock(tmp_path / "busy"):
        with pytest.raises(TicketscopeError, match="another process"):
            _run(tmp_path, "busy")


def test_corrupt_checkpoint_is_recomputed_exactly(tmp_path):
    """Killed during round 1 with round 0's final weights then corrupted: the run recomputes round 0 and
    round 1, bit-identical to an untouched run."""
    _, ref = _run(tmp_path, "ref", {"prune": {"rounds": 1}})
    _, run = _run(tmp_path, "c", {"prune": {"rounds": 1}})
    (run / "run.json").unlink()
    (RunDir(run).round_dir(1) / "round.json").unlink()
    final = RunDir(run).round_dir(0) / "final.safetensors"
    data = bytearray(final.read_bytes())
    data[-3] ^= 0xFF
    final.write_bytes(bytes(data))
    with pytest.raises(TicketscopeError, match=r"000/final.safetensors is corrupt.*repair it with `ticketscope run"):
        RunDir(run).rounds()
    run_experiment(load_config(run / "config.yaml"), run, progress=False)
    _assert_same_run(ref, run)


def test_different_config_in_same_directory_is_refused(tmp_path):
    _run(tmp_path, "x", {"prune": {"rounds": 1}})
    with pytest.raises(TicketscopeError, match="different config"):
        _run(tmp_path, "x", {"prune": {"rounds": 2}})


def test_config_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: -1\nmodel:\n  activation: sigmoid\n")
    out = subprocess.run([sys.executable, "-m", "ticketscope.cli", "run", str(bad), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": "src"})
    assert out.returncode == 2
    assert "train.lr" in out.stderr and "model.activation" in out.stderr and "Traceback" not in out.stderr
    with pytest.raises(TicketscopeError, match="prune.layers"):
        parse_config({"prune": {"layers": [5]}})
    with pytest.raises(TicketscopeError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(TicketscopeError, match="mapping"):
        load_config(tmp_path / "list.yaml")


def _cli_run(tmp_path: Path, text: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    config, out = tmp_path / "cfg.yaml", tmp_path / "out"
    config.write_text(text)
    res = subprocess.run([sys.executable, "-m", "ticketscope.cli", "run", str(config), "--out", str(out), "--quiet"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(SRC)})
    return res, config, out


def test_an_empty_config_file_is_refused_and_an_explicit_empty_mapping_means_every_default(tmp_path):
    """An empty file used to run the full default experiment; `{}` says so on purpose."""
    res, config, out = _cli_run(tmp_path, "# my run, some day\n\n")
    assert res.returncode == 2 and not out.exists(), res.stderr
    assert res.stderr.strip() == (f"error: config file {config} is empty; it must hold a mapping of config fields "
                                  "(`ticketscope config` lists them); write {} to run with every default")
    for text in ("", "  \n", "---\n"):
        config.write_text(text)
        with pytest.raises(TicketscopeError, match="is empty; it must hold a mapping of config fields"):
            load_config(config)
    config.write_text("null\n")
    with pytest.raises(TicketscopeError, match=r"must hold a mapping of config fields .*, not null$"):
        load_config(config)
    config.write_text("{}\n")
    assert load_config(config) == parse_config({})


def test_a_duplicate_key_in_a_config_file_is_refused_with_its_line(tmp_path):
    """It used to be kept silently, the last one winning."""
    text = yaml.safe_dump(TINY, sort_keys=False).replace("train:\n", "train:\n  steps: 5\n", 1)
    line = text.splitlines().index("train:") + 2
    res, config, out = _cli_run(tmp_path, text)
    assert res.returncode == 2 and not out.exists(), res.stderr
    first = text.splitlines().index("  steps: 60") + 1
    assert res.stderr.strip() == (f"error: config file {config}, line {first}: key 'steps' is given twice in one "
                                  f"mapping (first on line {line}); keep one")
    config.write_text("seed: 1\nprune: {rounds: 1}\nseed: 2\n")
    with pytest.raises(TicketscopeError, match=r"line 3: key 'seed' is given twice in one mapping \(first on line 1\)"):
        load_config(config)


def test_busy_run_inside_an_ensemble_is_reported_and_the_others_finish(tmp_path):
    from ticketscope.runs import run_ensemble

    cfgs = [parse_config(merge(TINY, {"seed": s, "threads": 1, "prune": {"rounds": 1}})) for s in (0, 1)]
    with exclusive_lock(tmp_path / "busy"):
        out = run_ensemble([(cfgs[0], tmp_path / "busy"), (cfgs[1], tmp_path / "free")], progress=False,
                           errors="return")
    assert isinstance(out[0], TicketscopeError) and "another process" in str(out[0])
    assert list(out[1]["round"]) == [0, 1] and (tmp_path / "free" / "run.json").exists()
    # and the busy one, run later on its own, matches what it would have been inside the ensemble
    again = run_ensemble([(cfgs[0], tmp_path / "busy"), (cfgs[1], tmp_path / "free")], progress=False)
    assert list(again[0]["round"]) == [0, 1]


@pytest.mark.parametrize("update", [{"device": "cuda"}, {"data": {"name": "mnist", "data_dir": "/nonexistent"}}])
def test_a_run_that_cannot_start_writes_nothing(tmp_path, update):
    """No GPU, or a missing data set: one clear error and no directory, so the corrected command on the same
    --out is not refused as 'a different config'."""
    if update.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(TicketscopeError, match="cuda|ticketscope data download mnist"):
        run_experiment(parse_config(merge(TINY, update)), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()
    _run(tmp_path, "r", {"prune": {"rounds": 1}})  # the corrected config claims the same directory
