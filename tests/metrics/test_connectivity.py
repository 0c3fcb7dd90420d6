"""Pellegrini-Biroli connectivity statistics against brute-force enumeration and exact nulls."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
import scipy.stats
import torch

from ticketscope.metrics import displacement_histogram, in_degree_histogram

SHAPES = [(7,), (6,), (5, 6), (4, 4), (3, 4, 5)]


def positions(shape: tuple[int, ...]) -> np.ndarray:
    """(D, dim) pixel coordinates of each flat input index (a leading channel axis of 3-long shapes dropped)."""
    coords = np.array(list(itertools.product(*(range(n) for n in shape))))
    return coords[:, 1:] if len(shape) == 3 else coords


def squared_distance(p: np.ndarray, q: np.ndarray, grid: tuple[int, ...], torus: bool) -> int:
    delta = np.abs(p - q)
    if torus:
        delta = np.minimum(delta, np.array(grid) - delta)
    return int((delta**2).sum())


def enumerate_pairs(mask: np.ndarray, shape: tuple[int, ...], torus: bool) -> Counter:
    """Squared distance of every unordered pair of surviving connections of every unit."""
    pos, grid = positions(shape), shape[-2:] if len(shape) == 3 else shape
    return Counter(
        squared_distance(pos[i], pos[j], grid, torus)
        for row in mask
        for i, j in itertools.combinations(np.flatnonzero(row), 2)
    )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("torus", [True, False])
def test_displacement_histogram_matches_enumeration(shape: tuple[int, ...], torus: bool) -> None:
    D = math.prod(shape)
    mask = torch.rand(6, D, generator=torch.Generator().manual_seed(D)) < 0.4
    mask[0] = False  # a unit with no connection
    mask[1] = False
    mask[1, 3] = True  # and one with a single connection: neither has pairs
    hist = displacement_histogram(mask, shape, torus)
    observed = enumerate_pairs(mask.numpy(), shape, torus)
    geometry = enumerate_pairs(np.ones((1, D), dtype=bool), shape, torus)  # pairs of input positions
    squared = sorted(geometry)
    np.testing.assert_allclose(hist.distance.numpy(), np.sqrt(squared), rtol=1e-15)
    assert hist.observed.dtype == torch.int64
    assert hist.observed.tolist() == [observed[s] for s in squared]
    m = mask.sum(1).numpy()
    unit_pairs = (m * (m - 1) / 2).sum()
    null = unit_pairs * np.array([geometry[s] for s in squared]) / (D * (D - 1) / 2)
    np.testing.assert_allclose(hist.null.numpy(), null, rtol=1e-12)
    assert hist.null.sum().item() == pytest.approx(hist.observed.sum().item(), rel=1e-12) == unit_pairs


def test_contiguous_block_is_local() -> None:
    """m consecutive connections on an open line: m - d pairs at distance d, 5x the null at d = 1."""
    mask = torch.zeros(1, 40, dtype=torch.bool)
    mask[0, 10:18] = True
    hist = displacement_histogram(mask, (40,), torus=False)
    assert hist.distance.tolist() == list(range(1, 40))  # no two inputs at distance 0 without channels
    assert hist.observed.tolist() == [8 - d for d in range(1, 8)] + [0] * 32
    assert hist.null[0].item() == pytest.approx(28 * 39 / 780, rel=1e-12)  # C(8,2) N(1) / C(40,2): 1.4 vs 7


def test_weights_work_as_masks() -> None:
    W = torch.randn(5, 36, generator=torch.Generator().manual_seed(0))
    W[W.abs() < 0.7] = 0
    a, b = displacement_histogram(W, (6, 6)), displacement_histogram(W != 0, (6, 6))
    assert torch.equal(a.observed, b.observed) and torch.equal(a.null, b.null)
    with pytest.raises(ValueError, match="shape"):
        displacement_histogram(W, (5, 6))


@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
def test_in_degree_histogram(density: float) -> None:
    K, D = 50, 30
    mask = torch.rand(K, D, generator=torch.Generator().manual_seed(1)) < density
    hist = in_degree_histogram(mask)
    degree = mask.sum(1).numpy()
    assert hist.degree.tolist() == list(range(D + 1))
    assert hist.observed.tolist() == [int((degree == k).sum()) for k in range(D + 1)]
    assert hist.density == pytest.approx(degree.sum() / (K * D), rel=1e-15)
    binomial = K * scipy.stats.binom.pmf(np.arange(D + 1), D, hist.density)
    np.testing.assert_allclose(hist.null.numpy(), binomial, rtol=1e-10, atol=1e-300)
    assert hist.null.sum().item() == pytest.approx(K, rel=1e-12) and hist.observed.sum().item() == K


def test_in_degree_of_a_local_layer_departs_from_binomial() -> None:
    """Half the units dense, half nearly empty: far more mass in the tails than the binomial null."""
    mask = torch.zeros(40, 50, dtype=torch.bool)
    mask[:20, :45] = True
    mask[20:, :2] = True
    hist = in_degree_histogram(mask)
    assert hist.observed[45] == 20 and hist.observed[2] == 20 and hist.null[[2, 45]].sum() < 1e-3
