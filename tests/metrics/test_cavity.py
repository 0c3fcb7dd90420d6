"""Cavity scores against the literal definition, and the cavity analysis of a pruning step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from reference import cavity_brute_force as brute_force
from ticketscope.metrics import cavity as cavity_module
from ticketscope.metrics import cavity_analysis, cavity_groups, cavity_scores

N = 1003  # the chunk size 97 below does not divide it
CONSTANT = 1 / 3  # constant input column of the random data: its float64 mean over chunks is inexact


def random_data(seed: int = 0) -> torch.Tensor:
    """Skewed, heavy-tailed inputs with non-zero means and unequal scales; column 0 is constant."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, 12, generator=g, dtype=torch.float64).exp() * torch.linspace(0.5, 3, 12) + 2.0
    X[:, 0] = CONSTANT
    return X


def sign_like_data(seed: int = 0) -> torch.Tensor:
    """NLGP inputs at high gain (nearly sign(z): sub-Gaussian, sharp edges), float32 as the task gives."""
    from ticketscope.data import NLGPTask

    return NLGPTask(L=12, dim=1, xis=(1.0, 3.0), gain=20.0).train(N, seed=seed)[0]


def weights(seed: int = 0) -> torch.Tensor:
    """Rows: dead (all pruned); only on the constant column; one live weight; one dominant weight;
    half pruned; dense; dense."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(7, 12, generator=g, dtype=torch.float64)
    W[0] = 0
    W[1, 1:] = 0
    W[2, :5] = 0
    W[2, 6:] = 0
    W[3] = 1e-3 * W[3]
    W[3, 4] = 1.0
    W[4, ::2] = 0
    return W


DATA = {"random": random_data, "nlgp": sign_like_data}


@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("kind", ["kurtosis", "nongaussianity"])
@pytest.mark.parametrize("chunk_size", [97, 8192])
def test_matches_brute_force(data: str, kind: str, chunk_size: int) -> None:
    X, W = DATA[data](), weights()
    scores = cavity_scores(W, X, kind=kind, chunk_size=chunk_size)
    ref = brute_force(W.numpy(), X.double().numpy(), kind)
    assert scores.dtype == torch.float64 and scores.shape == W.shape
    np.testing.assert_array_equal(scores.isnan().numpy(), np.isnan(ref))
    # Both sides are float64 with ~1e-13 relative rounding in each kappa; an absolute floor of
    # 1e-10 covers scores that are differences of two O(1..10) kurtoses cancelling to ~0.
    np.testing.assert_allclose(scores.numpy(), ref, rtol=1e-8, atol=1e-10)


def test_dead_units_pruned_weights_and_last_weights() -> None:
    X, W = random_data(), weights()
    X[:, 7] = 0.0  # a second constant column, at zero
    W[5, 7] = 2.0  # a weight on a constant input changes nothing: exactly 0
    scores = cavity_scores(W, X, chunk_size=97)
    assert scores[:2].isnan().all()  # dead: all pruned; all surviving weights on a constant input
    assert scores[2, 5].isnan()  # the last live weight: removing it leaves h constant
    alive = scores[2:]
    assert (alive[W[2:] == 0] == 0).all()  # pruned weights: exactly zero, not approximately
    assert scores[5, 7] == 0
    assert (alive[:, [0, 7]][W[2:, [0, 7]] != 0] == 0).all()  # weights on constant inputs: exactly zero
    varying = torch.ones(12, dtype=torch.bool)
    varying[[0, 7]] = False
    live = (W[2:] != 0) & varying & ~alive.isnan()
    assert live.sum() > 20 and alive[live].ne(0).all()


def test_dominant_weight_needs_the_direct_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Row 3 has one weight carrying ~all of the variance: the moment expansion alone loses ~all
    digits of its score (this is what ILL_CONDITIONED guards); the library result stays exact."""
    X, W = random_data(), weights()
    ref = brute_force(W[3:4].numpy(), X.numpy(), "kurtosis")[0, 4]
    assert cavity_scores(W, X)[3, 4].item() == pytest.approx(ref, rel=1e-8)
    monkeypatch.setattr(cavity_module, "ILL_CONDITIONED", 0.0)
    assert cavity_scores(W, X)[3, 4].item() != pytest.approx(ref, rel=1e-6)


