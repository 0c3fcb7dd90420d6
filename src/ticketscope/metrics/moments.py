"""Kurtosis of pre-activations, over the whole probe set and per class, signed and unsigned.

``H`` is (n, K): n probe inputs, one unit per column (h_i = w_i . x, bias excluded). Moments are
population moments accumulated in float64, and results are float64 on H's device. A column
that is constant (over the set, or over a class) has no kurtosis: NaN. Constancy is tested
exactly (max == min), not by a variance threshold.

Non-Gaussianity has a sign: a sub-Gaussian unit (kappa < 3, e.g. one that reads a few near-binary
pixels) and a super-Gaussian one (kappa > 3, heavy tails) can have the same |kappa - 3|. Hence both the
signed excess kurtosis kappa - 3 (``excess_*``) and its magnitude (``ng_*``), each per class and pooled,
and both in the sparsity-matched null of :func:`nongaussianity_null`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .nulls import Seeds, row_shuffles

BLOCK_ELEMENTS = 2**17  # float64 elements (1 MiB) per temporary: moments are reduced block by block, in cache


@dataclass(frozen=True)
class ClassKurtosis:
    """Kurtosis per class, pooled over classes, and over the whole set (all excess or all not, as ``excess``
    says); the ``excess_*`` and ``ng_*`` properties are the signed kappa - 3 and |kappa - 3| either way."""

    per_class: torch.Tensor  # (C, K); NaN rows for classes absent from y
    pooled: torch.Tensor  # (K,): sum_c f_c kappa_c / sum_c f_c over classes with finite kappa_c, f_c = n_c / n
    overall: torch.Tensor  # (K,): kurtosis of the whole set (a class mixture is non-Gaussian by itself)
    class_counts: torch.Tensor  # (C,) int64: n_c
    excess: bool = False  # whether the three tensors above hold kappa - 3 (class_kurtosis(excess=True)) or kappa

    @property
    def excess_per_class(self) -> torch.Tensor:
        """(C, K) signed excess kurtosis kappa_c - 3: < 0 sub-Gaussian (light tails, bimodal), > 0 super-Gaussian."""
        return self.per_class if self.excess else self.per_class - 3

    @property
    def excess_pooled(self) -> torch.Tensor:
        """(K,) signed kappa_c - 3 pooled like ``pooled`` (it is ``pooled - 3`` for kappa): classes of opposite
        signs cancel here, so read it beside ``ng_pooled``."""
        return pool_classes(self.excess_per_class, self.class_counts)

    @property
    def excess_overall(self) -> torch.Tensor:
        """(K,) signed excess kurtosis of the whole set."""
        return self.overall if self.excess else self.overall - 3

    @property
    def ng_per_class(self) -> torch.Tensor:
        """(C, K) |kappa_c - 3|."""
        return self.excess_per_class.abs()

    @property
    def ng_pooled(self) -> torch.Tensor:
        """(K,) |kappa_c - 3| pooled like ``pooled``: a sub- and a super-Gaussian class never cancel."""
        return pool_classes(self.ng_per_class, self.class_counts)


def preactivations(W: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """(n, B*K) float64 pre-activations h = x . w (bias excluded), one column per unit.

    W is one layer's weights (K, D) or a batch of B layers (B, K, D), e.g. one layer at B rounds of
    a run; X holds the n inputs, (n, D) shared by the whole batch (one GEMM for every unit) or
    (B, n, D), each layer its own (a batched product). Unit k of layer b is column b*K + k.
    """
    W, X = W.to(torch.float64), X.to(torch.float64)
    if X.dim() == 2:
        return X @ W.reshape(-1, W.shape[-1]).T
    return (X @ W.mT).transpose(0, 1).reshape(X.shape[1], -1)


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
    return ClassKurtosis(per_class, pool_classes(per_class, counts), kurtosis(H, excess), counts, excess)


def pool_classes(values: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """sum_c f_c v_c / sum_c f_c over the classes where v_c is finite, f_c = n_c / n; ``values`` (C, ...)."""
    f = (counts.double() / counts.sum()).reshape(-1, *[1] * (values.dim() - 1)) * values.isfinite()
    return (f * values.nan_to_num()).sum(0) / f.sum(0)


def nongaussianity(kappa: torch.Tensor) -> torch.Tensor:
    """|kappa - 3| for (non-excess) kurtosis kappa: the distance from Gaussian, whatever its sign."""
    return (kappa - 3).abs()


@dataclass(frozen=True)
class NongaussianityNull:
    """Sparsity-matched null of |kappa - 3| and of the signed kappa - 3: means over shuffles of the same
    weights at random positions."""

    per_class: torch.Tensor  # (C, K) mean over shuffles of |kappa_c - 3|
    pooled: torch.Tensor  # (K,) mean over shuffles of the class-pooled |kappa_c - 3|
    excess_per_class: torch.Tensor  # (C, K) mean over shuffles of the signed kappa_c - 3
    excess_pooled: torch.Tensor  # (K,) mean over shuffles of the class-pooled signed kappa_c - 3


def nongaussianity_null(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, num_classes: int | None = None,
                        shuffles: int = 8, seed: Seeds = 0) -> NongaussianityNull:
    """|kappa - 3| and kappa - 3 of h = x . pi_s(w) for the same surviving weight values at random positions.

    pi_1 .. pi_shuffles are seeded permutations of each row of W (K, D) over its D inputs, as for the
    localization null; X (n, D) are the probe inputs and y their classes. Sparsity alone raises
    |kappa - 3| (i.i.d. +-1 inputs: kappa = 3 - 2 IPR(w), permutation invariant), so the *excess*
    ``ng_pooled - null.pooled`` is what the input statistics and the weights' positions add; for the signed
    excess kurtosis, ``excess_pooled - null.excess_pooled`` (its sign: which way the positions push).
    A batch W (B, K, D) takes X as :func:`preactivations` does and one seed per layer (a sequence of
    B: layer b gets the shuffles of its unbatched call with ``seed[b]``); results are then (C, B, K), (B, K).
    """
    C, D = int(y.max()) + 1 if num_classes is None else num_classes, W.shape[-1]
    V = torch.stack(list(row_shuffles(W, shuffles, seed, "nongaussianity_null")))  # (shuffles, ..., K, D)
    if X.dim() == 2:  # one product for every shuffle of every unit
        kappa = _projected_kurtosis(V.reshape(-1, D), X, y, C).reshape(C, shuffles, *W.shape[:-1])
    else:  # every layer its own inputs
        kappa = torch.stack([_projected_kurtosis(V[:, b].reshape(-1, D), x, y, C).reshape(C, shuffles, -1)
                             for b, x in enumerate(X)], 2)
    counts = torch.bincount(y, minlength=C)
    signed = kappa - 3  # (C, shuffles, ..., K)
    ng = signed.abs()
    return NongaussianityNull(ng.mean(1), pool_classes(ng, counts).mean(0), signed.mean(1),
                              pool_classes(signed, counts).mean(0))


def _projected_kurtosis(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, groups: int) -> torch.Tensor:
    """(groups, K) kurtosis of h = x . w for each row w of W (K, D) over the rows x of X (n, D) in each group.

    Two passes: X is centred within each group (a constant column to exact zeros), then each block of
    units gets the moments of its centred pre-activations, E h^4 / (E h^2)^2, from one product whose
    result fits in cache. NaN where h is constant over the group or the group is empty.
    """
    kappa = torch.full((groups, len(W)), torch.nan, dtype=torch.float64, device=W.device)
    W = W.to(torch.float64)
    for g, x in enumerate(_group_blocks(X.to(torch.float64), y, groups)):
        if not len(x):
            continue
        lo, hi = x.amin(0), x.amax(0)
        xt = (x - torch.where(lo == hi, lo, x.mean(0))).T.contiguous()  # (D, n_g): each unit's h is a row
        step = max(1, BLOCK_ELEMENTS // len(x))
        for j in range(0, len(W), step):
            h = (W[j:j + step] @ xt).T
            kappa[g, j:j + step] = _centred_kurtosis(h, h)
    return kappa


def _grouped_kurtosis(H: torch.Tensor, y: torch.Tensor, groups: int, excess: bool) -> torch.Tensor:
    """(groups, K) kurtosis of each column of H over the rows of each group (two passes, float64).

    Each group's moments are plain column reductions of blocks of its rows that fit in cache (no
    scatter). A group without rows gives a NaN row.
    """
    kappa = torch.full((groups, H.shape[1]), torch.nan, dtype=torch.float64, device=H.device)
    for g, rows in enumerate(_group_blocks(H.to(torch.float64), y, groups)):
        if not len(rows):
            continue
        step = max(1, BLOCK_ELEMENTS // len(rows))
        for j in range(0, H.shape[1], step):
            block = rows[:, j:j + step]
            kappa[g, j:j + step] = _centred_kurtosis(block - block.mean(0), block)
    return kappa - 3 if excess else kappa


def _group_blocks(H: torch.Tensor, y: torch.Tensor, groups: int) -> list[torch.Tensor]:
    """The rows of H in each group 0 .. groups-1, as contiguous blocks (gathered unless y is sorted)."""
    rows = H if bool((y[1:] >= y[:-1]).all()) else H[y.argsort(stable=True)]
    return list(rows.split(torch.bincount(y, minlength=groups).tolist()))


def _centred_kurtosis(c: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """E c^4 / (E c^2)^2 of each column of c, the centred h; NaN where the column of h is constant."""
    c2 = c.square()
    return torch.where(h.amax(0) == h.amin(0), torch.nan, c2.square().mean(0) / c2.mean(0).square())
