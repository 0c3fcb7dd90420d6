"""Measurements of pruned layers: RF localization and its kind (one-signed blob or balanced filter), connectivity,
kurtosis (signed kappa - 3 and |kappa - 3|, per class and pooled, with random-position nulls), cavity scores (raw
and against the same weights at random positions, and the AUC of a score for the next removal within magnitude bins
or matched |w| ranks), and lagged per-unit statistics across rounds.

The layer measures take and return torch tensors and compute on their inputs' device; the lagged
statistics (:mod:`.lagged`) read a run's tidy unit x round table (pandas). See SCIENCE.md
("Measurements") for the definitions.
"""

from .cavity import (BandAUC, CavityAnalysis, ExcessCavity, MatchedAUC, ScoreSummary, auc, cavity_analysis, cavity_groups,
                     cavity_scores, class_cavity_scores, excess_cavity_scores, magnitude_band_auc, matched_band_auc)
from .connectivity import DisplacementHistogram, InDegreeHistogram, displacement_histogram, in_degree_histogram
from .lagged import LaggedCoefficients, lagged_coefficients, lagged_columns, lagged_specifications
from .localization import ipr, ipr_null, rf_centre_and_spread, spatial_localization
from .moments import (ClassKurtosis, NongaussianityNull, class_kurtosis, kurtosis, nongaussianity, nongaussianity_null,
                      pool_classes, preactivations)
from .nulls import Seeds, row_shuffles
from .shape import signed_balance, signed_balance_null

__all__ = [
    "BandAUC",
    "CavityAnalysis",
    "ClassKurtosis",
    "DisplacementHistogram",
    "ExcessCavity",
    "InDegreeHistogram",
    "LaggedCoefficients",
    "MatchedAUC",
    "ScoreSummary",
    "auc",
    "cavity_analysis",
    "cavity_groups",
    "cavity_scores",
    "excess_cavity_scores",
    "class_cavity_scores",
    "class_kurtosis",
    "displacement_histogram",
    "in_degree_histogram",
    "ipr",
    "ipr_null",
    "kurtosis",
    "lagged_coefficients",
    "lagged_columns",
    "lagged_specifications",
    "magnitude_band_auc",
    "matched_band_auc",
    "nongaussianity",
    "nongaussianity_null",
    "NongaussianityNull",
    "pool_classes",
    "preactivations",
    "rf_centre_and_spread",
    "row_shuffles",
    "Seeds",
    "signed_balance",
    "signed_balance_null",
    "spatial_localization",
]
