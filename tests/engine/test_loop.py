"""The loop: a run's bits never depend on its neighbours (groups of 1, 3 and 8 mixing pruning
methods and data sets); runs stop and resume at different rounds; SIGKILL of a real ensemble
process, then the same command; pruned weights stay zero; divergence is caught per run; hooks."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import TINY, merge
from helpers import TrainHooks, train
from ticketscope.config import ModelConfig, TrainConfig, parse_config
from ticketscope.engine import BatchSource, train_ensemble
from ticketscope.errors import TicketscopeError
from ticketscope.models import FCN
from ticketscope.runs import run_ensemble, run_experiment

from .mix import MIX, make_member, mix_config

SRC = Path(__file__).resolve().parents[2] / "src"


def _files(run: Path) -> dict[str, bytes]:
    return {str(f.relative_to(run)): f.read_bytes() for f in sorted(run.glob("rounds/*/*.safetensors"))}


def _assert_same_run(a: Path, b: Path) -> None:
    """Every round's checkpoints byte for byte, histories, summaries (but the timing), run.json."""
    fa, fb = _files(a), _files(b)
    assert fa.keys() == fb.keys() and fa, (a, b)
    for name in fa:
        assert fa[name] == fb[name], f"{name} differs between {a} and {b}"
    for d in sorted(a.glob("rounds/*")):
        pd.testing.assert_frame_equal(pd.read_parquet(d / "history.parquet"),
                                      pd.read_parquet(b / d.relative_to(a) / "history.parquet"))
        ja, jb = (json.loads((x / "round.json").read_text()) for x in (d, b / d.relative_to(a)))
        ja.pop("train_time_s"), jb.pop("train_time_s")
        assert ja == jb
    ma, mb = (pd.read_parquet(x / "metrics.parquet").drop(columns="train_time_s") for x in (a, b))
    pd.testing.assert_frame_equal(ma, mb)
    assert json.loads((a / "run.json").read_text()) == json.loads((b / "run.json").read_text())


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> list[Path]:
    """Each of the MIX runs trained on its own (an ensemble of one)."""
    root = tmp_path_factory.mktemp("alone")
    for i in range(len(MIX)):
        run_experiment(mix_config(i), root / f"r{i}", progress=False)
    return [root / f"r{i}" for i in range(len(MIX))]


@pytest.mark.parametrize("group", [[1, 2, 3], list(range(8))], ids=["3 runs", "8 runs"])
def test_run_is_bit_identical_alone_and_in_ensembles(tmp_path, alone, group):
    items = [(mix_config(i), tmp_path / f"r{i}") for i in group]
    tables = run_ensemble(items, progress=False)
    for i, table in zip(group, tables):
        _assert_same_run(alone[i], tmp_path / f"r{i}")
        assert list(table["round"]) == list(pd.read_parquet(alone[i] / "metrics.parquet")["round"])
    if len(group) == 8:  # the runs stopped at different rounds inside one ensemble
        stops = {i: json.loads((tmp_path / f"r{i}" / "run.json").read_text())["rounds"] for i in group}
        assert stops[0] == 4 and stops[4] == 2 and stops[5] == 3 and stops[7] == 3


def test_resume_with_runs_at_different_rounds(tmp_path, alone):
    """Killed ensembles leave runs at different rounds (and half-written rounds): resuming trains
    each run's own next round, side by side, and ends bit-identical."""
    group = [0, 2, 3, 6]
    items = [(mix_config(i), tmp_path / f"r{i}") for i in group]
    run_ensemble(items, progress=False)
    for i, keep in zip(group, (1, 2, 0, 3)):  # keep the first `keep` rounds of each run
        run = tmp_path / f"r{i}"
        (run / "run.json").unlink()
        for d in sorted(run.glob("rounds/*"))[keep:]:
            (d / "round.json").unlink()  # as if killed during that round ...
            (d / "final.safetensors").unlink(missing_ok=True)  # ... before its last files were written
    run_ensemble(items, progress=False)
    for i in group:
        _assert_same_run(alone[i], tmp_path / f"r{i}")


