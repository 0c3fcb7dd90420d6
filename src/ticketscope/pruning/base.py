"""The rule contract: context, registry, survivor schedule, top-k selection and mask statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from pydantic import BaseModel

from .. import registry
from ..plugins import check_params_model

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
RULES: dict[str, Rule] = registry.RULES.objects


NEEDS = ("dense_weights", "probe")
"""What a rule may ask the engine for: the round-0 trained weights (``ctx.dense_weights``), or the
probe inputs each pruned layer sees with their classes (``ctx.layer_inputs``, ``ctx.probe_labels``)."""
RULE_NEEDS: dict[str, tuple[str, ...]] = {}
RULE_PARAMS: dict[str, type[BaseModel] | None] = registry.RULES.params
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
        registry.RULES.add(name, rule, params)
        RULE_NEEDS[name] = tuple(needs)
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


def connected_fraction(mask: torch.Tensor) -> float:
    """Fraction of units (rows) with at least one surviving incoming connection."""
    return float((mask.sum(dim=1) > 0).double().mean())


def densities(masks: Tensors) -> dict[str, float]:
    return {n: float(m.double().mean()) for n, m in masks.items()}

