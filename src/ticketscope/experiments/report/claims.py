"""Claims as data: every claim the report can judge is one :class:`Claim` record in :data:`REGISTRY`, keyed by a
stable id; how it is compared is its kind (:mod:`.kinds`). :func:`judge` judges them within each context.

A sweep registers its confirmatory family (``claims:`` in its file: ids, optional delta and planned seeds):
Holm runs over those rows only, and each gets one of the five outcomes of
:mod:`ticketscope.experiments.stats` with its margin. Every other claim the sweep's arms can test is
*exploratory*: interval and unadjusted p, no outcome. A sweep without a ``claims:`` block registers
every testable claim (the report says so). So a registered family's numbers never depend on which
other claims the code knows.

Every claim's columns are checked against the report table's columns when this module loads
(:func:`check_columns`), so a renamed measure or config field fails at import, not as "not testable".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ...errors import TicketscopeError
from .. import stats
from .kinds import AxisSlope, DenseAxisSlope, DiffOfDiffs, Emergence, Kind, Paired, RoundSlope, arm
from .table import CLONE, FIRST, GAIN, KURTOSIS, METHOD, NAME, REPORT_COLUMNS, SEED, contexts, groups, label


@dataclass(frozen=True)
class Claim:
    """A claim: its stable ``id``, its text, what its value measures, its kind (arms and comparison), the
    sign of A - B its text states, its default smallest effect of interest, the control that rules out a
    trivial yes, and the outcome the source paper's own statement implies (``paper``; None for new tests).

    A claim is worded as an effect in one direction even where the paper predicts none (necessity:
    "IMP on the clone localizes more than one-shot on the clone", which the paper predicts ``absent``)."""

    id: str
    text: str
    measure: str
    kind: Kind
    direction: int  # +1: A - B > 0 stated
    delta: float
    control: str
    paper: str | None = None  # the outcome the source paper predicts (one of stats.OUTCOMES)
    also: Kind | None = None  # a second specification of the same comparison: an outcome only where both agree
    specs: tuple[str, str] = ("under the primary specification", "under the second")  # how the two are named


LOC = "spatial localization at the sparsest round (1 = same weights at random positions, lower = more local)"
NG = "excess |kappa-3| at the sparsest round (class-pooled |kappa-3| minus the same weights at random positions)"
CAV = ("per-class cavity score of the weights IMP removes minus that of random surviving weights, mean over "
       "IMP's pruning steps")
LAG = ("the partial correlation, over a run's (first-layer unit, round) pairs, of a unit's change of {x} into round "
       "r with its change of {y} into round r+1, given one dummy per round, one per unit (two-way fixed effects: "
       "unit drifts absorbed; half-panel jackknifed against the short-panel bias) and the unit's own previous "
       "change of {y}, with excess |kappa-3| measured on two disjoint probe halves so that its noise cancels "
       "(negative: more {xs} now, more {ys} next); the row's outcome stands only if the same comparison with "
       "round dummies alone (no unit effects) gives the same outcome")
LEAD = LAG.format(x="excess |kappa-3|", y="localization", xs="non-Gaussian", ys="local")
REVERSE = LAG.format(x="localization", y="excess |kappa-3|", xs="local", ys="non-Gaussian")
ASYM = ("per run, lead minus reverse (both as above): how much more the non-Gaussianity change foretells the "
        "localization change than the other way round; negative: the loop runs from non-Gaussianity to localization")
ONESHOT_LAG = ("One-shot pruning removes small weights of the same network by the same rule to the same densities, "
               "rewound to the same initialization and trained on the same stream, but its masks never depend on "
               "what retraining did: a lag that two noisy measures of one unit show under any schedule of pruning "
               "(regression to the mean, sparsity shared by both measures) is in both arms. Unit fixed effects "
               "absorb unit-specific drifts (which otherwise make the less noisy measure look like the leader), "
               "round fixed effects a change every unit shares, and the probe halves the noise of excess "
               "|kappa-3|; localization's own noise is not corrected and attenuates both directions.")
CLONE_LAG = ("IMP on the Gaussian clone prunes by the same magnitude rule to the same densities and has the data's "
             "exact covariance but no higher-order statistics, so a lag that sparsity, magnitude pruning and pixel "
             "correlations produce is in both arms. Unit and round fixed effects and the probe halves as above.")
CAV = ("per-class *excess* cavity score (the score minus that of the same weight value at random positions in its "
       "unit) of the weights IMP removes minus that of as many random surviving weights, mean over IMP's pruning steps")
CAV_SLOPE = ("per seed, the least-squares slope over IMP's pruning steps (against the round) of [removed-minus-random "
             "excess cavity score on the data minus the same on the clone]")
AUC = ("among the weights surviving a pruning step, in matched pairs of adjacent |w| rank, the AUC of their cavity "
       "score for being removed at the step after (after rewinding and retraining; 0.5: nothing beyond magnitude), "
       "mean over the {half} half of the steps")
CAV_CONTROL = ("Removing a small weight raises a unit's IPR and so its |kappa-3| whatever the weights' positions, "
               "and IMP removes the smallest weights: raw scores of removed weights exceed random survivors' on any "
               "non-Gaussian data. The excess score subtracts the score the same weight value gets at random "
               "positions of the same unit, on the same probe set: that null shares the IPR mechanism, so only what "
               "the weights' positions add remains. IMP on the Gaussian clone (same rule, density, covariance) is "
               "the second control: there every kurtosis is 3 whatever the weights.")
MATCHED = ("Both rules remove IMP's number of weights per round from the same candidates, the band x fraction "
           "smallest surviving |w|, cut into strata of `band` adjacent |w| ranks; from each stratum cavity-high "
           "removes the weight whose removal raises the class-pooled non-Gaussianity most and cavity-low the one "
           "that raises it least. On the same weights their removed magnitudes match within 1% by construction; "
           "their runs then diverge, so the report states the measured ratio of their mean removed |w| per step. "
           "They do not match IMP: at the first step they remove about band x IMP's mean |w|. Both rewind to the "
           "same initialization and train on the same stream.")

KURTOSIS_CONTROL = ("Every member of the copula family has the same requested covariance, the same white noise for a "
                    "seed and the same densities; only the pointwise map, and so the marginals' kurtosis, changes along "
                    "the axis (where the solved field had to be clipped the covariance moves by up to 0.01, docs/"
                    "SCIENCE.md). A slope per seed uses each seed's own pairing; the seeds' slopes are tested against 0.")


def in_family(method: str, family: str, clone: bool = False) -> dict[str, Any]:
    """The arm of runs pruned by ``method`` on the data set ``family`` (or on its Gaussian clone)."""
    return {**arm(method, clone), NAME: family}


REGISTRY: tuple[Claim, ...] = (
    Claim("loc-data-vs-clone",
          "IMP finds more local RFs on the non-Gaussian data than on its Gaussian clone (Redman et al. 1)",
          LOC, Paired("localization", arm("imp", True), arm("imp")), +1, 0.05,
          "Sparsity alone makes a few surviving weights look local; both arms prune to the same per-layer "
          "density and localization divides by the spread of the same weights at random positions. The clone "
          "has the data's exact covariance, so local filters that only exploit pixel correlations are open to "
          "both arms: a difference can only come from higher-order statistics.", paper="supported"),
    Claim("loc-imp-vs-oneshot", "IMP localizes more than one-shot pruning at the same sparsity (Pellegrini & Biroli)",
          LOC, Paired("localization", arm("oneshot"), arm("imp")), +1, 0.05,
          "Both arms remove small weights by magnitude, rewind to the same initialization and train on the "
          "same seed's data, at the same density: the only difference is iterating.", paper="supported"),
    Claim("loc-imp-vs-random", "IMP localizes more than random pruning at the same sparsity",
          LOC, Paired("localization", arm("random"), arm("imp")), +1, 0.05,
          "Random pruning at the same per-layer density shares every effect of sparsity and retraining; "
          "the localization measure is itself sparsity-matched."),
    Claim("loc-clone-imp-vs-oneshot",
          "On the Gaussian clone, IMP localizes more than one-shot pruning (the paper's necessity claim predicts "
          "it does not: Redman et al. 1)",
          LOC, Paired("localization", arm("oneshot", True), arm("imp", True)), +1, 0.05,
          "Both arms prune the clone, a Gaussian process with the data's exact covariance and nothing else, by "
          "magnitude to the same density from the same initialization: if non-Gaussian statistics are necessary, "
          "iterating cannot localize here. Localization is sparsity-matched.", paper="absent"),
    Claim("loc-clone-imp-vs-random",
          "On the Gaussian clone, IMP localizes more than random pruning (the paper's necessity claim predicts it "
          "does not: Redman et al. 1)",
          LOC, Paired("localization", arm("random", True), arm("imp", True)), +1, 0.05,
          "Random pruning of the clone at the same density shares every effect of sparsity and retraining; a "
          "difference is localization that pixel correlations alone reward.", paper="absent"),
    Claim("loc-advantage-data-vs-clone",
          "IMP's localization advantage over one-shot pruning is larger on the data than on its Gaussian clone "
          "(necessity as a difference of differences)",
          "per seed, [one-shot minus IMP localization on the data] minus [the same on the clone], at the sparsest "
          "round", DiffOfDiffs("localization", arm("oneshot"), arm("imp"), arm("oneshot", True), arm("imp", True)),
          +1, 0.05,
          "Each arm pair shares initialization, stream, density and the magnitude rule; differencing within the "
          "data and within the clone removes what sparsity and iteration do on any input with this covariance, "
          "so only the part of iteration's effect that needs higher-order statistics remains.", paper="supported"),
    Claim("ng-advantage-data-vs-clone",
          "IMP's rise of excess non-Gaussianity over one-shot pruning is larger on the data than on its Gaussian "
          "clone (difference of differences)",
          "per seed, [IMP minus one-shot excess |kappa-3| on the data] minus [the same on the clone], at the "
          "sparsest round", DiffOfDiffs("ng_excess", arm("imp"), arm("oneshot"), arm("imp", True),
                                        arm("oneshot", True)), +1, 0.05,
          "On Gaussian inputs every pre-activation kurtosis is 3 whatever the weights, so the clone's contrast "
          "measures the estimator's noise floor at this density; the data's contrast over it is iteration's rise "
          "of non-Gaussianity.", paper="supported"),
    Claim("ng-imp-vs-random",
          "IMP raises the non-Gaussianity of pre-activations more than random pruning (Redman et al. 2)",
          NG, Paired("ng_excess", arm("imp"), arm("random")), +1, 0.05,
          "Any pruning raises |kappa-3| (i.i.d. +-1 inputs: |kappa-3| = 2 IPR, growing as weights go). The "
          "value subtracts the same weights at random positions on the same probe set, and the arms are "
          "compared at equal density, never with 0.", paper="supported"),
    Claim("ng-imp-vs-oneshot",
          "IMP raises the non-Gaussianity of pre-activations more than one-shot pruning (Redman et al. 2)",
          NG, Paired("ng_excess", arm("imp"), arm("oneshot")), +1, 0.05,
          "As above; one-shot pruning also removes small weights, so the contrast isolates iteration.",
          paper="supported"),
    Claim("cavity-removed-data-vs-clone",
          "The weights IMP removes are those whose removal raises non-Gaussianity, beyond what removing "
          "small weights does (Redman et al. 3)",
          CAV, Paired("cavity_excess_removed_minus_random", arm("imp"), arm("imp", True), at="mean"), +1, 0.01,
          CAV_CONTROL + " Scores are per class, so the class mixture does not enter.", paper="supported"),
    Claim("loc-cavity-vs-random",
          "Pruning by non-Gaussianity alone (cavity pruning) localizes more than random pruning (causal test, new)",
          LOC, Paired("localization", arm("random"), arm("cavity")), +1, 0.05,
          "Both arms prune to the same density with the same rewinding; cavity pruning never looks at "
          "positions, so localization can only come through the pre-activation statistics."),
    *(Claim(f"{key}-{vs}",
            f"{what} is more negative under IMP {'than under one-shot pruning' if vs == 'imp-vs-oneshot' else 'on the data than on its Gaussian clone'} (feedback loop, new)",
            measure, Paired(f"lagged_{key}_unit", b, arm("imp")), +1, 0.05,
            ONESHOT_LAG if vs == "imp-vs-oneshot" else CLONE_LAG, also=Paired(f"lagged_{key}_round", b, arm("imp")),
            specs=("with unit fixed effects", "with round fixed effects only"))
      for key, what, measure in (("lead", "The lead (non-Gaussianity first, then localization)", LEAD),
                                 ("reverse", "The reverse lag (localization first, then non-Gaussianity)", REVERSE),
                                 ("asymmetry", "The asymmetry of the loop (lead minus reverse)", ASYM))
      for vs, b in (("imp-vs-oneshot", arm("oneshot")), ("data-vs-clone", arm("imp", True)))),
    Claim("cavity-growth-data-vs-clone",
          "The per-round excess cavity effect of IMP on the data over its clone grows over the rounds (feedback "
          "loop, new)", CAV_SLOPE, RoundSlope("cavity_excess_removed_minus_random", arm("imp"), arm("imp", True)),
          +1, 0.001,
          "Each step's difference pairs the data with its clone at the same seed, round and density, and the "
          "excess score subtracts the same weight values at random positions (the IPR mechanism the clone lacks); "
          "a slope per seed uses each seed's own pairing, and the seeds' slopes are tested against 0."),
    *(Claim(f"auc-{half}-data-vs-clone",
            f"In the {half} half of the run, cavity scores predict which of two weights of adjacent |w| rank IMP "
            "removes next, more on the data than on its clone (feedback loop, new)", AUC.format(half=half),
            Paired("cavity_auc_matched", arm("imp"), arm("imp", True), at=half), +1, 0.02,
            "Weights are compared only with their neighbour in |w| rank, so magnitude cannot lift the AUC (a "
            "decile still spans a tenth of the ranks, and the score depends on |w| through IPR); IMP on the clone "
            "shares the magnitude rule, the densities and the covariance. The two halves are judged apart: a rise "
            "and a fall are never averaged into one mean.") for half in ("early", "late")),
    Claim("loc-cavity-high-vs-low", "cavity-high localizes more than cavity-low (causal test, new)",
          LOC, Paired("localization", arm("cavity-low"), arm("cavity-high")), +1, 0.02, MATCHED),
    Claim("loc-path-cavity-high-vs-low",
          "cavity-high localizes more than cavity-low along the way, averaged over the rounds (causal test; noticed "
          "on seeds 0-255, registered for seeds never used before)",
          "spatial localization averaged over every round (dense to sparsest)",
          Paired("localization", arm("cavity-low"), arm("cavity-high"), at="mean"), +1, 0.02, MATCHED),
    Claim("ng-cavity-high-vs-low", "cavity-high raises excess non-Gaussianity more than cavity-low (causal test, new)",
          NG, Paired("ng_excess", arm("cavity-high"), arm("cavity-low")), +1, 0.02,
          MATCHED + " cavity-high picks removals that raise |kappa-3| of the weights it prunes by construction; "
          "the claim is that the rise survives rewinding and retraining to the sparsest round, on held-out "
          "probes, over the same weights at random positions."),
    Claim("loc-gain-trend",
          "The data's localization advantage over its Gaussian clone grows with non-Gaussianity (the gain g; new "
          "test, no source paper ran it)",
          "per seed, the least-squares slope over the gains of [localization of IMP on the clone minus on the data] "
          "against ln g, at the sparsest round", AxisSlope("localization", arm("imp", True), arm("imp"), axis=GAIN),
          +1, 0.02,
          "The clone has the data's covariance at every gain, so correlations alone give both arms the same local "
          "filters; the gain turns only the higher-order statistics up. A slope, per seed, uses each seed's own "
          "pairing; the seeds' slopes are then tested against 0 (one-sample t)."),
    Claim("loc-kurtosis-trend",
          "IMP's receptive fields end less local as the input marginals' excess kurtosis rises (copula inputs at one "
          "covariance; the sign of kurtosis, after Lufkin, Saxe & Grant; new test for IMP)",
          "per seed, the least-squares slope of IMP's localization at the sparsest round (on the data) against the "
          "marginals' excess kurtosis", AxisSlope("localization", in_family("imp", "copula"), None, axis=KURTOSIS,
                                                  log=False), +1, 0.01, KURTOSIS_CONTROL),
    Claim("loc-advantage-kurtosis-trend",
          "IMP's localization advantage over one-shot pruning falls as the marginals' excess kurtosis rises (copula "
          "inputs; new test)",
          "per seed, the slope of [one-shot minus IMP localization at the sparsest round] against the marginals' "
          "excess kurtosis", AxisSlope("localization", in_family("oneshot", "copula"), in_family("imp", "copula"),
                                       axis=KURTOSIS, log=False), -1, 0.01,
          KURTOSIS_CONTROL + " One-shot pruning at the same densities removes what sparsity alone does to the measure."),
    Claim("loc-elliptical-data-vs-clone",
          "IMP finds more local receptive fields on elliptical inputs than on their Gaussian clone (Lufkin, Saxe & "
          "Grant predict it does not, for dense training: elliptical inputs give sinusoidal weights)",
          LOC, Paired("localization", in_family("imp", "elliptical", True), in_family("imp", "elliptical")), +1, 0.05,
          "An elliptical input (a Gaussian field times one random radius per image) is non-Gaussian, with positive "
          "excess kurtosis, yet every direction alike up to the covariance: its clone has the same covariance and "
          "density and differs only in the radius. A difference is localization that non-Gaussianity of this kind "
          "drives.", paper="absent"),
    Claim("kappa3-imp-vs-oneshot",
          "IMP pushes the pre-activations' signed kurtosis below one-shot pruning's, toward sub-Gaussian units (the "
          "sign of the non-Gaussianity IMP amplifies; new)",
          "signed kappa - 3 per class, pooled, minus the same weights at random positions, at the sparsest round",
          Paired("kappa3_excess", arm("imp"), arm("oneshot")), -1, 0.05,
          "The value subtracts the same weights at random positions on the same probe set, so what sparsity does to "
          "the kurtosis (i.i.d. +-1 inputs: kappa - 3 = -2 IPR) is in the null; one-shot pruning at the same density "
          "removes small weights too. Judged in every context (each family and kurtosis): the outcome's sign says "
          "which way IMP pushes there."),
    Claim("ipr-kurtosis-trend-dense",
          "Dense training localizes less as the input marginals' excess kurtosis rises (copula inputs; the dense "
          "anchor: Lufkin, Saxe & Grant)",
          "per seed, the slope of the IPR of the most localized first-layer unit at the end of dense training against "
          "the marginals' excess kurtosis",
          DenseAxisSlope("ipr_max", {CLONE: False, NAME: "copula"}, None, axis=KURTOSIS, log=False), -1, 0.002,
          KURTOSIS_CONTROL + " No weight is pruned: every unit keeps all D inputs, so IPR measures localization "
          "directly.", paper="supported"),
    Claim("emergence-ipr",
          "Dense training grows localized receptive fields on the non-Gaussian data but not on its Gaussian clone "
          "(Ingrosso & Goldt)",
          "IPR of the most localized first-layer unit at the end of dense training (3/D for a random unit)",
          Emergence("ipr_max", {CLONE: False}, {CLONE: True}), +1, 0.01,
          "Both arms train the same network from the same initialization on the same budget of fresh samples; the "
          "clone has the data's exact covariance, so any localization that pixel correlations alone can drive is "
          "open to both. IPR grows with sparsity, but no weight is pruned here: every unit keeps all D inputs.",
          paper="supported"),
)
BY_ID: dict[str, Claim] = {c.id: c for c in REGISTRY}


def check_columns(registry: Iterable[Claim], columns: Iterable[str]) -> None:
    """Raise if a claim reads a column the report table cannot have (a renamed measure or config field), or
    two claims share an id."""
    known, seen = set(columns), set()
    for c in registry:
        if c.id in seen:
            raise TypeError(f"two claims have the id {c.id!r}")
        seen.add(c.id)
        missing = (c.kind.columns() | (c.also.columns() if c.also else set())) - known
        if missing:
            raise TypeError(f"claim {c.id!r} reads columns the report table does not have: {sorted(missing)}")


check_columns(REGISTRY, REPORT_COLUMNS)


@dataclass(frozen=True)
class Registration:
    """A claim of a sweep's confirmatory family, with its smallest effect of interest and planned seeds."""

    claim: Claim
    delta: float
    seeds: int | None = None


