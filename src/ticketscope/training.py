"""One round of training: optimizer, lr schedule, mini-batches, evaluation, divergence checks.

Mini-batch ``t`` is a pure function of (seed, t): a seeded permutation per epoch of an
in-memory training set, or, online, items ``t*B .. (t+1)*B`` of the data set's sample stream.
So a round restarted at step k (late rewinding, resume) sees exactly the same data.

The training itself is the ensemble trainer's (:mod:`ticketscope.ensemble`): :func:`train` trains
one ``FCN`` as an ensemble of one, so a network trained here gets the same bits as the same
network inside any ensemble.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

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

    def _epoch_perm(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            perm = torch.randperm(len(self.X), generator=generator(self.seed, "order", epoch))
            self._epoch, self._perm = epoch, perm.to(self.X.device)
        return self._perm

    def indices(self, start: int, stop: int) -> torch.Tensor:
        """Fixed set: (stop - start, B) rows of ``X`` forming the mini-batches of steps start..stop-1."""
        out = torch.empty(stop - start, self.B, dtype=torch.long, device=self.X.device)
        step = start
        while step < stop:
            epoch, i = divmod(step, self.per_epoch)
            n = min(stop - step, self.per_epoch - i)
            out[step - start:step - start + n] = self._epoch_perm(epoch)[i * self.B:(i + n) * self.B].view(n, self.B)
            step += n
        return out

    def online(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Online: the samples of steps start..stop-1 in one call, X (n*B, D) and y (n*B,) (CPU)."""
        return self.dataset.sample((stop - start) * self.B, seed=self.seed, offset=start * self.B)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.dataset is not None:
            X, y = self.online(step, step + 1)
            return X.to(self.device), y.to(self.device)
        idx = self.indices(step, step + 1)[0]
        return self.X[idx], self.y[idx]


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

    An ensemble of one (:func:`ticketscope.ensemble.train_ensemble`); ``model`` holds the trained
    state afterwards (and at every hook call). The optimizer starts fresh (no momentum carried
    over a rewind). A non-finite loss raises a ``TicketscopeError`` naming the round and step.
    """
    from .ensemble import Member, train_ensemble

    hooks = hooks or TrainHooks()

    def load(state: dict[str, torch.Tensor]) -> None:
        model.load_state_dict(state)

    def snapshot(step: int, state: dict[str, torch.Tensor]) -> None:
        load(state)
        hooks.on_snapshot(step)

    def evaluate_at(step: int, state: dict[str, torch.Tensor]) -> None:
        load(state)
        hooks.on_eval(step)

    def each_step(step: int, get_state: Callable[[], dict[str, torch.Tensor]]) -> None:
        load(get_state())
        hooks.on_step(step)

    member = Member(model.cfg, cfg, {k: v.detach() for k, v in model.state_dict().items()}, batches, round_,
                    label="the model", snapshot_at=hooks.snapshot_at,
                    on_snapshot=snapshot if hooks.on_snapshot is not None else None,
                    on_eval=evaluate_at if hooks.on_eval is not None else None,
                    on_step=each_step if hooks.on_step is not None else None)
    result = train_ensemble([member], start, total)
    if result.errors[0] is not None:
        raise result.errors[0]
    load(result.states[0])
    model.train()
