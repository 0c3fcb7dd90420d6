"""Lagged per-unit statistics: against a brute-force OLS, on planted panels, and on undefined values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ticketscope.metrics import lagged_coefficients
from ticketscope.metrics.lagged import PRIMARY, lagged_columns, lagged_specifications


def _table(ng: np.ndarray, loc: np.ndarray) -> pd.DataFrame:
    """The tidy table of (units, rounds) arrays, rows in shuffled order (the function must not rely on it)."""
    K, R = ng.shape
    df = pd.DataFrame({"unit": np.repeat(np.arange(K), R), "round": np.tile(np.arange(R), K),
                       "ng_excess": ng.ravel(), "localization": loc.ravel()})
    return df.sample(frac=1.0, random_state=0)


def planted(K: int, R: int, beta: float, seed: int, rho: float = 0.3, sigma: float = 1.0,
            shared: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """ng changes iid N(0, 1); loc changes d_loc[r+1] = beta d_ng[r] + rho d_loc[r] + sigma eps;
    ``shared``: the sd of a per-round shock added to both measures' levels (the same for every unit)."""
    rng = np.random.default_rng(seed)
    d_ng = rng.standard_normal((K, R))
    d_loc = np.zeros((K, R))
    d_loc[:, 1] = rng.standard_normal(K)
    for t in range(2, R):
        d_loc[:, t] = beta * d_ng[:, t - 1] + rho * d_loc[:, t - 1] + sigma * rng.standard_normal(K)
    shock = shared * rng.standard_normal(R)
    return np.cumsum(d_ng, axis=1) + shock, np.cumsum(d_loc, axis=1) + shock


def _t_route(y: np.ndarray, x: np.ndarray, ar: np.ndarray, rounds: np.ndarray) -> float:
    """Partial correlation from the full OLS by lstsq on an explicit design [x, ar, one dummy per round]:
    rho = t / sqrt(t^2 + df), t = beta_x / se(beta_x), df = n - p (a route independent of residualizing)."""
    levels = np.unique(rounds)
    X = np.column_stack([x, ar, *(rounds == q for q in levels)]).astype(float)
    n, p = X.shape
    if n < p + 2:
        return math.nan
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    df = n - p
    s2 = np.sum((y - X @ beta) ** 2) / df
    t = beta[0] / np.sqrt(s2 * np.linalg.inv(X.T @ X)[0, 0])
    return float(t / np.sqrt(t**2 + df))


def reference(table: pd.DataFrame) -> tuple[float, float, int, int]:
    """Brute force: loop over units and rounds, a pair (u, r) kept when both measures are finite at r-1, r, r+1."""
    cell = {(u, r): (g, s) for u, r, g, s in table[["unit", "round", "ng_excess", "localization"]].itertuples(index=False)}
    rounds = sorted(table["round"].unique())
    rows, dropped = [], 0
    for u in sorted(table["unit"].unique()):
        for r in rounds[1:-1]:
            vals = [cell.get((u, q), (math.nan, math.nan)) for q in (r - 1, r, r + 1)]
            if not all(math.isfinite(v) for pair in vals for v in pair):
                dropped += 1
                continue
            (g0, s0), (g1, s1), (g2, s2) = vals
            rows.append((r, g1 - g0, g2 - g1, s1 - s0, s2 - s1))
    r, dg, dg1, ds, ds1 = (np.array(c) for c in zip(*rows)) if rows else [np.array([])] * 5
    return _t_route(ds1, dg, ds, r), _t_route(dg1, ds, dg, r), len(rows), dropped


def test_matches_brute_force_ols():
    ng, loc = planted(40, 7, beta=-0.4, seed=1)
    got = lagged_coefficients(_table(ng, loc))
    lead, reverse, n, dropped = reference(_table(ng, loc))
    assert (got.n_pairs, got.n_dropped) == (n, dropped) == (40 * 5, 0)
    assert got.lead == pytest.approx(lead, abs=1e-10) and got.reverse == pytest.approx(reverse, abs=1e-10)