def family(registered: Iterable[Any] | None) -> list[Registration] | None:
    """The registrations of a sweep's ``claims:`` block (items with ``id``, ``delta``, ``seeds``); None when
    the sweep registers none. An unknown id raises one error listing the known ones."""
    if not registered:
        return None
    out = []
    for r in registered:
        if r.id not in BY_ID:
            raise TicketscopeError(f"the sweep registers claim {r.id!r}, which ticketscope does not know; known "
                                   f"claims: {', '.join(BY_ID)}")
        claim = BY_ID[r.id]
        out.append(Registration(claim, claim.delta if r.delta is None else float(r.delta), r.seeds))
    return out


@dataclass
class Row:
    """One judged claim in one context: a row of ``claims.json``."""

    id: str
    claim: str
    context: str
    measure: str
    test: str
    role: str  # confirmatory | exploratory | not testable
    mean_a: float = math.nan
    mean_b: float = math.nan
    effect: float = math.nan  # mean over seeds of A - B (or of the kind's contrast)
    ci_lo: float = math.nan
    ci_hi: float = math.nan
    se: float = math.nan
    p: float = math.nan
    p_adj: float = math.nan  # Holm over the registered family (confirmatory rows only)
    p_equivalence: float = math.nan
    p_equivalence_adj: float = math.nan
    delta: float = math.nan
    direction: int = 1
    n_a: int = 0
    n_b: int = 0
    seeds: list[int] = field(default_factory=list)
    outcome: str | None = None  # one of stats.OUTCOMES (confirmatory rows only)
    margin: float | None = None  # standard errors to the nearest change of outcome
    fragile: bool = False
    seeds_needed: int | None = None  # inconclusive rows: seeds the observed spread would need
    why: str = ""  # not testable: why
    registered: bool = False  # in the sweep's registered family
    registered_seeds: int | None = None  # seeds the family registered for this claim
    planned_a: int | None = None  # seeds the sweep planned in arm A of this context (None: not known)
    planned_b: int | None = None
    also_effect: float = math.nan  # the claim's second specification (Claim.also): its estimate and interval
    also_ci_lo: float = math.nan
    also_ci_hi: float = math.nan
    also_outcome: str | None = None  # its outcome at this row's Holm levels; the row's outcome stands only if equal

    @property
    def short_of_plan(self) -> bool:
        """Whether the claim was judged on fewer seeds than the sweep planned (a point failed) or registered."""
        n = min(self.n_a, self.n_b)
        plans = ((self.n_a, self.planned_a), (self.n_b, self.planned_b), (n, self.registered_seeds))
        return any(p is not None and k < p for k, p in plans)


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


