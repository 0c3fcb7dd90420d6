"""The stacked network and its hand-written step: the backward equals autograd on the FCN; a
member's bits never depend on the ensemble (odd shapes, batch norm, Adam, 1 and 2 threads); the
stored layout of theta is unchanged."""

from __future__ import annotations

import itertools

import pytest
import torch

from helpers import engine_matches_autograd
from ticketscope.config import ModelConfig, TrainConfig
from ticketscope.engine import StackedFCN, train_ensemble
from ticketscope.models import FCN

from .mix import make_member


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
    engine_matches_autograd(net, model_cfg, X, y, B, loss)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(37, 13, (7,), "relu", False, "sgd"), (16, 9, (11, 5), "erf", True, "adam"),
                                   (64, 8, (16,), "tanh", True, "sgd")], ids=["odd", "deep-bn-adam", "tanh-bn"])
def test_engine_bits_do_not_depend_on_the_ensemble(shape, threads):
    """Odd shapes (no slice 64-byte aligned by accident), batch norm, Adam, online and fixed data:
    each member alone, in a group of 3 and of 8 gets the same bits, at 1 and at 2 threads
    (docs/REPRODUCIBILITY.md)."""
    B, D, hidden, act, bn, opt = shape
    model = ModelConfig(hidden=hidden, activation=act, batchnorm=bn)
    train = TrainConfig(steps=12, batch_size=B, optimizer=opt, lr=0.01, momentum=0.9, nesterov=True)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        members = [make_member(i, D, B, model, train, online=i % 3 == 0, clone=i % 2 == 1) for i in range(8)]
        alone = [train_ensemble([m], 0, 12).states[0] for m in members]
        for group in ([4, 1, 6], list(range(8))):
            got = train_ensemble([members[i] for i in group], 0, 12).states
            for i, state in zip(group, got):
                for k, v in alone[i].items():
                    assert torch.equal(v, state[k]), (group, i, k)
    finally:
        torch.set_num_threads(before)


def test_default_layout_is_unchanged():
    """theta's layout for the default options is the one every stored run was trained with."""
    net = StackedFCN([10, 12, 3], ModelConfig(hidden=(12,)), 2, torch.device("cpu"))
    assert net.P == 128 + 16 + 48 + 16 + 16  # w0 (120 -> 128), b0 (12 -> 16), w1 (36 -> 48), b1 (3 -> 16), spare row
    fixed = StackedFCN([10, 12, 2], ModelConfig(hidden=(12,), readout="fixed"), 2, torch.device("cpu"))
    assert fixed.P == 128 + 16 + 16  # the readout lives outside theta (spare row included)
