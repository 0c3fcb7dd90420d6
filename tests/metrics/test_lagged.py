"""Lagged per-unit statistics: against a brute-force OLS, on planted panels, and on undefined values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ticketscope.metrics import lagged_coefficients


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
