"""What one round's training is configured with: optimizer, lr schedule, loss, evaluation, and the
steps of its weight snapshots. The loss itself is ``models.LOSSES``' (the engine's step uses the
same table for its gradient)."""

from __future__ import annotations

import math
from typing import Iterable

import torch

from ..config import TrainConfig
from ..models import FCN, LOSSES


def make_optimizer(params: FCN | Iterable[torch.Tensor], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimizer over a model's parameters or over given tensors (stacked ensembles)."""
    if isinstance(params, torch.nn.Module):
        params = [p for p in params.parameters() if p.requires_grad]
    params = list(params)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                           weight_decay=cfg.weight_decay)


def lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    """Multiplier of the base lr at ``step`` of ``total`` (constant | cosine to 0 | step decay)."""
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / total))
    if cfg.schedule == "step":
        return cfg.gamma ** sum(step >= m * total for m in cfg.milestones)
    return 1.0


def snapshot_steps(count: int, total: int, start: int = 0) -> tuple[int, ...]:
    """Steps of a round's weight snapshots (``train.snapshots``): ``start`` (the round's first step)
    and ``count`` steps log-spaced between 1 and ``total`` rounded to integers (duplicates merged),
    those before ``start`` left out; () when ``count`` is 0. A pure function of its arguments."""
    if count <= 0 or total <= 0:
        return ()
    if count == 1:
        logs = [math.log(total)]
    else:
        logs = [math.log(total) * i / (count - 1) for i in range(count)]
    steps = {start} | {min(total, max(1, round(math.exp(x)))) for x in logs}
    return tuple(sorted(s for s in steps if start <= s <= total))


def loss_fn(logits: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean loss ``kind`` (``train.loss``: ce | mse) of ``logits`` (N, C) for labels ``y`` (N,)."""
    return LOSSES[kind].fn(logits, y)


@torch.no_grad()
def evaluate(model: FCN, X: torch.Tensor, y: torch.Tensor, loss: str, chunk: int = 8192) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` (eval mode) on (X, y)."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for i in range(0, len(X), chunk):
        logits = model(X[i:i + chunk])
        total_loss += float(loss_fn(logits, y[i:i + chunk], loss)) * len(logits)
        correct += int((logits.argmax(1) == y[i:i + chunk]).sum())
    model.train(was_training)
    return total_loss / len(X), correct / len(X)
