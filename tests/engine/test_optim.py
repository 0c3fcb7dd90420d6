"""Schedules and the loss the engine's configuration reads."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ticketscope.config import TrainConfig
from ticketscope.engine import loss_fn, lr_factor


def test_lr_schedules():
    cfg = TrainConfig(schedule="cosine")
    assert lr_factor(0, 100, cfg) == 1.0 and abs(lr_factor(50, 100, cfg) - 0.5) < 1e-12
    assert abs(lr_factor(25, 100, cfg) - 0.5 * (1 + math.cos(math.pi / 4))) < 1e-12
    step = TrainConfig(schedule="step", milestones=(0.5, 0.75), gamma=0.1)
    assert [lr_factor(s, 100, step) for s in (49, 50, 74, 75)] == [1.0, 0.1, 0.1, pytest.approx(0.01)]


def test_loss_fn_is_the_configured_loss():
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(9, 4, generator=g), torch.randint(0, 4, (9,), generator=g)
    assert torch.equal(loss_fn(z, y, "ce"), F.cross_entropy(z, y))
    torch.testing.assert_close(loss_fn(z, y, "mse"), ((z - F.one_hot(y, 4).float()) ** 2).mean())