def test_larger_dense_layer_and_chunk_invariance() -> None:
    g = torch.Generator().manual_seed(1)
    X = torch.randn(4001, 40, generator=g, dtype=torch.float64) ** 3 + 1.0
    W = torch.randn(12, 40, generator=g, dtype=torch.float64) * (torch.rand(12, 40, generator=g) < 0.6)
    scores = cavity_scores(W, X, kind="nongaussianity", chunk_size=512)
    np.testing.assert_allclose(scores.numpy(), brute_force(W.numpy(), X.numpy(), "nongaussianity"), rtol=1e-8, atol=1e-10)
    # Chunking only reorders float64 sums: agreement to rounding.
    np.testing.assert_allclose(cavity_scores(W, X, kind="nongaussianity", chunk_size=333).numpy(), scores.numpy(), rtol=1e-11, atol=1e-13)


def test_float32_inputs_and_no_mutation() -> None:
    X32, W32 = sign_like_data(), weights().float()
    X64, before = X32.double(), X32.double().clone()
    a = cavity_scores(W32, X32, chunk_size=97)
    b = cavity_scores(W32.double(), X64, chunk_size=97)
    assert a.dtype == torch.float64
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)  # the float64 cast is exact
    assert torch.equal(X64, before)  # X in float64 is chunked as views: must not be centred in place


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="kind"):
        cavity_scores(weights(), random_data(), kind="skewness")
    with pytest.raises(ValueError, match="chunk_size"):
        cavity_scores(weights(), random_data(), chunk_size=0)
    with pytest.raises(ValueError, match="need W"):
        cavity_scores(weights(), random_data()[:, :11])


# ---------------------------------------------------------------- cavity analysis of a pruning step


