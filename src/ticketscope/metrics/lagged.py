"""Lagged per-unit statistics across pruning rounds: does a unit's non-Gaussianity change first, or its localization?

Over one run's layer, with d_ng[u, r] = ng[u, r] - ng[u, r-1] and d_loc likewise, each (unit u, round r)
with both measures finite at rounds r-1, r and r+1 is one pair, used by both coefficients:

    lead:     d_loc[u, r+1] ~ d_ng[u, r]  + d_loc[u, r] + fixed effects
    reverse:  d_ng[u, r+1]  ~ d_loc[u, r] + d_ng[u, r]  + fixed effects

Each coefficient is the standardized partial slope of the outcome change on the predictor change, i.e. the
partial correlation given the controls Z (the unit's own previous change of the outcome and the fixed effects):

    rho = <e_x, e_y> / sqrt(<e_x, e_x> <e_y, e_y>) = beta * sd(e_x) / sd(e_y),

e_x, e_y the residuals of predictor and outcome on Z and beta the OLS slope of the full regression
(Frisch-Waugh-Lovell). It lies in [-1, 1] whatever the scales of the two measures, so runs of different
sizes compare. A negative lead means "more non-Gaussian now, more local (smaller localization) next".
The *asymmetry* of a run is lead - reverse (:attr:`LaggedCoefficients.asymmetry`).

Two specifications (``spec``), differing in their fixed effects:

- ``"round"`` (today's, issue 19): one dummy per round. A change every unit shares in a round is absorbed,
  but a unit-specific drift is not: if units that drift toward non-Gaussianity also drift toward locality,
  the previous change of each measure is a proxy of both drifts, and the *less noisy* measure is the better
  proxy, so it looks like the leader although nothing leads (``tests/metrics/test_lagged.py`` plants this).
- ``"unit"`` (the primary specification, :data:`PRIMARY`): round dummies *and* one dummy per unit (two-way
  fixed effects, by within-unit demeaning then the demeaned round dummies, exact on an unbalanced panel).
  A constant per-unit rate of change of either measure, whatever its noise, is absorbed, so drifts and
  unequal noise give no lag. Its cost: with a lagged outcome and only T pair-rounds per unit, the within
  transformation correlates regressors and errors by O(1/T) (the Nickell 1981 short-panel bias). Simulated at
  the demo's size (32 units, 11 pair-rounds) with a planted lead of -0.38 and no reverse, the reverse reads
  +0.054 on average (the lead -0.004). The half-panel jackknife of Dhaene & Jochmans (2015) removes the O(1/T)
  term: rho_J = 2 rho - mean(rho_half), rho_half the estimates on the first and on the second half of the
  pair-rounds (for an odd count, averaged over both ways of splitting it) (``jackknife=True``, the default);
  there it leaves +0.015 and -0.015, at about 1.1x the raw sd (``tests/metrics/test_lagged.py``, Monte Carlo).
  The jackknife needs at least 4 pair-rounds (NaN below).

The unit specification is primary because its expectation is 0 when nothing leads whatever the units'
drifts and the two measures' noise (the artefacts the issue names), while the round specification's is not;
its own short-panel bias is known and corrected.

**Measurement noise of ng** (``halves``): excess non-Gaussianity measured on two disjoint halves of the
probe set, ng_a and ng_b, carries two independent noises of the same law. Then every moment that enters the
partial correlation is taken *across* halves, S = (Z_a' P Z_b + Z_b' P Z_a) / 2 with Z = [y, x, c] built
from half a or half b (localization is the same in both) and P the fixed-effects projection: the noise of
one half is independent of the other's, so S estimates the moments of the noise-free ng (the split-half
instrument: one half is the regressor, the other its instrument, symmetrized; Spearman's correction for
attenuation). This removes the attenuation of the lead (noisy regressor), the shared level noise of the
reverse's outcome and control (d_ng[r+1] and d_ng[r] both hold ng[r]'s noise, with opposite signs) and the
outcome noise of the reverse. Localization has no halves: its noise stays (it attenuates both directions:
the lead's outcome, the reverse's predictor). A corrected coefficient may leave [-1, 1] by sampling error
(as any disattenuated correlation); NaN when a corrected residual variance is not positive (halves so noisy that
the cross-half moments of a sub-panel turn negative).

Known limit, left as is: localization's own noise is not corrected. Noise in a level makes the change d_loc[r]
a noisy control of d_loc[r+1] (the two share that level's noise with opposite signs); if d_ng and d_loc also
share *contemporaneous* shocks, the part of the outcome's persistence the noisy control misses can load on d_ng[r]
and read as a lead under either specification. The drifts-and-noise test plants no contemporaneous shocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

Spec = Literal["round", "unit"]
SPECS: tuple[Spec, ...] = ("round", "unit")
PRIMARY: Spec = "unit"
"""The specification whose coefficients are 0 in expectation under unit drifts and unequal noise (module docstring)."""


@dataclass(frozen=True)
class LaggedCoefficients:
    """The lead and reverse partial correlations of one run's layer, on the same pairs."""

    lead: float  # d_ng[r] -> d_loc[r+1]; NaN when undefined
    reverse: float  # d_loc[r] -> d_ng[r+1]; NaN when undefined
    n_pairs: int  # (unit, round) pairs used
    n_dropped: int  # pairs left out: a measure NaN or infinite at round r-1, r or r+1 (dead unit, undefined stat)

    @property
    def asymmetry(self) -> float:
        """lead - reverse: how much more the non-Gaussianity change foretells the localization change than the
        other way round (both negative under the loop's hypothesis; NaN if either is)."""
        return self.lead - self.reverse


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


