"""Outcome statistics against scipy and hand computations: paired and Welch t, TOST, Holm, five outcomes, margins."""

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
    ([0.30, 0.25, 0.35, 0.28, 0.32, 0.31], +1, "supported"),            # clearly positive, as predicted
    ([0.021, 0.019, 0.020, 0.022, 0.018, 0.020], +1, "supported-negligible"),  # real, but tightly inside +-0.05
    ([0.001, -0.002, 0.0015, -0.001, 0.0, 0.0005], +1, "absent"),      # tightly inside +-delta, not significant
    ([0.30, 0.25, 0.35, 0.28, 0.32, 0.31], -1, "opposite"),             # clearly positive, predicted negative
    ([0.3, -0.4, 0.2, -0.1, 0.5, -0.3], +1, "inconclusive"),            # noise wider than delta
])
def test_each_outcome_reached_on_purpose(diffs, direction, expected):
    b = series([1.0] * len(diffs))
    a = b + series(diffs)
    e = stats.paired(a, b, delta=0.05)
    ref = sps.ttest_rel(a, b)
    assert e.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert e.se == pytest.approx(sps.sem(np.array(diffs)), rel=1e-9)
    assert stats.outcome(e, direction, e.p, e.p_equivalence) == expected
    if expected == "inconclusive":
        n = stats.seeds_needed(e, 0.05)
        room = max(abs(e.estimate), 0.05 - abs(e.estimate))
        half = lambda k: sps.t.ppf(0.975, k - 1) * e.sd / math.sqrt(k)  # noqa: E731
        assert half(n) < room <= half(n - 1)  # the first seed count whose interval settles it


def test_holm_can_turn_an_outcome_inconclusive():
    b = series([1.0, 0.9, 1.1, 1.0, 0.8])
    a = b + series([0.1, 0.3, 0.2, 0.0, 0.25])  # t = 3.16 on 4 dof: p = 0.034
    e = stats.paired(a, b, delta=0.01)
    assert 0.01 < e.p < 0.05 and stats.outcome(e, +1, e.p, 1.0) == "supported"
    assert stats.outcome(e, +1, stats.holm([e.p, 0.5, 0.6])[0], 1.0) == "inconclusive"


