"""Cavity pruning: remove the weights whose single removal most raises the pre-activations' non-Gaussianity."""

from __future__ import annotations

import torch

from .base import PruneContext, Tensors, keep_top, register


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
    from ..metrics import class_cavity_scores

    scores = {}
    for n, w in weights.items():
        alive = masks[n].bool()
        ng = class_cavity_scores(w.double(), ctx.layer_inputs[n].double(), ctx.probe_labels)
        ng = torch.nan_to_num(ng, nan=0.0).to(w.device)
        scores[n] = (1 - ctx.cavity_mix) * _zscore(w.abs().double(), alive) - ctx.cavity_mix * _zscore(ng, alive)
    return keep_top(scores, masks, ctx)
