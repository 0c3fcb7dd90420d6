"""Signed excess kurtosis kappa - 3 of pre-activations, per class and pooled, beside |kappa - 3|, and its
sparsity-matched null: against scipy on planted data, exact cases, and the unsigned measures it sits beside."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from ticketscope.metrics import class_kurtosis, nongaussianity_null, pool_classes, row_shuffles


def planted(n: int = 20_000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns of known sign, by class (labels 0, 1, 2 with 1/2, 1/3, 1/6 of the rows):
    0 uniform (excess -1.2), 1 +-1 (-2), 2 Laplace (+3), 3 Student t_7 (+2), 4 Gaussian (0),
    5 uniform in class 0 and Laplace in classes 1 and 2 (signs cancel when pooled, |.| does not)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[1 / 2, 1 / 3, 1 / 6])
    cols = [rng.uniform(-1, 1, n), rng.choice([-1.0, 1.0], n), rng.laplace(size=n), rng.standard_t(7, n),
            rng.standard_normal(n), np.where(y == 0, rng.uniform(-1, 1, n), rng.laplace(size=n))]
    H = np.stack(cols, 1) * np.arange(1, 7) + 0.5  # scale and shift: kurtosis is invariant
    return torch.from_numpy(H), torch.from_numpy(y)


@pytest.mark.parametrize("excess", [False, True])
def test_signed_excess_kurtosis_matches_scipy_per_class_pooled_and_overall(excess: bool) -> None:
    H, y = planted()
    ck = class_kurtosis(H, y, excess=excess)
    Hn, yn = H.numpy(), y.numpy()
    per_class = np.stack([scipy.stats.kurtosis(Hn[yn == c], axis=0, fisher=True, bias=True) for c in range(3)])
    # the same two-pass float64 formula, sums in another order: agreement to ~1e-13
    np.testing.assert_allclose(ck.excess_per_class.numpy(), per_class, rtol=1e-11, atol=1e-12)
    f = np.bincount(yn, minlength=3) / len(yn)
    np.testing.assert_allclose(ck.excess_pooled.numpy(), f @ per_class, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(ck.ng_per_class.numpy(), np.abs(per_class), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(ck.ng_pooled.numpy(), f @ np.abs(per_class), rtol=1e-11, atol=1e-12)
    overall = scipy.stats.kurtosis(Hn, axis=0, fisher=True, bias=True)
    np.testing.assert_allclose(ck.excess_overall.numpy(), overall, rtol=1e-11, atol=1e-12)


def test_excess_and_plain_kurtosis_give_the_same_signed_and_unsigned_measures() -> None:
    """``ng_pooled`` of class_kurtosis(excess=True) is |kappa - 3| too (not |kappa - 6|)."""
    H, y = planted(3000, seed=1)
    plain, excess = class_kurtosis(H, y), class_kurtosis(H, y, excess=True)
    for name in ("excess_per_class", "excess_pooled", "excess_overall", "ng_per_class", "ng_pooled"):
        torch.testing.assert_close(getattr(plain, name), getattr(excess, name), rtol=0, atol=1e-12)
    torch.testing.assert_close(plain.excess_pooled, plain.pooled - 3, rtol=0, atol=1e-12)


def test_signs_of_planted_distributions() -> None:
    """At 20000 rows the sampling sd of an excess kurtosis is ~sqrt(24 / n_c) <= 0.08 for the light-tailed and
    Gaussian columns (Laplace, t_7: ~0.3 at the smallest class), so every planted sign is many sds from 0."""
    ck = class_kurtosis(*planted())
    pooled = ck.excess_pooled.numpy()
    np.testing.assert_allclose(pooled[:3], [-1.2, -2.0, 3.0], atol=0.3)
    assert 1.0 < pooled[3] and abs(pooled[4]) < 0.15
    # column 5: uniform (-1.2) in half of the rows, Laplace (+3) in the rest: the signed pool nearly cancels
    # (1/2 * -1.2 + 1/2 * 3 = 0.9), the unsigned one adds (1/2 * 1.2 + 1/2 * 3 = 2.1)
    assert ck.excess_pooled[5].item() == pytest.approx(0.9, abs=0.3)
    assert ck.ng_pooled[5].item() == pytest.approx(2.1, abs=0.3)
    assert (ck.excess_per_class[0, 5] < 0) and (ck.excess_per_class[1:, 5] > 0).all()


def _all_sign_vectors(D: int) -> torch.Tensor:
    bits = (torch.arange(2**D)[:, None] >> torch.arange(D)) & 1
    return (2 * bits - 1).double()


def test_signed_null_on_iid_signs_is_exact() -> None:
    """i.i.d. +-1 inputs: kappa - 3 = -2 IPR(w) for every permutation of w, so the signed null is -2 IPR and the
    unsigned one +2 IPR, exactly (rounding: 1e-12)."""
    X1 = _all_sign_vectors(10)
    X, y = torch.cat([X1, X1]), torch.cat([torch.zeros(1024), torch.ones(1024)]).long()
    g = torch.Generator().manual_seed(0)
    W = torch.randn(5, 10, generator=g, dtype=torch.float64) * (torch.rand(5, 10, generator=g) < 0.6)
    W[:, :2] = torch.tensor([1.0, -0.5])
    ipr = (W.pow(4).sum(1) / W.square().sum(1).square()).numpy()
    ck = class_kurtosis(X @ W.T, y)
    np.testing.assert_allclose(ck.excess_pooled.numpy(), -2 * ipr, rtol=1e-12)
    null = nongaussianity_null(W, X, y, shuffles=3, seed=2)
    np.testing.assert_allclose(null.excess_pooled.numpy(), -2 * ipr, rtol=1e-12)
    np.testing.assert_allclose(null.excess_per_class.numpy(), np.stack([-2 * ipr] * 2), rtol=1e-12)
    np.testing.assert_allclose(null.pooled.numpy(), 2 * ipr, rtol=1e-12)


@pytest.mark.parametrize("batched", [False, True])
def test_signed_null_is_the_mean_over_the_same_shuffles(batched: bool) -> None:
    """The signed null averages kappa_c - 3 over exactly the shuffles the unsigned one uses (row_shuffles with
    the same seed): rebuilt here from class_kurtosis of each shuffled layer. A batch of layers equals its
    unbatched calls."""
    H, y = planted(4000, seed=3)
    X = H[:, :6].contiguous()
    g = torch.Generator().manual_seed(4)
    W = torch.randn(2, 4, 6, generator=g, dtype=torch.float64) * (torch.rand(2, 4, 6, generator=g) < 0.7)
    W[..., 0] = 1.0
    for b in range(2):
        shuffles = list(row_shuffles(W[b], 5, 7 + b, "nongaussianity_null"))
        cks = [class_kurtosis(X @ V.T, y, 3) for V in shuffles]
        signed = torch.stack([ck.excess_per_class for ck in cks])  # (shuffles, C, K)
        expected_pooled = torch.stack([pool_classes(s, cks[0].class_counts) for s in signed]).mean(0)
        null = (nongaussianity_null(W, X, y, 3, shuffles=5, seed=[7, 8]) if batched
                else nongaussianity_null(W[b], X, y, 3, shuffles=5, seed=7 + b))
        got_c, got_p = (null.excess_per_class[:, b], null.excess_pooled[b]) if batched else (null.excess_per_class,
                                                                                             null.excess_pooled)
        torch.testing.assert_close(got_c, signed.mean(0), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(got_p, expected_pooled, rtol=1e-10, atol=1e-12)
        assert (got_p.abs() <= (null.pooled[b] if batched else null.pooled) + 1e-12).all()
