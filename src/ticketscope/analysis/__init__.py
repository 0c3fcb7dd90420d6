"""Measurements of every round of a run on a held-out probe set, as tidy tables and figures.

``analyze_run(DIR)`` writes ``DIR/analysis/``:

* ``units.parquet``   one row per (round, layer, unit): in-degree, IPR and its sparsity-matched
  Gaussian null, spatial localization (first layer), kurtosis kappa over the probe set, pooled
  over classes and per class, |kappa - 3| per class and pooled (``ng_pooled``), its
  sparsity-matched null (``ng_null``: the same weights at random positions) and the excess
  ``ng_excess = ng_pooled - ng_null``;
* ``rounds.parquet``  one row per (round, layer): density, accuracy and the means over connected
  units of the above, plus the cavity analysis of the next round's pruning step and, for rounds with two
  more, the magnitude-band AUC (``cavity_auc_magnitude``): do this round's cavity scores of the weights
  that survive its pruning step predict which of them the step after removes, among weights of about the
  same |w| (:func:`ticketscope.metrics.magnitude_band_auc`; 0.5: nothing beyond magnitude);
* ``cavity.parquet``  per-class cavity scores (change of the class-pooled |kappa - 3|) of the weights the next round removes,
  keeps, and of random survivors (subsampled) for histograms;
* ``lagged.parquet``  one row per layer: the lead and reverse coefficients of a unit's change of excess
  non-Gaussianity and of localization across rounds (:func:`ticketscope.metrics.lagged_coefficients`),
  with the (unit, round) pairs used and dropped;
* ``snapshots.parquet`` (runs with ``train.snapshots``) one row per (round, step, first-layer unit) of
  the weight snapshots taken during training: samples seen (step x batch size), IPR and spatial
  localization, the emergence of receptive fields over training time (Ingrosso & Goldt, Fig. 1D/1G);
* figures: ``rf_grid.png``, ``localization.png``, ``kurtosis.png``, ``cavity.png``, ``connectivity.png``,
  and ``emergence.png`` (per-unit IPR against samples seen, one panel per round) with snapshots.

Each measure is computed for all rounds of a layer at once (:func:`measure_rounds`), with every
round's random nulls seeded as if measured alone.

The package: :mod:`.measures` (the list of per-unit measures and the cavity scores), :mod:`.run`
(one run's analysis, its stamp and :func:`analysis_status`), :mod:`.figures` (a run's figures).
"""

from .figures import rf_figure, rf_panels, ranked_units, write_figures
from .measures import (ANALYSIS_VERSION, CROSS_ROUND, CROSS_ROUND_COLUMNS, MEANS, MEASURES, ROUND_COLUMNS, CrossRound,
                       cross_round_tables, SAMPLES_PER_GROUP, LayerBatch, Measure, batched_cavity_scores,
                       cavity_rows, measure, measure_batch, round_means, unit_measures)
from .run import TABLES, analysis_status, analyze_run, measure_rounds, probe_set, snapshot_measures

__all__ = [
    "ANALYSIS_VERSION",
    "CROSS_ROUND",
    "CROSS_ROUND_COLUMNS",
    "CrossRound",
    "TABLES",
    "cross_round_tables",
    "MEANS",
    "MEASURES",
    "ROUND_COLUMNS",
    "SAMPLES_PER_GROUP",
    "LayerBatch",
    "Measure",
    "analysis_status",
    "analyze_run",
    "batched_cavity_scores",
    "cavity_rows",
    "measure",
    "measure_batch",
    "measure_rounds",
    "probe_set",
    "ranked_units",
    "rf_figure",
    "rf_panels",
    "round_means",
    "snapshot_measures",
    "unit_measures",
    "write_figures",
]
