"""Claim kinds: each kind of comparison owns its per-seed contrast, its test and its figure.

A kind reads the report's first-layer rows of one context and returns one value per seed of each arm
(:meth:`Kind.values`); its :meth:`Kind.effect` turns them into an :class:`~ticketscope.experiments.stats.Effect`.

* :class:`Paired`: arm A minus arm B of one value (at the sparsest round, mean over rounds, or dense-to-sparsest
  change), paired t over the seeds both arms share (Welch where they share none).
* :class:`Emergence`: the same, for sweeps of dense training only (round 0).
* :class:`DiffOfDiffs`: (A - B) - (A2 - B2) per seed, e.g. IMP's advantage over one-shot on the data minus
  the same on the clone; one-sample t over the seeds all four arms share.
* :class:`RoundSlope`: per seed, the least-squares slope over the rounds of A - B; one-sample t.
* :class:`AxisSlope`: per seed, the slope of A - B (at the sparsest round) against a sweep axis (or its
  logarithm); one-sample t. The axis is not a context of the claim.

A new kind is one subclass: its :meth:`values` and :attr:`test`; the rest is shared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .. import stats
from .table import CLONE, FIRST, METHOD, SEED, label

Arm = dict[str, Any]  # config column -> value


def arm(method: str, clone: bool = False) -> Arm:
    """The arm of runs pruned by ``method`` on the data (or on its Gaussian clone)."""
    return {METHOD: method, CLONE: clone}


def rows(table: pd.DataFrame, value: str, where: Arm) -> pd.DataFrame:
    """The first-layer rows of the arm ``where`` (none when no run has ``value``)."""
    df = table[table["layer"] == FIRST]
    if value not in df:
        return df.iloc[:0].assign(**{value: pd.Series(dtype=float)})
    for k, v in where.items():
        df = df[df[k] == v] if k in df else df.iloc[:0]
    return df


def per_seed(table: pd.DataFrame, value: str, where: Arm, at: str = "last") -> pd.Series:
    """One value per seed (first layer): at the sparsest round (``last``), the mean over the rounds where it is
    defined (``mean``), over the first or the second half of them (``early``, ``late``: a rise and a fall are
    judged apart, never averaged into one mean), or the dense-to-sparsest ``change``."""
    df = rows(table, value, where)
    if df.empty:
        return pd.Series(dtype=float)
    if at in ("mean", "early", "late"):
        df = df.dropna(subset=[value])
        if at != "mean":
            defined = np.sort(df["round"].unique())
            half = defined[: (len(defined) + 1) // 2] if at == "early" else defined[(len(defined) + 1) // 2:]
            df = df[df["round"].isin(half)]
        return df.groupby(SEED)[value].mean()
    last = df.loc[df.groupby(SEED)["round"].idxmax()].set_index(SEED)[value]
    if at == "last":
        return last
    if at == "change":
        return last - df.loc[df.groupby(SEED)["round"].idxmin()].set_index(SEED)[value]
    raise ValueError(f"at must be last, mean, early, late or change, not {at!r}")


def _identical(a: pd.Series, b: pd.Series) -> bool:
    """Every seed both arms have gives exactly the same value (arms identical by design)."""
    a, b = a.dropna(), b.dropna()
    common = a.index.intersection(b.index)
    return len(common) >= 2 and bool((a.loc[common] == b.loc[common]).all())


@dataclass(frozen=True)
class Kind:
    """A comparison of arm A with arm B of the table column ``value``."""

    value: str
    a: Arm
    b: Arm
    test: ClassVar[str] = "paired t"
    over: ClassVar[str | None] = None  # a sweep axis the kind compares along (not a context)
    dense: ClassVar[bool] = False  # judged on sweeps of dense training only (else on pruning sweeps only)

    def arms(self) -> tuple[Arm, ...]:
        return (self.a, self.b)

    def columns(self) -> set[str]:
        """The table columns the kind reads: its value and its arms' config fields."""
        return {self.value, *(k for a in self.arms() for k in a)} | ({self.over} if self.over else set())

    def values(self, df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        """Arm A's and arm B's per-seed values (B is 0 for kinds tested as one sample)."""
        raise NotImplementedError

    def effect(self, a: pd.Series, b: pd.Series, delta: float) -> stats.Effect | None:
        """One-sample t on A - B over the seeds both have (B is 0 for the slope kinds)."""
        return stats.one_sample((a - b).dropna(), delta, self.test)

    def untestable(self, df: pd.DataFrame, axes: list[str]) -> str | None:
        """Why this sweep cannot test the kind in context ``df`` (None: it can)."""
        if self.over is not None and self.over not in axes:
            return f"the sweep does not vary {self.over}"
        if self.value not in df or df[self.value].isna().all():
            return f"no run has a value of {self.value}"
        for where in self.arms():
            if rows(df, self.value, where).empty:
                return f"the sweep has no runs of the arm {label(where)}"
        return None

    def identical(self, a: pd.Series, b: pd.Series) -> bool:
        return _identical(a, b)

    def contrast(self, a: pd.Series, b: pd.Series) -> pd.Series:
        """The per-seed values the test is on (A - B over shared seeds)."""
        common = a.dropna().index.intersection(b.dropna().index)
        return (a.loc[common] - b.loc[common]).sort_index()

    def plot(self, ax: Any, a: pd.Series, b: pd.Series, delta: float, direction: int) -> None:
        """Per-seed contrasts (dots), their mean with its 95% interval, 0 and the +-delta band of no interest."""
        d = self.contrast(a, b).to_numpy(float)
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(d))
        ax.axhspan(-delta, delta, color="0.9", zorder=0)
        ax.axhline(0, color="0.5", lw=0.8, zorder=1)
        ax.scatter(jitter, d, s=6, color="#4c72b0", alpha=0.5, zorder=2)
        e = stats.one_sample(pd.Series(d), delta)
        if e is not None:
            ax.errorbar([0.45], [e.estimate], yerr=[[e.estimate - e.lo], [e.hi - e.estimate]], fmt="o", color="k",
                        capsize=3, zorder=3)
        ax.set_xlim(-0.5, 0.8)
        ax.set_xticks([])
        ax.set_ylabel(f"A - B per seed ({'+' if direction > 0 else '-'} predicted)", fontsize=7)


