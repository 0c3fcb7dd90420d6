"""Ensemble training: hand-written backward = autograd; a run's bits never depend on its
neighbours (groups of 1, 3 and 8 mixing pruning methods and data sets, any thread count); runs
stop and resume at different rounds; SIGKILL of a real ensemble process, then the same command."""

from __future__ import annotations

import itertools
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
from ticketscope.config import ModelConfig, TrainConfig, parse_config
from ticketscope.data import NLGPTask
from ticketscope.ensemble import Member, ensemble_key, plan_ensembles, run_memory_bytes, train_ensemble
from ticketscope.errors import TicketscopeError
from ticketscope.models import FCN
from ticketscope.runs import run_ensemble, run_experiment
from ticketscope.training import BatchSource, loss_fn

# Eight runs that share one ensemble: every pruning method, NLGP and its clone, online and fixed
# training sets of different sizes, late rewinding (a second cohort per round), different stop
# rounds (prune.rounds, target_density), evaluation during training.
MIX = [
    {"seed": 0, "prune": {"method": "imp"}},
    {"seed": 1, "data": {"gaussian_clone": True}, "prune": {"method": "oneshot"}},
    {"seed": 2, "data": {"online": True}, "prune": {"method": "random"}},
    {"seed": 3, "data": {"gaussian_clone": True, "online": True}, "prune": {"method": "cavity", "n_probe": 256}},
    {"seed": 4, "data": {"gaussian_clone": True, "online": True}, "prune": {"method": "imp", "rounds": 1}},
    {"seed": 5, "prune": {"method": "random", "target_density": 0.7}},
    {"seed": 6, "prune": {"method": "imp", "rewind": "step", "rewind_step": 20}},
    {"seed": 7, "data": {"n_train": 768}, "train": {"eval_every": 20},
     "prune": {"method": "cavity", "n_probe": 256, "rounds": 2}},
]


def _cfg(i: int, **extra):
    # one torch thread: OpenMP threads stall each other on a shared machine (test_nlgp.py)
    return parse_config(merge(merge(merge(TINY, {"threads": 1}), MIX[i]), extra))


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
        run_experiment(_cfg(i), root / f"r{i}", progress=False)
    return [root / f"r{i}" for i in range(len(MIX))]


def test_mix_shares_one_ensemble_key():
    assert len({ensemble_key(_cfg(i)) for i in range(len(MIX))}) == 1
    base = ensemble_key(_cfg(0))
    for other in ({"model": {"hidden": [12]}}, {"train": {"lr": 0.01}}, {"train": {"batch_size": 32}},
                  {"model": {"activation": "tanh"}}, {"data": {"L": 6}}, {"threads": 2}):
        assert ensemble_key(_cfg(0, **other)) != base, other
    for same in ({"model": {"init": "glorot"}}, {"train": {"eval_every": 7, "n_eval_train": 128}},
                 {"data": {"gain": 9.0, "xis": [2.0, 4.0]}}, {"prune": {"fraction": 0.5}}):
        assert ensemble_key(_cfg(0, **same)) == base, same


@pytest.mark.parametrize("group", [[1, 2, 3], list(range(8))], ids=["3 runs", "8 runs"])
def test_run_is_bit_identical_alone_and_in_ensembles(tmp_path, alone, group):
    items = [(_cfg(i), tmp_path / f"r{i}") for i in group]
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
    items = [(_cfg(i), tmp_path / f"r{i}") for i in group]
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
    cfgs = [_cfg(0, prune={"rounds": 1}), _cfg(1, prune={"rounds": 1}, model={"hidden": [12]}),
            _cfg(2, prune={"rounds": 1}, train={"lr": 0.02})]
    run_ensemble([(c, tmp_path / "ens" / str(i)) for i, c in enumerate(cfgs)], progress=False)
    for i, c in enumerate(cfgs):
        run_experiment(c, tmp_path / "alone" / str(i), progress=False)
        _assert_same_run(tmp_path / "alone" / str(i), tmp_path / "ens" / str(i))