def test_planted_lead_is_recovered_and_reverse_is_zero():
    """beta = -0.5, sigma = 1: the loc change's residual on its controls is beta d_ng + sigma eps (d_ng[r] is
    independent of d_loc[r]), so lead = beta / sqrt(beta^2 + sigma^2) = -0.447; d_ng[r+1] is independent of the
    past, so reverse = 0. 300 units x 8 pairs: a partial correlation's sd is (1 - rho^2) / sqrt(n) = 0.016 for
    lead, 0.020 for reverse; the tolerance is 5 of them (the seed is fixed: it is met or not, once)."""
    ng, loc = planted(300, 10, beta=-0.5, seed=2)
    got = lagged_coefficients(_table(ng, loc))
    assert got.n_pairs == 2400
    assert got.lead == pytest.approx(-0.5 / math.sqrt(1.25), abs=5 * 0.8 / math.sqrt(2400))
    assert abs(got.reverse) < 5 / math.sqrt(2400)


def test_per_round_noise_shared_by_both_measures_gives_zero():
    """A per-round shock c_r in both levels (sd 3, no lead): d_ng[r] and d_loc[r+1] share -c_r, so a plain
    pooled correlation is strongly negative; the round fixed effects absorb it (tolerance: 5 sd, as above)."""
    ng, loc = planted(300, 10, beta=0.0, seed=3, shared=3.0)
    naive = np.corrcoef(np.diff(ng, axis=1)[:, :-1].ravel(), np.diff(loc, axis=1)[:, 1:].ravel())[0, 1]
    assert naive < -0.25  # about -9 / 19 in expectation; 8 rounds of shocks here
    got = lagged_coefficients(_table(ng, loc))
    assert abs(got.lead) < 5 / math.sqrt(2400) and abs(got.reverse) < 5 / math.sqrt(2400)


def test_a_trend_common_to_all_units_changes_nothing():
    """Adding any per-round constant to every unit's ng and loc (a shared trend) leaves both coefficients as
    they were, to rounding: the round dummies absorb it."""
    ng, loc = planted(50, 8, beta=-0.3, seed=4)
    before = lagged_coefficients(_table(ng, loc))
    trend = np.random.default_rng(5).standard_normal((2, 8)) * 10 + np.arange(8) * 4.0
    after = lagged_coefficients(_table(ng + trend[0], loc + trend[1]))
    assert after.lead == pytest.approx(before.lead, abs=1e-10)
    assert after.reverse == pytest.approx(before.reverse, abs=1e-10)
    assert (after.n_pairs, after.n_dropped) == (before.n_pairs, before.n_dropped)


def test_undefined_values_are_dropped_and_counted():
    """NaN cells (a dead unit, scattered undefined statistics), an inf and a missing row: each pair touching one
    at r-1, r or r+1 is dropped and counted, and the coefficients are the brute force's on what is left."""
    ng, loc = planted(40, 7, beta=-0.4, seed=6)
    rng = np.random.default_rng(7)
    ng[rng.random(ng.shape) < 0.05] = np.nan
    loc[3] = np.nan  # a dead unit
    loc[5, 2] = np.inf
    table = _table(ng, loc)
    table = table[~((table["unit"] == 8) & (table["round"] == 4))]
    got = lagged_coefficients(table)
    lead, reverse, n, dropped = reference(table)
    assert got.n_pairs + got.n_dropped == 40 * 5 and got.n_dropped == dropped > 5
    assert got.n_pairs == n and np.isfinite(got.lead)
    assert got.lead == pytest.approx(lead, abs=1e-10) and got.reverse == pytest.approx(reverse, abs=1e-10)


def test_too_few_pairs_give_nan_never_zero():
    """4 rounds: 2 pairs a unit and 4 regressors (x, the autoregressive term, 2 round dummies), so a coefficient
    needs 6 pairs: 3 units give it, 3 units less one pair do not, nor do 2 rounds of any number of units."""
    ng, loc = planted(3, 4, beta=-0.4, seed=8)
    assert np.isfinite(lagged_coefficients(_table(ng, loc)).lead)
    ng[0, 3] = np.nan
    got = lagged_coefficients(_table(ng, loc))
    assert (got.n_pairs, got.n_dropped) == (5, 1) and math.isnan(got.lead) and math.isnan(got.reverse)
    ng, loc = planted(50, 2, beta=-0.4, seed=8)
    got = lagged_coefficients(_table(ng, loc))
    assert (got.n_pairs, got.n_dropped) == (0, 0) and math.isnan(got.lead) and math.isnan(got.reverse)
    ng, loc = planted(50, 5, beta=-0.4, seed=8)  # every pair dropped (as in a deeper layer: no localization)
    got = lagged_coefficients(_table(ng, np.full_like(loc, np.nan)))
    assert (got.n_pairs, got.n_dropped) == (0, 150) and math.isnan(got.lead) and math.isnan(got.reverse)


