"""Model options for Ingrosso & Goldt's committee machine (meanfield scaling, fixed readout,
alternating biases): validated config, FCN init and forward, and the ensemble engine's hand-written
gradients against autograd on the FCN."""

from __future__ import annotations

import hashlib
import itertools
import json

import pytest
import torch

from conftest import TINY, merge
from ticketscope.config import ModelConfig, TrainConfig, parse_config
from ticketscope.ensemble import Member, StackedFCN, ensemble_key, train_ensemble
from ticketscope.errors import TicketscopeError
from ticketscope.models import FCN
from ticketscope.training import BatchSource, loss_fn


def test_defaults_keep_digests_and_options_are_validated():
    cfg = parse_config(TINY)
    assert cfg.model.scaling == "standard" and cfg.model.readout == "trained" and cfg.model.bias_init == "zero"
    assert cfg.train.snapshots == 0
    # the digest of a config at the defaults leaves the later fields out (existing sweep directories)
    dumped = cfg.model_dump(mode="json", exclude={"name": True, "threads": True, "data": {"data_dir"}})
    for k in ("scaling", "readout", "readout_value", "bias_init", "bias_value"):
        del dumped["model"][k]
    del dumped["train"]["snapshots"]
    del dumped["data"]["path"], dumped["data"]["params"], dumped["prune"]["params"]
    blob = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
    assert cfg.digest() == hashlib.sha256(blob.encode()).hexdigest()[:12] == "aed9903f44ff"  # pinned
    other = parse_config(merge(TINY, {"model": {"scaling": "meanfield"}}))
    assert other.digest() != cfg.digest()
    assert parse_config(merge(TINY, {"train": {"snapshots": 4}})).digest() != cfg.digest()
    # snapshots never enter an update: runs differing in them share an ensemble
    assert ensemble_key(parse_config(merge(TINY, {"train": {"snapshots": 4}}))) == ensemble_key(cfg)
    with pytest.raises(TicketscopeError, match="model.scaling"):
        parse_config(merge(TINY, {"model": {"scaling": "ntk"}}))
    with pytest.raises(TicketscopeError, match="bias: true"):
        parse_config(merge(TINY, {"model": {"bias": False, "bias_init": "alternating"}}))
    with pytest.raises(TicketscopeError, match="two-class"):
        parse_config(merge(TINY, {"model": {"readout": "fixed"}, "data": {"xis": [1.0, 2.0, 3.0]}}))
    with pytest.raises(TicketscopeError, match="never pruned"):
        parse_config(merge(TINY, {"model": {"readout": "fixed"}, "prune": {"layers": [0, 1]}}))
    with pytest.raises(TicketscopeError, match="train.snapshots"):
        parse_config(merge(TINY, {"train": {"snapshots": -1}}))


def test_fcn_options():
    cfg = ModelConfig(hidden=(6,), activation="erf", scaling="meanfield", readout="fixed", readout_value=2.0,
                      bias_init="alternating", bias_value=0.5, init="normal", init_std=0.1)
    net = FCN(16, 2, cfg)
    net.reset_parameters(torch.Generator().manual_seed(0))
    b = net.layers[0].bias
    assert torch.equal(b, torch.tensor([2.0, -2.0] * 3))  # 0.5 in pre-activation units = 0.5 * sqrt(16)
    assert torch.allclose(net.layers[1].weight, torch.tensor([[2 / 6] * 6, [-2 / 6] * 6]))
    assert torch.equal(net.layers[1].bias, torch.zeros(2))
    assert not any(p.requires_grad for p in net.layers[1].parameters())
    # hidden weights are those of a trained readout with the same seed
    ref = FCN(16, 2, ModelConfig(hidden=(6,), activation="erf", init="normal", init_std=0.1))
    ref.reset_parameters(torch.Generator().manual_seed(0))
    assert torch.equal(ref.layers[0].weight, net.layers[0].weight)
    x = torch.randn(5, 16)
    phi = torch.erf((x @ net.layers[0].weight.T + b) / 4.0).mean(1) * 2.0
    torch.testing.assert_close(net(x), torch.stack([phi, -phi], 1))
    with pytest.raises(ValueError, match="two classes"):
        FCN(16, 3, cfg)


