"""One round of training: optimizer, lr schedule, mini-batches, evaluation, divergence checks.

Mini-batch ``t`` is a pure function of (seed, t): a seeded permutation per epoch of an
in-memory training set, or, online, items ``t*B .. (t+1)*B`` of the data set's sample stream.
So a round restarted at step k (late rewinding, resume) sees exactly the same data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .data import Dataset
from .errors import TicketscopeError
from .models import FCN
from .seeding import generator


class BatchSource:
    """Mini-batches by step index from a fixed training set or an online sample stream."""

    def __init__(self, batch_size: int, device: torch.device, seed: int,
                 X: torch.Tensor | None = None, y: torch.Tensor | None = None,
                 dataset: Dataset | None = None) -> None:
        if (X is None) == (dataset is None):
            raise ValueError("give either a fixed training set (X, y) or an online dataset")
        self.B, self.device, self.seed = batch_size, device, seed
        self.X, self.y, self.dataset = X, y, dataset
        if X is not None:
            if len(X) < batch_size:
                raise TicketscopeError(
                    f"train.batch_size = {batch_size} exceeds the training set ({len(X)} samples); "
                    "lower train.batch_size or raise data.n_train")
            self.per_epoch = len(X) // batch_size
        self._epoch, self._perm = -1, None

    def steps_for(self, cfg: TrainConfig) -> int:
        """The round's budget in steps (epochs converted with drop-last batches)."""
        if cfg.epochs is None:
            return int(cfg.steps)
        if self.X is None:
            raise TicketscopeError("train.epochs needs a fixed training set; with data.online give train.steps")
        return max(1, math.ceil(cfg.epochs * self.per_epoch))

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.dataset is not None:
            X, y = self.dataset.sample(self.B, seed=self.seed, offset=step * self.B)
            return X.to(self.device), y.to(self.device)
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            perm = torch.randperm(len(self.X), generator=generator(self.seed, "order", epoch))
            self._epoch, self._perm = epoch, perm.to(self.X.device)
        idx = self._perm[i * self.B:(i + 1) * self.B]
        return self.X[idx], self.y[idx]


def make_optimizer(model: FCN, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
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


def loss_fn(logits: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "mse":
        return F.mse_loss(logits, F.one_hot(y, logits.shape[1]).to(logits.dtype))
    return F.cross_entropy(logits, y)


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


@dataclass
class TrainHooks:
    """Optional callbacks: ``snapshot_at`` steps call ``on_snapshot(step)``; evals every ``eval_every``."""

    on_snapshot: Callable[[int], None] | None = None
    snapshot_at: int | None = None
    on_eval: Callable[[int], None] | None = None
    on_step: Callable[[int], None] | None = None


def train(model: FCN, batches: BatchSource, cfg: TrainConfig, start: int, total: int,
          round_: int, hooks: TrainHooks | None = None) -> None:
    """Train ``model`` from step ``start`` to ``total`` (masks re-applied after every step).

    The optimizer starts fresh (no momentum carried over a rewind). A non-finite loss raises a
    ``TicketscopeError`` naming the round and step.
    """
    # Subnormal floats (decaying momentum of tiny gradients) make CPU arithmetic ~30x slower;
    # flushing them to zero changes nothing measurable and keeps results deterministic.
    torch.set_flush_denormal(True)
    hooks = hooks or TrainHooks()
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor(start + i, total, cfg))
    model.train()
    for step in range(start, total):
        if hooks.on_snapshot is not None and step == hooks.snapshot_at:
            hooks.on_snapshot(step)
        if hooks.on_eval is not None and cfg.eval_every and step % cfg.eval_every == 0 and step > start:
            hooks.on_eval(step)
        X, y = batches.batch(step)
        loss = loss_fn(model(X), y, cfg.loss)
        if not torch.isfinite(loss):
            raise TicketscopeError(
                f"training diverged in round {round_} at step {step}: loss = {loss.item()}; "
                "lower train.lr or check the data")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        model.apply_masks()
        if hooks.on_step is not None:
            hooks.on_step(step)
    if hooks.on_snapshot is not None and hooks.snapshot_at == total:
        hooks.on_snapshot(total)
