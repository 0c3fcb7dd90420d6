"""Claims: what the report tests (:data:`CLAIMS`, the feedback loop's :data:`LOOP` among them, :data:`TREND`,
:data:`EMERGENCE`) and how it judges them.

Each claim compares two arms seed by seed and is judged by :mod:`ticketscope.experiments.stats`
(paired t where the arms share seeds, Holm-Bonferroni across every row of the report, three-way
verdicts against the claim's smallest effect of interest). Claims are judged separately within each
combination of the varying fields other than seed, pruning method and clone ("context"). Arms name
config columns through :func:`~.table.field_path`, so a renamed config field fails at import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .. import stats
from .table import CLONE, FIRST, GAIN, METHOD, SEED, contexts, groups, label


@dataclass(frozen=True)
class ClaimSpec:
    """A claim: arm A minus arm B of one per-seed value, its predicted sign and smallest effect of interest."""

    claim: str
    measure: str  # what the value is
    value: str  # column of the first-layer table
    at: str  # "last" (sparsest round) | "mean" (over rounds) | "change" (dense to sparsest) | "slope" (see _judge)
    arm_a: dict[str, Any]
    arm_b: dict[str, Any]
    direction: int  # +1: A - B > 0 predicted
    delta: float  # smallest effect of interest, in the value's units
    control: str  # what could make the claim true trivially, and how this comparison rules it out


def arm(method: str, clone: bool = False) -> dict[str, Any]:
    """The arm of runs pruned by ``method`` on the data (or on its Gaussian clone)."""
    return {METHOD: method, CLONE: clone}


LOC = "spatial localization at the sparsest round (1 = same weights at random positions, lower = more local)"
NG = "excess |kappa-3| at the sparsest round (class-pooled |kappa-3| minus the same weights at random positions)"
CAV = ("per-class cavity score of the weights IMP removes minus that of random surviving weights, mean over "
       "IMP's pruning steps")

CLAIMS: list[ClaimSpec] = [
    ClaimSpec("IMP finds more local RFs on the non-Gaussian data than on its Gaussian clone (Redman et al. 1)",
              LOC, "localization", "last", arm("imp", True), arm("imp"), +1, 0.05,
              "Sparsity alone makes a few surviving weights look local; both arms prune to the same per-layer "
              "density and localization divides by the spread of the same weights at random positions. The clone "
              "has the data's exact covariance, so local filters that only exploit pixel correlations are open to "
              "both arms: a difference can only come from higher-order statistics."),
    ClaimSpec("IMP localizes more than one-shot pruning at the same sparsity (Pellegrini & Biroli)",
              LOC, "localization", "last", arm("oneshot"), arm("imp"), +1, 0.05,
              "Both arms remove small weights by magnitude, rewind to the same initialization and train on the "
              "same seed's data, at the same density: the only difference is iterating."),
    ClaimSpec("IMP localizes more than random pruning at the same sparsity",
              LOC, "localization", "last", arm("random"), arm("imp"), +1, 0.05,
              "Random pruning at the same per-layer density shares every effect of sparsity and retraining; "
              "the localization measure is itself sparsity-matched."),
    ClaimSpec("IMP raises the non-Gaussianity of pre-activations more than random pruning (Redman et al. 2)",
              NG, "ng_excess", "last", arm("imp"), arm("random"), +1, 0.05,
              "Any pruning raises |kappa-3| (i.i.d. +-1 inputs: |kappa-3| = 2 IPR, growing as weights go). The "
              "value subtracts the same weights at random positions on the same probe set, and the arms are "
              "compared at equal density, never with 0."),
    ClaimSpec("IMP raises the non-Gaussianity of pre-activations more than one-shot pruning (Redman et al. 2)",
              NG, "ng_excess", "last", arm("imp"), arm("oneshot"), +1, 0.05,
              "As above; one-shot pruning also removes small weights, so the contrast isolates iteration."),
    ClaimSpec("The weights IMP removes are those whose removal raises non-Gaussianity, beyond what removing "
              "small weights does (Redman et al. 3)",
              CAV, "cavity_removed_minus_random", "mean", arm("imp"), arm("imp", True), +1, 0.01,
              "Removing a small weight raises IPR and so |kappa-3| by itself, and IMP removes the smallest weights, "
              "so removed weights score above random survivors on any data. IMP on the Gaussian clone shares "
              "that mechanism (same magnitude rule, same density) but has no higher-order statistics; only "
              "the excess over it is credited. Scores are per class, so the class mixture does not enter."),
    ClaimSpec("Pruning by non-Gaussianity alone (cavity pruning) localizes more than random pruning (causal test, new)",
              LOC, "localization", "last", arm("random"), arm("cavity"), +1, 0.05,
              "Both arms prune to the same density with the same rewinding; cavity pruning never looks at "
              "positions, so localization can only come through the pre-activation statistics."),
]

LAG = ("the partial correlation, over a run's (first-layer unit, round) pairs, of a unit's change of {x} into round "
       "r with its change of {y} into round r+1, given one dummy per round and the unit's own previous change of "
       "{y} (negative: more {xs} now, more {ys} next)")
LEAD = LAG.format(x="excess |kappa-3|", y="localization", xs="non-Gaussian", ys="local")
REVERSE = LAG.format(x="localization", y="excess |kappa-3|", xs="local", ys="non-Gaussian")
ONESHOT_LAG = ("One-shot pruning removes small weights of the same network by the same rule to the same densities, "
               "rewound to the same initialization and trained on the same stream, but its masks never depend on "
               "what retraining did: a lag that two noisy measures of one unit show under any schedule of pruning "
               "(regression to the mean, sparsity shared by both measures) is in both arms. Round fixed effects "
               "absorb a change shared by every unit of a round.")
CLONE_LAG = ("IMP on the Gaussian clone prunes by the same magnitude rule to the same densities and has the data's "
             "exact covariance but no higher-order statistics, so a lag that sparsity, magnitude pruning and pixel "
             "correlations produce is in both arms.")
CAV_SLOPE = ("per seed, the least-squares slope over IMP's pruning steps (against the round) of [removed-minus-random "
             "cavity score on the data minus the same on the clone]")
AUC = ("among the weights surviving a pruning step, within deciles of their |w| rank, the AUC of their cavity score "
       "for being removed at the step after (after rewinding and retraining); mean over deciles and steps "
       "(0.5: nothing beyond magnitude)")
MATCHED = ("Both rules remove IMP's number of weights per round from the same candidates, the 2x-fraction smallest "
           "surviving |w|, so the magnitudes they remove match IMP's (a two-sample test in tests/pruning); both "
           "rewind to the same initialization and train on the same stream. A difference can only come from which "
           "candidates' removal raises the class-pooled non-Gaussianity.")

LOOP: list[ClaimSpec] = [
    ClaimSpec("The lead (non-Gaussianity first, then localization) is more negative under IMP than under one-shot "
              "pruning (feedback loop, new)", LEAD, "lagged_lead", "last", arm("oneshot"), arm("imp"), +1, 0.05,
              ONESHOT_LAG),
    ClaimSpec("The lead is more negative under IMP on the data than on its Gaussian clone (feedback loop, new)",
              LEAD, "lagged_lead", "last", arm("imp", True), arm("imp"), +1, 0.05, CLONE_LAG),
    ClaimSpec("The reverse lag (localization first, then non-Gaussianity) is more negative under IMP than under "
              "one-shot pruning (feedback loop, new)", REVERSE, "lagged_reverse", "last", arm("oneshot"), arm("imp"),
              +1, 0.05, ONESHOT_LAG),
    ClaimSpec("The reverse lag is more negative under IMP on the data than on its Gaussian clone (feedback loop, new)",
              REVERSE, "lagged_reverse", "last", arm("imp", True), arm("imp"), +1, 0.05, CLONE_LAG),
    ClaimSpec("The per-round cavity effect of IMP on the data over its clone grows over the rounds (feedback loop, "
              "new)", CAV_SLOPE, "cavity_removed_minus_random", "slope", arm("imp"), arm("imp", True), +1, 0.001,
              "Each step's difference pairs the data with its clone at the same seed, round and density, so what "
              "sparsity does to the scores at each step cancels; a slope per seed uses each seed's own pairing, and "
              "the seeds' slopes are tested against 0 (one-sample t)."),
    ClaimSpec("Cavity scores predict which weights IMP removes next beyond their magnitude, more on the data than on "
              "its clone (feedback loop, new)", AUC, "cavity_auc_magnitude", "mean", arm("imp"), arm("imp", True),
              +1, 0.02,
              "Within a decile the smaller weights can still score higher (removing a small weight raises IPR, and "
              "so |kappa-3|) and are removed first, which would lift the AUC above 0.5 without any higher-order "
              "statistics. IMP on the clone shares the magnitude rule, the densities and the covariance; only the "
              "excess over it is credited."),
    ClaimSpec("cavity-high localizes more than cavity-low at matched magnitude (causal test, new)",
              LOC, "localization", "last", arm("cavity-low"), arm("cavity-high"), +1, 0.02, MATCHED),
    ClaimSpec("cavity-high raises excess non-Gaussianity more than cavity-low at matched magnitude (causal test, new)",
              NG, "ng_excess", "last", arm("cavity-high"), arm("cavity-low"), +1, 0.02,
              MATCHED + " cavity-high picks removals that raise |kappa-3| of the weights it prunes by construction; "
              "the claim is that the rise survives rewinding and retraining to the sparsest round, on held-out "
              "probes, over the same weights at random positions."),
]
CLAIMS += LOOP


TREND = ClaimSpec(
    "The data's localization advantage over its Gaussian clone grows with non-Gaussianity (the gain g; new test, "
    "no source paper ran it)",
    "per seed, the least-squares slope over the gains of [localization of IMP on the clone minus on the data] "
    "against ln g, at the sparsest round", "localization", "last", arm("imp", True), arm("imp"), +1, 0.02,
    "The clone has the data's covariance at every gain, so correlations alone give both arms the same local "
    "filters; the gain turns only the higher-order statistics up. A slope, per seed, uses each seed's own pairing; "
    "the seeds' slopes are then tested against 0 (one-sample t).")


EMERGENCE = ClaimSpec(
    "Dense training grows localized receptive fields on the non-Gaussian data but not on its Gaussian clone "
    "(Ingrosso & Goldt)",
    "IPR of the most localized first-layer unit at the end of dense training (3/D for a random unit)",
    "ipr_max", "last", {CLONE: False}, {CLONE: True}, +1, 0.01,
    "Both arms train the same network from the same initialization on the same budget of fresh samples; the "
    "clone has the data's exact covariance, so any localization that pixel correlations alone can drive is "
    "open to both. IPR grows with sparsity, but no weight is pruned here: every unit keeps all D inputs.")


SPECS: tuple[ClaimSpec, ...] = (*CLAIMS, TREND, EMERGENCE)  # every claim a report can hold


def _rows(table: pd.DataFrame, value: str, where: dict[str, Any]) -> pd.DataFrame:
    """The first-layer rows of the arm ``where`` (none when no run has ``value``, e.g. cavity scores of a
    sweep without pruning rounds)."""
    df = table[table["layer"] == FIRST]
    if value not in df:
        return df.iloc[:0].assign(**{value: pd.Series(dtype=float)})
    for k, v in where.items():
        df = df[df[k] == v] if k in df else df.iloc[:0]
    return df


def per_seed(table: pd.DataFrame, value: str, where: dict[str, Any], at: str = "last") -> pd.Series:
    """One value per seed (first layer): at the sparsest round, mean over rounds, or dense-to-sparsest change."""
    df = _rows(table, value, where)
    if df.empty:
        return pd.Series(dtype=float)
    df = df.dropna(subset=[value]) if at == "mean" else df
    if at == "mean":
        return df.groupby(SEED)[value].mean()
    last = df.loc[df.groupby(SEED)["round"].idxmax()].set_index(SEED)[value]
    if at == "last":
        return last
    if at == "change":
        return last - df.loc[df.groupby(SEED)["round"].idxmin()].set_index(SEED)[value]
    raise ValueError(f"at must be last, mean or change, not {at!r}")


@dataclass
class Claim:
    """One row of the claims table."""

    claim: str
    context: str
    measure: str
    test: str
    mean_a: float
    mean_b: float
    effect: float  # mean(A - B)
    ci_lo: float
    ci_hi: float
    p: float
    p_adj: float  # Holm across the report's rows
    p_equivalence_adj: float
    delta: float
    direction: int
    n_a: int
    n_b: int
    seeds: list[int]
    verdict: str  # supported | contradicted | inconclusive | not tested
    seeds_needed: int | None  # inconclusive rows: seeds the observed spread would need
    planned_a: int | None = None  # seeds the sweep planned in arm A of this context (None: not known)
    planned_b: int | None = None

    @property
    def short_of_plan(self) -> bool:
        """Whether the claim was judged on fewer seeds than the sweep planned (a point failed)."""
        return any(p is not None and n < p for n, p in ((self.n_a, self.planned_a), (self.n_b, self.planned_b)))


def _effect(a: pd.Series, b: pd.Series, delta: float) -> stats.Effect | None:
    """Paired by seed where the arms share seeds (same initialization and data streams), Welch where they share none."""
    if a.dropna().index.intersection(b.dropna().index).empty:
        return stats.welch(a, b, delta)
    return stats.paired(a, b, delta)


def _dense(table: pd.DataFrame) -> bool:
    """A sweep of dense training only (no pruning round): its one claim is the Ingrosso-Goldt emergence."""
    return bool((table["round"] == 0).all())


def _specs(table: pd.DataFrame) -> list[ClaimSpec]:
    return [EMERGENCE] if _dense(table) else CLAIMS


def gain_differences(table: pd.DataFrame, spec: ClaimSpec) -> pd.DataFrame:
    """Rows (seed, gain, ln_gain, diff): the spec's arm A minus arm B at each gain, paired by seed."""
    rows = []
    for gain, df in table.groupby(GAIN):
        d = per_seed(df, spec.value, spec.arm_a, spec.at) - per_seed(df, spec.value, spec.arm_b, spec.at)
        rows += [{"seed": s, "gain": gain, "ln_gain": math.log(gain), "diff": v} for s, v in d.dropna().items()]
    return pd.DataFrame(rows, columns=["seed", "gain", "ln_gain", "diff"])


