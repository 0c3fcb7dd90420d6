"""Cavity pruning at matched magnitude: ``cavity-high`` and ``cavity-low`` choose among IMP's smallest weights.

Each round both remove as many weights as IMP, m = survivors - target (per layer, or in total under global
scope), and only among the same candidates: the ceil(band * m) smallest surviving |w| (per layer, or across
the prunable layers). ``cavity-high`` removes the m candidates whose removal raises the class-pooled
non-Gaussianity most (largest Delta_ng of :func:`ticketscope.metrics.class_cavity_scores`), ``cavity-low`` the
m that raise it least; every other survivor is kept. Both remove weights of nearly IMP's magnitudes, so what
differs between them comes through the pre-activation statistics.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from ..config import Params
from ..metrics import class_cavity_scores
from .base import PruneContext, Tensors, keep_top, register


class Band(Params):
    """The candidate band of ``cavity-high`` and ``cavity-low``."""

    band: float = Field(2.0, gt=1, description="(x the weights a round removes) candidates: that many of the "
                                               "smallest surviving |w|")


def _groups(names: list[str], ctx: PruneContext) -> list[tuple[list[str], int]]:
    """The layers pruned together and their survivor target: all of them (global scope) or each alone."""
    if ctx.scope == "global":
        return [(names, ctx.targets["*"])]
    return [([n], ctx.targets[n]) for n in names]


def _split(flat: torch.Tensor, group: list[str], like: Tensors) -> Tensors:
    return {n: part.view_as(like[n]) for n, part in zip(group, flat.split([like[n].numel() for n in group]))}


def candidate_band(weights: Tensors, masks: Tensors, ctx: PruneContext, band: float) -> Tensors:
    """Bool masks of the candidates: the ceil(band * m) smallest surviving |w| of each group (:func:`_groups`),
    m = survivors - target the weights a round removes; ties broken by position."""
    out: Tensors = {}
    for group, target in _groups(list(weights), ctx):
        alive = torch.cat([masks[n].bool().flatten() for n in group])
        size = torch.cat([weights[n].abs().double().flatten() for n in group])
        survivors = int(alive.sum())
        count = min(survivors, math.ceil(round(band * max(survivors - target, 0), 9)))
        candidate = torch.zeros_like(alive)
        candidate[torch.argsort(torch.where(alive, size, math.inf), stable=True)[:count]] = True
        out.update(_split(candidate, group, masks))
    return out


def _keep_scores(priority: Tensors, candidates: Tensors, ctx: PruneContext) -> Tensors:
    """Finite keep scores for :func:`keep_top`: a candidate's place in the removal order (0 = removed first:
    the highest ``priority``, NaN last, ties by position), every non-candidate above all candidates."""
    scores: Tensors = {}
    for group, _ in _groups(list(priority), ctx):
        p = torch.cat([priority[n].flatten() for n in group])
        p = torch.where(p.isnan(), -math.inf, p)
        idx = torch.cat([candidates[n].flatten() for n in group]).nonzero().squeeze(1)
        order = idx[torch.argsort(p[idx], descending=True, stable=True)]
        s = torch.full(p.shape, float(len(idx)), dtype=torch.float64, device=p.device)
        s[order] = torch.arange(len(idx), dtype=torch.float64, device=p.device)
        scores.update(_split(s, group, priority))
    return scores


def _banded(weights: Tensors, masks: Tensors, ctx: PruneContext, sign: float) -> Tensors:
    """Remove IMP's number of weights from the band, those with the largest ``sign`` * Delta_ng first."""
    candidates = candidate_band(weights, masks, ctx, ctx.params.band)
    priority = {n: sign * class_cavity_scores(w.double(), ctx.layer_inputs[n].double(), ctx.probe_labels).to(w.device)
                for n, w in weights.items()}
    return keep_top(_keep_scores(priority, candidates, ctx), masks, ctx)


@register("cavity-high", needs=("probe",), params=Band)
def cavity_high(weights: Tensors, masks: Tensors, ctx: PruneContext) -> Tensors:
    """Of the band's candidates, remove those whose removal raises the class-pooled |kappa - 3| most
    (largest Delta_ng; an undefined score is removed last)."""
    return _banded(weights, masks, ctx, 1.0)


@register("cavity-low", needs=("probe",), params=Band)
def cavity_low(weights: Tensors, masks: Tensors, ctx: PruneContext) -> Tensors:
    """Of the band's candidates, remove those whose removal raises the class-pooled |kappa - 3| least
    (smallest Delta_ng; an undefined score is removed last)."""
    return _banded(weights, masks, ctx, -1.0)
