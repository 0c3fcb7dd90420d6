"""Kurtosis, per class and pooled, against scipy and against known distributions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from ticketscope.metrics import class_kurtosis, kurtosis, nongaussianity, nongaussianity_null, preactivations


def heavy_tailed(n: int = 500, K: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, K, generator=g, dtype=torch.float64) ** 3 * torch.arange(1.0, K + 1) + 1e3


@pytest.mark.parametrize("excess", [False, True])
def test_matches_scipy(excess: bool) -> None:
    H = heavy_tailed()
    ref = scipy.stats.kurtosis(H.numpy(), axis=0, fisher=excess, bias=True)
    out = kurtosis(H, excess=excess)
    assert out.dtype == torch.float64 and out.shape == (6,)
    # Same two-pass float64 formula; sums in a different order: agreement to ~1e-14.
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12)


def test_float32_is_computed_in_float64() -> None:
    H = heavy_tailed().float()
    ref = scipy.stats.kurtosis(H.double().numpy(), axis=0, fisher=False, bias=True)
    np.testing.assert_allclose(kurtosis(H).numpy(), ref, rtol=1e-12)


def test_constant_columns_are_nan() -> None:
    H = heavy_tailed()
    H[:, 1] = 0.1  # float64 mean of n copies of 0.1 is not exactly 0.1: no variance threshold needed
    H[:, 2] = 0.0
    out = kurtosis(H)
    assert out[1:3].isnan().all() and out[[0, 3, 4, 5]].isfinite().all()


def test_known_distributions() -> None:
    """Balanced +-1 (a sign, as high-gain NLGP pixels): kappa = 1 exactly, |kappa - 3| = 2."""
    H = torch.tensor([[1.0, 1.0], [-1.0, 2.0], [1.0, 3.0], [-1.0, 4.0]])
    kappa = kurtosis(H)
    assert kappa[0].item() == 1.0
    assert kappa[1].item() == pytest.approx((2 * 1.5**4 + 2 * 0.5**4) / 4 / 1.25**2, rel=1e-14)
    assert nongaussianity(kappa)[0].item() == 2.0
    assert kurtosis(H, excess=True)[0].item() == -2.0


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy, on the constant column
def test_class_kurtosis_matches_scipy_per_class() -> None:
    H = heavy_tailed(n=600)
    y = torch.arange(600) % 4
    y[y == 2] = 0  # class 2 absent
    H[y == 1, 3] = 5.0  # column 3 constant within class 1 only
    out = class_kurtosis(H, y)
    assert out.per_class.shape == (4, 6)
    assert out.per_class[2].isnan().all() and out.class_counts.tolist() == [300, 150, 0, 150]
    for c in (0, 1, 3):
        ref = scipy.stats.kurtosis(H[y == c].numpy(), axis=0, fisher=False, bias=True)
        np.testing.assert_allclose(out.per_class[c].numpy(), ref, rtol=1e-12)  # NaN where constant
    # Pooled: frequency-weighted mean over the classes where kappa is defined.
    f = np.array([300, 150, 0, 150]) / 600
    per = out.per_class.numpy()
    expected = np.array([np.nansum(f * per[:, k]) / f[np.isfinite(per[:, k])].sum() for k in range(6)])
    np.testing.assert_allclose(out.pooled.numpy(), expected, rtol=1e-12)
    assert out.pooled[3].item() == pytest.approx((300 * per[0, 3] + 150 * per[3, 3]) / 450, rel=1e-12)
    ref_all = scipy.stats.kurtosis(H.numpy(), axis=0, fisher=False, bias=True)  # the class mixture, no labels
    np.testing.assert_allclose(out.overall.numpy(), ref_all, rtol=1e-12)
    excess = class_kurtosis(H, y, excess=True)
    np.testing.assert_allclose(excess.pooled.numpy(), out.pooled.numpy() - 3, rtol=1e-12)


def test_gaussian_classes_of_different_variance() -> None:
    """Each class Gaussian (kappa 3) but the mixture of variances 1 and 9 has kappa = 3 E[s^4] / E[s^2]^2
    = 3 * 41 / 25 = 4.92. Sampling sd (300 simulated repeats): 0.023 per class (sqrt(24 / 40000) = 0.024),
    0.017 pooled over the two classes, 0.041 for the mixture of n = 80000; tolerances are 4.5 sd."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(80000) % 2
    H = torch.randn(80000, 3, generator=g, dtype=torch.float64) * (1 + 2 * y[:, None])
    out = class_kurtosis(H, y, num_classes=2)
    np.testing.assert_allclose(out.per_class.numpy(), 3.0, atol=0.105)
    np.testing.assert_allclose(out.pooled.numpy(), 3.0, atol=0.077)
    np.testing.assert_allclose(out.overall.numpy(), 4.92, atol=0.185)


def _all_sign_vectors(D: int) -> torch.Tensor:
    """Every x in {-1, +1}^D once: averages over it are exact i.i.d. Rademacher expectations."""
    bits = (torch.arange(2**D)[:, None] >> torch.arange(D)) & 1
    return (2 * bits - 1).double()