def _applies(claim: Claim, table: pd.DataFrame) -> bool:
    """Dense sweeps (round 0 only) are judged on the dense claims only, pruning sweeps on the others."""
    return claim.kind.dense == bool((table["round"] == 0).all())


def _judge_one(claim: Claim, delta: float, df: pd.DataFrame, ctx: dict[str, Any], axes: list[str],
               planned: pd.DataFrame | None) -> tuple[Row, stats.Effect | None, stats.Effect | None]:
    kind = claim.kind
    row = Row(claim.id, claim.text, label(ctx) if ctx else "", claim.measure, kind.test, "exploratory",
              delta=delta, direction=claim.direction)
    why = kind.untestable(df, axes)
    effect = None
    if why is None:
        a, b = kind.values(df)
        row.mean_a, row.mean_b = float(a.mean()), float(b.mean())
        row.n_a, row.n_b = len(a.dropna()), len(b.dropna())
        thin = [(label(w), int(v.notna().sum()), len(v)) for w, v in zip(kind.arms(), (a, b))
                if v.notna().sum() < max(2, len(v) / 2)] if isinstance(kind, Paired) else []
        if thin:  # a comparison on a chance-selected minority of an arm's seeds is not a comparison of the arms
            arm_, n, total = thin[0]
            why = (f"{arm_} has a defined value on only {n} of its {total} seeds (e.g. a noise-corrected lag where "
                   "the measure varies no more than its noise, as excess |kappa-3| on a Gaussian clone)")
        elif kind.identical(a, b):
            why = "arms A and B are identical by design here (the same value on every seed)"
        elif np.isinf(a.to_numpy(float)).any() or np.isinf(b.to_numpy(float)).any():
            why = "a seed's value is infinite (a diverged or degenerate run): no interval can be computed"
        else:
            effect = kind.effect(a, b, delta)
            why = "" if effect is not None else "fewer than two seeds with both arms"
    if effect is None:
        row.role, row.why = "not testable", why or ""
    else:
        row.effect, row.ci_lo, row.ci_hi, row.se = effect.estimate, effect.lo, effect.hi, effect.se
        row.p, row.p_equivalence, row.seeds, row.test = effect.p, effect.p_equivalence, list(effect.seeds), effect.test
    if not kind.over:
        row.planned_a = planned_seeds(planned, {**ctx, **kind.a})
        row.planned_b = planned_seeds(planned, {**ctx, **kind.b})
    also = None
    if effect is not None and claim.also is not None and claim.also.untestable(df, axes) is None:
        also = claim.also.effect(*claim.also.values(df), delta)
        if also is not None:
            row.also_effect, row.also_ci_lo, row.also_ci_hi = also.estimate, also.lo, also.hi
    return row, effect, also


