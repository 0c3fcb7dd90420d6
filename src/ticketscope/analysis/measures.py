"""The measures of an analysis, as two lists: a new per-unit measure is one :class:`Measure` entry, a new
measure of a layer across its rounds one :class:`CrossRound` entry.

:data:`MEASURES` names every measure, the columns it writes and how it is computed on a batch of
layers (:class:`LayerBatch`: one layer at B rounds, or a round's B weight snapshots). From that one
list come the columns of ``units.parquet`` (:func:`unit_measures`), the means over connected units
of ``rounds.parquet`` (:data:`MEANS`, :func:`round_means`) and the snapshot measures. A measure that
changes stored numbers (or a new one) also bumps :data:`ANALYSIS_VERSION`, so older analyses are
recomputed.

:data:`CROSS_ROUND` names every measure of a layer across all its rounds (computed from its rows of
``units.parquet``): its table (``analysis/{name}.parquet``, one row per layer), its columns and its function.
The report joins each as columns ``{name}_{column}`` (:data:`CROSS_ROUND_COLUMNS`), so the analysis, the
report's columns and the claims that read them derive from this one list.

Also here: the cavity scores of a batch of layers and the cavity rows of one pruning step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from ..metrics import (cavity_analysis, cavity_groups, class_cavity_scores, class_kurtosis, excess_cavity_scores, ipr,
                       ipr_null, magnitude_band_auc, matched_band_auc, nongaussianity, nongaussianity_null,
                       lagged_columns, preactivations, signed_balance, signed_balance_null, spatial_localization)
from ..metrics.cavity import ExcessCavity, ScoreSummary
from ..metrics.lagged import SPECS
from ..metrics.moments import BLOCK_ELEMENTS
from ..pruning.banded import mean_removed_magnitude

if TYPE_CHECKING:
    from ..data import Dataset

ANALYSIS_VERSION = 6  # bump when a stored measure changes: older analyses are then recomputed
EXCESS_SHUFFLES = 4  # random-position draws of the excess cavity score (its null averages over the removed weights too)
SAMPLES_PER_GROUP = 2000  # cavity scores kept per (round, layer, group) for histograms


@dataclass(frozen=True)
class LayerBatch:
    """B layers' weights W (B, K, D) and what the measures read besides them.

    ``inputs`` are the layers' probe inputs, (n, D) shared by the batch or (B, n, D) each its own, with
    labels ``y`` (n,) of ``num_classes`` classes; ``seeds[b]`` seeds layer b's non-Gaussianity null.
    Measures of the weights alone (``Measure.probe`` false) need none of these. ``first``: the
    network's first layer, whose weights live on the input grid ``input_shape`` (``torus``)."""

    W: torch.Tensor
    input_shape: tuple[int, ...]
    torus: bool
    first: bool
    inputs: torch.Tensor | None = None
    y: torch.Tensor | None = None
    num_classes: int = 0
    seeds: Sequence[int] = ()

    @property
    def shape(self) -> tuple[int, int]:
        """(B, K): layers and units."""
        return self.W.shape[0], self.W.shape[1]


@dataclass(frozen=True)
class Measure:
    """One named measure: its ``columns`` ((B, K) arrays, one value per unit) and ``per_class``
    kinds (a (C, B, K) array each, stored as columns ``{kind}_class{c}``), computed by
    ``compute(batch)`` into a dict keyed by column, and by ``{kind}_class`` for the per-class ones.

    ``averaged``: its columns are averaged over connected units into ``rounds.parquet``.
    ``probe``: it needs the probe inputs (else it measures weights alone, as for snapshots).
    ``rounds_after``: ``rounds.parquet`` places its means right after that column instead of in
    list order (the stored tables' layout since version 1)."""

    name: str
    columns: tuple[str, ...]
    compute: Callable[[LayerBatch], dict[str, np.ndarray]]
    per_class: tuple[str, ...] = ()
    averaged: bool = True
    probe: bool = False
    rounds_after: str | None = None


def _per_unit(t: torch.Tensor, batch: LayerBatch) -> np.ndarray:
    """(..., B * K) -> (..., B, K) numpy."""
    return t.reshape(*t.shape[:-1], *batch.shape).cpu().numpy()


def _in_degree(batch: LayerBatch) -> dict[str, np.ndarray]:
    return {"in_degree": (batch.W != 0).sum(-1).cpu().numpy()}


def _ipr(batch: LayerBatch) -> dict[str, np.ndarray]:
    return {"ipr": ipr(batch.W).cpu().numpy()}


