"""Kurtosis, per class and pooled, against scipy and against known distributions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from ticketscope.metrics import class_kurtosis, kurtosis, nongaussianity


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
    np.testing.assert_allclose(out.overall.numpy(), kurtosis(H).numpy(), rtol=0)
    excess = class_kurtosis(H, y, excess=True)
    np.testing.assert_allclose(excess.pooled.numpy(), out.pooled.numpy() - 3, rtol=1e-12)


def test_gaussian_classes_of_different_variance() -> None:
    """Each class Gaussian (kappa 3) but the mixture of variances 1 and 9 has kappa = 3 E[s^4] / E[s^2]^2
    = 3 * 41 / 25 = 4.92. Sampling sd of kappa at n = 40000 is ~sqrt(24 / n) * (1 + ...) < 0.05."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(80000) % 2
    H = torch.randn(80000, 3, generator=g, dtype=torch.float64) * (1 + 2 * y[:, None])
    out = class_kurtosis(H, y, num_classes=2)
    np.testing.assert_allclose(out.per_class.numpy(), 3.0, atol=0.2)
    np.testing.assert_allclose(out.pooled.numpy(), 3.0, atol=0.15)
    np.testing.assert_allclose(out.overall.numpy(), 4.92, atol=0.25)
