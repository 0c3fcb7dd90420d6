"""Masked training: pruned weights stay exactly zero; schedules; divergence is caught."""

import math

import pytest
import torch

from ticketscope.config import ModelConfig, TrainConfig
from ticketscope.errors import TicketscopeError
from ticketscope.models import FCN
from ticketscope.training import BatchSource, lr_factor, train


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

    from ticketscope.training import TrainHooks
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


def test_batches_are_a_function_of_the_step():
    _, batches, _ = _setup()
    X5, _ = batches.batch(13)
    fresh = BatchSource(32, torch.device("cpu"), 0, X=batches.X, y=batches.y)
    assert torch.equal(fresh.batch(13)[0], X5)
    # one epoch visits every (drop-last) sample exactly once
    seen = torch.cat([batches.batch(s)[0] for s in range(batches.per_epoch)])
    assert len(torch.unique(seen, dim=0)) == batches.per_epoch * 32


def test_lr_schedules():
    cfg = TrainConfig(schedule="cosine")
    assert lr_factor(0, 100, cfg) == 1.0 and abs(lr_factor(50, 100, cfg) - 0.5) < 1e-12
    assert abs(lr_factor(25, 100, cfg) - 0.5 * (1 + math.cos(math.pi / 4))) < 1e-12
    step = TrainConfig(schedule="step", milestones=(0.5, 0.75), gamma=0.1)
    assert [lr_factor(s, 100, step) for s in (49, 50, 74, 75)] == [1.0, 0.1, 0.1, pytest.approx(0.01)]


def test_divergence_names_round_and_step():
    model, batches, _ = _setup()
    with torch.no_grad():
        model.layers[0].weight.mul_(float("nan"))
    with pytest.raises(TicketscopeError, match=r"round 3 at step 5"):
        train(model, batches, TrainConfig(steps=10), 5, 10, 3)


def test_chunked_batches_are_the_step_batches():
    """The ensemble reads many steps at once: the same mini-batches as step by step."""
    _, batches, _ = _setup()
    steps = range(3, 3 + 2 * batches.per_epoch + 1)  # across two epoch boundaries
    idx = batches.indices(steps.start, steps.stop)
    for row, step in zip(idx, steps):
        X, y = batches.batch(step)
        assert torch.equal(batches.X[row], X) and torch.equal(batches.y[row], y)
    from ticketscope.data import NLGPTask
    online = BatchSource(16, torch.device("cpu"), 5, dataset=NLGPTask(L=6, dim=1))
    X, y = online.online(4, 7)
    assert torch.equal(X[16:32], online.batch(5)[0]) and torch.equal(y[16:32], online.batch(5)[1])


def test_train_is_an_ensemble_of_one():
    """``train`` on an FCN gives the bits of the same network trained by the ensemble engine."""
    from ticketscope.ensemble import Member, train_ensemble

    model, batches, _ = _setup()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(steps=15, optimizer="adam", lr=0.01)
    train(model, batches, cfg, 0, 15, 0)
    engine = train_ensemble([Member(model.cfg, cfg, state, batches)], 0, 15).states[0]
    assert all(torch.equal(v, engine[k]) for k, v in model.state_dict().items())
