"""Mini-batches: a function of the step; chunks equal the step batches; members reading one
stream share its draws."""

from __future__ import annotations

import torch

from ticketscope.config import ModelConfig, TrainConfig
from ticketscope.data import NLGPTask
from ticketscope.engine import BatchSource, chunk_steps, train_ensemble

from .mix import make_member


def _fixed(seed=0, n=256, d=16) -> BatchSource:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    return BatchSource(32, torch.device("cpu"), 0, X=X, y=(X[:, 0] * X[:, 1] > 0).long())


def test_batches_are_a_function_of_the_step():
    batches = _fixed()
    X5, _ = batches.batch(13)
    fresh = BatchSource(32, torch.device("cpu"), 0, X=batches.X, y=batches.y)
    assert torch.equal(fresh.batch(13)[0], X5)
    # one epoch visits every (drop-last) sample exactly once
    seen = torch.cat([batches.batch(s)[0] for s in range(batches.per_epoch)])
    assert len(torch.unique(seen, dim=0)) == batches.per_epoch * 32


def test_chunked_batches_are_the_step_batches():
    """The ensemble reads many steps at once: the same mini-batches as step by step."""
    batches = _fixed()
    steps = range(3, 3 + 2 * batches.per_epoch + 1)  # across two epoch boundaries
    idx = batches.indices(steps.start, steps.stop)
    for row, step in zip(idx, steps):
        X, y = batches.batch(step)
        assert torch.equal(batches.X[row], X) and torch.equal(batches.y[row], y)
    online = BatchSource(16, torch.device("cpu"), 5, dataset=NLGPTask(L=6, dim=1))
    X, y = online.online(4, 7)
    assert torch.equal(X[16:32], online.batch(5)[0]) and torch.equal(y[16:32], online.batch(5)[1])


def test_members_reading_one_stream_share_its_draws(monkeypatch):
    """Members with one data set object and one online seed (the pruning methods of one seed) draw
    each chunk once between them, and still get exactly their bits alone."""
    B, D, model = 32, 16, ModelConfig(hidden=(8,))
    train = TrainConfig(steps=40, batch_size=B, lr=0.05, momentum=0.9)
    ds = NLGPTask(L=D, dim=1, xis=(1.0, 3.0), gain=3.0)
    members = []
    for seed, stream_seed in ((0, 7), (1, 7), (2, 8), (3, 7)):  # members 0, 1, 3 read stream 7
        m = make_member(seed, D, B, model, train, online=True, clone=False)
        m.batches = BatchSource(B, torch.device("cpu"), stream_seed, dataset=ds)
        members.append(m)
    alone = [train_ensemble([m], 0, 40).states[0] for m in members]
    calls: list[tuple[int, int]] = []
    sample = NLGPTask.sample
    monkeypatch.setattr(NLGPTask, "sample", lambda self, n, seed=0, offset=0: (
        calls.append((seed, offset)), sample(self, n, seed, offset))[1])
    result = train_ensemble(members, 0, 40)
    chunks = -(-40 // chunk_steps(B, D))
    assert sorted(calls) == sorted({(s, o) for s, o in calls}) and len(calls) == 2 * chunks
    for m, a, got in zip(members, alone, result.states):
        assert all(torch.equal(v, got[k]) for k, v in a.items()), m.label
    assert not torch.equal(result.states[0]["layers.0.weight"], result.states[1]["layers.0.weight"])
