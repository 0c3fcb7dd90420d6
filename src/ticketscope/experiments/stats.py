"""Outcome statistics of the claims report: paired or Welch effects, Holm correction, five outcomes, margins.

A claim compares two arms A and B (one value per seed each) and predicts the sign of the effect
E = mean(A - B). Arms that share a seed (same initialization, same round 0, same data stream)
are *paired*: E is the mean per-seed difference over the seeds both arms have, with the 95%
Student-t interval of a paired t test. Arms that share nothing get Welch's unequal-variance test.

Two tests decide an outcome (Lakens 2017; Lakens, Scheel & Isager 2018), with delta the claim's
smallest effect of interest and both p values Holm-Bonferroni adjusted (Holm 1979) over the
report's *registered family* of confirmatory rows:

* the test of difference, H0: E = 0 (two-sided, p_adj): *significant* when p_adj < alpha;
* the equivalence test, H0: |E| >= delta (two one-sided t tests, their larger p, p_eq_adj):
  *equivalent* when p_eq_adj < alpha, i.e. the effect is shown smaller than anything the claim cares about.

:data:`OUTCOMES`, as stable keywords:

* ``supported``             significant with the predicted sign, not shown smaller than delta;
* ``supported-negligible``  significant with the predicted sign, and shown smaller than delta;
* ``absent``                shown smaller than delta, not significant;
* ``opposite``              significant against the predicted sign;
* ``inconclusive``          neither significant nor equivalent (with the seeds the observed spread would need).

Since p_adj >= p, a significant row always has a 95% interval beyond zero. A row that cannot be
judged (fewer than two paired seeds, an arm the sweep lacks, arms identical by design) has no outcome.

The *margin* of an outcome (:func:`margin`) is how far, in standard errors, the estimate must move,
with its spread and the family's other rows held (Holm recomputed), for the outcome to change; a margin under
:data:`FRAGILE` is *fragile*: per-seed values on another CPU behave like a fresh draw and have moved
estimates by 1.3 standard errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
MAX_SEEDS = 10_000  # "seeds needed" is reported as more than this when the effect is this weak


@dataclass(frozen=True)
class Effect:
    """E = mean(A - B) with its interval and the two p values an outcome needs."""

    test: str  # "paired t" | "Welch t" | "one-sample t" | "slope t"
    estimate: float
    lo: float  # 95% interval
    hi: float
    p: float  # two-sided, H0: E = 0
    p_equivalence: float  # TOST, H0: |E| >= delta
    sd: float  # sd of the per-seed differences (paired) or sqrt(var A + var B) (Welch): seeds-needed scale
    dof: float
    n_a: int
    n_b: int
    seeds: tuple[int, ...]  # the seeds used (paired: common seeds; Welch: union)
    se: float = 0.0  # standard error of the estimate


def _effect(test: str, estimate: float, se: float, dof: float, delta: float, sd: float,
            n_a: int, n_b: int, seeds: tuple[int, ...]) -> Effect:
    if se == 0:  # no spread at all: the sign (or zero) is certain
        p = 0.0 if estimate != 0 else 1.0
        p_eq = 0.0 if abs(estimate) < delta else 1.0
        return Effect(test, estimate, estimate, estimate, p, p_eq, sd, dof, n_a, n_b, seeds, 0.0)
    half = float(stats.t.ppf(1 - ALPHA / 2, dof)) * se
    p = float(2 * stats.t.sf(abs(estimate) / se, dof))
    # TOST: H0a: E <= -delta and H0b: E >= delta; both rejected means |E| < delta
    p_eq = max(float(stats.t.sf((estimate + delta) / se, dof)), float(stats.t.cdf((estimate - delta) / se, dof)))
    return Effect(test, estimate, estimate - half, estimate + half, p, p_eq, sd, dof, n_a, n_b, seeds, se)


def one_sample(x: pd.Series, delta: float, test: str = "one-sample t") -> Effect | None:
    """t test of mean(x) = 0 over the seeds (index) of ``x``; None with fewer than two values."""
    x = x.dropna()
    if len(x) < 2:
        return None
    sd = float(x.std(ddof=1))
    return _effect(test, float(x.mean()), sd / math.sqrt(len(x)), len(x) - 1, delta, sd, len(x), len(x),
                   tuple(int(s) for s in x.index))


def paired(a: pd.Series, b: pd.Series, delta: float) -> Effect | None:
    """Paired t over the seeds (index) both ``a`` and ``b`` have; None with fewer than two."""
    a, b = a.dropna(), b.dropna()
    common = a.index.intersection(b.index).sort_values()
    e = one_sample(a.loc[common] - b.loc[common], delta, "paired t")
    return None if e is None else replace(e, n_a=len(a), n_b=len(b))


def slopes(values: pd.DataFrame, x: str, y: str) -> pd.Series:
    """Per seed, the least-squares slope of ``y`` on ``x`` (rows: seed, x, y); seeds with < 2 distinct x left out.

    A trend across conditions that share seeds is then a one-sample t on these slopes (the seed is
    the independent unit, as in a paired test).
    """
    out = {}
    for seed, df in values.dropna(subset=[x, y]).groupby("seed"):
        if df[x].nunique() >= 2:
            out[seed] = float(np.polyfit(df[x].to_numpy(float), df[y].to_numpy(float), 1)[0])
    return pd.Series(out, dtype=float)


def welch(a: pd.Series, b: pd.Series, delta: float) -> Effect | None:
    """Welch's unequal-variance t for arms that share no seed; None unless each has two values."""
    a, b = a.dropna(), b.dropna()
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else len(a) + len(b) - 2
    sd = math.sqrt(a.var(ddof=1) + b.var(ddof=1))
    seeds = tuple(sorted(int(s) for s in a.index.union(b.index)))
    return _effect("Welch t", float(a.mean() - b.mean()), se, dof, delta, sd, len(a), len(b), seeds)


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p values (NaN entries are left out of the family and stay NaN).

    Sorted ascending p_(1) <= ... <= p_(m): adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    """
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def seeds_needed(effect: Effect, delta: float, m: int = 1) -> int:
    """Seeds (per arm) at which the observed spread would settle the claim at the Holm worst case alpha / m.

    Either the interval excludes zero (needs t sd / sqrt(n) < |E|) or it fits inside +-delta
    (needs t sd / sqrt(n) < delta - |E|), whichever comes first; the observed E and sd are
    taken as the truth.
    """
    room = max(abs(effect.estimate), delta - abs(effect.estimate))
    if room <= 0 or effect.sd == 0:
        return MAX_SEEDS + 1
    level = 1 - ALPHA / (2 * m)
    n = max(2, math.ceil((stats.norm.ppf(level) * effect.sd / room) ** 2))
    while n <= MAX_SEEDS and stats.t.ppf(level, n - 1) * effect.sd / math.sqrt(n) >= room:
        n += 1
    return n


OUTCOMES = ("supported", "supported-negligible", "absent", "opposite", "inconclusive")
FRAGILE = 2.0  # margins (in standard errors) below this are marked fragile


def outcome(effect: Effect, direction: int, p_adj: float, p_eq_adj: float) -> str:
    """One of :data:`OUTCOMES` by the rule of the module docstring; ``direction`` is +1 when the claim
    predicts E > 0 and -1 when it predicts E < 0."""
    significant = p_adj < ALPHA and effect.estimate != 0
    equivalent = p_eq_adj < ALPHA
    if significant:
        if np.sign(effect.estimate) != direction:
            return "opposite"
        return "supported-negligible" if equivalent else "supported"
    return "absent" if equivalent else "inconclusive"


def critical_level(p: Sequence[float], i: int) -> float:
    """The largest raw p of row ``i`` at which its Holm-adjusted p stays below :data:`ALPHA`, every other row's p
    held (0.0 when no p makes it significant). Holm's adjusted p is non-decreasing in each raw p, so the row is
    significant exactly when its p is below this level (found by bisection to float precision)."""
    q = np.asarray(p, dtype=float).copy()

    def adjusted(x: float) -> float:
        q[i] = x
        return float(holm(q)[i])

    if adjusted(0.0) >= ALPHA:
        return 0.0
    lo, hi = 0.0, ALPHA
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if adjusted(mid) < ALPHA else (lo, mid)
    return lo


def margin(effect: Effect, direction: int, delta: float, level: float, eq_level: float) -> float:
    """Standard errors the estimate must move, its spread and dof and every other row of the family held, for its
    outcome to change (inf when no move does, or when se = 0).

    ``level`` and ``eq_level`` are the row's :func:`critical_level` in the family's p values and equivalence p
    values. With z = E / se the row is significant where |z| > t_s (t_s the two-sided critical t at ``level``)
    and equivalent where |z| < delta / se - t_e (t_e the one-sided critical t at ``eq_level``); the outcome
    (:func:`outcome`) is constant between these boundaries, and the margin is the distance from z to the nearest
    boundary whose crossing changes it (an opposite row stays opposite when it also turns equivalent)."""
    if effect.se == 0 or not math.isfinite(effect.se):
        return math.inf
    t_s = float(stats.t.isf(level / 2, effect.dof)) if level > 0 else math.inf
    t_e = float(stats.t.isf(eq_level, effect.dof)) if eq_level > 0 else math.inf
    room = delta / effect.se - t_e

    def at(z: float) -> str:
        sig, eq = abs(z) > t_s and z != 0, abs(z) < room
        if sig:
            return "opposite" if np.sign(z) != direction else ("supported-negligible" if eq else "supported")
        return "absent" if eq else "inconclusive"

    z = effect.estimate / effect.se
    bounds = ([t_s, -t_s] if math.isfinite(t_s) else []) + ([room, -room] if room > 0 else [])
    eps = 1e-9 * max([1.0, *(abs(b) for b in bounds)])
    changes = [b for b in bounds if at(b - eps) != at(b + eps)]
    return float(min((abs(z - b) for b in changes), default=math.inf))