def test_pooled_nongaussianity_and_its_null_on_iid_signs_are_exact():
    """i.i.d. +-1 inputs: E h^4 = 3 (sum w^2)^2 - 2 sum w^4, so kappa = 3 - 2 IPR(w) and |kappa - 3| = 2 IPR
    exactly, for every permutation of w: the sparsity-matched null equals the measure and the excess is
    0 (rounding only: 1e-12)."""
    X1 = _all_sign_vectors(10)
    X, y = torch.cat([X1, X1]), torch.cat([torch.zeros(1024), torch.ones(1024)]).long()  # two exact classes
    g = torch.Generator().manual_seed(0)
    W = torch.randn(6, 10, generator=g, dtype=torch.float64) * (torch.rand(6, 10, generator=g) < 0.5)
    W[0, :2] = torch.tensor([1.0, 0.5])  # at least two weights in every unit
    ipr = W.pow(4).sum(1) / W.square().sum(1).square()
    ck = class_kurtosis(X @ W.T, y)
    np.testing.assert_allclose(ck.ng_pooled.numpy(), 2 * ipr.numpy(), rtol=1e-12)
    null = nongaussianity_null(W, X, y, shuffles=4, seed=1)
    np.testing.assert_allclose(null.pooled.numpy(), 2 * ipr.numpy(), rtol=1e-12)
    np.testing.assert_allclose(null.per_class.numpy(), np.stack([2 * ipr.numpy()] * 2), rtol=1e-12)


def test_local_blob_on_correlated_nlgp_has_positive_excess():
    """Four neighbouring pixels of a high-gain NLGP ring (xi = 5) share their sign: h is nearly +-4, a
    two-point variable with kappa near 1, |kappa - 3| near 2. Scattered over the ring the same weights read
    mostly weakly correlated signs: |kappa - 3| of 2 IPR = 0.5 for independent ones, 0.75 measured here
    (random pairs can fall within xi). The excess (1.0 here) dwarfs the sampling sd of |kappa - 3| at
    n = 8192 per class (< 0.05)."""
    from ticketscope.data import NLGPTask

    X, y = NLGPTask(L=64, dim=1, xis=(4.0, 6.0), gain=10.0).sample(16384, seed=0)
    W = torch.zeros(1, 64, dtype=torch.float64)
    W[0, 10:14] = 1.0
    null = nongaussianity_null(W, X, y, shuffles=16, seed=0)
    ng = class_kurtosis(X.double() @ W.T, y).ng_pooled
    assert ng.item() > 1.5 and null.pooled.item() < 1.0
    assert (ng - null.pooled).item() > 0.7


def test_preactivations_of_a_batch_of_layers() -> None:
    """Unit k of layer b is column b*K + k, for inputs shared by the batch and for each layer's own."""
    g = torch.Generator().manual_seed(2)
    W = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    X = torch.randn(3, 7, 5, generator=g).float()  # float32 inputs are computed in float64
    shared = preactivations(W, X[0])
    own = preactivations(W, X)
    assert shared.shape == own.shape == (7, 12) and own.dtype == torch.float64
    for b in range(3):
        torch.testing.assert_close(shared[:, 4 * b:4 * b + 4], X[0].double() @ W[b].T, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(own[:, 4 * b:4 * b + 4], X[b].double() @ W[b].T, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(preactivations(W[0], X[0]), X[0].double() @ W[0].T, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shared", [True, False])
def test_nongaussianity_null_of_a_batch_equals_its_unbatched_calls(shared: bool) -> None:
    """A batch W (B, K, D) with one seed per layer: each layer's null is its unbatched call's (same shuffles),
    computed once for the whole batch in blocks of units (here many more units than one block holds)."""
    from ticketscope.metrics.moments import BLOCK_ELEMENTS

    g = torch.Generator().manual_seed(3)
    n, D = 600, 9
    y = torch.arange(n) % 3
    y[y == 2] = 0  # num_classes 3, class 2 absent
    X = torch.randn(4, n, D, generator=g, dtype=torch.float64) ** 3 + torch.sign(torch.randn(4, n, D, generator=g))
    X[:, :, 2] = 0.5  # a constant input (centred to exact zeros)
    W = torch.randn(4, BLOCK_ELEMENTS // n, D, generator=g, dtype=torch.float64) * (torch.rand(4, 1, D, generator=g) < 0.6)
    W[1, :2] = 0.0  # dead units: h = 0
    inputs = X[0] if shared else X
    seeds = [7, 8, 7, 9]
    null = nongaussianity_null(W, inputs, y, num_classes=3, shuffles=3, seed=seeds)
    assert null.per_class.shape == (3, 4, len(W[0])) and null.pooled.shape == (4, len(W[0]))
    assert null.per_class[2].isnan().all() and null.pooled[1, :2].isnan().all()
    for b, s in enumerate(seeds):
        one = nongaussianity_null(W[b], X[0] if shared else X[b], y, num_classes=3, shuffles=3, seed=s)
        torch.testing.assert_close(null.per_class[:, b], one.per_class, rtol=1e-12, atol=0, equal_nan=True)
        torch.testing.assert_close(null.pooled[b], one.pooled, rtol=1e-12, atol=0, equal_nan=True)
    # and the unbatched null is the shuffles' class kurtosis from scratch (scipy, rows in any order)
    from ticketscope.metrics.nulls import row_shuffles

    ref = []
    for V in row_shuffles(W[0], 3, seeds[0], "nongaussianity_null"):
        h = X[0].numpy() @ V.numpy().T
        ref.append([np.abs(scipy.stats.kurtosis(h[y.numpy() == c], axis=0, fisher=False) - 3) for c in (0, 1)])
    np.testing.assert_allclose(null.per_class[:2, 0].numpy(), np.mean(ref, axis=0), rtol=1e-10)