def _ipr_null(batch: LayerBatch) -> dict[str, np.ndarray]:  # every layer the draws of seed 0, as unbatched
    return {"ipr_null": ipr_null(batch.W, seed=[0] * batch.shape[0]).cpu().numpy()}


def _kurtosis(batch: LayerBatch) -> dict[str, np.ndarray]:
    W, C = batch.W, batch.num_classes
    ck = class_kurtosis(preactivations(W, batch.inputs), batch.y, C)
    null = nongaussianity_null(W, batch.inputs, batch.y, C, seed=list(batch.seeds))
    cols = {"kappa": _per_unit(ck.overall, batch), "kappa_pooled": _per_unit(ck.pooled, batch),
            "ng": _per_unit(nongaussianity(ck.overall), batch), "ng_pooled": _per_unit(ck.ng_pooled, batch),
            "ng_null": null.pooled.cpu().numpy(),
            "kappa3_pooled": _per_unit(ck.excess_pooled, batch), "kappa3_null": null.excess_pooled.cpu().numpy()}
    cols["ng_excess"] = cols["ng_pooled"] - cols["ng_null"]
    cols["kappa3_excess"] = cols["kappa3_pooled"] - cols["kappa3_null"]
    cols["kappa_class"] = _per_unit(ck.per_class, batch)  # (C, B, K)
    cols["ng_class"] = _per_unit(nongaussianity(ck.per_class), batch)
    cols["ng_null_class"] = null.per_class.cpu().numpy()
    return cols


def _halves(batch: LayerBatch) -> dict[str, np.ndarray]:
    """ng_excess on two disjoint halves of the probe set (alternate rows: the probe set is sorted by class, so each
    half holds half of every class), with the full set's null seeds: two measurements of one unit with
    independent noise, for the lagged coefficients' noise correction (:func:`ticketscope.metrics.lagged_coefficients`)."""
    out = {}
    for name, rows in (("ng_excess_a", slice(0, None, 2)), ("ng_excess_b", slice(1, None, 2))):
        x, y = batch.inputs[..., rows, :], batch.y[rows]
        ng = class_kurtosis(preactivations(batch.W, x), y, batch.num_classes).ng_pooled
        null = nongaussianity_null(batch.W, x, y, batch.num_classes, seed=list(batch.seeds))
        out[name] = _per_unit(ng, batch) - null.pooled.cpu().numpy()
    return out


def _balance(batch: LayerBatch) -> dict[str, np.ndarray]:
    """What kind of field: |sum w| / sum |w| (1 one-signed blob, 0 balanced difference filter) and its null, the
    same magnitudes with random signs (:mod:`ticketscope.metrics.shape`)."""
    seeds = [0] * batch.shape[0]
    return {"balance": signed_balance(batch.W).cpu().numpy(), "balance_null": signed_balance_null(batch.W, seed=seeds).cpu().numpy()}


def _localization(batch: LayerBatch) -> dict[str, np.ndarray]:  # receptive fields live in input space
    if not batch.first:
        return {"localization": np.full(batch.shape, np.nan)}
    return {"localization": spatial_localization(batch.W, batch.input_shape, batch.torus,
                                                 seed=[0] * batch.shape[0]).cpu().numpy()}


MEASURES: tuple[Measure, ...] = (
    Measure("in_degree", ("in_degree",), _in_degree, averaged=False),  # its mean is rounds' "connected"
    Measure("ipr", ("ipr",), _ipr),
    Measure("ipr_null", ("ipr_null",), _ipr_null),
    Measure("kurtosis", ("kappa", "kappa_pooled", "ng", "ng_pooled", "ng_null", "ng_excess", "kappa3_pooled",
                         "kappa3_null", "kappa3_excess"), _kurtosis, per_class=("kappa", "ng", "ng_null"), probe=True),
    Measure("localization", ("localization",), _localization, rounds_after="ipr_null"),
    Measure("probe halves", ("ng_excess_a", "ng_excess_b"), _halves, averaged=False, probe=True),
    Measure("balance", ("balance", "balance_null"), _balance),
)
"""Every per-unit measure, in the column order of ``units.parquet``."""


def measure(name: str) -> Measure:
    """The entry of :data:`MEASURES` called ``name``."""
    for m in MEASURES:
        if m.name == name:
            return m
    raise KeyError(f"no measure {name!r}; known: {', '.join(m.name for m in MEASURES)}")


def _mean_columns() -> tuple[str, ...]:
    cols: list[str] = []
    for m in MEASURES:
        if m.averaged:
            at = cols.index(m.rounds_after) + 1 if m.rounds_after else len(cols)
            cols[at:at] = m.columns
    return tuple(cols)


