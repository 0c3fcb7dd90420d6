"""The network's tables (each activation's derivative and each loss's gradient against autograd,
the batch-norm constants against torch's), model options for Ingrosso & Goldt's committee machine
(meanfield scaling, fixed readout, alternating biases): validated config, FCN init and forward, and
the ensemble engine's hand-written gradients against autograd on the FCN."""

from __future__ import annotations

import hashlib
import itertools
import json

import pytest
import torch

from conftest import TINY, merge
from helpers import engine_matches_autograd
from ticketscope.config import ModelConfig, TrainConfig, parse_config
from ticketscope.engine import BatchSource, Member, ensemble_key, train_ensemble
from ticketscope.errors import TicketscopeError
from ticketscope.models import (ACTIVATIONS, BN_EPS, BN_MOMENTUM, FCN, LOSSES, layer_scales, loss_gradient,
                                softmax_into)


# --- the tables ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_each_activation_and_its_derivative(name):
    """``into`` is ``fn`` bit for bit; ``backward`` is autograd's d fn(h)/dh times the incoming
    gradient, also on strided (engine-like) views."""
    act = ACTIVATIONS[name]
    g = torch.Generator().manual_seed(0)
    h = (torch.randn(3, 7, 5, generator=g) * 2).requires_grad_(True)
    da = torch.randn(3, 7, 5, generator=g)
    a = act.fn(h)
    (expected,) = torch.autograd.grad(a, h, da)
    h, a = h.detach(), a.detach()
    store = torch.zeros(3, 48)
    out = store.as_strided((3, 7, 5), (48, 5, 1))  # a padded per-run view, as the engine's buffers
    act.into(h, out)
    assert torch.equal(out, a)
    act.backward(da, a, h, out)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("C", [2, 3, 10, 17])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_gradient_is_autograds(name, C):
    g = torch.Generator().manual_seed(C)
    z = torch.randn(32, C, generator=g).requires_grad_(True)
    y = torch.randint(0, C, (32,), generator=g)
    (expected,) = torch.autograd.grad(LOSSES[name].fn(z, y), z)
    torch.testing.assert_close(loss_gradient(z.detach(), y, name), expected, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("C", [2, 5, 16, 17, 40])
def test_softmax_into_is_torch_softmax(C):
    z = torch.randn(4, 6, C, generator=torch.Generator().manual_seed(C)) * 5
    out = torch.empty_like(z)
    softmax_into(z, out)
    torch.testing.assert_close(out, torch.softmax(z, -1), atol=1e-7, rtol=1e-6)


def test_batchnorm_constants_are_the_fcns_and_scales():
    net = FCN(9, 2, ModelConfig(hidden=(4,), batchnorm=True))
    assert all((m.eps, m.momentum) == (BN_EPS, BN_MOMENTUM) for m in net.norms)
    assert layer_scales([16, 4], "meanfield") == [0.25, 1.0]  # the readout is never scaled
    assert layer_scales([16, 4], "standard") == [1.0, 1.0]


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
    got = engine_matches_autograd(net, model_cfg, X, y, B, case["loss"])
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