def round_differences(table: pd.DataFrame, spec: ClaimSpec) -> pd.DataFrame:
    """Rows (seed, round, diff): the spec's arm A minus arm B at each round, paired by seed, both defined."""
    a, b = (_rows(table, spec.value, where).set_index([SEED, "round"])[spec.value]
            for where in (spec.arm_a, spec.arm_b))
    d = (a - b).dropna().rename("diff").reset_index()
    return d.rename(columns={SEED: "seed"})[["seed", "round", "diff"]]


def _trend(differences: pd.DataFrame, x: str, spec: ClaimSpec) -> tuple[pd.Series, pd.Series, stats.Effect | None]:
    """Per seed the slope of ``differences``' diff against x, tested against 0; arm B's "values" are 0."""
    slopes = stats.slopes(differences, x, "diff")
    e = stats.one_sample(slopes, spec.delta, "slope t")
    return slopes, pd.Series(0.0, index=slopes.index), e


def _judge(df: pd.DataFrame, spec: ClaimSpec) -> tuple[pd.Series, pd.Series, stats.Effect | None]:
    """Arm A's and arm B's per-seed values in one context and their effect."""
    if spec.at == "slope":
        return _trend(round_differences(df, spec), "round", spec)
    a, b = per_seed(df, spec.value, spec.arm_a, spec.at), per_seed(df, spec.value, spec.arm_b, spec.at)
    return a, b, _effect(a, b, spec.delta)