MEANS = _mean_columns()
"""The columns averaged over connected units into ``rounds.parquet`` (per-class ones aside), in its order."""

CAVITY_COLUMNS = (*(f"cavity_{group}_{k}" for group in ("removed", "kept", "random") for k in ScoreSummary.__dataclass_fields__),
                  "cavity_spearman_abs_w", "cavity_removed_minus_random", "cavity_excess_removed_mean",
                  "cavity_excess_removed_minus_random", "removed_abs_w")
"""The columns of :func:`cavity_rows` in ``rounds.parquet`` (NaN on a run's last round: no next step)."""
BAND_COLUMNS = ("cavity_auc_magnitude", "cavity_auc_bins", "cavity_auc_matched", "cavity_auc_matched_se")
"""The columns of :func:`band_auc_row` (NaN where the step after has no following step)."""
@dataclass(frozen=True)
class CrossRound:
    """A measure of one layer across all its rounds: ``compute`` maps the layer's rows of ``units.parquet`` to one
    value per column; stored as ``analysis/{name}.parquet``, one row per layer."""

    name: str
    columns: tuple[str, ...]
    compute: Callable[[pd.DataFrame], dict[str, float]]


def _lagged(units: pd.DataFrame) -> dict[str, float]:
    """Lead, reverse and asymmetry under both specifications (:mod:`ticketscope.metrics.lagged`), excess
    non-Gaussianity's noise corrected with its two probe halves."""
    return lagged_columns(units, ng="ng_excess", loc="localization", halves=("ng_excess_a", "ng_excess_b"))


CROSS_ROUND: tuple[CrossRound, ...] = (
    CrossRound("lagged", (*(f"{k}_{s}" for s in SPECS for k in ("lead", "reverse", "asymmetry")), "n_pairs",
                          "n_dropped"), _lagged),
)
"""Every cross-round measure, in table order."""
CROSS_ROUND_COLUMNS = tuple(f"{m.name}_{c}" for m in CROSS_ROUND for c in m.columns)
"""Their columns as the report's joined table names them (the same value on every round of a layer)."""


