"""The AUC and the magnitude-band AUC against scipy's Mann-Whitney U and a brute-force pair count."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu

from ticketscope.metrics import auc, magnitude_band_auc


def pair_count_auc(s: np.ndarray, pos: np.ndarray) -> float:
    """Brute force: over every (positive, negative) pair, 1 if the positive scores higher, 1/2 for a tie."""
    a, b = s[pos][:, None], s[~pos][None, :]
    return float(((a > b) + 0.5 * (a == b)).mean())


@pytest.mark.parametrize("seed", range(4))
def test_auc_is_mann_whitney_u_over_pairs(seed):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 8, 300).astype(float)  # many ties
    pos = rng.random(300) < 0.3
    U = mannwhitneyu(s[pos], s[~pos]).statistic
    got = auc(torch.tensor(s), torch.tensor(pos))
    assert got == pytest.approx(U / (pos.sum() * (~pos).sum()), abs=1e-12)
    assert got == pytest.approx(pair_count_auc(s, pos), abs=1e-12)


def test_auc_without_both_outcomes_is_nan():
    assert math.isnan(auc(torch.arange(5.0), torch.zeros(5, dtype=torch.bool)))
    assert math.isnan(auc(torch.arange(5.0), torch.ones(5, dtype=torch.bool)))


def layer(seed: int, shape=(40, 60)):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(shape, generator=g, dtype=torch.float64)
    now = torch.rand(shape, generator=g) < 0.8
    return g, W * now, now


def test_each_bin_is_scipy_on_that_decile_of_magnitude():
    g, W, now = layer(0)
    scores = torch.randn(W.shape, generator=g, dtype=torch.float64)
    scores[0, :5] = float("nan")
    nxt = now & (torch.rand(W.shape, generator=g) < 0.7)
    got = magnitude_band_auc(scores, W, now, nxt, bins=10)
    keep = now & scores.isfinite()
    s, w, removed = (t[keep].numpy() for t in (scores, W.abs(), ~nxt))
    per_bin = []
    for idx in np.array_split(np.argsort(w, kind="stable"), 10):
        r = removed[idx]
        per_bin.append(mannwhitneyu(s[idx][r], s[idx][~r]).statistic / (r.sum() * (~r).sum()))
    assert got.auc == pytest.approx(np.mean(per_bin), abs=1e-12)
    assert (got.bins, got.candidates, got.removed) == (10, keep.sum().item(), removed.sum())
    assert got.undefined == int((now & scores.isnan()).sum())


def test_a_planted_predictor_is_found_and_a_shuffled_one_gives_one_half():
    """Removal next depends on magnitude AND on a hidden variable the score reads (noisily). Within
    magnitude deciles the score then predicts removal; shuffled, it cannot. Tolerance: a bin's AUC under
    no information has sd sqrt((n1 + n0 + 1) / (12 n1 n0)) (Mann-Whitney), about 0.022 here for bins
    of ~450 with ~45% removed; the mean of 10 bins, 0.007, and of 20 shuffles 0.0016: 5 sd is 0.008."""
    g, W, now = layer(1, (90, 60))
    hidden = torch.randn(W.shape, generator=g, dtype=torch.float64)
    logit = -3 * (W.abs() - W.abs()[now].median()) + 1.5 * hidden
    nxt = now & (torch.rand(W.shape, generator=g, dtype=torch.float64) > torch.sigmoid(logit))
    score = hidden + 0.5 * torch.randn(W.shape, generator=g, dtype=torch.float64)
    found = magnitude_band_auc(score, W, now, nxt)
    assert found.auc > 0.75
    shuffled = []
    for i in range(20):
        perm = torch.randperm(W.numel(), generator=torch.Generator().manual_seed(i))
        shuffled.append(magnitude_band_auc(score.flatten()[perm].view_as(W), W, now, nxt).auc)
    assert np.mean(shuffled) == pytest.approx(0.5, abs=0.008)
    # magnitude itself, which removal also follows, is (nearly) used up by the bins: its band AUC is far
    # below its raw AUC
    raw = auc(-W.abs()[now], ~nxt[now])
    assert raw > 0.7 and magnitude_band_auc(-W.abs(), W, now, nxt).auc < raw - 0.2


def test_a_revived_weight_is_refused():
    _, W, now = layer(2)
    with pytest.raises(ValueError, match="never come back"):
        magnitude_band_auc(torch.zeros_like(W), W, now, torch.ones_like(now))
