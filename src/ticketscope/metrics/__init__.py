"""Measurements of pruned layers: RF localization, connectivity, kurtosis, cavity scores (and the AUC of a
score for the next removal within magnitude bins), and lagged per-unit statistics across rounds.

The layer measures take and return torch tensors and compute on their inputs' device; the lagged
statistics (:mod:`.lagged`) read a run's tidy unit x round table (pandas). See SCIENCE.md
("Measurements") for the definitions.
"""

from .cavity import (BandAUC, CavityAnalysis, ScoreSummary, auc, cavity_analysis, cavity_groups, cavity_scores,
                     class_cavity_scores, magnitude_band_auc)
from .connectivity import DisplacementHistogram, InDegreeHistogram, displacement_histogram, in_degree_histogram
from .lagged import LaggedCoefficients, lagged_coefficients
from .localization import ipr, ipr_null, rf_centre_and_spread, spatial_localization
from .moments import (ClassKurtosis, NongaussianityNull, class_kurtosis, kurtosis, nongaussianity, nongaussianity_null,
                      pool_classes, preactivations)
from .nulls import Seeds, row_shuffles

__all__ = [
    "BandAUC",
    "CavityAnalysis",
    "ClassKurtosis",
    "DisplacementHistogram",
    "InDegreeHistogram",
    "LaggedCoefficients",
    "ScoreSummary",
    "auc",
    "cavity_analysis",
    "cavity_groups",
    "cavity_scores",
    "class_cavity_scores",
    "class_kurtosis",
    "displacement_histogram",
    "in_degree_histogram",
    "ipr",
    "ipr_null",
    "kurtosis",
    "lagged_coefficients",
    "magnitude_band_auc",
    "nongaussianity",
    "nongaussianity_null",
    "NongaussianityNull",
    "pool_classes",
    "preactivations",
    "rf_centre_and_spread",
    "row_shuffles",
    "Seeds",
    "spatial_localization",
]