def cross_round_tables(units: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Each :data:`CROSS_ROUND` measure's table: one row per layer of ``units`` (in their order)."""
    return {m.name: pd.DataFrame([{"layer": layer, **m.compute(group)} for layer, group in
                                  units.groupby("layer", sort=False)], columns=["layer", *m.columns])
            for m in CROSS_ROUND}


ROUND_COLUMNS = ("round", "layer", "density", "test_accuracy", "connected", *MEANS, "ipr_max", *CAVITY_COLUMNS,
                 *BAND_COLUMNS)
"""Every column ``rounds.parquet`` can have (per-class means aside): what the report's claims may read."""


def measure_batch(batch: LayerBatch, measures: Sequence[Measure] = MEASURES) -> dict[str, np.ndarray]:
    """The ``measures``' columns of a batch of layers: (B, K) each, per-class columns after the others,
    class by class; every measure is one call for the whole batch."""
    cols: dict[str, np.ndarray] = {}
    per_class: dict[str, np.ndarray] = {}
    for m in measures:
        values = m.compute(batch)
        cols.update((c, values[c]) for c in m.columns)
        per_class.update((k, values[f"{k}_class"]) for k in m.per_class)
    for c in range(batch.num_classes):
        for k, v in per_class.items():
            cols[f"{k}_class{c}"] = v[c]
    return cols


def unit_measures(W: torch.Tensor, inputs: torch.Tensor, y: torch.Tensor, ds: Dataset, first: bool,
                  num_classes: int, seeds: list[int]) -> dict[str, np.ndarray]:
    """Per-unit measures (the columns of ``units.parquet``, each (B, K)) of a batch of B layers W (B, K, D),
    e.g. one layer at B rounds, on their probe inputs: (n, D) shared by the batch or (B, n, D) each its own.
    ``ds`` is the run's data set (its input grid); ``seeds[b]`` seeds layer b's non-Gaussianity null."""
    return measure_batch(LayerBatch(W.double(), ds.input_shape, ds.torus, first, inputs, y, num_classes, seeds))


def round_means(cols: dict[str, np.ndarray], num_classes: int) -> dict[str, np.ndarray]:
    """(B,) means over the connected units (in-degree > 0) of each layer of :func:`unit_measures`'
    columns, NaN values left out (NaN where none is left), their connected fraction and largest IPR."""
    alive = cols["in_degree"] > 0
    per_class = [f"{k}_class{c}" for m in MEASURES if m.averaged for k in m.per_class for c in range(num_classes)]
    means = {"connected": alive.mean(-1)}
    with np.errstate(invalid="ignore"):
        for col in (*MEANS, *per_class):
            ok = alive & ~np.isnan(cols[col])
            means[col] = np.where(ok, cols[col], 0.0).sum(-1) / ok.sum(-1)
    ok = alive & ~np.isnan(cols["ipr"])
    means["ipr_max"] = np.where(ok.any(-1), np.where(ok, cols["ipr"], -np.inf).max(-1), np.nan)
    return means


def batched_cavity_scores(W: torch.Tensor, inputs: torch.Tensor, y: torch.Tensor, num_classes: int,
                          seeds: Sequence[int]) -> ExcessCavity:
    """(B, K, D) :func:`~ticketscope.metrics.excess_cavity_scores` of a batch of layers W (B, K, D) on inputs as in
    :func:`unit_measures` (``seeds[b]`` seeds layer b's random positions): raw per-class scores, their null (the same
    values at random positions) and the excess. Rows are independent, so shared inputs score all B * K units in one
    call per shuffle; probe rows are taken in chunks small enough for each (rows, units) temporary to stay in cache."""
    units = W.shape[0] * W.shape[1] if inputs.dim() == 2 else W.shape[1]
    return excess_cavity_scores(W.double(), inputs.double(), y, num_classes, shuffles=EXCESS_SHUFFLES,
                                seed=list(seeds), chunk_size=max(1, BLOCK_ELEMENTS // units))


def cavity_rows(r: int, name: str, scores: ExcessCavity, W: torch.Tensor, mask: torch.Tensor, mask_next: torch.Tensor,
                seed: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The cavity analysis of layer ``name``'s pruning step after round r: its ``rounds.parquet``
    statistics (raw scores, excess scores over the same values at random positions, and the mean |w| the step
    removes) and its ``cavity.parquet`` rows (up to SAMPLES_PER_GROUP raw scores per group), as columns."""
    a = cavity_analysis(scores.raw, W, mask, mask_next, seed=seed)
    stats = {f"cavity_{group}_{k}": v for group in ("removed", "kept", "random")
             for k, v in vars(getattr(a, group)).items()}
    stats["cavity_spearman_abs_w"] = a.spearman_abs_w
    stats["cavity_removed_minus_random"] = stats["cavity_removed_mean"] - stats["cavity_random_mean"]
    excess = cavity_analysis(scores.excess, W, mask, mask_next, seed=seed)  # the same random survivors
    stats["cavity_excess_removed_mean"] = excess.removed.mean
    stats["cavity_excess_removed_minus_random"] = excess.removed.mean - excess.random.mean
    stats["removed_abs_w"] = mean_removed_magnitude(W, mask, mask_next)
    g = torch.Generator().manual_seed(seed)
    kept = {}
    for group, s in cavity_groups(scores.raw, mask, mask_next, seed=seed).items():
        s = s[s.isfinite()].cpu()
        kept[group] = s[torch.randperm(len(s), generator=g)[:SAMPLES_PER_GROUP]].numpy()
    size = sum(len(s) for s in kept.values())
    return stats, {"round": np.full(size, r), "layer": np.full(size, name, dtype=object),
                   "group": np.repeat(np.array(list(kept), dtype=object), [len(s) for s in kept.values()]),
                   "score": np.concatenate(list(kept.values()))}


def band_auc_row(scores: torch.Tensor, W: torch.Tensor, mask_next: torch.Tensor, mask_after: torch.Tensor) -> dict[str, float]:
    """The ``rounds.parquet`` columns of round r's :func:`~ticketscope.metrics.magnitude_band_auc`: round r's
    cavity scores and |w| (``scores``, ``W``) of the weights that survive its pruning step (``mask_next``)
    predicting their removal at the following step (not in ``mask_after``), within |w|-rank deciles, and within
    matched pairs of adjacent |w| ranks (:func:`~ticketscope.metrics.matched_band_auc`, where magnitude cannot leak)."""
    band = magnitude_band_auc(scores, W, mask_next.to(W.device), mask_after.to(W.device))
    matched = matched_band_auc(scores, W, mask_next.to(W.device), mask_after.to(W.device))
    return {"cavity_auc_magnitude": band.auc, "cavity_auc_bins": float(band.bins),
            "cavity_auc_matched": matched.auc, "cavity_auc_matched_se": matched.se}