def judge(table: pd.DataFrame, axes: list[str], planned: pd.DataFrame | None = None,
          registered: list[Registration] | None = None,
          registry: Iterable[Claim] = REGISTRY) -> list[Row]:
    """Every claim of ``registry`` that applies, in each context: the registered family's rows confirmatory
    (Holm over them, five outcomes, margins), the others exploratory; rows the sweep cannot test say why.

    ``planned``: every point's flattened config (:func:`~.table.points`), to count the seeds each arm planned.
    Without ``registered``, the family is every testable claim of ``registry``."""
    first = table[table["layer"] == FIRST]
    registry = [c for c in registry if _applies(c, table)]
    deltas = {r.claim.id: r for r in registered} if registered is not None else None
    if deltas is not None:  # registered claims are judged even where they do not apply, to say so
        registry = [*registry, *(r.claim for r in registered if r.claim not in registry)]
    judged: list[tuple[Row, stats.Effect | None, stats.Effect | None]] = []
    for claim in registry:
        reg = deltas.get(claim.id) if deltas is not None else None
        delta = reg.delta if reg is not None else claim.delta
        by = [a for a in contexts(axes) if a != claim.kind.over]
        for ctx, df in groups(first, by):
            row, effect, also = _judge_one(claim, delta, df, ctx, axes, planned)
            if not _applies(claim, table):
                row.role, row.why = "not testable", ("a claim of dense training; this sweep prunes" if claim.kind.dense
                                                     else "a claim about pruning; this sweep trains densely only")
                effect = None
            if reg is not None:
                row.registered, row.registered_seeds = True, reg.seeds
            if row.role != "not testable" and (deltas is None or reg is not None):
                row.role = "confirmatory"
            judged.append((row, effect, also))
    _outcomes(judged, {c.id: c for c in registry})
    return [row for row, *_ in judged]