def test_a_failing_run_does_not_stop_the_others(tmp_path):
    (tmp_path / "taken").mkdir()
    run_experiment(_cfg(0, prune={"rounds": 0}), tmp_path / "taken", progress=False)
    items = [(_cfg(1, prune={"rounds": 1}), tmp_path / "a"), (_cfg(2, prune={"rounds": 1}), tmp_path / "taken")]
    out = run_ensemble(items, progress=False, errors="return")
    assert isinstance(out[0], pd.DataFrame) and len(out[0]) == 2
    assert isinstance(out[1], TicketscopeError) and "different config" in str(out[1])
    with pytest.raises(TicketscopeError, match=r"1 of 2 runs failed:\n.*taken.*different config"):
        run_ensemble(items, progress=False)
    with pytest.raises(TicketscopeError, match="listed twice"):
        run_ensemble([items[0], items[0]], progress=False)


# --- the engine ---------------------------------------------------------------------------------

def _member(seed: int, D: int, B: int, model: ModelConfig, train: TrainConfig, online: bool, clone: bool,
            keep: float = 0.6) -> Member:
    g = torch.Generator().manual_seed(seed)
    ds = NLGPTask(L=D, dim=1, xis=(1.0, 3.0), gain=3.0, gaussian_clone=clone)
    if online:
        batches = BatchSource(B, torch.device("cpu"), 100 + seed, dataset=ds)
    else:
        X, y = ds.train(B * 4 + seed, seed=seed)
        batches = BatchSource(B, torch.device("cpu"), seed, X=X, y=y)
    net = FCN(D, 2, model)
    net.reset_parameters(g)
    net.set_masks({n: (torch.rand(m.shape, generator=g) < keep).float() for n, m in net.masks().items()})
    return Member(model, train, {k: v.clone() for k, v in net.state_dict().items()}, batches, label=f"member {seed}")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(37, 13, (7,), "relu", False, "sgd"), (16, 9, (11, 5), "erf", True, "adam"),
                                   (64, 8, (16,), "tanh", True, "sgd")], ids=["odd", "deep-bn-adam", "tanh-bn"])
def test_engine_bits_do_not_depend_on_the_ensemble(shape, threads):
    """Odd shapes (no slice 64-byte aligned by accident), batch norm, Adam, online and fixed data:
    each member alone, in a group of 3 and of 8 gets the same bits, at 1 and at 2 threads."""
    B, D, hidden, act, bn, opt = shape
    model = ModelConfig(hidden=hidden, activation=act, batchnorm=bn)
    train = TrainConfig(steps=12, batch_size=B, optimizer=opt, lr=0.01, momentum=0.9, nesterov=True)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        members = [_member(i, D, B, model, train, online=i % 3 == 0, clone=i % 2 == 1) for i in range(8)]
        alone = [train_ensemble([m], 0, 12).states[0] for m in members]
        for group in ([4, 1, 6], list(range(8))):
            got = train_ensemble([members[i] for i in group], 0, 12).states
            for i, state in zip(group, got):
                for k, v in alone[i].items():
                    assert torch.equal(v, state[k]), (group, i, k)
    finally:
        torch.set_num_threads(before)