@dataclass(frozen=True)
class Paired(Kind):
    """A - B of ``value`` per seed at ``at`` (last | mean | change); paired t, Welch where no seed is shared."""

    at: str = "last"

    def values(self, df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        return per_seed(df, self.value, self.a, self.at), per_seed(df, self.value, self.b, self.at)

    def effect(self, a: pd.Series, b: pd.Series, delta: float) -> stats.Effect | None:
        if a.dropna().index.intersection(b.dropna().index).empty:
            return stats.welch(a, b, delta)
        return stats.paired(a, b, delta)

    def contrast(self, a: pd.Series, b: pd.Series) -> pd.Series:
        if a.dropna().index.intersection(b.dropna().index).empty:  # Welch: A's values against B's mean
            return a.dropna() - b.dropna().mean()
        return super().contrast(a, b)


@dataclass(frozen=True)
class Emergence(Paired):
    """:class:`Paired` at the end of dense training: the claim of sweeps without pruning rounds."""

    dense: ClassVar[bool] = True


@dataclass(frozen=True)
class DiffOfDiffs(Kind):
    """(A - B) - (A2 - B2) of ``value`` at ``at`` per seed, over the seeds all four arms share; one-sample t."""

    a2: Arm = None  # type: ignore[assignment]
    b2: Arm = None  # type: ignore[assignment]
    at: str = "last"
    test: ClassVar[str] = "difference of differences t"

    def arms(self) -> tuple[Arm, ...]:
        return (self.a, self.b, self.a2, self.b2)

    def values(self, df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        a, b, a2, b2 = (per_seed(df, self.value, where, self.at) for where in self.arms())
        return (a - b).dropna(), (a2 - b2).dropna()

    def identical(self, a: pd.Series, b: pd.Series) -> bool:  # both differences zero: no contrast by design
        return bool(len(a) >= 2 and (a == 0).all() and (b.reindex(a.index) == 0).all())


def _slopes(diff: pd.DataFrame, x: str) -> pd.Series:
    return stats.slopes(diff.rename(columns={SEED: "seed"}), x, "diff")


@dataclass(frozen=True)
class RoundSlope(Kind):
    """Per seed, the least-squares slope of A - B (both defined at that round) over the rounds; one-sample t."""

    test: ClassVar[str] = "slope t"

    def differences(self, df: pd.DataFrame) -> pd.DataFrame:
        """Rows (seed, round, diff): A minus B at each round, paired by seed, both defined."""
        a, b = (rows(df, self.value, where).set_index([SEED, "round"])[self.value] for where in (self.a, self.b))
        d = (a - b).dropna().rename("diff").reset_index()
        return d.rename(columns={SEED: "seed"})[["seed", "round", "diff"]]

    def values(self, df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        s = stats.slopes(self.differences(df), "round", "diff")
        return s, pd.Series(0.0, index=s.index)

    def identical(self, a: pd.Series, b: pd.Series) -> bool:
        return False  # a zero slope is a finding here, not a design

    def untestable(self, df: pd.DataFrame, axes: list[str]) -> str | None:
        why = super().untestable(df, axes)
        if why is None and self.differences(df)["round"].nunique() < 2:
            return f"a slope over the rounds needs {self.value} at two or more rounds (two pruning steps)"
        return why


@dataclass(frozen=True)
class AxisSlope(Kind):
    """Per seed, the slope of A - B at the sparsest round against the sweep axis ``axis`` (``log``: its natural
    logarithm; B None: the slope of A itself); one-sample t over the seeds' slopes. Judged within contexts of the
    other axes."""

    axis: str = ""
    log: bool = True
    test: ClassVar[str] = "slope t"

    @property
    def over(self) -> str:  # type: ignore[override]
        return self.axis

    def arms(self) -> tuple[Arm, ...]:
        return (self.a,) if self.b is None else (self.a, self.b)

    def differences(self, df: pd.DataFrame) -> pd.DataFrame:
        """Rows (seed, x, diff, <axis>): A minus B (or A) at each value of the axis, paired by seed."""
        out = []
        for v, g in df.groupby(self.axis):
            d = per_seed(g, self.value, self.a) - (per_seed(g, self.value, self.b) if self.b is not None else 0.0)
            out += [{"seed": s, self.axis: v, "x": math.log(v) if self.log else float(v), "diff": x}
                    for s, x in d.dropna().items()]
        return pd.DataFrame(out, columns=["seed", self.axis, "x", "diff"])

    def values(self, df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        s = stats.slopes(self.differences(df), "x", "diff")
        return s, pd.Series(0.0, index=s.index)

    def identical(self, a: pd.Series, b: pd.Series) -> bool:
        return False

    def untestable(self, df: pd.DataFrame, axes: list[str]) -> str | None:
        why = super().untestable(df, axes)
        if why is None and df[self.axis].nunique() < 2:
            return f"{self.axis} takes one value in this context"
        return why


@dataclass(frozen=True)
class DenseAxisSlope(AxisSlope):
    """:class:`AxisSlope` at the end of dense training: a trend along an axis of sweeps without pruning rounds."""

    dense: ClassVar[bool] = True