def _outcomes(judged: list[tuple[Row, stats.Effect | None, stats.Effect | None]], claims: dict[str, Claim]) -> None:
    """Holm over the confirmatory rows, then each one's outcome, margin and (inconclusive) seeds needed. A row
    with a second specification keeps its outcome only where that specification, held to the same Holm levels,
    gives the same one; otherwise it has none and says which way each points."""
    family = [(row, e, also) for row, e, also in judged if row.role == "confirmatory" and e is not None]
    p = [e.p for _, e, _ in family]
    p_eq = [e.p_equivalence for _, e, _ in family]
    p_adj, p_eq_adj = stats.holm(p), stats.holm(p_eq)
    for i, (row, e, also) in enumerate(family):
        row.p_adj, row.p_equivalence_adj = float(p_adj[i]), float(p_eq_adj[i])
        row.outcome = stats.outcome(e, row.direction, row.p_adj, row.p_equivalence_adj)
        level, eq_level = stats.critical_level(p, i), stats.critical_level(p_eq, i)
        row.margin = stats.margin(e, row.direction, row.delta, level, eq_level)
        row.fragile = row.margin < stats.FRAGILE
        if row.outcome == "inconclusive":
            row.seeds_needed = stats.seeds_needed(e, row.delta, len(family))
        if also is not None:  # significant / equivalent exactly when p is below the row's critical level
            row.also_outcome = stats.outcome(also, row.direction, 0.0 if also.p < level else 1.0,
                                             0.0 if also.p_equivalence < eq_level else 1.0)
            if row.also_outcome != row.outcome:
                first, second = claims[row.id].specs
                row.why = (f"the specifications disagree: {row.outcome} {first} ({row.effect:.3g} [{row.ci_lo:.3g}, "
                           f"{row.ci_hi:.3g}]), {row.also_outcome} {second} ({also.estimate:.3g} [{also.lo:.3g}, "
                           f"{also.hi:.3g}])")
                row.outcome, row.fragile, row.seeds_needed = None, False, None