def test_incompatible_runs_train_in_separate_ensembles(tmp_path):
    cfgs = [mix_config(0, prune={"rounds": 1}), mix_config(1, prune={"rounds": 1}, model={"hidden": [12]}),
            mix_config(2, prune={"rounds": 1}, train={"lr": 0.02})]
    run_ensemble([(c, tmp_path / "ens" / str(i)) for i, c in enumerate(cfgs)], progress=False)
    for i, c in enumerate(cfgs):
        run_experiment(c, tmp_path / "alone" / str(i), progress=False)
        _assert_same_run(tmp_path / "alone" / str(i), tmp_path / "ens" / str(i))


def test_a_failing_run_does_not_stop_the_others(tmp_path):
    (tmp_path / "taken").mkdir()
    run_experiment(mix_config(0, prune={"rounds": 0}), tmp_path / "taken", progress=False)
    items = [(mix_config(1, prune={"rounds": 1}), tmp_path / "a"), (mix_config(2, prune={"rounds": 1}), tmp_path / "taken")]
    out = run_ensemble(items, progress=False, errors="return")
    assert isinstance(out[0], pd.DataFrame) and len(out[0]) == 2
    assert isinstance(out[1], TicketscopeError) and "different config" in str(out[1])
    with pytest.raises(TicketscopeError, match=r"1 of 2 runs failed:\n.*taken.*different config"):
        run_ensemble(items, progress=False)
    with pytest.raises(TicketscopeError, match="listed twice"):
        run_ensemble([items[0], items[0]], progress=False)


# --- one FCN through the adapter ------------------------------------------------------------------

def _setup(seed=0, n=256, d=16):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    y = (X[:, 0] * X[:, 1] > 0).long()
    model = FCN(d, 2, ModelConfig(hidden=(12, 8), batchnorm=True))
    model.reset_parameters(g)
    masks = {n_: (torch.rand(m.shape, generator=g) < 0.5).float() for n_, m in model.masks().items()}
    model.set_masks(masks)
    return model, BatchSource(32, torch.device("cpu"), 0, X=X, y=y), masks


@pytest.mark.parametrize("opt", [
    dict(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=1e-2),
    dict(optimizer="adam", weight_decay=1e-2),
])
def test_pruned_weights_exactly_zero_after_every_step(opt):
    model, batches, masks = _setup()
    before = {n: w.clone() for n, w in model.weights().items()}

    def check(step):
        for n, w in model.weights().items():
            assert torch.all(w[masks[n] == 0] == 0.0), f"{n} pruned weight nonzero after step {step}"

    train(model, batches, TrainConfig(lr=0.1, steps=40, **opt), 0, 40, 0, TrainHooks(on_step=check))
    for n, w in model.weights().items():  # and the surviving weights did train
        assert not torch.equal(w[masks[n] == 1], before[n][masks[n] == 1])


def test_same_seed_same_training_bits():
    runs = []
    for _ in range(2):
        model, batches, _ = _setup()
        train(model, batches, TrainConfig(steps=20), 0, 20, 0)
        runs.append(torch.cat([w.flatten() for w in model.weights().values()]))
    assert torch.equal(runs[0], runs[1])


def test_divergence_names_round_and_step():
    model, batches, _ = _setup()
    with torch.no_grad():
        model.layers[0].weight.mul_(float("nan"))
    with pytest.raises(TicketscopeError, match=r"round 3 at step 5"):
        train(model, batches, TrainConfig(steps=10), 5, 10, 3)


def test_divergence_names_the_run_and_spares_the_others():
    model, train_cfg = ModelConfig(hidden=(8,)), TrainConfig(steps=20, batch_size=16, lr=0.05)
    members = [make_member(i, 6, 16, model, train_cfg, online=False, clone=False) for i in range(3)]
    members[1].state["layers.0.weight"][0, 0] = float("inf")
    members[1].round = 4
    alone = [train_ensemble([m], 0, 20) for m in members]
    result = train_ensemble(members, 0, 20)
    assert result.states[1] is None and alone[1].states[0] is None
    assert re.search(r"round 4 at step 0 \(member 1\)", str(result.errors[1]))
    for i in (0, 2):
        assert result.errors[i] is None
        assert all(torch.equal(v, result.states[i][k]) for k, v in alone[i].states[0].items())


