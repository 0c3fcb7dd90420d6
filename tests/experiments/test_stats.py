"""Verdict statistics against scipy and hand computations: paired and Welch t, TOST, Holm, verdicts."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from ticketscope.experiments import stats


def series(values, seeds=None):
    return pd.Series(values, index=seeds if seeds is not None else range(len(values)), dtype=float)


def test_paired_matches_scipy_on_common_seeds_only():
    a = series([1.0, 1.3, 0.8, 1.1, 5.0], [0, 1, 2, 3, 9])  # seed 9 has no partner
    b = series([0.7, 1.0, 0.9, 0.6, np.nan, 2.0], [0, 1, 2, 3, 4, 5])
    e = stats.paired(a, b, delta=0.1)
    ref = sps.ttest_rel(a.loc[[0, 1, 2, 3]], b.loc[[0, 1, 2, 3]])
    lo, hi = ref.confidence_interval(0.95)
    assert e.seeds == (0, 1, 2, 3) and e.n_a == 5 and e.n_b == 5 and e.test == "paired t"
    assert e.estimate == pytest.approx(np.mean([0.3, 0.3, -0.1, 0.5]), rel=1e-12)
    assert e.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert (e.lo, e.hi) == pytest.approx((lo, hi), rel=1e-10)
    d = a.loc[[0, 1, 2, 3]] - b.loc[[0, 1, 2, 3]]  # TOST: the larger of the two one-sided p values
    tost = max(sps.ttest_1samp(d + 0.1, 0, alternative="greater").pvalue,
               sps.ttest_1samp(d - 0.1, 0, alternative="less").pvalue)
    assert e.p_equivalence == pytest.approx(tost, rel=1e-10)
    assert stats.paired(series([1.0, 2.0], [0, 1]), series([1.0, 2.0], [1, 2]), 0.1) is None  # one common seed


def test_welch_matches_scipy():
    a, b = series([3.0, 3.1, 2.9, 3.05], [0, 1, 2, 3]), series([2.0, 2.3, 2.1], [10, 11, 12])
    e = stats.welch(a, b, delta=0.2)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert e.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert (e.lo, e.hi) == pytest.approx(ref.confidence_interval(0.95), rel=1e-10)
    assert e.estimate == pytest.approx(a.mean() - b.mean()) and e.seeds == (0, 1, 2, 3, 10, 11, 12)
    assert stats.welch(series([1.0]), b, 0.1) is None


def test_holm_against_hand_computation():
    # sorted: 0.005 x4 = 0.02; 0.01 x3 = 0.03; 0.03 x2 = 0.06; 0.04 x1 = 0.04 -> monotone 0.06
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    out = stats.holm([0.2, np.nan, 0.6])  # NaN rows are not part of the family
    assert math.isnan(out[1]) and out[0] == pytest.approx(0.4) and out[2] == pytest.approx(0.6)
    assert stats.holm([0.9, 0.8]).tolist() == [1.0, 1.0]  # capped at 1 (0.8 x 2), then monotone


@pytest.mark.parametrize("diffs,direction,expected", [
    ([0.30, 0.25, 0.35, 0.28, 0.32, 0.31], +1, "supported"),        # clearly positive, as predicted
    ([0.30, 0.25, 0.35, 0.28, 0.32, 0.31], -1, "contradicted"),     # clearly positive, predicted negative
    ([0.001, -0.002, 0.0015, -0.001, 0.0, 0.0005], +1, "contradicted"),  # tightly inside +-delta
    ([0.3, -0.4, 0.2, -0.1, 0.5, -0.3], +1, "inconclusive"),        # noise wider than delta
])
def test_each_verdict_reached_on_purpose(diffs, direction, expected):
    b = series([1.0] * len(diffs))
    a = b + series(diffs)
    e = stats.paired(a, b, delta=0.05)
    ref = sps.ttest_rel(a, b)
    assert e.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert stats.verdict(e, direction, e.p, e.p_equivalence) == expected
    if expected == "inconclusive":
        n = stats.seeds_needed(e, 0.05)
        room = max(abs(e.estimate), 0.05 - abs(e.estimate))
        half = lambda k: sps.t.ppf(0.975, k - 1) * e.sd / math.sqrt(k)  # noqa: E731
        assert half(n) < room <= half(n - 1)  # the first seed count whose interval settles it


def test_holm_can_turn_a_verdict_inconclusive_and_too_few_seeds_are_not_tested():
    b = series([1.0, 0.9, 1.1, 1.0, 0.8])
    a = b + series([0.1, 0.3, 0.2, 0.0, 0.25])  # t = 3.16 on 4 dof: p = 0.034
    e = stats.paired(a, b, delta=0.01)
    assert 0.01 < e.p < 0.05 and stats.verdict(e, +1, e.p, 1.0) == "supported"
    assert stats.verdict(e, +1, stats.holm([e.p, 0.5, 0.6])[0], 1.0) == "inconclusive"
    assert stats.verdict(None, +1, math.nan, math.nan) == "not tested"