def pruning_step(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A layer at 70% density, and the next magnitude-pruning round removing 20% of the survivors."""
    g = torch.Generator().manual_seed(seed)
    mask_now = torch.rand(10, 20, generator=g) < 0.7
    W = torch.randn(10, 20, generator=g, dtype=torch.float64) * mask_now
    surviving = W[mask_now].abs()
    threshold = surviving.sort().values[int(0.2 * len(surviving))]
    return W, mask_now, mask_now & (W.abs() >= threshold)


def test_analysis_of_a_constructed_step() -> None:
    """Scores = threshold - |w|: every removed weight scores > 0, every kept one <= 0."""
    W, mask_now, mask_next = pruning_step()
    threshold = W[mask_next].abs().min()
    scores = threshold - W.abs()
    removed, kept = scores[mask_now & ~mask_next].numpy(), scores[mask_next].numpy()
    result = cavity_analysis(scores, W, mask_now, mask_next, n_random=int(mask_now.sum()))
    assert result.removed.count == len(removed) == int((mask_now & ~mask_next).sum())
    assert result.removed.frac_positive == 1.0 and result.kept.frac_positive == 0.0
    assert result.removed.mean == pytest.approx(removed.mean(), rel=1e-12)
    assert result.removed.median == pytest.approx(np.median(removed), rel=1e-12)
    assert result.kept.median == pytest.approx(np.median(kept), rel=1e-12)
    # n_random = all survivors: the random group is every surviving weight, in some order.
    assert result.random.mean == pytest.approx(scores[mask_now].mean().item(), rel=1e-12)
    assert result.random.count == int(mask_now.sum())
    assert result.spearman_abs_w == pytest.approx(-1.0, abs=1e-12)  # score decreasing in |w|


def test_analysis_nans_ties_and_random_group() -> None:
    W, mask_now, mask_next = pruning_step(1)
    g = torch.Generator().manual_seed(2)
    scores = torch.randint(-3, 4, W.shape, generator=g).double()  # many ties
    scores[0] = torch.nan  # a dead unit
    result = cavity_analysis(scores, W, mask_now, mask_next, seed=5)
    fin = mask_now & scores.isfinite()
    rho = scipy.stats.spearmanr(scores[fin].numpy(), W[fin].abs().numpy()).statistic
    assert result.spearman_abs_w == pytest.approx(rho, abs=1e-12)
    removed = scores[mask_now & ~mask_next]
    assert result.removed.undefined == int(removed.isnan().sum()) > 0
    assert result.removed.count + result.removed.undefined == len(removed)
    finite = removed[removed.isfinite()].numpy()
    assert result.removed.median == np.median(finite) and result.removed.mean == pytest.approx(finite.mean())
    groups = cavity_groups(scores, mask_now, mask_next, seed=5)
    again = cavity_groups(scores, mask_now, mask_next, seed=5)
    other = cavity_groups(scores, mask_now, mask_next, seed=6)
    assert len(groups["random"]) == len(groups["removed"])  # size-matched control by default
    assert torch.equal(groups["random"].nan_to_num(99), again["random"].nan_to_num(99))
    assert not torch.equal(groups["random"].nan_to_num(99), other["random"].nan_to_num(99))


def test_analysis_rejects_revived_weights() -> None:
    W, mask_now, mask_next = pruning_step()
    with pytest.raises(ValueError, match="revives"):
        cavity_analysis(W, W, mask_next, mask_now)


def test_end_to_end_on_nlgp() -> None:
    """Scores from cavity_scores feed the analysis: every surviving weight is classified, and each group's
    summary equals numpy's on the scores at the group's positions (exact up to summation order: 1e-12)."""
    X = sign_like_data()
    W, mask_now, mask_next = pruning_step()
    W, mask_now, mask_next = W[:, :12], mask_now[:, :12], mask_next[:, :12]
    scores = cavity_scores(W, X, kind="nongaussianity")
    result = cavity_analysis(scores, W, mask_now, mask_next)
    total = result.removed.count + result.removed.undefined + result.kept.count + result.kept.undefined
    assert total == int(mask_now.sum())
    s, now, nxt = scores.numpy(), mask_now.bool().numpy(), mask_next.bool().numpy()
    for name, where in (("removed", now & ~nxt), ("kept", nxt)):
        v = s[where][np.isfinite(s[where])]
        summary = getattr(result, name)
        assert summary.count == len(v) and summary.mean == pytest.approx(v.mean(), rel=1e-12)
        assert summary.median == pytest.approx(np.median(v), rel=1e-12)
        assert summary.frac_positive == pytest.approx((v > 0).mean(), rel=1e-12)


def test_class_cavity_scores_match_brute_force_per_class_pooling():
    """Zero one weight, recompute the class-pooled |kappa - 3| (scipy per class, frequencies n_c / n over the
    classes present): equal to 1e-8 relative. Class 2 is absent and must not enter the pooling; pruned
    weights score exactly 0."""
    from scipy import stats

    from ticketscope.metrics import class_cavity_scores

    g = torch.Generator().manual_seed(4)
    n, D, K = 1500, 9, 4
    y = (torch.arange(n) % 5 > 1).long()  # classes 0 (600) and 1 (900)
    X = torch.randn(n, D, generator=g, dtype=torch.float64) * (1 + y[:, None]) + torch.sign(torch.randn(n, D, generator=g))
    W = torch.randn(K, D, generator=g, dtype=torch.float64)
    W[1, :3] = 0.0

    def pooled(w: np.ndarray) -> float:
        h = X.numpy() @ w
        return sum(np.mean(y.numpy() == c) * abs(stats.kurtosis(h[y.numpy() == c], fisher=False) - 3) for c in (0, 1))

    ref = np.zeros((K, D))
    for i in range(K):
        base = pooled(W[i].numpy())
        for j in range(D):
            w = W[i].numpy().copy()
            w[j] = 0.0
            ref[i, j] = pooled(w) - base
    scores = class_cavity_scores(W, X, y, num_classes=3)
    np.testing.assert_allclose(scores.numpy(), ref, rtol=1e-8, atol=1e-12)
    assert (scores[1, :3] == 0).all()
    mixture = cavity_scores(W, X, kind="nongaussianity")  # the mixture form differs: classes of different scale
    assert np.abs(mixture.numpy() - ref).max() > 10 * np.abs(ref).max() * 1e-3


@pytest.mark.parametrize("data", DATA)
def test_more_units_than_inputs(data: str) -> None:
    """K > D (e.g. a layer's units at every round stacked): E[h x_j] and E[h x_j^3] come from (D, D) input
    moments; the scores still match the brute force, and each block of rows scored alone (K < D)."""
    X = DATA[data]()
    W = torch.cat([weights(seed) for seed in range(3)])  # (21, 12)
    scores = cavity_scores(W, X, kind="nongaussianity", chunk_size=97)
    ref = brute_force(W.numpy(), X.double().numpy(), "nongaussianity")
    np.testing.assert_array_equal(scores.isnan().numpy(), np.isnan(ref))
    np.testing.assert_allclose(scores.numpy(), ref, rtol=1e-8, atol=1e-10)
    blocks = torch.cat([cavity_scores(w, X, kind="nongaussianity", chunk_size=97) for w in W.split(7)])
    np.testing.assert_allclose(scores.numpy(), blocks.numpy(), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- excess cavity score (issue 28)


def factorial(levels: list[float], D: int) -> torch.Tensor:
    """Every point of levels^D once: D i.i.d. pixels uniform on ``levels`` with *exact* population moments (each
    column has the marginal's moments, and every product of distinct columns factorizes), so any statistic that is
    permutation invariant for exchangeable columns is exactly so here, sampling noise absent."""
    import itertools

    return torch.tensor(list(itertools.product(levels, repeat=D)), dtype=torch.float64)


def sparse_units(K: int, D: int, seed: int, density: float = 0.6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(K, D, generator=g, dtype=torch.float64) * (torch.rand(K, D, generator=g) < density)


@pytest.mark.parametrize("levels,D", [([-1.0, 1.0], 10), ([-3.0, -1.0, 1.0, 3.0], 6)], ids=["sign", "uniform4"])
def test_excess_cavity_is_zero_on_iid_pixels_while_the_raw_score_is_not(levels, D):
    """i.i.d. pixels (+-1, and uniform on 4 levels), two classes each a full factorial copy: kappa(h) is a function
    of the weight values alone (+-1: kappa = 3 - 2 IPR), so a weight's score is the same at any position and the
    excess is 0 for every weight, to float64 rounding (1e-10 on scores of order 0.01-1: a few hundred roundings of
    ~1e-16 in moments of order 1-10), while the raw score, the IPR mechanism, is far from 0. The raw score on
    +-1 is checked against the analytic 2 IPR(w without w_ij) - 2 IPR(w)."""
    from ticketscope.metrics import excess_cavity_scores, ipr

    cube = factorial(levels, D)
    X, y = torch.cat([cube, cube]), torch.arange(2 * len(cube)) // len(cube)
    W = sparse_units(7, D, seed=3)
    W[0] = 0  # a dead unit: NaN everywhere
    r = excess_cavity_scores(W, X, y)
    live = W[1:] != 0
    assert r.excess[0].isnan().all() and r.raw[0].isnan().all()
    assert r.raw[1:][live].abs().max() > 0.2
    np.testing.assert_allclose(r.excess[1:].numpy(), 0.0, atol=1e-10)
    assert (r.excess[1:][~live] == 0).all() and (r.null[1:][~live] == 0).all()
    if levels == [-1.0, 1.0]:
        for i, j in zip(*np.nonzero(live.numpy())):
            w = W[1 + i].clone()
            base = ipr(w[None]).item()
            w[j] = 0
            want = 2 * ipr(w[None]).item() - 2 * base if (w != 0).sum() > 0 else math.nan
            assert r.raw[1 + i, j].item() == pytest.approx(want, abs=1e-10)


def brute_excess(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, perms: list[torch.Tensor]) -> np.ndarray:
    """Literal definition, weight by weight: for each shuffle, place the unit's values at the shuffled positions,
    zero the value w_ij where it landed, recompute the class-pooled |kappa - 3| by scipy; the null is the mean of
    these changes over shuffles; the raw score likewise at the weight's own position."""
    Xn, yn = X.numpy(), y.numpy()

    def pooled(w: np.ndarray) -> float:
        h = Xn @ w
        out = 0.0
        for c in np.unique(yn):
            hc = h[yn == c]
            out += np.mean(yn == c) * abs(scipy.stats.kurtosis(hc, fisher=False) - 3)
        return out

    K, D = W.shape
    excess = np.zeros((K, D))
    for i in range(K):
        for j in range(D):
            if W[i, j] == 0:
                continue
            w = W[i].numpy()
            raw = pooled(np.where(np.arange(D) == j, 0.0, w)) - pooled(w)
            null = []
            for p in perms:
                v = w[p[i].numpy()]  # shuffled: v[k] = w[p[k]]
                k = int(np.flatnonzero(p[i].numpy() == j)[0])
                null.append(pooled(np.where(np.arange(D) == k, 0.0, v)) - pooled(v))
            excess[i, j] = raw - np.mean(null)
    return excess


def test_excess_cavity_on_a_correlated_pair_matches_brute_force_and_is_where_expected():
    """Planted structure: pixel 1 is a copy of pixel 0, the other 8 i.i.d. +-1 (a full factorial of the 9 free
    bits: exact moments). Unit 0 sits on both copies (w = 1.0, 0.8: one merged coefficient 1.8 on an independent
    bit, so its units' IPR is higher than its values spread over independent pixels would give). Removing either
    copy cuts the merged coefficient, lowering |kappa - 3| = 2 IPR of the merged weights; at random positions the
    same value would mostly sit on an independent pixel, where removing it raises IPR. So the excess of both copies
    is negative (planted: below -0.02, against 0 to 1e-10 without the copy). Every excess equals the literal
    per-weight, per-shuffle definition (scipy kurtosis) to 1e-9 on scores of order 0.1, with the shuffles of
    :func:`row_shuffles` on the stream the function documents."""
    from ticketscope.metrics import excess_cavity_scores, row_shuffles

    free = factorial([-1.0, 1.0], 9)
    X = torch.cat([free[:, :1], free], 1)
    y = torch.zeros(len(X), dtype=torch.int64)
    W = sparse_units(4, 10, seed=5)
    W[0, :2] = torch.tensor([1.0, 0.8])
    W[1, :2] = 0.0
    r = excess_cavity_scores(W, X, y, shuffles=4, seed=9)
    index = torch.arange(10, dtype=torch.float64).expand(W.shape)
    perms = [p.long() for p in row_shuffles(index, 4, 9, "excess_cavity_scores")]
    np.testing.assert_allclose(r.excess.numpy(), brute_excess(W, X, y, perms), atol=1e-9)
    assert r.excess[0, 0] < -0.02 and r.excess[0, 1] < -0.02
    assert r.excess.abs().max() > 0.02


def test_excess_cavity_batches_seeds_and_mixture_form():
    """A batch (B, K, D) with one seed per layer equals the unbatched calls with those seeds, with shared inputs and
    with each layer's own (to 1e-12: the same products, grouped differently); y=None is the mixture form, whose raw
    score is cavity_scores(kind="nongaussianity"); the same seed gives the same numbers."""
    from ticketscope.metrics import excess_cavity_scores

    X = sign_like_data()
    y = torch.arange(len(X)) % 2
    W = torch.stack([sparse_units(5, 12, seed=s) for s in (1, 2, 3)])
    batched = excess_cavity_scores(W, X, y, seed=[4, 5, 6])
    for b, s in enumerate((4, 5, 6)):
        one = excess_cavity_scores(W[b], X, y, seed=s)
        np.testing.assert_allclose(batched.excess[b].numpy(), one.excess.numpy(), rtol=1e-12, atol=1e-12)
    own = excess_cavity_scores(W, torch.stack([X, X, X]), y, seed=[4, 5, 6])
    np.testing.assert_allclose(own.excess.numpy(), batched.excess.numpy(), rtol=1e-12, atol=1e-12)
    mixture = excess_cavity_scores(W[0], X, shuffles=3)
    np.testing.assert_allclose(mixture.raw.numpy(), cavity_scores(W[0], X, kind="nongaussianity").numpy(), rtol=1e-12, atol=1e-12)
    again = excess_cavity_scores(W[0], X, shuffles=3)
    assert torch.equal(again.excess.nan_to_num(7), mixture.excess.nan_to_num(7))
    other = excess_cavity_scores(W[0], X, shuffles=3, seed=1)
    assert not torch.equal(other.null.nan_to_num(7), mixture.null.nan_to_num(7))
