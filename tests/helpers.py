"""Test-suite references, shared by the tests and the benchmarks (which add ``tests/`` to ``sys.path``).

* :func:`train` / :class:`TrainHooks`: the single-FCN training adapter: one ``FCN`` trained by the
  engine as an ensemble of one, with hooks that see the model itself.
* :func:`autograd_train`: the reference the engine's hand-written step is checked against: the same
  training through autograd on one ``FCN`` (a mini-batch drawn and a host sync per step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ticketscope.config import ModelConfig, TrainConfig
from ticketscope.engine import BatchSource, Member, loss_fn, lr_factor, make_optimizer, train_ensemble
from ticketscope.errors import TicketscopeError
from ticketscope.models import FCN


@dataclass
class TrainHooks:
    """Optional callbacks, each given the step with the model holding the state at that step:
    ``on_rewind_point`` when step ``rewind_at`` begins, ``on_eval`` every ``train.eval_every``
    steps, ``on_step`` after every step."""

    on_rewind_point: Callable[[int], None] | None = None
    rewind_at: int | None = None
    on_eval: Callable[[int], None] | None = None
    on_step: Callable[[int], None] | None = None


def train(model: FCN, batches: BatchSource, cfg: TrainConfig, start: int, total: int,
          round_: int, hooks: TrainHooks | None = None) -> None:
    """Train ``model`` from step ``start`` to ``total`` (masks re-applied after every step).

    An ensemble of one (:func:`ticketscope.engine.train_ensemble`); ``model`` holds the trained
    state afterwards (and at every hook call). The optimizer starts fresh (no momentum carried
    over a rewind). A non-finite loss raises a ``TicketscopeError`` naming the round and step.
    """
    hooks = hooks or TrainHooks()

    def at(hook: Callable[[int], None] | None) -> Callable[[int, dict[str, torch.Tensor]], None] | None:
        if hook is None:
            return None

        def call(step: int, state: dict[str, torch.Tensor]) -> None:
            model.load_state_dict(state)
            hook(step)
        return call

    each_step = None
    if hooks.on_step is not None:
        def each_step(step: int, get_state: Callable[[], dict[str, torch.Tensor]]) -> None:
            model.load_state_dict(get_state())
            hooks.on_step(step)

    member = Member(model.cfg, cfg, {k: v.detach() for k, v in model.state_dict().items()}, batches, round_,
                    label="the model", rewind_at=hooks.rewind_at, on_rewind_point=at(hooks.on_rewind_point),
                    on_eval=at(hooks.on_eval), on_step=each_step)
    result = train_ensemble([member], start, total)
    if result.errors[0] is not None:
        raise result.errors[0]
    model.load_state_dict(result.states[0])
    model.train()


def autograd_train(model: FCN, batches: BatchSource, cfg: TrainConfig, start: int, total: int) -> None:
    """Reference: train ``model`` from step ``start`` to ``total`` through autograd.

    The configured optimizer (fresh) over the trainable parameters, the lr schedule over
    ``start .. total``, the step's mini-batch (:meth:`BatchSource.batch`), masks re-applied after
    every step; a non-finite loss raises at once (a host sync per step).
    """
    opt = make_optimizer(model, cfg)
    model.train()
    for step in range(start, total):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(step, total, cfg)
        X, y = batches.batch(step)
        loss = loss_fn(model(X), y, cfg.loss)
        if not torch.isfinite(loss):
            raise TicketscopeError(f"training diverged at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.apply_masks()


def engine_matches_autograd(net: FCN, model_cfg: ModelConfig, X: torch.Tensor, y: torch.Tensor, B: int,
                            loss: str) -> dict[str, torch.Tensor]:
    """Two plain SGD steps of ``net`` by the engine's hand-written step and by autograd: assert they agree
    (float32 rounding: atol 2e-6, rtol 1e-5); return the engine's final state (``net`` holds autograd's)."""
    train = TrainConfig(lr=0.1, momentum=0.0, schedule="constant", steps=2, batch_size=B, loss=loss)
    batches = BatchSource(B, torch.device("cpu"), 0, X=X, y=y)
    got = train_ensemble([Member(model_cfg, train, {k: v.clone() for k, v in net.state_dict().items()}, batches)],
                         0, 2).states[0]
    autograd_train(net, batches, train, 0, 2)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(got[k], v, atol=2e-6, rtol=1e-5, msg=k)
    return got
