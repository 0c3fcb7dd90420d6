"""Lagged per-unit statistics across pruning rounds: does a unit's non-Gaussianity change first, or its localization?

Over one run's layer, with d_ng[u, r] = ng[u, r] - ng[u, r-1] and d_loc likewise, each (unit u, round r)
with both measures finite at rounds r-1, r and r+1 is one pair, used by both coefficients:

    lead:     d_loc[u, r+1] ~ d_ng[u, r]  + d_loc[u, r] + round fixed effects
    reverse:  d_ng[u, r+1]  ~ d_loc[u, r] + d_ng[u, r]  + round fixed effects

Each coefficient is the standardized partial slope of the outcome change on the predictor change, i.e. the
partial correlation given the controls Z (the unit's own previous change of the outcome, one dummy per round):

    rho = <e_x, e_y> / sqrt(<e_x, e_x> <e_y, e_y>) = beta * sd(e_x) / sd(e_y),

e_x, e_y the residuals of predictor and outcome on Z and beta the OLS slope of the full regression
(Frisch-Waugh-Lovell). It lies in [-1, 1] whatever the scales of the two measures, so runs of different
sizes compare; a change shared by every unit of a round is absorbed by the fixed effects. A negative lead
means "more non-Gaussian now, more local (smaller localization) next".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class LaggedCoefficients:
    """The lead and reverse partial correlations of one run's layer, on the same pairs."""

    lead: float  # d_ng[r] -> d_loc[r+1]; NaN when undefined
    reverse: float  # d_loc[r] -> d_ng[r+1]; NaN when undefined
    n_pairs: int  # (unit, round) pairs used
    n_dropped: int  # pairs left out: a measure NaN or infinite at round r-1, r or r+1 (dead unit, undefined stat)


def _panel(table: pd.DataFrame, column: str) -> np.ndarray:
    """(units, rounds) float64 array of ``column``, rounds in increasing order; NaN where a unit has no row."""
    wide = table.pivot(index="unit", columns="round", values=column).sort_index(axis=1)
    return wide.to_numpy(dtype=np.float64)


def _within_rounds(v: np.ndarray, rounds: np.ndarray) -> np.ndarray:
    """v minus its mean over the rows of its round: the residual on one dummy per round."""
    _, idx = np.unique(rounds, return_inverse=True)
    means = np.bincount(idx, weights=v) / np.bincount(idx)
    return v - means[idx]


def _partial_correlation(y: np.ndarray, x: np.ndarray, ar: np.ndarray, rounds: np.ndarray) -> float:
    """rho of y on x given ar and round dummies; NaN when a residual has no variance or with too few rows
    (fewer than the regressors, x, ar and one per round, plus 2)."""
    if len(y) < 2 + len(np.unique(rounds)) + 2:
        return float("nan")
    y, x, ar = (_within_rounds(v, rounds) for v in (y, x, ar))
    scale = ar @ ar
    if scale > 0:  # else ar is constant within rounds: the dummies hold it already
        y, x = y - (ar @ y / scale) * ar, x - (ar @ x / scale) * ar
    denom = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / denom) if denom > 0 else float("nan")


def lagged_coefficients(table: pd.DataFrame, ng: str = "ng_excess", loc: str = "localization") -> LaggedCoefficients:
    """Lead and reverse coefficients (module docstring) of one run's layer, from its tidy unit x round table
    (columns ``unit``, ``round``, ``ng``, ``loc``; one row per unit and round, as in ``units.parquet``).

    Rounds are taken in increasing order and must be consecutive completed rounds; pairs with a value NaN or
    infinite anywhere in rounds r-1 .. r+1 are dropped and counted, never zeroed."""
    if table.duplicated(["unit", "round"]).any():
        raise ValueError("lagged_coefficients takes one run's layer: (unit, round) must be unique")
    g, s = _panel(table, ng), _panel(table, loc)
    rounds = np.sort(table["round"].unique())
    if np.any(np.diff(rounds) != 1):
        raise ValueError(f"lagged_coefficients needs consecutive rounds, got {rounds.tolist()}")
    if len(rounds) < 3:
        return LaggedCoefficients(float("nan"), float("nan"), 0, 0)
    dg, ds = np.diff(g, axis=1), np.diff(s, axis=1)  # column t: round t+1 minus round t
    prev, now, nxt = slice(0, -1), slice(1, None), rounds[1:-1]  # pair (u, r): changes into r and into r+1
    cells = {"dg": dg[:, prev], "dg1": dg[:, now], "ds": ds[:, prev], "ds1": ds[:, now]}
    ok = np.logical_and.reduce([np.isfinite(v) for v in cells.values()])
    v = {k: c[ok] for k, c in cells.items()}
    r = np.broadcast_to(nxt, ok.shape)[ok]
    return LaggedCoefficients(lead=_partial_correlation(v["ds1"], v["dg"], v["ds"], r),
                              reverse=_partial_correlation(v["dg1"], v["ds"], v["dg"], r),
                              n_pairs=int(ok.sum()), n_dropped=int(ok.size - ok.sum()))
