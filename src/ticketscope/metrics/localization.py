"""How local a unit's receptive field (RF) is: IPR, spatial spread, and their sparsity-matched nulls.

``W`` is a layer's (K, D) weight matrix, one unit's incoming weights per row, pruned weights
exactly zero (any leading batch dimensions work; D is the last axis). Spatial functions take the
input ``shape`` whose row-major flattening gives D (see :mod:`ticketscope.metrics.grid`): ``(L,)``,
``(H, W)``, or ``(C, H, W)`` with a leading channel axis, whose channels share each pixel's position.

Every random null is seeded as :mod:`ticketscope.metrics.nulls` describes: the same seed gives the
same numbers on every device, and a sequence of B seeds for a batch W (B, ..., D) gives slice W[b]
exactly the draws of an unbatched call with seed ``seed[b]``, so batching changes no number.
"""

from __future__ import annotations

import math

import torch

from ..seeding import generator
from .grid import Shape, on_pixel_grid
from .nulls import Seeds, row_shuffles, seeded_slices


def ipr(W: torch.Tensor) -> torch.Tensor:
    """Inverse participation ratio of each row, IPR = sum_i w_i^4 / (sum_i w_i^2)^2; NaN for zero rows.

    Ranges from 1/D (flat) to 1 (a single weight). Rows are divided by their largest |w| first
    (IPR is scale invariant), so w^4 neither underflows nor overflows.
    """
    p = (W / W.abs().amax(dim=-1, keepdim=True)).square()
    return p.square().sum(-1) / p.sum(-1).square()


def ipr_null(W: torch.Tensor, shuffles: int = 32, seed: Seeds = 0) -> torch.Tensor:
    """Sparsity-matched null of :func:`ipr` for each row: the mean IPR over ``shuffles`` draws.

    SCIENCE.md's generic null, "the same weights at random positions", is no null for IPR: IPR
    is invariant under permutations, so it would equal ``ipr(W)``. What IPR *can* be compared
    with is what sparsity alone gives: i.i.d. Gaussian vectors with as many non-zeros n as the
    row, whose mean IPR is exactly 3 / (n + 2) (~3/n); an IPR above it means the surviving weight
    magnitudes are more unequal than random ones. Rows without non-zeros give NaN.
    """
    seeds, batch = seeded_slices(W, seed)
    means = []
    for s, w in zip(seeds, batch):
        nnz = (w != 0).sum(-1, keepdim=True).cpu()
        support = torch.arange(max(int(nnz.max()), 1)) < nnz  # the first n entries of each draw
        g = generator("ipr_null.gaussian", s)
        draws = torch.stack([torch.randn(support.shape, generator=g, dtype=torch.float64) for _ in range(shuffles)])
        means.append(ipr((draws * support).to(device=W.device, dtype=W.dtype)).mean(0))
    return torch.stack(means).reshape(W.shape[:-1])


def rf_centre_and_spread(W: torch.Tensor, shape: Shape, torus: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre c (..., dim) and spread sigma (...,) of each RF, with pixel weights p_i = w_i^2 / sum_j w_j^2.

    Per spatial axis of length L, c is the circular mean (L / 2pi) arg sum_i p_i exp(2pi i r_i / L)
    in [0, L) on the torus, and the plain mean sum_i p_i r_i otherwise. Then
    sigma = sqrt(sum_i p_i |r_i - c|^2), |.| the torus distance on the torus; both only need the
    marginals of p along each axis. Coordinates are in pixels; NaN for all-zero rows.
    """
    p = on_pixel_grid(W.square(), shape)  # w^2 per pixel, channels summed
    spatial = tuple(range(W.dim() - 1, p.dim()))
    p = p / p.sum(spatial, keepdim=True)
    centres, variances = [], []
    for axis, L in zip(spatial, p.shape[W.dim() - 1:]):
        others = tuple(a for a in spatial if a != axis)
        marginal = p.sum(others) if others else p  # (..., L); sum(()) would reduce every axis
        r = torch.arange(L, device=W.device, dtype=p.dtype)
        if torus:
            angle = 2 * math.pi * r / L
            c = torch.atan2((marginal * angle.sin()).sum(-1), (marginal * angle.cos()).sum(-1))
            c = torch.remainder(c * L / (2 * math.pi), L)
            d = torch.remainder(r - c[..., None], L)
            d = torch.minimum(d, L - d)
        else:
            c = (marginal * r).sum(-1)
            d = r - c[..., None]
        centres.append(c)
        variances.append((marginal * d.square()).sum(-1))
    return torch.stack(centres, -1), torch.stack(variances).sum(0).sqrt()


def spatial_localization(
    W: torch.Tensor,
    shape: Shape,
    torus: bool = True,
    shuffles: int = 8,
    seed: int = 0,
) -> torch.Tensor:
    """Sparsity-controlled localization of each RF: sigma(w) / mean_s sigma(pi_s w).

    sigma is the spread of :func:`rf_centre_and_spread`; pi_1 .. pi_shuffles are seeded random
    permutations of each row's D entries (the same weight values at random positions). 1: no
    more local than chance; -> 0: a point. With channels, the spread is that of the pixel power
    map sum_c w_c^2 (the permutation moves weights across channels and pixels alike). NaN for
    rows with fewer than two non-zero weights: a single weight is a point wherever it lands, so
    its null spread is zero as well and the ratio is undefined.
    """
    def spread(V: torch.Tensor) -> torch.Tensor:
        return rf_centre_and_spread(V, shape, torus)[1]

    null = torch.stack([spread(V) for V in row_shuffles(W, shuffles, seed, "spatial_localization")]).mean(0)
    ratio = spread(W) / null
    return torch.where((W != 0).sum(-1) >= 2, ratio, torch.nan)
