"""Pruning rules: one function each, from (weights, masks, context) to new masks.

A rule scores every weight (higher = keep) and :func:`keep_top` keeps the ``ctx.targets``
best-scoring *surviving* weights, per layer (``layerwise``) or across the prunable layers
(``global``). Survivor counts follow the lottery-ticket schedule: after round r a layer of N
prunable weights keeps ``round(N (1 - p)^r)`` (Frankle & Carbin 2019), so every method
(IMP, one-shot, random, cavity) lands on the same per-layer density each round.

Add a rule with ``@register("name")``; the engine looks it up by ``PruneConfig.method``. A rule with
parameters of its own declares them as a pydantic model, ``@register("name", params=Model)``: a config's
``prune.params`` is validated against it and the rule reads the instance as ``ctx.params``. Rules
defined in files of your own reach the command line and every sweep worker through the environment
variable ``TICKETSCOPE_PLUGINS`` (:mod:`ticketscope.plugins`), imported once when this module is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from pydantic import BaseModel

from .plugins import check_params_model, load_plugins
from .seeding import generator

Tensors = dict[str, torch.Tensor]


@dataclass
class PruneContext:
    """What a rule may need beyond the current weights and masks."""

    scope: str  # "layerwise" | "global"
    targets: dict[str, int]  # survivors to keep per layer, or {"*": total} for global scope
    seed: int
    dense_weights: Tensors = field(default_factory=dict)  # round-0 trained weights (one-shot)
    layer_inputs: Tensors = field(default_factory=dict)  # probe inputs each layer sees (cavity)
    probe_labels: torch.Tensor | None = None  # class of each probe input (per-class cavity scores)
    cavity_mix: float = 1.0
    params: BaseModel | None = None  # prune.params: an instance of the rule's registered model, or None


Rule = Callable[[Tensors, Tensors, PruneContext], Tensors]
RULES: dict[str, Rule] = {}


NEEDS = ("dense_weights", "probe")
"""What a rule may ask the engine for: the round-0 trained weights (``ctx.dense_weights``), or the
probe inputs each pruned layer sees with their classes (``ctx.layer_inputs``, ``ctx.probe_labels``)."""
RULE_NEEDS: dict[str, tuple[str, ...]] = {}
RULE_PARAMS: dict[str, type[BaseModel] | None] = {}
"""Each rule's params model (None: the rule takes no parameters; ``prune.params`` must stay empty)."""


def register(name: str, needs: tuple[str, ...] = (),
             params: type[BaseModel] | None = None) -> Callable[[Rule], Rule]:
    """Register ``rule(weights, masks, ctx) -> masks`` under ``name``; ``needs`` (of :data:`NEEDS`) fills ctx.

    ``params``: a pydantic model of the rule's own parameters (subclass :class:`ticketscope.config.Params`;
    defaults and descriptions as in any config section): ``prune.params`` is validated against it, unknown
    keys refused, and the rule gets the instance as ``ctx.params``.
    """
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"rule {name!r} needs {sorted(unknown)}; a rule may need {', '.join(NEEDS)}")
    check_params_model(f"rule {name!r}", params)

    def deco(rule: Rule) -> Rule:
        RULES[name], RULE_NEEDS[name], RULE_PARAMS[name] = rule, tuple(needs), params
        return rule

    return deco


def survivor_targets(totals: dict[str, int], fraction: float, rnd: int, scope: str) -> dict[str, int]:
    """Weights to keep after round ``rnd``: ``round(N (1 - p)^rnd)`` per layer or in total."""
    keep = (1.0 - fraction) ** rnd
    if scope == "global":
        return {"*": round(sum(totals.values()) * keep)}
    return {name: round(n * keep) for name, n in totals.items()}


def keep_top(scores: Tensors, masks: Tensors, ctx: PruneContext) -> Tensors:
    """Keep the ``ctx.targets`` highest-scoring surviving weights; ties broken by position.

    Pruned weights never come back: they score -inf and are never among the kept.
    """
    names = list(scores)
    flat = [torch.where(masks[n].bool(), scores[n].double(), float("-inf")).flatten() for n in names]
    if ctx.scope == "global":
        groups = [(names, torch.cat(flat), ctx.targets["*"])]
    else:
        groups = [([n], f, ctx.targets[n]) for n, f in zip(names, flat)]
    new: Tensors = {}
    for group, s, k in groups:
        k = min(k, int(torch.isfinite(s).sum()))
        keep = torch.zeros_like(s, dtype=torch.bool)
        keep[torch.argsort(s, descending=True, stable=True)[:k]] = True
        for n, part in zip(group, keep.split([masks[n].numel() for n in group])):
            new[n] = part.view_as(masks[n]).to(masks[n].dtype)
    return new


@register("imp")
def magnitude(weights: Tensors, masks: Tensors, ctx: PruneContext) -> Tensors:
    """Iterative magnitude pruning: keep the largest |w| of the current trained weights."""
    return keep_top({n: w.abs() for n, w in weights.items()}, masks, ctx)


@register("oneshot", needs=("dense_weights",))
def one_shot(weights: Tensors, masks: Tensors, ctx: PruneContext) -> Tensors:
    """One-shot magnitude pruning: keep the largest |w| of the *dense* trained network."""
    return keep_top({n: ctx.dense_weights[n].abs() for n in weights}, masks, ctx)


@register("random")
def uniform_random(weights: Tensors, masks: Tensors, ctx: PruneContext) -> Tensors:
    """Uniform random pruning; the scores are fixed per run, so masks are nested over rounds."""
    scores = {n: torch.rand(w.shape, generator=generator(ctx.seed, "random-prune", n)).to(w.device)
              for n, w in weights.items()}
    return keep_top(scores, masks, ctx)


def _zscore(s: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    v = s[alive]
    return (s - v.mean()) / v.std().clamp_min(1e-30) if v.numel() > 1 else torch.zeros_like(s)


@register("cavity", needs=("probe",))
def cavity(weights: Tensors, masks: Tensors, ctx: PruneContext) -> Tensors:
    """Cavity pruning: remove the weights whose single removal most raises |kappa - 3|.

    keep score = (1 - mix) z(|w|) - mix z(Delta_ng), z standardizing over a layer's survivors,
    Delta_ng the per-class non-Gaussianity cavity score of
    :func:`ticketscope.metrics.class_cavity_scores` (the change of the class-pooled |kappa - 3|)
    on the probe inputs the layer sees.
    """
    from .metrics import class_cavity_scores

    scores = {}
    for n, w in weights.items():
        alive = masks[n].bool()
        ng = class_cavity_scores(w.double(), ctx.layer_inputs[n].double(), ctx.probe_labels)
        ng = torch.nan_to_num(ng, nan=0.0).to(w.device)
        scores[n] = (1 - ctx.cavity_mix) * _zscore(w.abs().double(), alive) - ctx.cavity_mix * _zscore(ng, alive)
    return keep_top(scores, masks, ctx)


def connected_fraction(mask: torch.Tensor) -> float:
    """Fraction of units (rows) with at least one surviving incoming connection."""
    return float((mask.sum(dim=1) > 0).double().mean())


def densities(masks: Tensors) -> dict[str, float]:
    return {n: float(m.double().mean()) for n, m in masks.items()}


load_plugins()  # users' rules (TICKETSCOPE_PLUGINS), here and in every sweep worker