def test_members_reading_one_stream_share_its_draws(monkeypatch):
    """Members with one data set object and one online seed (the pruning methods of one seed) draw
    each chunk once between them, and still get exactly their bits alone."""
    B, D, model = 32, 16, ModelConfig(hidden=(8,))
    train = TrainConfig(steps=40, batch_size=B, lr=0.05, momentum=0.9)
    ds = NLGPTask(L=D, dim=1, xis=(1.0, 3.0), gain=3.0)
    members = []
    for seed, stream_seed in ((0, 7), (1, 7), (2, 8), (3, 7)):  # members 0, 1, 3 read stream 7
        m = _member(seed, D, B, model, train, online=True, clone=False)
        m.batches = BatchSource(B, torch.device("cpu"), stream_seed, dataset=ds)
        members.append(m)
    alone = [train_ensemble([m], 0, 40).states[0] for m in members]
    calls: list[tuple[int, int]] = []
    sample = NLGPTask.sample
    monkeypatch.setattr(NLGPTask, "sample", lambda self, n, seed=0, offset=0: (
        calls.append((seed, offset)), sample(self, n, seed, offset))[1])
    result = train_ensemble(members, 0, 40)
    chunks = -(-40 // result.extra["chunk_steps"])
    assert sorted(calls) == sorted({(s, o) for s, o in calls}) and len(calls) == 2 * chunks
    for m, a, got in zip(members, alone, result.states):
        assert all(torch.equal(v, got[k]) for k, v in a.items()), m.label
    assert not torch.equal(result.states[0]["layers.0.weight"], result.states[1]["layers.0.weight"])


@pytest.mark.parametrize("act,bias,bn,loss,hidden", [
    (a, b, n, l, h) for a, b, n, l, h in itertools.product(["relu", "tanh", "erf"], [True, False], [False, True],
                                                           ["ce", "mse"], [(12,), (12, 7)])
    if (b or not n) and (h == (12,) or l == "ce")])
def test_hand_written_backward_matches_autograd(act, bias, bn, loss, hidden):
    g = torch.Generator().manual_seed(0)
    D, C, B = 10, 3, 32
    X, y = torch.randn(256, D, generator=g), torch.randint(0, C, (256,), generator=g)
    model_cfg = ModelConfig(hidden=hidden, activation=act, bias=bias, batchnorm=bn)
    net = FCN(D, C, model_cfg)
    net.reset_parameters(g)
    with torch.no_grad():
        for layer in net.layers:
            if layer.bias is not None:
                layer.bias.normal_(generator=g)
    net.set_masks({n: (torch.rand(m.shape, generator=g) < 0.7).float() for n, m in net.masks().items()})
    train = TrainConfig(lr=0.1, momentum=0.0, schedule="constant", steps=2, batch_size=B, loss=loss)
    batches = BatchSource(B, torch.device("cpu"), 0, X=X, y=y)
    got = train_ensemble([Member(model_cfg, train, {k: v.clone() for k, v in net.state_dict().items()}, batches)],
                         0, 2).states[0]
    net.train()
    for step in range(2):  # the same two SGD steps through autograd
        net.zero_grad()
        loss_fn(net(batches.batch(step)[0]), batches.batch(step)[1], loss).backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= 0.1 * p.grad
            net.apply_masks()
    for k, v in net.state_dict().items():
        torch.testing.assert_close(got[k], v, atol=2e-6, rtol=1e-5, msg=k)


def test_divergence_names_the_run_and_spares_the_others():
    model, train = ModelConfig(hidden=(8,)), TrainConfig(steps=20, batch_size=16, lr=0.05)
    members = [_member(i, 6, 16, model, train, online=False, clone=False) for i in range(3)]
    members[1].state["layers.0.weight"][0, 0] = float("inf")
    members[1].round = 4
    alone = [train_ensemble([m], 0, 20) for m in members]
    result = train_ensemble(members, 0, 20)
    assert result.states[1] is None and alone[1].states[0] is None
    assert re.search(r"round 4 at step 0 \(member 1\)", str(result.errors[1]))
    for i in (0, 2):
        assert result.errors[i] is None
        assert all(torch.equal(v, result.states[i][k]) for k, v in alone[i].states[0].items())


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
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
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
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    subprocess.run([sys.executable, "-m", "ticketscope.cli", "run", str(tmp_path / "c.yaml"), "--out",
                    str(tmp_path / "run"), "--quiet"], env=env, check=True)
    times = pd.read_parquet(tmp_path / "run" / "metrics.parquet")["train_time_s"].tolist()
    assert times[0] < 3 * times[1] + 0.2, times


def test_plan_ensembles_groups_by_key_and_caps_size():
    cfgs = [_cfg(i) for i in range(8)] + [_cfg(0, model={"hidden": [12]}), _cfg(1, train={"lr": 0.3})]
    assert plan_ensembles(cfgs) == [list(range(8)), [8], [9]]
    assert plan_ensembles(cfgs, max_runs=3) == [[0, 1, 2], [3, 4, 5], [6, 7], [8], [9]]
    per_run = run_memory_bytes(cfgs[0])
    assert 0 < per_run < 2**24
    assert plan_ensembles(cfgs[:8], max_bytes=2 * per_run + 1) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    # a grid of methods x seeds: the runs of one seed (one stream) are cut into one ensemble
    grid = [_cfg(2, seed=seed, prune={"method": m}) for m in ("imp", "oneshot", "random") for seed in (0, 1)]
    assert plan_ensembles(grid, max_runs=3) == [[0, 2, 4], [1, 3, 5]]
