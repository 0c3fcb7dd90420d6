"""Cavity pruning at matched magnitude: ``cavity-high`` and ``cavity-low`` choose within strata of neighbouring |w|.

Each round both remove as many weights as IMP, m = survivors - target (per layer, or in total under global
scope), and only among the same candidates: the c = min(survivors, band * m) smallest surviving |w| (per layer,
or across the prunable layers). Sorted by |w| (ties by position), the candidates are cut into m strata of
consecutive ranks (``band`` ranks each when c = band * m; otherwise sizes differing by at most one, as
``numpy.array_split``), and each rule removes exactly **one weight per stratum**: ``cavity-high`` the one whose
removal raises the class-pooled non-Gaussianity most (largest Delta_ng of
:func:`ticketscope.metrics.class_cavity_scores`), ``cavity-low`` the one that raises it least. So both hit IMP's
count exactly, and in every stratum both remove a weight of nearly the same |w| (at the default band 2, the
two members of a pair of adjacent ranks): what they remove matches in magnitude step by step, by construction,
up to the |w| gaps between neighbouring ranks. An undefined score (NaN: the removal leaves its unit constant)
is chosen last within its stratum by both rules; equal scores go to the smaller |w| rank.

What they do *not* match is IMP: IMP removes the m smallest, these rules one of each stratum of ``band`` ranks
among the band * m smallest, i.e. about the band's mean |w| (about band x IMP's mean at the first step, where
|w| is dense near 0: 2.0x at band 2 on the test runs).
:func:`removed_magnitude_ratio` measures the match that was achieved (mean removed |w| of one rule over
another's, per step), for a report to state rather than promise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from pydantic import Field

from ..config import Params
from ..metrics import class_cavity_scores
from .base import PruneContext, Tensors, register

MAX_BAND = 4
"""The widest stratum ``band`` may ask for (see :class:`Band`)."""


class Band(Params):
    """The strata of ``cavity-high`` and ``cavity-low``."""

    band: int = Field(2, ge=2, le=MAX_BAND, description=(
        "(ranks per stratum) the candidates are the band x m smallest surviving |w| (m: the weights a round "
        "removes), cut into m strata of band neighbouring |w| ranks, one weight removed from each: 2 = matched "
        "pairs of adjacent ranks. The strata match the two rules to each other at any band (mean removed |w| "
        "within 0.75% at every step of a feedback-loop run, bands 2 to 20, tests/pruning/test_banded.py); what "
        "band sets is how far the candidates reach beyond IMP's: both rules remove about band x IMP's mean |w| "
        "at the first step, and from band = 1 / prune.fraction on (5 at 20% a round) every survivor is a "
        "candidate and a larger band changes nothing. At most 4: the band stays within the smallest 80% of the "
        "survivors at the default fraction, the rules remove weights of the small-magnitude tail IMP removes "
        "from, and a claim made 'among small weights' stays true."))


def _groups(names: list[str], ctx: PruneContext) -> list[tuple[list[str], int]]:
    """The layers pruned together and their survivor target: all of them (global scope) or each alone."""
    if ctx.scope == "global":
        return [(names, ctx.targets["*"])]
    return [([n], ctx.targets[n]) for n in names]


def _split(flat: torch.Tensor, group: list[str], like: Tensors) -> Tensors:
    return {n: part.view_as(like[n]) for n, part in zip(group, flat.split([like[n].numel() for n in group]))}


def _candidates(weights: Tensors, masks: Tensors, ctx: PruneContext,
                band: int) -> list[tuple[list[str], torch.Tensor, torch.Tensor]]:
    """Per group (:func:`_groups`): its layers, the flat indices (over the group's layers concatenated) of its
    candidates in |w| rank order (ties by position), and each candidate's stratum 0 .. m-1 (module docstring)."""
    out = []
    for group, target in _groups(list(weights), ctx):
        alive = torch.cat([masks[n].bool().flatten() for n in group])
        size = torch.cat([weights[n].abs().double().flatten() for n in group])
        survivors = int(alive.sum())
        m = min(max(survivors - target, 0), survivors)
        count = min(survivors, band * m)
        order = torch.argsort(torch.where(alive, size, math.inf), stable=True)[:count]
        sizes = [len(p) for p in np.array_split(np.arange(count), m)] if m else []
        stratum = torch.repeat_interleave(torch.arange(m, device=order.device),
                                          torch.tensor(sizes, dtype=torch.int64, device=order.device))
        out.append((group, order, stratum))
    return out


def strata(weights: Tensors, masks: Tensors, ctx: PruneContext, band: int) -> Tensors:
    """Int64 maps of each weight's stratum (module docstring): 0 .. m-1 for the candidates of a group (stratum 0
    holds its smallest |w|), -1 for every other weight. A group (:func:`_groups`) removing m = survivors - target
    weights has m strata over its min(survivors, band * m) smallest surviving |w|, ties broken by position."""
    out: Tensors = {}
    for group, order, stratum in _candidates(weights, masks, ctx, band):
        label = torch.full((sum(masks[n].numel() for n in group),), -1, dtype=torch.int64, device=order.device)
        label[order] = stratum
        out.update(_split(label, group, masks))
    return out


def _removed_per_stratum(priority: Tensors, candidates: list[tuple[list[str], torch.Tensor, torch.Tensor]]) -> Tensors:
    """Bool maps of the weights removed: in every stratum the candidate of highest ``priority`` (NaN last; equal
    priorities: the smaller |w| rank)."""
    out: Tensors = {}
    for group, order, stratum in candidates:
        p = torch.cat([priority[n].flatten() for n in group]).double()
        removed = torch.zeros(p.shape, dtype=torch.bool, device=p.device)
        if len(order):
            key = p[order.to(p.device)]
            key = torch.where(key.isnan(), -math.inf, key)
            # (stratum, -priority, rank) order: candidates come in rank order; a stable sort by -priority, then a
            # stable sort by stratum, leaves each stratum's pick first in it
            by_priority = torch.argsort(-key, stable=True)
            pick = by_priority[torch.argsort(stratum[by_priority], stable=True)]
            first = torch.ones(len(pick), dtype=torch.bool, device=pick.device)
            first[1:] = stratum[pick][1:] != stratum[pick][:-1]
            removed[order[pick[first]]] = True
        out.update(_split(removed, group, priority))
    return out


def stratum_removals(weights: Tensors, masks: Tensors, scores: Tensors, ctx: PruneContext,
                     band: int) -> tuple[Tensors, Tensors]:
    """Bool maps of the weights ``cavity-high`` and ``cavity-low`` remove (in that order) from the same weights,
    masks and per-weight cavity ``scores`` (Delta_ng, e.g. :func:`ticketscope.metrics.class_cavity_scores`),
    under ``ctx.scope`` and ``ctx.targets``: the rules' choice without the scoring, so both can be applied to the
    same trained weights (of any run, IMP's included) to measure their match (:func:`matched_magnitude_ratio`)."""
    candidates = _candidates(weights, masks, ctx, band)
    high = _removed_per_stratum({n: s.double() for n, s in scores.items()}, candidates)
    low = _removed_per_stratum({n: -s.double() for n, s in scores.items()}, candidates)
    return high, low


def _banded(weights: Tensors, masks: Tensors, ctx: PruneContext, sign: float) -> Tensors:
    """Remove one weight per stratum, the one with the largest ``sign`` * Delta_ng."""
    candidates = _candidates(weights, masks, ctx, ctx.params.band)
    priority = {n: sign * class_cavity_scores(w.double(), ctx.layer_inputs[n].double(), ctx.probe_labels).to(w.device)
                for n, w in weights.items()}
    removed = _removed_per_stratum(priority, candidates)
    return {n: (masks[n].bool() & ~removed[n]).to(masks[n].dtype) for n in masks}


@register("cavity-high", needs=("probe",), params=Band)
def cavity_high(weights: Tensors, masks: Tensors, ctx: PruneContext) -> Tensors:
    """In each stratum of ``band`` neighbouring |w| ranks among the band x m smallest survivors, remove the weight
    whose removal raises the class-pooled |kappa - 3| most (largest Delta_ng; an undefined score last)."""
    return _banded(weights, masks, ctx, 1.0)


@register("cavity-low", needs=("probe",), params=Band)
def cavity_low(weights: Tensors, masks: Tensors, ctx: PruneContext) -> Tensors:
    """In each stratum of ``band`` neighbouring |w| ranks among the band x m smallest survivors, remove the weight
    whose removal raises the class-pooled |kappa - 3| least (smallest Delta_ng; an undefined score last)."""
    return _banded(weights, masks, ctx, -1.0)


def mean_removed_magnitude(weights: torch.Tensor, mask_now: torch.Tensor, mask_next: torch.Tensor) -> float:
    """Mean |w| of the weights a pruning step removes (surviving in ``mask_now``, not in ``mask_next``), read from
    the weights the step saw (``weights``: the trained weights of the round before it); NaN if it removes none."""
    removed = mask_now.bool() & ~mask_next.bool()
    if (mask_next.bool() & ~mask_now.bool()).any():
        raise ValueError("mask_next revives weights pruned in mask_now: pruned weights never come back")
    return weights.abs()[removed].double().mean().item() if bool(removed.any()) else math.nan


def matched_magnitude_ratio(weights: Tensors, masks: Tensors, scores: Tensors, ctx: PruneContext, band: int) -> float:
    """Mean |w| that ``cavity-high`` removes over the mean |w| that ``cavity-low`` removes, both applied to the same
    weights, masks and scores (:func:`stratum_removals`): the match the strata give by construction at one step
    (1: exact). NaN when nothing is removed."""
    high, low = stratum_removals(weights, masks, scores, ctx, band)
    size = {n: w.abs().double() for n, w in weights.items()}

    def mean(removed: Tensors) -> float:
        count = sum(int(r.sum()) for r in removed.values())
        return sum(size[n][r].sum().item() for n, r in removed.items()) / count if count else math.nan

    return mean(high) / mean(low)


Step = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""One pruning step: (the trained weights it saw, the mask before it, the mask after it)."""


def removed_magnitude_ratio(a: Sequence[Step], b: Sequence[Step]) -> np.ndarray:
    """Per pruning step k, the mean |w| that rule A removes over the mean |w| that rule B removes,
    ``mean_removed_magnitude(*a[k]) / mean_removed_magnitude(*b[k])``: 1 is a perfect match in magnitude.

    A and B are the steps of two runs (e.g. cavity-high's and cavity-low's of one seed, or a rule's and IMP's),
    or two rules applied to the same weights; steps beyond the shorter run are left out. Averaging the ratio
    over seeds, or over the steps of a phase, is the caller's choice; this gives the raw per-step numbers."""
    return np.array([mean_removed_magnitude(*sa) / mean_removed_magnitude(*sb) for sa, sb in zip(a, b)])
