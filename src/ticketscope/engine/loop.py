"""The training loop of one ensemble: members in, each member's trained state (or error) out.

Divergence is checked without a host synchronisation per step: each step writes the sum of each
run's logits into a small buffer that is inspected once per chunk of steps, and a non-finite entry
names the run, round and exact step; that run is reported as diverged while the others train on (a
NaN in one run's slice never reaches another's).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..config import ModelConfig, TrainConfig
from ..errors import Diverged, TicketscopeError
from .batches import BatchBuffer, BatchSource
from .optim import lr_factor, make_optimizer
from .plan import shared_settings
from .stacked import ForwardBackward, StackedFCN, state_widths

State = dict[str, torch.Tensor]


@dataclass
class Member:
    """One run's part in an ensemble's training of one round.

    ``state`` is the network's state dict (``FCN.state_dict()`` keys: weights, biases, masks, batch
    norm statistics) when the round's training starts, with the masks already applied. Hooks get
    the step and the run's state at that step (a copy), each when that step begins (a step equal to
    the budget: at the end):

    * ``on_rewind_point(step, state)`` at step ``rewind_at``: the rewind point (late rewinding's
      step k, or 0 for the init) that later rounds restart from;
    * ``on_snapshot(step, state)`` at each of ``snapshot_steps``: the configured weight snapshots
      (``train.snapshots``);
    * ``on_eval(step, state)`` at every multiple of ``train.eval_every`` after the first step;
    * ``on_step(step, get_state)`` after every step, ``get_state()`` giving the state then (slow:
      a copy per call; for checks on every step, e.g. the tests' single-FCN adapter).
    """

    model: ModelConfig
    train: TrainConfig
    state: State
    batches: BatchSource
    round: int = 0
    label: str = "run"
    rewind_at: int | None = None
    on_rewind_point: Callable[[int, State], None] | None = None
    on_eval: Callable[[int, State], None] | None = None
    on_step: Callable[[int, Callable[[], State]], None] | None = None
    snapshot_steps: tuple[int, ...] = ()
    on_snapshot: Callable[[int, State], None] | None = None


@dataclass
class EnsembleResult:
    """Each member's final state (None if it diverged), its error, and the training wall time."""

    states: list[State | None]
    errors: list[TicketscopeError | None]
    train_time_s: float


def _check_members(members: list[Member]) -> None:
    """Members must share :func:`ticketscope.engine.plan.shared_settings`, widths, batch size and device."""
    def shared(m: Member) -> tuple:
        return state_widths(m.state), shared_settings(m.model, m.train), m.batches.B, m.batches.device

    first = shared(members[0])
    for m in members[1:]:
        if shared(m) != first:
            raise ValueError(f"{m.label} cannot train in one ensemble with {members[0].label}: network shapes, "
                             "training settings or devices differ (see ensemble_key)")


_WARM = False


def warm_up() -> None:
    """Pay one-off import costs (``torch.optim``'s first construction imports ``torch._dynamo``,
    about a second) outside any timed region."""
    global _WARM
    if not _WARM:
        torch.optim.SGD([torch.zeros(1)], lr=0.1)
        _WARM = True


def train_ensemble(members: list[Member], start: int, total: int,
                   on_step: Callable[[int], None] | None = None) -> EnsembleResult:
    """Train every member from step ``start`` to ``total`` as one ensemble.

    Members must agree on what :func:`ensemble_key` covers (checked: shapes and training settings)
    and train the same steps; each keeps its own state, masks and mini-batch stream. The optimizer
    starts fresh (no momentum carried over a rewind); the lr follows ``train.schedule`` over
    ``start .. total``; masks are re-applied after every step. A member whose loss becomes
    non-finite gets a :class:`TicketscopeError` naming its round, step and label (and no final
    state); the others are unaffected. ``on_step(step)`` is called after every step (progress).
    ``train_time_s`` is the wall time of the training steps (mini-batch gathering included;
    optimizer construction and the members' hooks excluded).
    """
    if not members:
        return EnsembleResult([], [], 0.0)
    _check_members(members)
    torch.set_flush_denormal(True)  # subnormal momentum of tiny gradients: ~30x slower CPU arithmetic
    first = members[0]
    cfg, B, R = first.train, first.batches.B, len(members)
    device = first.batches.device
    widths = state_widths(first.state)
    net = StackedFCN(widths, first.model, R, device)
    for i, m in enumerate(members):
        net.load(i, m.state)
    warm_up()
    opt = make_optimizer([net.theta], cfg)
    net.theta.grad = net.grad
    group = opt.param_groups[0]
    gradient = ForwardBackward(net, cfg, B)
    buffer = BatchBuffer([m.batches for m in members], B, widths[0], device)
    flags = torch.zeros(buffer.S, R, device=device)
    errors: list[TicketscopeError | None] = [None] * R

    events: dict[int, list[tuple[str, int]]] = {}
    for i, m in enumerate(members):
        if m.on_rewind_point is not None and m.rewind_at is not None and start <= m.rewind_at <= total:
            events.setdefault(m.rewind_at, []).append(("rewind", i))
        if m.on_snapshot is not None:
            for s in sorted(set(m.snapshot_steps)):
                if start <= s <= total:
                    events.setdefault(s, []).append(("snapshot", i))
        if m.on_eval is not None and m.train.eval_every:
            first_eval = (start // m.train.eval_every + 1) * m.train.eval_every
            for s in range(first_eval, total, m.train.eval_every):
                events.setdefault(s, []).append(("eval", i))
    per_step = [i for i, m in enumerate(members) if m.on_step is not None]
    hook_time = 0.0

    def fire(step: int) -> float:
        t = time.perf_counter()
        for kind, i in events.get(step, ()):
            if errors[i] is None:
                m = members[i]
                hook = {"rewind": m.on_rewind_point, "eval": m.on_eval, "snapshot": m.on_snapshot}[kind]
                hook(step, net.state(i))
        return time.perf_counter() - t

    t0 = time.perf_counter()
    for s0 in range(start, total, buffer.S):
        s1 = min(s0 + buffer.S, total)
        buffer.fill(s0, s1)
        for step in range(s0, s1):
            if step in events:
                hook_time += fire(step)
            X, y3 = buffer.views[step - s0]
            group["lr"] = cfg.lr * lr_factor(step, total, cfg)
            gradient(X, y3, flags[step - s0])
            opt.step()
            net.theta.mul_(net.mask)
            if per_step:
                t = time.perf_counter()
                for i in per_step:
                    members[i].on_step(step, lambda i=i: net.state(i))
                hook_time += time.perf_counter() - t
            if on_step is not None:
                on_step(step)
        bad = ~torch.isfinite(flags[:s1 - s0])
        if bool(bad.any()):
            for i in bad.any(0).nonzero().flatten().tolist():
                if errors[i] is None:
                    step = s0 + int(bad[:, i].nonzero()[0, 0])
                    m = members[i]
                    errors[i] = Diverged(
                        f"training diverged in round {m.round} at step {step} ({m.label}): the loss is not "
                        "finite; lower train.lr or check the data", m.round, step, float(flags[step - s0, i]))
    if total in events:
        hook_time += fire(total)
    elapsed = time.perf_counter() - t0 - hook_time
    states = [net.state(i) if errors[i] is None else None for i in range(R)]
    return EnsembleResult(states, errors, elapsed)