def test_a_constant_measure_gives_nan():
    ng, loc = planted(30, 6, beta=-0.4, seed=9)
    got = lagged_coefficients(_table(ng, np.ones_like(loc)))
    assert math.isnan(got.lead) and math.isnan(got.reverse) and got.n_pairs == 120


def test_malformed_tables_are_refused():
    ng, loc = planted(5, 5, beta=0.0, seed=10)
    table = _table(ng, loc)
    with pytest.raises(ValueError, match="must be unique"):
        lagged_coefficients(pd.concat([table, table.iloc[:1]]))
    with pytest.raises(ValueError, match=r"consecutive rounds, got \[0, 1, 3, 4\]"):
        lagged_coefficients(table[table["round"] != 2])


# ------------------------------------------------------------------ issue 28: specifications, halves, asymmetry


def var_panel(K: int, R: int, A: np.ndarray, seed: int, effects: float = 1.0, effect_corr: float = -0.8,
              noise_ng: float = 0.0, noise_loc: float = 0.0, burn: int = 30) -> pd.DataFrame:
    """A unit x round panel whose changes follow a stationary VAR(1) with unit effects:

        v[u, t+1] = (I - A) mu_u + A v[u, t] + e[u, t+1],   v = (d_ng, d_loc),  e ~ N(0, I),

    mu_u the unit's long-run rates of change (a drift in the levels; sd ``effects``, correlation ``effect_corr``
    between the two measures: units drifting toward non-Gaussianity drift toward locality). A[1, 0] plants a lead
    (d_ng[r] -> d_loc[r+1]), A[0, 1] a reverse. The levels (cumulated changes, burned in) get measurement noise:
    localization sd ``noise_loc``; ng two independent halves ``ng_a``, ``ng_b`` of sd sqrt(2) ``noise_ng`` each,
    ``ng_excess`` their mean (noise sd ``noise_ng``), as two disjoint probe halves would give."""
    rng = np.random.default_rng(seed)
    b = rng.standard_normal(K)
    mu = effects * np.column_stack([b, effect_corr * b + np.sqrt(1 - effect_corr**2) * rng.standard_normal(K)])
    v, out = mu.copy(), []
    for t in range(burn + R - 1):
        v = mu @ (np.eye(2) - A).T + v @ A.T + rng.standard_normal((K, 2))
        if t >= burn:
            out.append(v)
    levels = np.concatenate([np.zeros((K, 1, 2)), np.cumsum(np.stack(out, 1), 1)], 1)
    ng, loc = levels[..., 0], levels[..., 1] + noise_loc * rng.standard_normal((K, R))
    a, b = (ng + noise_ng * np.sqrt(2) * rng.standard_normal((K, R)) for _ in range(2))
    table = _table((a + b) / 2, loc)
    wide = {"ng_a": a, "ng_b": b}
    for name, values in wide.items():
        table[name] = values[table["unit"].to_numpy(), table["round"].to_numpy()]
    return table


def var_truth(A: np.ndarray) -> tuple[float, float]:
    """The lead and reverse partial correlations of the noise-free stationary VAR(1) of :func:`var_panel`, from its
    stationary covariance S = A S A' + I (scipy's discrete Lyapunov solver): the lead's outcome d_loc[t+1] is
    A[1, 0] d_ng[t] + A[1, 1] d_loc[t] + e, so given d_loc[t] its partial correlation with d_ng[t] is
    A[1, 0] s / sqrt(A[1, 0]^2 s^2 + 1), s^2 = var(d_ng | d_loc) = S00 - S01^2 / S11; the reverse likewise."""
    from scipy.linalg import solve_discrete_lyapunov

    S = solve_discrete_lyapunov(A, np.eye(2))
    s_ng, s_loc = S[0, 0] - S[0, 1] ** 2 / S[1, 1], S[1, 1] - S[0, 1] ** 2 / S[0, 0]
    return (float(A[1, 0] * np.sqrt(s_ng) / np.sqrt(A[1, 0] ** 2 * s_ng + 1)),
            float(A[0, 1] * np.sqrt(s_loc) / np.sqrt(A[0, 1] ** 2 * s_loc + 1)))


