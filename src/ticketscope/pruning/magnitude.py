"""Magnitude and random pruning: IMP, one-shot (magnitude of the dense trained net) and uniform random."""

from __future__ import annotations

import torch

from ..seeding import generator
from .base import PruneContext, Tensors, keep_top, register


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