def test_hooks_fire_at_their_steps_with_that_steps_state():
    """``on_rewind_point`` at ``rewind_at``, ``on_snapshot`` at each of ``snapshot_steps`` (the
    budget: at the end), ``on_eval`` every ``eval_every``; each sees the state the run has then."""
    model_cfg = ModelConfig(hidden=(8,))
    train_cfg = TrainConfig(steps=20, batch_size=16, lr=0.05, schedule="constant", eval_every=8)
    member = make_member(0, 6, 16, model_cfg, train_cfg, online=False, clone=False)
    seen: dict[str, list[int]] = {"rewind": [], "snapshot": [], "eval": [], "step": []}
    states: dict[int, dict[str, torch.Tensor]] = {}
    member.rewind_at, member.on_rewind_point = 5, lambda s, st: seen["rewind"].append(s)
    member.snapshot_steps = (0, 3, 20, 99)
    member.on_snapshot = lambda s, st: (seen["snapshot"].append(s), states.__setitem__(s, st))
    member.on_eval = lambda s, st: seen["eval"].append(s)
    member.on_step = lambda s, get: seen["step"].append(s)
    result = train_ensemble([member], 0, 20)
    assert seen == {"rewind": [5], "snapshot": [0, 3, 20], "eval": [8, 16], "step": list(range(20))}
    assert all(torch.equal(v, member.state[k]) for k, v in states[0].items())
    assert all(torch.equal(v, result.states[0][k]) for k, v in states[20].items())
    three = train_ensemble([make_member(0, 6, 16, model_cfg, train_cfg, online=False, clone=False)], 0, 3)
    assert all(torch.equal(v, three.states[0][k]) for k, v in states[3].items())  # (constant lr)


# --- SIGKILL ------------------------------------------------------------------------------------

SCRIPT = """
import sys
from pathlib import Path
import yaml
from ticketscope.config import parse_config
from ticketscope.runs import run_ensemble
spec = yaml.safe_load(Path(sys.argv[1]).read_text())
run_ensemble([(parse_config(c), Path(d)) for c, d in spec], progress=False)
"""


def test_sigkill_then_same_command_is_bit_identical(tmp_path):
    """A real process training an ensemble is SIGKILLed at a random moment, and the same command
    killed again at a random moment after it made progress; then the same command finishes every
    run bit-identical to uninterrupted training."""
    update = {"threads": 1, "train": {"steps": 2000}}
    cfgs = [merge(merge(TINY, MIX[i]), update) for i in (0, 2, 3, 6)]
    for c in cfgs:
        c["prune"]["rounds"] = 4
    runs = [tmp_path / "killed" / f"r{i}" for i in range(len(cfgs))]
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump([[c, str(d)] for c, d in zip(cfgs, runs)]))
    (tmp_path / "ensemble.py").write_text(SCRIPT)
    cmd = [sys.executable, str(tmp_path / "ensemble.py"), str(tmp_path / "spec.yaml")]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    seed = random.randrange(10**6)
    rng = random.Random(seed)

    def rounds_done() -> set[Path]:
        return set(tmp_path.glob("killed/*/rounds/*/round.json"))

    for kill, window in enumerate((0.6, 0.3)):
        before = rounds_done()
        proc = subprocess.Popen(cmd, env=env)
        deadline = time.time() + 180
        while not rounds_done() - before:  # training under way (a round finished), then a random moment
            assert time.time() < deadline, f"no progress before kill {kill} (seed {seed})"
            if proc.poll() is not None:
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, window))
        if proc.poll() is not None:
            assert kill > 0, f"the ensemble ended before it could be killed (seed {seed}); lengthen the runs"
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    subprocess.run(cmd, env=env, check=True)
    run_ensemble([(parse_config(c), tmp_path / "ref" / f"r{i}") for i, c in enumerate(cfgs)], progress=False)
    for i, d in enumerate(runs):
        _assert_same_run(tmp_path / "ref" / f"r{i}", d)


@pytest.mark.slow
def test_train_time_excludes_one_off_imports(tmp_path):
    """Round 0's train_time_s in a fresh process is not inflated by torch._dynamo's import."""
    cfg = merge(TINY, {"threads": 1, "train": {"steps": 200}, "prune": {"rounds": 1}})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    subprocess.run([sys.executable, "-m", "ticketscope.cli", "run", str(tmp_path / "c.yaml"), "--out",
                    str(tmp_path / "run"), "--quiet"], env=env, check=True)
    times = pd.read_parquet(tmp_path / "run" / "metrics.parquet")["train_time_s"].tolist()
    assert times[0] < 3 * times[1] + 0.2, times
