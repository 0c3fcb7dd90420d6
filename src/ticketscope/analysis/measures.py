"""The per-unit measures of an analysis, as one list: a new measure is one :class:`Measure` entry.

:data:`MEASURES` names every measure, the columns it writes and how it is computed on a batch of
layers (:class:`LayerBatch`: one layer at B rounds, or a round's B weight snapshots). From that one
list come the columns of ``units.parquet`` (:func:`unit_measures`), the means over connected units
of ``rounds.parquet`` (:data:`MEANS`, :func:`round_means`) and the snapshot measures. A measure that
changes stored numbers (or a new one) also bumps :data:`ANALYSIS_VERSION`, so older analyses are
recomputed.

Also here: the cavity scores of a batch of layers and the cavity rows of one pruning step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..metrics import (cavity_analysis, cavity_groups, class_cavity_scores, class_kurtosis, ipr, ipr_null,
                       magnitude_band_auc, nongaussianity, nongaussianity_null, preactivations, spatial_localization)
from ..metrics.moments import BLOCK_ELEMENTS

if TYPE_CHECKING:
    from ..data import Dataset

ANALYSIS_VERSION = 5  # bump when a stored measure changes: older analyses are then recomputed
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
            "ng_null": null.pooled.cpu().numpy()}
    cols["ng_excess"] = cols["ng_pooled"] - cols["ng_null"]
    cols["kappa_class"] = _per_unit(ck.per_class, batch)  # (C, B, K)
    cols["ng_class"] = _per_unit(nongaussianity(ck.per_class), batch)
    cols["ng_null_class"] = null.per_class.cpu().numpy()
    return cols


def _localization(batch: LayerBatch) -> dict[str, np.ndarray]:  # receptive fields live in input space
    if not batch.first:
        return {"localization": np.full(batch.shape, np.nan)}
    return {"localization": spatial_localization(batch.W, batch.input_shape, batch.torus,
                                                 seed=[0] * batch.shape[0]).cpu().numpy()}


MEASURES: tuple[Measure, ...] = (
    Measure("in_degree", ("in_degree",), _in_degree, averaged=False),  # its mean is rounds' "connected"
    Measure("ipr", ("ipr",), _ipr),
    Measure("ipr_null", ("ipr_null",), _ipr_null),
    Measure("kurtosis", ("kappa", "kappa_pooled", "ng", "ng_pooled", "ng_null", "ng_excess"), _kurtosis,
            per_class=("kappa", "ng", "ng_null"), probe=True),
    Measure("localization", ("localization",), _localization, rounds_after="ipr_null"),
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


def batched_cavity_scores(W: torch.Tensor, inputs: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, K, D) :func:`class_cavity_scores` of a batch of layers W (B, K, D) on inputs as in
    :func:`unit_measures`: rows are independent, so shared inputs score all B * K units in one call.
    Probe rows are taken in chunks small enough for each (rows, units) temporary to stay in cache."""
    if inputs.dim() == 2:
        units = W.flatten(0, 1).double()
        return class_cavity_scores(units, inputs.double(), y, num_classes,
                                   chunk_size=max(1, BLOCK_ELEMENTS // len(units))).view(W.shape)
    chunk = max(1, BLOCK_ELEMENTS // W.shape[1])
    return torch.stack([class_cavity_scores(w.double(), x.double(), y, num_classes, chunk) for w, x in zip(W, inputs)])


def cavity_rows(r: int, name: str, scores: torch.Tensor, W: torch.Tensor, mask: torch.Tensor, mask_next: torch.Tensor,
                seed: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The cavity analysis of layer ``name``'s pruning step after round r: its ``rounds.parquet``
    statistics and its ``cavity.parquet`` rows (up to SAMPLES_PER_GROUP scores per group), as columns."""
    a = cavity_analysis(scores, W, mask, mask_next, seed=seed)
    stats = {f"cavity_{group}_{k}": v for group in ("removed", "kept", "random")
             for k, v in vars(getattr(a, group)).items()}
    stats["cavity_spearman_abs_w"] = a.spearman_abs_w
    stats["cavity_removed_minus_random"] = stats["cavity_removed_mean"] - stats["cavity_random_mean"]
    g = torch.Generator().manual_seed(seed)
    kept = {}
    for group, s in cavity_groups(scores, mask, mask_next, seed=seed).items():
        s = s[s.isfinite()].cpu()
        kept[group] = s[torch.randperm(len(s), generator=g)[:SAMPLES_PER_GROUP]].numpy()
    size = sum(len(s) for s in kept.values())
    return stats, {"round": np.full(size, r), "layer": np.full(size, name, dtype=object),
                   "group": np.repeat(np.array(list(kept), dtype=object), [len(s) for s in kept.values()]),
                   "score": np.concatenate(list(kept.values()))}


def band_auc_row(scores: torch.Tensor, W: torch.Tensor, mask_next: torch.Tensor, mask_after: torch.Tensor) -> dict[str, float]:
    """The ``rounds.parquet`` columns of round r's :func:`~ticketscope.metrics.magnitude_band_auc`: round r's
    cavity scores and |w| (``scores``, ``W``) of the weights that survive its pruning step (``mask_next``)
    predicting their removal at the following step (not in ``mask_after``), within |w|-rank deciles."""
    band = magnitude_band_auc(scores, W, mask_next.to(W.device), mask_after.to(W.device))
    return {"cavity_auc_magnitude": band.auc, "cavity_auc_bins": float(band.bins)}