def _effect(estimate, se, dof, delta):
    """An Effect with the given estimate and standard error (p values from the t distribution)."""
    d = series(np.array([-1.0, 1.0] * ((dof + 1) // 2) + [0.0] * ((dof + 1) % 2))[:dof + 1])
    d = (d - d.mean()) / (d.std(ddof=1) / math.sqrt(dof + 1)) * se + estimate  # sample with this mean and se
    e = stats.one_sample(d, delta)
    assert e.estimate == pytest.approx(estimate) and e.se == pytest.approx(se) and e.dof == dof
    return e


def test_margin_by_hand():
    """E = 0.3, se = 0.1 on 10 dof, one row (its critical level is alpha itself): supported; the nearest boundary
    is the significance one at t_0.975,10 = 2.2281388519649385 standard errors (delta 0.05 < t_0.95,10 se =
    0.181: no equivalence region), so the margin is 3 - 2.2281 = 0.7719: fragile."""
    e = _effect(0.3, 0.1, 10, 0.05)
    assert stats.outcome(e, +1, e.p, e.p_equivalence) == "supported"
    assert stats.critical_level([e.p], 0) == pytest.approx(0.05, rel=1e-12)
    m = stats.margin(e, +1, 0.05, 0.05, 0.05)
    assert m == pytest.approx(3 - 2.2281388519649385, rel=1e-9) and m < stats.FRAGILE
    # E = 0.01, se = 0.01, delta = 0.1: absent; boundaries at +-2.228 (difference) and +-(10 - 1.8125) (equivalence,
    # t_0.95,10 = 1.8124611228107335): the nearest is 2.228 - 1 = 1.228 standard errors away
    e = _effect(0.01, 0.01, 10, 0.1)
    assert stats.outcome(e, +1, e.p, e.p_equivalence) == "absent"
    assert stats.margin(e, +1, 0.1, 0.05, 0.05) == pytest.approx(1.2281388519649385)
    # opposite and inside +-delta (E = -0.075, se 0.01, delta 0.1): turning equivalent keeps it opposite, so only
    # the significance boundary at -2.228 counts: 7.5 - 2.228 = 5.272 (not 0.69 to the equivalence boundary)
    e = _effect(-0.075, 0.01, 10, 0.1)
    assert stats.outcome(e, +1, e.p, e.p_equivalence) == "opposite"
    assert stats.margin(e, +1, 0.1, 0.05, 0.05) == pytest.approx(7.5 - 2.2281388519649385)


def test_critical_level_of_holm_by_hand():
    """Family p = [0.02, 0.021]: Holm gives [0.04, 0.04]. Row 1 (held against row 0): with p < 0.02 its own 2 p < 0.04;
    above, 2 * 0.02 = 0.04 carries and its own p must stay < 0.05: level 0.05. Row 0: below 0.021 its 2 p < 0.042;
    above, row 1 takes rank 1 (2 * 0.021 = 0.042) and row 0's adjusted p is max(0.042, p): level 0.05 again.
    Family [p, 0.03]: below 0.03 row 0 needs 2 p < 0.05 (p < 0.025); above, 2 * 0.03 = 0.06 carries: level 0.025."""
    assert stats.critical_level([0.02, 0.021], 1) == pytest.approx(0.05, rel=1e-9)
    assert stats.critical_level([0.02, 0.021], 0) == pytest.approx(0.05, rel=1e-9)
    assert stats.critical_level([0.02, 0.03], 0) == pytest.approx(0.025, rel=1e-9)
    assert stats.critical_level([0.02, 0.03, 0.001], 0) == pytest.approx(0.025, rel=1e-9)
    # [p, 0.01, 0.02]: below 0.01 row 0's 3 p < 0.03; from 0.01 to 0.02 max(0.03, 2 p) < 0.04; above 0.02
    # max(0.03, 0.04, p) < 0.05 while p < 0.05. [p, 0.02, 0.03]: below 0.02 it needs 3 p < 0.05, p < 1/60
    assert stats.critical_level([0.2, 0.01, 0.02], 0) == pytest.approx(0.05, rel=1e-9)
    assert stats.critical_level([0.2, 0.02, 0.03], 0) == pytest.approx(0.05 / 3, rel=1e-9)  # then 3 * 0.02 = 0.06


FAMILY = [0.012, 0.2, 0.03]  # the other rows' p (and equivalence p) values, held fixed


@pytest.mark.parametrize("estimate, se, delta", [(0.3, 0.1, 0.05), (0.02, 0.004, 0.05), (0.01, 0.01, 0.1),
                                                 (-0.05, 0.02, 0.03), (0.04, 0.03, 0.05), (-0.075, 0.01, 0.1),
                                                 (0.028, 0.01, 0.04)])
def test_margin_is_the_distance_to_the_nearest_change_of_outcome(estimate, se, delta):
    """Brute force in a real family: move the estimate in small steps (spread held), recompute both p values from
    the t distribution, run Holm over the family with the other rows held, and find where the outcome first
    changes, either way."""
    e = _effect(estimate, se, 10, delta)

    def outcome_at(E):
        p = 2 * sps.t.sf(abs(E) / se, 10)
        p_eq = max(sps.t.sf((E + delta) / se, 10), sps.t.cdf((E - delta) / se, 10))
        moved = stats.Effect("t", E, E, E, p, p_eq, e.sd, 10, 11, 11, (), se)
        return stats.outcome(moved, +1, stats.holm([p, *FAMILY])[0], stats.holm([p_eq, *FAMILY])[0])

    here = outcome_at(estimate)
    steps = np.arange(1, 12001) * 1e-3  # in standard errors; every case here has a boundary within 12 or none
    up = next((k for k in steps if outcome_at(estimate + k * se) != here), np.inf)
    down = next((k for k in steps if outcome_at(estimate - k * se) != here), np.inf)
    m = stats.margin(e, +1, delta, stats.critical_level([e.p, *FAMILY], 0),
                     stats.critical_level([e.p_equivalence, *FAMILY], 0))
    assert m == pytest.approx(min(up, down), abs=1.5e-3)
