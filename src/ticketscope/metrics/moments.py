"""Kurtosis of pre-activations, over the whole probe set and per class.

``H`` is (n, K): n probe inputs, one unit per column (h_i = w_i . x, bias excluded). Moments are
population moments accumulated in float64, and results are float64 on H's device. A column
that is constant (over the set, or over a class) has no kurtosis: NaN. Constancy is tested
exactly (max == min), not by a variance threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .localization import _row_shuffles


@dataclass(frozen=True)
class ClassKurtosis:
    """Kurtosis per class, pooled over classes, and over the whole set (all excess or all not)."""

    per_class: torch.Tensor  # (C, K); NaN rows for classes absent from y
    pooled: torch.Tensor  # (K,): sum_c f_c kappa_c / sum_c f_c over classes with finite kappa_c, f_c = n_c / n
    overall: torch.Tensor  # (K,): kurtosis of the whole set (a class mixture is non-Gaussian by itself)
    class_counts: torch.Tensor  # (C,) int64: n_c

    @property
    def ng_pooled(self) -> torch.Tensor:
        """(K,) |kappa_c - 3| pooled like ``pooled``: a sub- and a super-Gaussian class never cancel."""
        return pool_classes(nongaussianity(self.per_class), self.class_counts)


def kurtosis(H: torch.Tensor, excess: bool = False) -> torch.Tensor:
    """Kurtosis of each column, kappa = E[(h - E h)^4] / E[(h - E h)^2]^2 (minus 3 if ``excess``).

    Equals ``scipy.stats.kurtosis(H, fisher=excess, bias=True)``; NaN for constant columns.
    """
    return _grouped_kurtosis(H, torch.zeros(H.shape[0], dtype=torch.long, device=H.device), 1, excess)[0]


def class_kurtosis(H: torch.Tensor, y: torch.Tensor, num_classes: int | None = None, excess: bool = False) -> ClassKurtosis:
    """Kurtosis of each column within each class of ``y`` (int labels 0 .. C-1), pooled, and overall.

    Pooled: the mean of the per-class kappa weighted by class frequency, over the classes where
    it is defined. It is not the kurtosis of the pooled set (that is ``overall``), which a mixture
    of classes with different variances pushes above 3 even when every class is Gaussian.
    """
    C = int(y.max()) + 1 if num_classes is None else num_classes
    per_class = _grouped_kurtosis(H, y, C, excess)
    counts = torch.bincount(y, minlength=C)
    return ClassKurtosis(per_class, pool_classes(per_class, counts), kurtosis(H, excess), counts)


def pool_classes(values: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """sum_c f_c v_c / sum_c f_c over the classes where v_c is finite, f_c = n_c / n; ``values`` (C, ...)."""
    f = (counts.double() / counts.sum()).reshape(-1, *[1] * (values.dim() - 1)) * values.isfinite()
    return (f * values.nan_to_num()).sum(0) / f.sum(0)


def nongaussianity(kappa: torch.Tensor) -> torch.Tensor:
    """|kappa - 3| for (non-excess) kurtosis kappa: the distance from Gaussian, whatever its sign."""
    return (kappa - 3).abs()


@dataclass(frozen=True)
class NongaussianityNull:
    """Sparsity-matched null of |kappa - 3|: mean over shuffles of the same weights at random positions."""

    per_class: torch.Tensor  # (C, K) mean over shuffles of |kappa_c - 3|
    pooled: torch.Tensor  # (K,) mean over shuffles of the class-pooled |kappa_c - 3|


def nongaussianity_null(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, num_classes: int | None = None,
                        shuffles: int = 8, seed: int = 0) -> NongaussianityNull:
    """|kappa - 3| of h = x . pi_s(w) for the same surviving weight values at random positions.

    pi_1 .. pi_shuffles are seeded permutations of each row of W (K, D) over its D inputs, as for the
    localization null; X (n, D) are the probe inputs and y their classes. Sparsity alone raises
    |kappa - 3| (i.i.d. +-1 inputs: kappa = 3 - 2 IPR(w), permutation invariant), so the *excess*
    ``ng_pooled - null.pooled`` is what the input statistics and the weights' positions add.
    """
    C = int(y.max()) + 1 if num_classes is None else num_classes
    per_class, pooled = [], []
    for V in _row_shuffles(W, shuffles, seed, "nongaussianity_null"):
        ck = class_kurtosis(X.to(torch.float64) @ V.to(torch.float64).T, y, C)
        per_class.append(nongaussianity(ck.per_class))
        pooled.append(ck.ng_pooled)
    return NongaussianityNull(torch.stack(per_class).mean(0), torch.stack(pooled).mean(0))


def _grouped_kurtosis(H: torch.Tensor, y: torch.Tensor, groups: int, excess: bool) -> torch.Tensor:
    """(groups, K) kurtosis of each column of H over the rows of each group (two passes, float64)."""
    H = H.to(torch.float64)
    n = torch.bincount(y, minlength=groups).to(H.dtype)[:, None]
    rows = y[:, None].expand_as(H)

    def group_sum(V: torch.Tensor) -> torch.Tensor:
        return torch.zeros(groups, H.shape[1], dtype=H.dtype, device=H.device).index_add_(0, y, V)

    def group_reduce(op: str) -> torch.Tensor:
        return torch.zeros(groups, H.shape[1], dtype=H.dtype, device=H.device).scatter_reduce_(0, rows, H, op, include_self=False)

    c2 = (H - (group_sum(H) / n)[y]).square()
    kappa = group_sum(c2.square()) / n / (group_sum(c2) / n).square()
    kappa = torch.where(group_reduce("amax") == group_reduce("amin"), torch.nan, kappa)
    return kappa - 3 if excess else kappa