def _fixed_effects_residuals(Z: np.ndarray, units: np.ndarray, rounds: np.ndarray, unit_fe: bool) -> np.ndarray:
    """Residuals of the columns of Z (n, p) on one dummy per round, and per unit if ``unit_fe`` (two-way, exact on
    an unbalanced panel: within-unit demeaning, then least squares on the within-unit-demeaned round dummies)."""
    if not unit_fe:
        return np.column_stack([_within_rounds(z, rounds) for z in Z.T])
    _, u = np.unique(units, return_inverse=True)
    _, r = np.unique(rounds, return_inverse=True)
    D = np.zeros((len(r), r.max() + 1))
    D[np.arange(len(r)), r] = 1.0

    size = np.bincount(u)

    def demean(M: np.ndarray) -> np.ndarray:
        return M - np.column_stack([np.bincount(u, weights=m) / size for m in M.T])[u]

    Zw, Dw = demean(Z), demean(D)
    coef, *_ = np.linalg.lstsq(Dw, Zw, rcond=None)
    return Zw - Dw @ coef


def _moment_partial(Sa: np.ndarray, Sb: np.ndarray) -> float:
    """Partial correlation of columns 0 (y) and 1 (x) given column 2 (c) from the symmetrized cross moments
    S = (Sa' Sb + Sb' Sa) / 2 of two versions of the residualized (n, 3) matrix (the same matrix twice: plain
    moments). NaN when a residual variance is not positive."""
    S = (Sa.T @ Sb + Sb.T @ Sa) / 2
    if S[2, 2] > 0:
        S = S - np.outer(S[:, 2], S[2, :]) / S[2, 2]
    if S[0, 0] <= 0 or S[1, 1] <= 0:
        return float("nan")
    return float(S[0, 1] / np.sqrt(S[0, 0] * S[1, 1]))


def _estimate(Za: np.ndarray, Zb: np.ndarray, units: np.ndarray, rounds: np.ndarray, unit_fe: bool) -> float:
    """The partial correlation of Z's y and x given c and the fixed effects, with the cross-half moments of
    Za, Zb (module docstring); NaN with fewer rows than the regressors plus 2."""
    regressors = 2 + len(np.unique(rounds)) + (len(np.unique(units)) - 1 if unit_fe else 0)
    if len(Za) < regressors + 2:
        return float("nan")
    Ra = _fixed_effects_residuals(Za, units, rounds, unit_fe)
    Rb = Ra if Zb is Za else _fixed_effects_residuals(Zb, units, rounds, unit_fe)
    return _moment_partial(Ra, Rb)


