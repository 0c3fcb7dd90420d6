"""IPR, RF centre and spread, spatial localization: constructed RFs with known answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from ticketscope.metrics import ipr, ipr_null, rf_centre_and_spread, spatial_localization

L = 32
SIGMA = 2.0


def blob(centre: tuple[float, ...], sigmas: tuple[float, ...], size: int = L) -> torch.Tensor:
    """Flattened w = exp(-sum_a (r_a - c_a)^2 / (4 s_a^2)) on a size^dim grid (torus distances).

    Then w^2 is a Gaussian of standard deviation s_a along axis a; on the integer lattice its
    discrete mean and variance equal the continuous ones up to exp(-2 pi^2 s^2) ~ 1e-34 (Poisson
    summation), and a blob 8 s from the seam loses ~exp(-32) of its mass to truncation.
    """
    r = torch.arange(size, dtype=torch.float64)
    axes = []
    for c, s in zip(centre, sigmas):
        d = torch.remainder(r - c, size)
        d = torch.minimum(d, size - d)
        axes.append(torch.exp(-d**2 / (4 * s**2)))
    return math.prod(torch.meshgrid(*axes, indexing="ij")).flatten()


def torus_offset(a: torch.Tensor, b: torch.Tensor, size: int) -> torch.Tensor:
    d = torch.remainder(a - b, size)
    return torch.minimum(d, size - d)


def reference_spread(W: np.ndarray, shape: tuple[int, ...], torus: bool = True) -> np.ndarray:
    """SCIENCE.md's sigma of each row of W (n, D), written out pixel by pixel in numpy: p = w^2 summed
    over channels and normalized; per axis of length n the circular-mean centre
    c = n/2pi arg sum p exp(2 pi i r / n) and the distance min(|r - c| mod n, n - |r - c| mod n) on the
    torus, the plain mean and |r - c| otherwise; sigma^2 = sum over pixels of p * (sum of squared
    distances over the axes). Computed on the full pixel grid (the package uses the marginals)."""
    p = np.square(np.asarray(W, dtype=np.float64)).reshape(len(W), *shape)
    p = p.sum(1) if len(shape) == 3 else p
    pixels = tuple(range(1, p.ndim))
    p = p / p.sum(pixels, keepdims=True)
    squared = np.zeros(p.shape)
    for r, n in zip(np.indices(p.shape[1:]), p.shape[1:]):
        if torus:
            c = np.angle((p * np.exp(2j * np.pi * r / n)).sum(pixels)) * n / (2 * np.pi)
            d = np.mod(r - c.reshape(-1, *(1,) * r.ndim), n)
            squared += np.minimum(d, n - d) ** 2
        else:
            squared += (r - (p * r).sum(pixels).reshape(-1, *(1,) * r.ndim)) ** 2
    return np.sqrt((p * squared).sum(pixels))


# ------------------------------------------------------------------------------------------- IPR


def test_ipr_delta_flat_zero_and_reference() -> None:
    D = 100
    delta, flat, zero = torch.zeros(D), torch.ones(D), torch.zeros(D)
    delta[17] = -3.0
    out = ipr(torch.stack([delta, flat, zero]))
    assert out[0] == 1.0 and out[1].item() == pytest.approx(1 / D, rel=1e-6) and out[2].isnan()
    W = torch.randn(5, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = W.numpy()
    np.testing.assert_allclose(ipr(W).numpy(), (w**4).sum(1) / (w**2).sum(1) ** 2, rtol=1e-13)


def test_ipr_is_scale_invariant_without_underflow() -> None:
    """float32 w^4 underflows below ~1e-11; IPR of tiny weights must not become 0/0."""
    W = torch.randn(4, 50, generator=torch.Generator().manual_seed(1))
    for scale in (1e-20, 1e15):
        torch.testing.assert_close(ipr(W * scale), ipr(W), rtol=1e-5, atol=0)


@pytest.mark.parametrize("dim", [1, 2])
def test_ipr_of_gaussian_blob(dim: int) -> None:
    """sum w^4 / (sum w^2)^2 for w^2 Gaussian of sd s: (pi s^2)^(d/2) / (2 pi s^2)^d = (4 pi s^2)^(-d/2)."""
    w = blob((L / 2,) * dim, (SIGMA,) * dim)
    assert ipr(w[None]).item() == pytest.approx((4 * math.pi * SIGMA**2) ** (-dim / 2), rel=1e-9)


def test_ipr_null_gaussian_matches_three_over_n_plus_two() -> None:
    """For i.i.d. Gaussian w with n entries, w_i^2 / |w|^2 ~ Beta(1/2, (n-1)/2), so E[IPR] = 3 / (n + 2)."""
    nnz = [1, 2, 5, 20, 100]
    W = torch.zeros(len(nnz) + 1, 400)
    for row, n in enumerate(nnz):
        W[row, torch.randperm(400, generator=torch.Generator().manual_seed(row))[:n]] = torch.rand(n) + 0.5
    shuffles = 3000
    out = ipr_null(W, shuffles=shuffles, seed=3)
    assert out[0] == 1.0 and out[-1].isnan()  # one non-zero: IPR 1 always; no non-zeros: undefined
    rng = np.random.default_rng(0)  # independent estimate of the sampling sd of one draw
    for row, n in enumerate(nnz[1:], start=1):
        g = rng.standard_normal((20000, n))
        sd = ((g**4).sum(1) / (g**2).sum(1) ** 2).std()
        assert abs(out[row].item() - 3 / (n + 2)) < 5 * sd / math.sqrt(shuffles)
    torch.testing.assert_close(ipr_null(W, shuffles=7, seed=3), ipr_null(W, shuffles=7, seed=3), rtol=0, atol=0, equal_nan=True)
    assert not torch.equal(ipr_null(W, shuffles=7, seed=3)[1:-1], ipr_null(W, shuffles=7, seed=4)[1:-1])


# ------------------------------------------------------------------------------ centre and spread


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("torus", [True, False])
def test_spread_of_a_blob_well_inside(dim: int, torus: bool) -> None:
    centre = (13.0, 18.0)[:dim]
    c, s = rf_centre_and_spread(blob(centre, (SIGMA,) * dim)[None], (L,) * dim, torus)
    assert s.item() == pytest.approx(SIGMA * math.sqrt(dim), rel=1e-9)
    np.testing.assert_allclose(c[0].numpy(), centre, atol=1e-9)


def test_anisotropic_blob_and_channels() -> None:
    """Spread adds the variances of the axes; channels of one pixel share its position."""
    w = blob((10.0, 20.0), (1.5, 2.0))
    c, s = rf_centre_and_spread(w[None], (L, L))
    assert s.item() == pytest.approx(2.5, rel=1e-9)
    rgb = torch.cat([0.3 * w, -2.0 * w, 0 * w])[None]  # (3, L, L) flattened, per-channel scales
    c3, s3 = rf_centre_and_spread(rgb, (3, L, L))
    assert s3.item() == pytest.approx(s.item(), rel=1e-12)
    torch.testing.assert_close(c3, c, rtol=0, atol=1e-10)


def test_blob_across_the_seam() -> None:
    """On the torus a blob centred on the corner is the middle blob rolled: same spread. Without the
    torus its pieces sit at opposite edges: the plain weighted spread, computed here directly."""
    corner = blob((0.0, 31.0), (SIGMA, SIGMA))
    middle = blob((16.0, 16.0), (SIGMA, SIGMA))
    c, s = rf_centre_and_spread(torch.stack([corner, middle]), (L, L), torus=True)
    assert s[0].item() == pytest.approx(s[1].item(), rel=1e-12)
    assert torus_offset(c[0], torch.tensor([0.0, 31.0], dtype=torch.float64), L).max() < 1e-9
    c_open, s_open = rf_centre_and_spread(corner[None], (L, L), torus=False)
    p = (corner**2 / (corner**2).sum()).reshape(L, L).numpy()
    r = np.stack(np.meshgrid(np.arange(L), np.arange(L), indexing="ij"), -1)
    mean = (p[..., None] * r).sum((0, 1))
    assert s_open.item() == pytest.approx(np.sqrt((p * ((r - mean) ** 2).sum(-1)).sum()), rel=1e-12)
    np.testing.assert_allclose(c_open[0].numpy(), mean, rtol=1e-12)
    assert s_open.item() > 5 * s[0].item()


def test_delta_and_zero_rows() -> None:
    W = torch.zeros(2, L * L, dtype=torch.float64)
    W[0, 5 * L + 7] = 0.3
    c, s = rf_centre_and_spread(W, (L, L))
    assert s[0].item() == pytest.approx(0.0, abs=1e-9) and torus_offset(c[0], torch.tensor([5.0, 7.0]).double(), L).max() < 1e-9
    assert s[1].isnan() and c[1].isnan().all()


# ------------------------------------------------------------------------------- localization


GEOMETRIES = [((3, 8, 8), True), ((192,), False), ((12, 16), False), ((12, 16), True)]


def assert_matches_monte_carlo(w: torch.Tensor, shape: tuple[int, ...], torus: bool, rows: int = 16,
                               shuffles: int = 32, draws: int = 4000) -> float:
    """spatial_localization of ``rows`` copies of w against sigma(w) / E[sigma(pi w)]; both sigmas by
    reference_spread, the expectation a mean over ``draws`` numpy permutations (an independent generator).

    Tolerances, 5 standard errors of the difference, from the sd of one null draw (estimated from the
    draws, a few % of the mean): each row's ratio is sigma over the mean of ``shuffles`` draws (relative
    sd cv sqrt(1/shuffles + 1/draws) to first order); the rows' implied nulls sigma / ratio average
    rows * shuffles draws. Returns the expected ratio."""
    out = spatial_localization(w.repeat(rows, 1), shape, torus, shuffles=shuffles, seed=0).numpy()
    sigma = reference_spread(w[None].numpy(), shape, torus).item()
    null = reference_spread(np.random.default_rng(0).permuted(np.tile(w.numpy(), (draws, 1)), axis=1), shape, torus)
    mean, sd = null.mean(), null.std()
    np.testing.assert_allclose(out, sigma / mean, rtol=5 * sd / mean * math.sqrt(1 / shuffles + 1 / draws))
    assert abs((sigma / out).mean() - mean) < 5 * sd * math.sqrt(1 / (rows * shuffles) + 1 / draws)
    return sigma / mean


def test_localization_of_flat_delta_and_blob() -> None:
    """Flat: every permutation is the same vector, ratio exactly 1. Delta: a point wherever it goes,
    so the null spread is 0 too: NaN by definition. A blob: sigma = 2 sqrt(2) (w^2 a Gaussian of sd 2
    per axis) over its null spread (~12.1 px: ratio ~0.234), estimated independently."""
    W = torch.zeros(3, L * L, dtype=torch.float64)
    W[0] = 1.0
    W[1, 100] = 1.0
    out = spatial_localization(W, (L, L))
    assert out[0].item() == 1.0
    assert out[1:].isnan().all()
    w = blob((16.0, 16.0), (SIGMA, SIGMA))
    assert reference_spread(w[None].numpy(), (L, L)).item() == pytest.approx(2 * math.sqrt(2), rel=1e-12)
    assert assert_matches_monte_carlo(w, (L, L), torus=True) == pytest.approx(0.234, abs=0.001)


@pytest.mark.parametrize(("shape", "torus"), GEOMETRIES)
def test_localization_of_an_rf_across_the_seam(shape: tuple[int, ...], torus: bool) -> None:
    """Random weights under an envelope exp(-d^2 / (4 * 1.5^2)), d the torus distance to pixel 0 on
    every axis (channels alike): a compact RF on the torus, split between opposite edges without it."""
    grid = shape[1:] if len(shape) == 3 else shape
    envelope = math.prod(np.meshgrid(*(np.exp(-np.minimum(np.arange(n), n - np.arange(n)) ** 2 / 9) for n in grid),
                                     indexing="ij"))
    w = torch.from_numpy(np.random.default_rng(5).standard_normal(shape) * envelope).flatten()
    assert_matches_monte_carlo(w, shape, torus)


@pytest.mark.parametrize("shape", [(31,), (15, 15)])
def test_localization_null_is_exact_for_a_pair(shape: tuple[int, ...]) -> None:
    """Two equal weights at torus distance d have spread d / 2 (odd L: no antipodal ambiguity), so
    the null mean spread is E[d] / 2 over uniformly random distinct position pairs, which we
    enumerate. Each row's ratio is 0.5 / its null; the mean of 0.5 / ratio over rows and shuffles is
    checked to 5 standard errors."""
    D, rows, shuffles = math.prod(shape), 32, 300
    W = torch.zeros(rows, D, dtype=torch.float64)
    W[:, 0] = W[:, 1] = 1.0  # neighbours along the last axis: distance 1
    ratio = spatial_localization(W, shape, shuffles=shuffles, seed=1)
    null = 0.5 / ratio
    coords = np.array(list(itertools.product(*(range(n) for n in shape))))
    i, j = np.triu_indices(D, 1)
    delta = np.abs(coords[i] - coords[j])
    d = np.sqrt((np.minimum(delta, np.array(shape) - delta) ** 2).sum(1)) / 2
    se = d.std() / math.sqrt(rows * shuffles)
    assert abs(null.mean().item() - d.mean()) < 5 * se


def test_localization_seeding_dtype_and_bad_shape() -> None:
    W = torch.randn(5, 3 * 8 * 8, generator=torch.Generator().manual_seed(0))
    a = spatial_localization(W, (3, 8, 8), seed=7)
    torch.testing.assert_close(a, spatial_localization(W, (3, 8, 8), seed=7), rtol=0, atol=0)
    assert not torch.equal(a, spatial_localization(W, (3, 8, 8), seed=8))
    assert a.dtype == torch.float32 and a.shape == (5,)
    with pytest.raises(ValueError, match="shape"):
        spatial_localization(W, (8, 8))


@pytest.mark.parametrize(("shape", "torus"), GEOMETRIES)
def test_localization_without_structure(shape: tuple[int, ...], torus: bool) -> None:
    """Rows of i.i.d. Gaussian weights have no spatial structure: a row is distributed as any
    permutation of itself, so its spread sigma(w) and each null draw sigma(pi w) are identically
    distributed and E[sigma(w) - null] = 0 exactly. The spread itself is checked against the
    reference to rounding; the mean over rows of sigma(w) - sigma(w) / ratio to 5 standard errors
    (estimated from the rows; rows are independent)."""
    rows = 200
    W = torch.randn(rows, 192, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    spread = reference_spread(W.numpy(), shape, torus)
    np.testing.assert_allclose(rf_centre_and_spread(W, shape, torus)[1].numpy(), spread, rtol=1e-10)
    ratio = spatial_localization(W, shape, torus=torus, seed=2).numpy()
    difference = spread - spread / ratio
    assert abs(difference.mean()) < 5 * difference.std() / math.sqrt(rows)


# ------------------------------------------------------------------------------------- batches
def test_a_batch_with_one_seed_per_slice_draws_as_its_unbatched_calls() -> None:
    """W (B, K, D), e.g. a layer at B rounds, with seeds [s_0 .. s_B-1]: slice b gets exactly the null draws of
    the unbatched call with s_b (shuffle positions, Gaussian widths), so batching changes no number."""
    g = torch.Generator().manual_seed(5)
    W = torch.randn(3, 6, 64, generator=g, dtype=torch.float64)
    W *= torch.rand(3, 6, 64, generator=g) < torch.tensor([0.9, 0.4, 0.1])[:, None, None]  # unequal max widths
    W[2, 0] = 0.0  # a dead unit
    seeds = [11, 0, 11]
    loc = spatial_localization(W, (8, 8), seed=seeds)
    nul = ipr_null(W, shuffles=5, seed=seeds)
    assert loc.shape == nul.shape == (3, 6)
    for b, s in enumerate(seeds):
        torch.testing.assert_close(loc[b], spatial_localization(W[b], (8, 8), seed=s), rtol=1e-13, atol=0, equal_nan=True)
        torch.testing.assert_close(nul[b], ipr_null(W[b], shuffles=5, seed=s), rtol=1e-13, atol=0, equal_nan=True)
    with pytest.raises(ValueError, match="one per slice"):
        ipr_null(W, seed=[1, 2])
