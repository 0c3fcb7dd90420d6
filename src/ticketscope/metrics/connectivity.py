"""Pellegrini-Biroli connectivity statistics of a pruned layer, each against its null.

``mask`` is a layer's (K, D) connectivity, one unit per row, non-zero = surviving connection
(a boolean mask or the masked weights themselves). ``shape`` is the input shape whose row-major
flattening gives D: ``(L,)``, ``(H, W)`` or ``(C, H, W)``; with channels, a connection's position
is its pixel (two channels of one pixel are at distance 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .grid import Shape, on_pixel_grid


@dataclass(frozen=True)
class DisplacementHistogram:
    """Pairs of surviving connections of one unit, pooled over units, by their distance.

    Bins are the distinct distances the pixel grid allows: d = sqrt(s) for each integer squared
    distance s at which some pair of input positions lies (exact, no rounding; coarsen at will).
    """

    distance: torch.Tensor  # (B,) float64, increasing
    observed: torch.Tensor  # (B,) int64: unordered pairs (same unit) at that distance
    null: torch.Tensor  # (B,) float64: expected count with each unit's connections at random positions


@dataclass(frozen=True)
class InDegreeHistogram:
    """Units by in-degree (number of surviving connections) against the binomial null."""

    degree: torch.Tensor  # (D + 1,) int64: 0 .. D
    observed: torch.Tensor  # (D + 1,) int64: units with that in-degree
    null: torch.Tensor  # (D + 1,) float64: K * Binomial(D, density).pmf(degree)
    density: float  # surviving fraction of the layer's K * D connections


def displacement_histogram(mask: torch.Tensor, shape: Shape, torus: bool = True) -> DisplacementHistogram:
    """Histogram of the distance between pairs of surviving connections of the same unit.

    Observed: pooled over units, computed for all pairs at once from each unit's autocorrelation
    on the pixel grid (FFT; zero-padded when not ``torus``). Null, exact: a unit with m surviving
    connections placed uniformly at random has C(m, 2) * N(d) / C(D, 2) expected pairs at
    distance d, N(d) the number of pairs of input positions at distance d.
    """
    mask = mask != 0
    D = mask.shape[-1]
    observed = _pairs_by_squared_distance(_pixel_counts(mask, shape), torus)
    positions = _pairs_by_squared_distance(_pixel_counts(torch.ones_like(mask[:1]), shape), torus)
    m = mask.sum(-1, dtype=torch.float64)
    null = (m * (m - 1) / 2).sum() * positions / (D * (D - 1) / 2)
    (squared,) = torch.nonzero(positions, as_tuple=True)
    return DisplacementHistogram(squared.double().sqrt(), observed[squared].round().long(), null[squared])


def in_degree_histogram(mask: torch.Tensor) -> InDegreeHistogram:
    """In-degree counts of a layer's K units and the null K * C(D, k) p^k (1 - p)^(D - k).

    p = (surviving connections) / (K * D), the layer density: the null is random pruning at the
    layer's sparsity. Both histograms sum to K.
    """
    K, D = mask.shape
    degree = (mask != 0).sum(-1)
    density = degree.sum().item() / (K * D)
    k = torch.arange(D + 1, device=mask.device)
    kf, p = k.double(), torch.tensor(density, dtype=torch.float64, device=mask.device)
    log_pmf = (math.lgamma(D + 1) - torch.lgamma(kf + 1) - torch.lgamma(D - kf + 1)
               + torch.special.xlogy(kf, p) + torch.special.xlog1py(D - kf, -p))
    return InDegreeHistogram(k, torch.bincount(degree, minlength=D + 1), K * log_pmf.exp(), density)


def _pixel_counts(mask: torch.Tensor, shape: Shape) -> torch.Tensor:
    """(K, *spatial) float64: each unit's surviving connections per pixel (channels summed)."""
    return on_pixel_grid(mask.to(torch.float64), shape)


def _pairs_by_squared_distance(counts: torch.Tensor, torus: bool) -> torch.Tensor:
    """Unordered pairs of distinct connections of one unit at each squared distance s (index s), pooled.

    With n_k(r) unit k's connections at pixel r, A(delta) = sum_k sum_r n_k(r) n_k(r + delta)
    counts ordered pairs at displacement delta (self-pairs included at delta = 0); A is the
    inverse FFT of sum_k |FFT n_k|^2. Every unordered pair appears twice, at delta and -delta.
    """
    grid = counts.shape[1:]
    sizes = grid if torus else tuple(2 * L - 1 for L in grid)  # padding makes the correlation linear
    dims = tuple(range(1, counts.dim()))
    power = torch.fft.rfftn(counts, s=sizes, dim=dims).abs().square().sum(0)
    ordered = torch.fft.irfftn(power, s=sizes, dim=tuple(range(len(sizes)))).round()
    squared = torch.zeros(sizes, dtype=torch.long, device=counts.device)
    for a, n in enumerate(sizes):  # index t along an axis is the displacement min(t, n - t) either way
        t = torch.arange(n, device=counts.device)
        squared = squared + torch.minimum(t, n - t).square().reshape((-1,) + (1,) * (len(sizes) - 1 - a))
    pairs = torch.bincount(squared.flatten(), weights=ordered.flatten())
    pairs[0] -= counts.sum()
    return pairs / 2