def _jackknifed(Za: np.ndarray, Zb: np.ndarray, units: np.ndarray, rounds: np.ndarray, pair_rounds: np.ndarray,
                unit_fe: bool) -> float:
    """Half-panel jackknife (Dhaene & Jochmans 2015) of :func:`_estimate`: 2 rho - the mean of the estimates on
    the first and the second half of ``pair_rounds`` (odd count: both splits, averaged); NaN under 4 pair-rounds."""
    full = _estimate(Za, Zb, units, rounds, unit_fe)
    T = len(pair_rounds)
    if T < 4:
        return float("nan")
    splits = {T // 2, (T + 1) // 2}
    halves = []
    for k in sorted(splits):
        for part in (pair_rounds[:k], pair_rounds[k:]):
            keep = np.isin(rounds, part)
            za = Za[keep]
            halves.append(_estimate(za, za if Zb is Za else Zb[keep], units[keep], rounds[keep], unit_fe))
    return 2 * full - float(np.mean(halves))


def lagged_coefficients(table: pd.DataFrame, ng: str = "ng_excess", loc: str = "localization",
                        spec: Spec = "round", halves: Sequence[str] | None = None,
                        jackknife: bool = True) -> LaggedCoefficients:
    """Lead and reverse coefficients (module docstring) of one run's layer, from its tidy unit x round table
    (columns ``unit``, ``round``, ``ng``, ``loc``; one row per unit and round, as in ``units.parquet``).

    ``spec``: ``"round"`` (round fixed effects; the default, today's numbers unchanged) or ``"unit"`` (round and
    unit fixed effects, the primary specification; half-panel jackknifed unless ``jackknife=False``).
    ``halves``: two columns holding ``ng`` measured on two disjoint halves of the probe set (e.g.
    ``("ng_excess_a", "ng_excess_b")``): the moments are then taken across halves, free of ng's measurement
    noise; pairs need the halves finite as well.

    Rounds are taken in increasing order and must be consecutive completed rounds; pairs with a value NaN or
    infinite anywhere in rounds r-1 .. r+1 are dropped and counted, never zeroed."""
    if spec not in SPECS:
        raise ValueError(f"spec must be one of {SPECS}, got {spec!r}")
    if halves is not None and len(halves) != 2:
        raise ValueError(f"halves names two columns (ng on each half of the probe set), got {halves!r}")
    if table.duplicated(["unit", "round"]).any():
        raise ValueError("lagged_coefficients takes one run's layer: (unit, round) must be unique")
    rounds = np.sort(table["round"].unique())
    if np.any(np.diff(rounds) != 1):
        raise ValueError(f"lagged_coefficients needs consecutive rounds, got {rounds.tolist()}")
    if len(rounds) < 3:
        return LaggedCoefficients(float("nan"), float("nan"), 0, 0)
    columns = {"g": ng, "s": loc} | ({"ga": halves[0], "gb": halves[1]} if halves is not None else {})
    diffs = {k: np.diff(_panel(table, c), axis=1) for k, c in columns.items()}  # column t: round t+1 minus round t
    prev, now, nxt = slice(0, -1), slice(1, None), rounds[1:-1]  # pair (u, r): changes into r and into r+1
    cells = {f"{k}{w}": d[:, sl] for k, d in diffs.items() for w, sl in (("", prev), ("1", now))}
    ok = np.logical_and.reduce([np.isfinite(v) for v in cells.values()])
    v = {k: c[ok] for k, c in cells.items()}
    r = np.broadcast_to(nxt, ok.shape)[ok]
    counts = dict(n_pairs=int(ok.sum()), n_dropped=int(ok.size - ok.sum()))
    if spec == "round" and halves is None:  # issue 19's estimator, bit for bit
        return LaggedCoefficients(lead=_partial_correlation(v["s1"], v["g"], v["s"], r),
                                  reverse=_partial_correlation(v["g1"], v["s"], v["g"], r), **counts)
    u = np.broadcast_to(np.arange(ok.shape[0])[:, None], ok.shape)[ok]
    a, b = ("ga", "gb") if halves is not None else ("g", "g")
    lead = [np.column_stack([v["s1"], v[h], v["s"]]) for h in (a, b)]  # [y, x, c]
    reverse = [np.column_stack([v[h + "1"], v["s"], v[h]]) for h in (a, b)]
    if halves is None:
        lead[1], reverse[1] = lead[0], reverse[0]  # the same matrix: plain moments

    def coefficient(Z: list[np.ndarray]) -> float:
        if spec == "unit" and jackknife:
            return _jackknifed(Z[0], Z[1], u, r, nxt, unit_fe=True)
        return _estimate(Z[0], Z[1], u, r, unit_fe=spec == "unit")

    return LaggedCoefficients(lead=coefficient(lead), reverse=coefficient(reverse), **counts)


def lagged_specifications(table: pd.DataFrame, ng: str = "ng_excess", loc: str = "localization",
                          halves: Sequence[str] | None = None) -> dict[Spec, LaggedCoefficients]:
    """:func:`lagged_coefficients` under each specification of :data:`SPECS` (``"unit"`` jackknifed), on the same
    pairs: ``{"round": ..., "unit": ...}``. A direction is read only where both agree (issue 28)."""
    return {s: lagged_coefficients(table, ng, loc, spec=s, halves=halves) for s in SPECS}


def lagged_columns(table: pd.DataFrame, ng: str = "ng_excess", loc: str = "localization",
                   halves: Sequence[str] | None = None) -> dict[str, float]:
    """:func:`lagged_specifications` as one flat row: ``lead_{spec}``, ``reverse_{spec}``, ``asymmetry_{spec}``
    for each spec, and ``n_pairs``, ``n_dropped`` (shared), ready for a table of one row per run and layer."""
    out: dict[str, float] = {}
    for s, c in lagged_specifications(table, ng, loc, halves).items():
        out |= {f"lead_{s}": c.lead, f"reverse_{s}": c.reverse, f"asymmetry_{s}": c.asymmetry}
        out |= {"n_pairs": c.n_pairs, "n_dropped": c.n_dropped}
    return out