def _two_way_t_route(y: np.ndarray, x: np.ndarray, ar: np.ndarray, units: np.ndarray, rounds: np.ndarray) -> float:
    """Partial correlation by lstsq on an explicit design [x, ar, one dummy per round, one per unit but the first]:
    rho = t / sqrt(t^2 + df) (independent of within-unit demeaning and of the package's residualizing)."""
    levels, ids = np.unique(rounds), np.unique(units)
    X = np.column_stack([x, ar, *(rounds == q for q in levels), *(units == u for u in ids[1:])]).astype(float)
    n, p = X.shape
    if n < p + 2:
        return math.nan
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    df = n - np.linalg.matrix_rank(X)
    s2 = np.sum((y - X @ beta) ** 2) / df
    t = beta[0] / np.sqrt(s2 * np.linalg.pinv(X.T @ X)[0, 0])
    return float(t / np.sqrt(t**2 + df))


def two_way_reference(table: pd.DataFrame, jackknife: bool) -> tuple[float, float]:
    """Brute force of spec="unit": the pairs by loops (as :func:`reference`), the two-way fixed-effects estimate by
    the explicit dummy design, and the half-panel jackknife 2 rho - mean(halves) by literally re-fitting on the
    first and second halves of the pair-rounds (both splits for an odd count)."""
    cell = {(u, r): (g, s) for u, r, g, s in table[["unit", "round", "ng_excess", "localization"]].itertuples(index=False)}
    rounds = sorted(table["round"].unique())
    rows = []
    for u in sorted(table["unit"].unique()):
        for r in rounds[1:-1]:
            vals = [cell.get((u, q), (math.nan, math.nan)) for q in (r - 1, r, r + 1)]
            if all(math.isfinite(v) for pair in vals for v in pair):
                (g0, s0), (g1, s1), (g2, s2) = vals
                rows.append((u, r, g1 - g0, g2 - g1, s1 - s0, s2 - s1))
    u, r, dg, dg1, ds, ds1 = (np.array(c) for c in zip(*rows))

    def fit(keep: np.ndarray) -> tuple[float, float]:
        return (_two_way_t_route(ds1[keep], dg[keep], ds[keep], u[keep], r[keep]),
                _two_way_t_route(dg1[keep], ds[keep], dg[keep], u[keep], r[keep]))

    full = np.array(fit(np.ones(len(r), dtype=bool)))
    if not jackknife:
        return tuple(full)
    pair_rounds, T = rounds[1:-1], len(rounds) - 2
    halves = [fit(np.isin(r, part)) for k in sorted({T // 2, (T + 1) // 2})
              for part in (pair_rounds[:k], pair_rounds[k:])]
    return tuple(2 * full - np.mean(halves, axis=0))


@pytest.mark.parametrize("jackknife", [False, True])
@pytest.mark.parametrize("R", [8, 9])  # an even and an odd count of pair-rounds
def test_unit_spec_matches_brute_force_dummies(jackknife, R):
    """spec="unit" against an explicit unit-and-round dummy design (lstsq, t route), on an unbalanced panel (NaN
    cells, a missing row): the same numbers to 1e-10 (two float64 routes to one least-squares fit)."""
    ng, loc = planted(30, R, beta=-0.4, seed=12)
    ng[np.random.default_rng(13).random(ng.shape) < 0.04] = np.nan
    table = _table(ng, loc)
    table = table[~((table["unit"] == 4) & (table["round"] == 3))]
    got = lagged_coefficients(table, spec="unit", jackknife=jackknife)
    lead, reverse = two_way_reference(table, jackknife)
    base = lagged_coefficients(table)
    assert (got.n_pairs, got.n_dropped) == (base.n_pairs, base.n_dropped)
    assert got.lead == pytest.approx(lead, abs=1e-10) and got.reverse == pytest.approx(reverse, abs=1e-10)


def test_halves_are_cross_moments_and_equal_halves_change_nothing():
    """Identical halves (no noise) give the estimate without halves; halves a, b give the partial correlation of the
    symmetrized cross-half moment matrix (a literal 3 x 3 computation on residuals from an explicit dummy design)."""
    table = var_panel(40, 8, np.array([[0.3, 0.0], [-0.4, 0.3]]), seed=14, noise_ng=0.3)
    for spec in ("round", "unit"):
        same = table.assign(ng_a=table["ng_excess"], ng_b=table["ng_excess"])
        for jk in (False, True):
            a = lagged_coefficients(same, spec=spec, halves=("ng_a", "ng_b"), jackknife=jk)
            b = lagged_coefficients(same, spec=spec, jackknife=jk)
            assert a.lead == pytest.approx(b.lead, abs=1e-12) and a.reverse == pytest.approx(b.reverse, abs=1e-12)
    wide = {c: table.pivot(index="unit", columns="round", values=c).to_numpy() for c in ("ng_a", "ng_b", "localization")}
    d = {c: np.diff(v, axis=1) for c, v in wide.items()}
    K, T = d["localization"].shape[0], d["localization"].shape[1] - 1
    u, r = np.repeat(np.arange(K), T), np.tile(np.arange(1, T + 1), K)
    Q = np.column_stack([*(r == q for q in range(1, T + 1)), *(u == k for k in range(1, K))]).astype(float)

    def resid(v: np.ndarray) -> np.ndarray:
        return v - Q @ np.linalg.lstsq(Q, v, rcond=None)[0]

    def partial(Za: np.ndarray, Zb: np.ndarray) -> float:
        S = (Za.T @ Zb + Zb.T @ Za) / 2
        P = S[:2, :2] - np.outer(S[:2, 2], S[2, :2]) / S[2, 2]
        return P[0, 1] / np.sqrt(P[0, 0] * P[1, 1])

    now, nxt = (lambda v: v[:, :-1].ravel()), (lambda v: v[:, 1:].ravel())
    s = d["localization"]
    lead = partial(*(np.column_stack([resid(nxt(s)), resid(now(d[h])), resid(now(s))]) for h in ("ng_a", "ng_b")))
    reverse = partial(*(np.column_stack([resid(nxt(d[h])), resid(now(s)), resid(now(d[h]))]) for h in ("ng_a", "ng_b")))
    got = lagged_coefficients(table, spec="unit", halves=("ng_a", "ng_b"), jackknife=False)
    assert got.lead == pytest.approx(lead, abs=1e-10) and got.reverse == pytest.approx(reverse, abs=1e-10)


@pytest.mark.parametrize("noisy", ["localization", "ng"])
def test_drifts_and_unequal_noise_without_lag_give_zero_under_the_primary_spec(noisy):
    """(a) No lag at all (A diagonal: each measure persists on its own), unit drifts correlated -0.8 between the
    measures (units drifting toward non-Gaussianity drift toward locality) and one measure far noisier than the
    other (sd 1.5 against 0.1 on the levels; the changes have sd ~1.05). The round spec reads a lag whose
    leader is the cleaner measure (planted: both |coefficients| > 0.08, the cleaner one's direction larger);
    the unit spec (primary) reads 0, with and without halves.
    Tolerance: over 30 other seeds of this panel (400 units, 13 rounds), measured when this test was written, each
    coefficient's mean was within 0.01 of 0 and its sd 0.014-0.020 for spec="unit", 0.014-0.031 with halves (the
    noisy-ng case): 4 sd of the largest, 0.08 and 0.125 (a fixed seed: met or not, once); the asymmetry, 0.12.
    The round spec's artefact there: lead -0.26 and reverse -0.11 (noisy localization), -0.14 and -0.26 (noisy ng)."""
    noise = {"noise_ng": 1.0, "noise_loc": 0.1} if noisy == "ng" else {"noise_ng": 0.1, "noise_loc": 1.5}
    table = var_panel(400, 13, np.diag([0.3, 0.3]), seed=15, **noise)
    round_ = lagged_coefficients(table, spec="round")
    assert min(abs(round_.lead), abs(round_.reverse)) > 0.08
    cleaner_leads = abs(round_.lead) > abs(round_.reverse) if noisy == "localization" else abs(round_.reverse) > abs(round_.lead)
    assert cleaner_leads
    unit = lagged_coefficients(table, spec="unit")
    assert abs(unit.lead) < 0.08 and abs(unit.reverse) < 0.08
    halves = lagged_coefficients(table, spec="unit", halves=("ng_a", "ng_b"))
    assert abs(halves.lead) < 0.125 and abs(halves.reverse) < 0.125
    assert abs(unit.asymmetry) < 0.12


LEAD = np.array([[0.3, 0.0], [-0.4, 0.3]])  # d_ng[r] -> d_loc[r+1] only
LOOP = np.array([[0.3, 0.3], [-0.4, 0.3]])  # both ways


@pytest.mark.parametrize("A", [LEAD, LOOP], ids=["lead", "loop"])
def test_planted_lead_and_loop_are_recovered_with_halves(A):
    """(b) a planted lead (reverse 0) and (c) a two-way loop, with unit effects (drifts) and ng measured with noise
    on two halves (level noise sd 0.5 of their mean, the changes' sd ~1.1): spec="unit" with halves recovers the
    noise-free VAR's partial correlations (:func:`var_truth`). Without halves the noisy ng attenuates the lead
    toward 0 (by +0.051 to +0.056 on average, sd 0.014-0.017: asserted > 0.02). Tolerance 0.07: over 30 other seeds
    at this size (400 units, 13 rounds), measured when this was written, each coefficient's sd was 0.016-0.019 and
    its mean within 0.014 of the truth (the jackknife's O(1/T^2) rest): 0.07 is 3 sd plus that rest."""
    table = var_panel(400, 13, A, seed=16, noise_ng=0.5)
    lead, reverse = var_truth(A)
    got = lagged_coefficients(table, spec="unit", halves=("ng_a", "ng_b"))
    assert got.lead == pytest.approx(lead, abs=0.07) and got.reverse == pytest.approx(reverse, abs=0.07)
    assert got.asymmetry == pytest.approx(lead - reverse, abs=0.1)
    assert lagged_coefficients(table, spec="unit").lead > lead + 0.02  # attenuated toward 0


def test_nickell_bias_of_unit_effects_and_its_jackknife_by_simulation():
    """The short-panel bias of two-way fixed effects with a lagged outcome, at the demo's panel size (32 units,
    13 rounds: 11 pair-rounds), by Monte Carlo over 200 panels with a planted lead and unit effects.

    Within-unit demeaning correlates each regressor with the unit's mean error, an O(1/T) bias (Nickell 1981): here
    it shows in the reverse, 0 in truth, whose predictor d_loc[r] holds the unit's past d_ng and so the unit-mean
    of the outcome. Measured when this was written (truth: lead -0.384, reverse 0): mean bias raw lead -0.004,
    reverse +0.054 (sd 0.050, 0.059 over panels); jackknifed -0.015, +0.015 (sd 0.057, 0.066). The test asserts
    the raw bias is there (mean > 0.03, more than 7 Monte Carlo se of 0.0042 above 0) and that the jackknife takes
    at least two thirds of it away (|mean bias| < 0.025 for both coefficients: 0.015 plus 2 se of 0.0047)."""
    lead, reverse = var_truth(LEAD)
    raw, jk = [], []
    for seed in range(200):
        table = var_panel(32, 13, LEAD, seed=1000 + seed, effects=1.0, effect_corr=0.0)
        c, j = (lagged_coefficients(table, spec="unit", jackknife=k) for k in (False, True))
        raw.append((c.lead - lead, c.reverse - reverse))
        jk.append((j.lead - lead, j.reverse - reverse))
    raw, jk = np.mean(raw, 0), np.mean(jk, 0)
    assert raw[1] > 0.03
    assert abs(jk[0]) < 0.025 and abs(jk[1]) < 0.025
    assert abs(jk[1]) < raw[1] / 3


def test_specifications_and_columns():
    table = var_panel(50, 8, LEAD, seed=17, noise_ng=0.2)
    both = lagged_specifications(table, halves=("ng_a", "ng_b"))
    assert list(both) == ["round", "unit"] and PRIMARY == "unit"
    for spec, c in both.items():
        one = lagged_coefficients(table, spec=spec, halves=("ng_a", "ng_b"))
        assert (c.lead, c.reverse, c.n_pairs) == (one.lead, one.reverse, one.n_pairs)
        assert c.asymmetry == c.lead - c.reverse
    cols = lagged_columns(table, halves=("ng_a", "ng_b"))
    assert cols["lead_unit"] == both["unit"].lead and cols["asymmetry_round"] == both["round"].asymmetry
    assert cols["n_pairs"] == both["round"].n_pairs == 50 * 6
    assert set(cols) == {f"{k}_{s}" for k in ("lead", "reverse", "asymmetry") for s in ("round", "unit")} | {
        "n_pairs", "n_dropped"}
    with pytest.raises(ValueError, match="spec must be one of"):
        lagged_coefficients(table, spec="units")
    with pytest.raises(ValueError, match="halves names two columns"):
        lagged_coefficients(table, halves=("ng_a",))


def test_jackknife_needs_four_pair_rounds():
    ng, loc = planted(40, 5, beta=-0.4, seed=18)  # 3 pair-rounds
    got = lagged_coefficients(_table(ng, loc), spec="unit")
    assert math.isnan(got.lead) and math.isnan(got.reverse) and got.n_pairs == 120
    assert np.isfinite(lagged_coefficients(_table(ng, loc), spec="unit", jackknife=False).lead)