def planned_seeds(planned: pd.DataFrame | None, where: dict[str, Any]) -> int | None:
    """Seeds the sweep planned among its points matching ``where`` (config column -> value; None/NaN match
    None/NaN); None without a plan."""
    if planned is None:
        return None
    df = planned
    for k, v in where.items():
        if k not in df:
            return 0
        missing = v is None or (isinstance(v, float) and math.isnan(v))
        df = df[df[k].isna()] if missing else df[df[k] == v]
    return int(df[SEED].nunique())


def claims(table: pd.DataFrame, axes: list[str], planned: pd.DataFrame | None = None) -> list[Claim]:
    """Every claim judged within each context, Holm-corrected across all rows; with ``planned`` (every
    point's flattened config, :func:`~.table.points`) each row also counts the seeds its arms planned."""
    rows: list[tuple[ClaimSpec, str, pd.Series, pd.Series, stats.Effect | None, dict[str, Any]]] = []
    for ctx, df in groups(table[table["layer"] == FIRST], contexts(axes)):
        for spec in _specs(table):
            rows.append((spec, label(ctx) if ctx else "", *_judge(df, spec), ctx))
    if GAIN in axes:
        for ctx, df in groups(table[table["layer"] == FIRST], [a for a in contexts(axes) if a != GAIN]):
            rows.append((TREND, label(ctx) if ctx else "", *_trend(gain_differences(df, TREND), "ln_gain", TREND), ctx))
    p_adj = stats.holm([e.p if e else math.nan for *_, e, _ in rows])
    p_eq_adj = stats.holm([e.p_equivalence if e else math.nan for *_, e, _ in rows])
    tested = sum(e is not None for *_, e, _ in rows)
    out = []
    for (spec, ctx, a, b, e, where), pa, pe in zip(rows, p_adj, p_eq_adj):
        v = stats.verdict(e, spec.direction, pa, pe)
        out.append(Claim(
            spec.claim, ctx, spec.measure, e.test if e else "paired t", float(a.mean()), float(b.mean()),
            e.estimate if e else math.nan, e.lo if e else math.nan, e.hi if e else math.nan, e.p if e else math.nan,
            float(pa), float(pe), spec.delta, spec.direction, len(a.dropna()), len(b.dropna()),
            list(e.seeds) if e else [], v, stats.seeds_needed(e, spec.delta, tested) if v == "inconclusive" else None,
            planned_seeds(planned, {**where, **spec.arm_a}), planned_seeds(planned, {**where, **spec.arm_b})))
    return out