CASES = [
    dict(zip(("scaling", "readout", "bias_init", "activation", "loss", "hidden", "bn"), c))
    for c in itertools.product(["standard", "meanfield"], ["trained", "fixed"], ["zero", "alternating"],
                               ["erf", "relu"], ["mse", "ce"], [(12,), (12, 7)], [False, True])
    if c[0] == "meanfield" or c[1] == "fixed" or c[2] == "alternating"
    if (c[3] == "erf" or c[5] == (12,)) and (not c[6] or (c[0] == "meanfield" and c[3] == "erf" and c[4] == "ce"))
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_engine_gradients_match_autograd(case):
    """Two SGD steps (momentum 0) by the engine equal the same steps through autograd on the FCN;
    a fixed readout never changes."""
    g = torch.Generator().manual_seed(1)
    D, C, B = 10, 2, 32
    X, y = torch.randn(256, D, generator=g), torch.randint(0, C, (256,), generator=g)
    model_cfg = ModelConfig(hidden=case["hidden"], activation=case["activation"], scaling=case["scaling"],
                            readout=case["readout"], bias_init=case["bias_init"], batchnorm=case["bn"],
                            bias_value=0.7, readout_value=1.5)
    net = FCN(D, C, model_cfg)
    net.reset_parameters(g)
    net.set_masks({n: (torch.rand(m.shape, generator=g) < 0.7).float() for n, m in net.masks().items()})
    readout = net.layers[-1].weight.detach().clone()
    train = TrainConfig(lr=0.1, momentum=0.0, schedule="constant", steps=2, batch_size=B, loss=case["loss"])
    batches = BatchSource(B, torch.device("cpu"), 0, X=X, y=y)
    got = train_ensemble([Member(model_cfg, train, {k: v.clone() for k, v in net.state_dict().items()}, batches)],
                         0, 2).states[0]
    net.train()
    for step in range(2):
        net.zero_grad()
        loss_fn(net(batches.batch(step)[0]), batches.batch(step)[1], case["loss"]).backward()
        with torch.no_grad():
            for p in net.parameters():
                if p.grad is not None:
                    p -= 0.1 * p.grad
            net.apply_masks()
    for k, v in net.state_dict().items():
        torch.testing.assert_close(got[k], v, atol=2e-6, rtol=1e-5, msg=k)
    if case["readout"] == "fixed":
        assert torch.equal(got[f"layers.{len(case['hidden'])}.weight"], readout * net.layers[-1].mask)
    else:
        assert not torch.equal(got[f"layers.{len(case['hidden'])}.weight"], readout)


def test_fixed_readout_with_weight_decay_and_adam_stays_constant():
    cfg = ModelConfig(hidden=(8,), activation="erf", readout="fixed", bias_init="alternating")
    net = FCN(6, 2, cfg)
    net.reset_parameters(torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(2)
    X, y = torch.randn(128, 6, generator=g), torch.randint(0, 2, (128,), generator=g)
    for opt in ("sgd", "adam"):
        train = TrainConfig(optimizer=opt, lr=0.05, weight_decay=0.1, steps=10, batch_size=16)
        state = {k: v.clone() for k, v in net.state_dict().items()}
        got = train_ensemble([Member(cfg, train, state, BatchSource(16, torch.device("cpu"), 0, X=X, y=y))],
                             0, 10).states[0]
        assert torch.equal(got["layers.1.weight"], net.layers[1].weight)
        assert torch.equal(got["layers.1.bias"], torch.zeros(2))
        assert not torch.equal(got["layers.0.weight"], net.layers[0].weight)


def test_default_layout_is_unchanged():
    """theta's layout for the default options is the one every stored run was trained with."""
    net = StackedFCN([10, 12, 3], ModelConfig(hidden=(12,)), 2, torch.device("cpu"))
    assert net.P == 128 + 16 + 48 + 16 + 16  # w0 (120 -> 128), b0 (12 -> 16), w1 (36 -> 48), b1 (3 -> 16), spare row
    fixed = StackedFCN([10, 12, 2], ModelConfig(hidden=(12,), readout="fixed"), 2, torch.device("cpu"))
    assert fixed.P == 128 + 16 + 16  # the readout lives outside theta (spare row included)
