"""Cavity scores: what removing one weight does to its unit's pre-activation kurtosis.

For unit i with pre-activation h_i = w_i . x over a probe set, the cavity score of w_ij is

    Delta_ij = kappa(h_i - w_ij x_j) - kappa(h_i)                       (kind="kurtosis")
    Delta_ij = |kappa(h_i - w_ij x_j) - 3| - |kappa(h_i) - 3|           (kind="nongaussianity")

(a positive non-Gaussianity score: the weight makes its unit more Gaussian, so removing it
raises non-Gaussianity). All K x D scores come at once from central moments: with h and x
centred and a = w_ij,

    m2' = m2 - 2a E[h x_j] + a^2 E[x_j^2]
    m4' = m4 - 4a E[h^3 x_j] + 6a^2 E[h^2 x_j^2] - 4a^3 E[h x_j^3] + a^4 E[x_j^4]

where every E[h^p x_j^q] over all (i, j) is one (K, n) @ (n, D) product: four GEMMs, plus one for h.
With more units than inputs (K > D, e.g. a layer's units at every round stacked), the two linear in h,
E[h x_j] = sum_l w_il E[x_l x_j] and E[h x_j^3], come cheaper from (D, D) input moments.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from ..seeding import generator
from .moments import nongaussianity, pool_classes
from .nulls import Seeds, row_shuffles

Kind = Literal["kurtosis", "nongaussianity"]

ILL_CONDITIONED = 0.1
"""Weights with m2' < ILL_CONDITIONED * (m2 + a^2 E[x_j^2]) get m2', m4' from the data instead.

The expansion subtracts terms of size up to m2 + a^2 E[x^2] (and its square for m4), so the
relative error of kappa' grows like eps * kappa / r^2 with r that ratio: ~1e-13 at r = 0.1, but
garbage as r -> 0, i.e. for a weight that carries nearly all of its unit's variance (the last
live input of a unit, where the exact answer is NaN). For independent inputs a unit has at most
one such weight, so the direct pass costs at most about one more GEMM.
"""


@dataclass(frozen=True)
class _Moments:
    """Central moments over the probe set (means, float64) of h = x W^T and of x."""

    mean_x: torch.Tensor  # (D,) column means; a constant column's mean is its exact value
    m2: torch.Tensor  # (K,) E[h^2]
    m4: torch.Tensor  # (K,) E[h^4]
    hx: torch.Tensor  # (K, D) E[h x_j]
    h3x: torch.Tensor  # (K, D) E[h^3 x_j]
    h2x2: torch.Tensor  # (K, D) E[h^2 x_j^2]
    hx3: torch.Tensor  # (K, D) E[h x_j^3]
    x2: torch.Tensor  # (D,) E[x_j^2]
    x4: torch.Tensor  # (D,) E[x_j^4]


@dataclass(frozen=True)
class ScoreSummary:
    """Summary of the cavity scores of one group of weights (NaN scores counted, not averaged)."""

    count: int  # weights with a finite score
    undefined: int  # weights with a NaN score (dead unit, or its removal leaves the unit constant)
    mean: float
    median: float  # midpoint of the two middle values for an even count
    frac_positive: float  # fraction of finite scores > 0


@dataclass(frozen=True)
class CavityAnalysis:
    """Scores of the weights the next pruning round removes, keeps, and of random surviving ones."""

    removed: ScoreSummary
    kept: ScoreSummary
    random: ScoreSummary
    spearman_abs_w: float  # Spearman rank correlation of score with |w|, surviving weights with finite score


def cavity_scores(W: torch.Tensor, X: torch.Tensor, kind: Kind = "kurtosis", chunk_size: int = 8192) -> torch.Tensor:
    """(K, D) float64 cavity scores of every weight of W (K, D) on probe inputs X (n, D), X a single
    population (``kind="nongaussianity"`` on a class mixture is the *mixture* form; see
    :func:`class_cavity_scores` for the per-class form).

    Computed on W's device (X may stay elsewhere, e.g. in host memory: each chunk of
    ``chunk_size`` rows is moved there), accumulated in float64 over two passes (means, then
    central moments), so memory is bounded for any n. A weight that carries nearly all of its
    unit's variance gets m2', m4' from one more pass instead (see ``ILL_CONDITIONED``). Pruned
    weights (w_ij = 0) score exactly 0; a dead unit (no surviving weight on a non-constant input,
    so h is constant) has a NaN row; a weight whose removal leaves its unit constant scores NaN.
    """
    if kind not in ("kurtosis", "nongaussianity"):
        raise ValueError(f"kind must be 'kurtosis' or 'nongaussianity', got {kind!r}")
    kappa, kappa_removed = _kurtosis_with_and_without(W, X, chunk_size)
    if kind == "kurtosis":
        return kappa_removed - kappa[:, None]
    return nongaussianity(kappa_removed) - nongaussianity(kappa)[:, None]


def class_cavity_scores(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, num_classes: int | None = None,
                        chunk_size: int = 8192) -> torch.Tensor:
    """(K, D) per-class non-Gaussianity cavity scores: the change of the class-pooled |kappa - 3|,

        Delta_ij = sum_c f_c |kappa_c(h_i - w_ij x_j) - 3| / F' - sum_c f_c |kappa_c(h_i) - 3| / F,

    f_c = n_c / n and F, F' the sums of f_c over the classes where kappa_c is defined (the pooling
    of :func:`ticketscope.metrics.class_kurtosis`). Each class costs the four GEMMs of
    :func:`cavity_scores` on its own rows, so a mixture of classes with different covariances
    (non-Gaussian by itself) does not enter the score. Pruned weights score exactly 0.
    """
    C = int(y.max()) + 1 if num_classes is None else num_classes
    y = y.to(X.device)
    counts = torch.bincount(y, minlength=C)
    before, after = [], []
    for c in range(C):
        if counts[c] == 0:
            before.append(torch.full((W.shape[0],), torch.nan, dtype=torch.float64, device=W.device))
            after.append(torch.full(W.shape, torch.nan, dtype=torch.float64, device=W.device))
            continue
        kappa, kappa_removed = _kurtosis_with_and_without(W, X[y == c], chunk_size)
        before.append(nongaussianity(kappa))
        after.append(nongaussianity(kappa_removed))
    counts = counts.to(W.device)
    return pool_classes(torch.stack(after), counts) - pool_classes(torch.stack(before), counts)[:, None]


@dataclass(frozen=True)
class ExcessCavity:
    """Per-class cavity scores against the same weight values at random positions in the same unit."""

    raw: torch.Tensor  # (..., K, D) class_cavity_scores of W
    null: torch.Tensor  # (..., K, D) mean over shuffles of the score w_ij's value gets where the shuffle puts it
    excess: torch.Tensor  # raw - null; NaN where either is


def excess_cavity_scores(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor | None = None, num_classes: int | None = None,
                         shuffles: int = 8, seed: Seeds = 0, chunk_size: int = 8192) -> ExcessCavity:
    """The excess cavity score of every weight: its per-class score (:func:`class_cavity_scores`) minus the mean
    score of the same weight value at random positions in the same unit.

    Shuffle s permutes each row of W over all its D inputs (pruned zeros included), exactly as the sparsity-matched
    non-Gaussianity null does (:func:`~ticketscope.metrics.nongaussianity_null`,
    :func:`~ticketscope.metrics.row_shuffles`, 8 seeded shuffles): the value w_ij lands at input pi_s(j) of a unit
    holding the same values, and its null is the mean over s of the score it has there (a NaN score there, e.g.
    on a constant input, is left out of the mean; NaN if every shuffle gives NaN). The null shares the mechanism
    of sparsity: removing a small weight raises a unit's |kappa - 3| through its IPR whatever the weights'
    positions (i.i.d. +-1 inputs: kappa = 3 - 2 IPR(w), permutation invariant, so the excess is exactly 0 on
    inputs whose columns are exchangeable, as a full factorial design of i.i.d. pixels makes them); what remains
    is what the weights' positions on these inputs add. Pruned weights score 0 in both (excess 0).

    W: (K, D), or a batch (B, K, D) with X (n, D) shared or (B, n, D) each its own and ``seed`` an int or one per
    layer (a sequence of B: layer b gets the shuffles of its unbatched call with ``seed[b]``, as the other nulls).
    ``y``: the classes of X's rows (None: one class, the mixture form). One :func:`class_cavity_scores` call (its
    four GEMMs) for every unit of the batch per shuffle, plus one for W; no per-weight loop.
    """
    if W.dim() not in (2, 3):
        raise ValueError(f"need W (K, D) or (B, K, D), got {tuple(W.shape)}")
    n = X.shape[-2]
    y = torch.zeros(n, dtype=torch.int64, device=X.device) if y is None else y
    C = int(y.max()) + 1 if num_classes is None else num_classes

    def score(V: torch.Tensor) -> torch.Tensor:
        if V.dim() == 2:
            return class_cavity_scores(V, X, y, C, chunk_size)
        if X.dim() == 2:
            return class_cavity_scores(V.flatten(0, 1), X, y, C, chunk_size).view(V.shape)
        return torch.stack([class_cavity_scores(v, x, y, C, chunk_size) for v, x in zip(V, X)])

    raw = score(W)
    index = torch.arange(W.shape[-1], dtype=torch.float64, device=W.device).expand(W.shape)
    total = torch.zeros_like(raw)
    count = torch.zeros_like(raw)
    for perm in row_shuffles(index, shuffles, seed, "excess_cavity_scores"):
        perm = perm.long()  # shuffled[..., k] = W[..., perm[k]]: value j lands at k where perm[k] = j
        s = score(W.gather(-1, perm))
        total.scatter_add_(-1, perm, s.nan_to_num())
        count.scatter_add_(-1, perm, s.isfinite().double())
    null = torch.where(count > 0, total / count, torch.nan)
    return ExcessCavity(raw=raw, null=null, excess=raw - null)


def _kurtosis_with_and_without(W: torch.Tensor, X: torch.Tensor, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """kappa(h_i) (K,) and kappa(h_i - w_ij x_j) (K, D) over X, from central moments (module docstring)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if W.dim() != 2 or X.dim() != 2 or W.shape[1] != X.shape[1]:
        raise ValueError(f"need W (K, D) and X (n, D), got W {tuple(W.shape)} and X {tuple(X.shape)}")
    W = W.to(torch.float64)
    M = _central_moments(W, X, chunk_size)
    a = W  # a = w_ij, as in the expansion
    m2 = M.m2[:, None] + a * (a * M.x2 - 2 * M.hx)
    m4 = M.m4[:, None] + a * (a * (a * (a * M.x4 - 4 * M.hx3) + 6 * M.h2x2) - 4 * M.h3x)
    rows, cols = torch.nonzero((a != 0) & (m2 < ILL_CONDITIONED * (M.m2[:, None] + a.square() * M.x2)), as_tuple=True)
    if len(rows):
        m2[rows, cols], m4[rows, cols] = _direct_removed_moments(W, X, M.mean_x, rows, cols, chunk_size)
    return M.m4 / M.m2.square(), m4 / m2.square()


def cavity_groups(
    scores: torch.Tensor,
    mask_now: torch.Tensor,
    mask_next: torch.Tensor,
    n_random: int | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Raw scores (1-D, NaN kept) of a layer's weights by their fate in the next pruning round.

    ``removed``: surviving now, pruned next (mask_now & ~mask_next); ``kept``: surviving next;
    ``random``: ``n_random`` surviving weights drawn uniformly without replacement (seeded;
    default: as many as ``removed``, a size-matched control).
    """
    mask_now, mask_next = mask_now.bool(), mask_next.bool()
    if (mask_next & ~mask_now).any():
        raise ValueError("mask_next revives weights pruned in mask_now: pruned weights never come back")
    surviving = scores[mask_now]
    removed = scores[mask_now & ~mask_next]
    n_random = len(removed) if n_random is None else min(n_random, len(surviving))
    pick = torch.randperm(len(surviving), generator=generator("cavity_groups.random", seed))[:n_random]
    return {"removed": removed, "kept": scores[mask_next], "random": surviving[pick.to(scores.device)]}


def cavity_analysis(
    scores: torch.Tensor,
    weights: torch.Tensor,
    mask_now: torch.Tensor,
    mask_next: torch.Tensor,
    n_random: int | None = None,
    seed: int = 0,
) -> CavityAnalysis:
    """Summaries of :func:`cavity_groups` plus the Spearman correlation of score with |w| now.

    Spearman (Pearson correlation of average ranks) rather than Pearson: magnitude pruning only
    sees the order of |w|, and scores are heavy tailed.
    """
    groups = {name: _summary(s) for name, s in cavity_groups(scores, mask_now, mask_next, n_random, seed).items()}
    s, w = scores[mask_now.bool()], weights[mask_now.bool()].abs()
    finite = s.isfinite()
    return CavityAnalysis(**groups, spearman_abs_w=_spearman(s[finite], w[finite]))


@dataclass(frozen=True)
class BandAUC:
    """How well a score predicts the next removal among weights of about the same magnitude."""

    auc: float  # mean over the usable bins of the within-bin AUC; NaN when no bin is usable
    bins: int  # bins holding both a removed and a kept weight
    candidates: int  # surviving weights with a finite score
    removed: int  # of them, removed next
    undefined: int  # surviving weights left out for a NaN score


def auc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """P(score of a positive > score of a negative) + P(tie) / 2: the area under the ROC curve,

        AUC = (sum of the positives' average ranks - n1 (n1 + 1) / 2) / (n1 n0)

    (the Mann-Whitney U of the positives over n1 n0); NaN without a positive or a negative."""
    positive = positive.bool()
    n1 = int(positive.sum())
    n0 = len(scores) - n1
    if n1 == 0 or n0 == 0:
        return math.nan
    rank_sum = _average_ranks(scores)[positive].sum().item()
    return (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n0)


def magnitude_band_auc(scores: torch.Tensor, weights: torch.Tensor, mask_now: torch.Tensor, mask_next: torch.Tensor,
                       bins: int = 10) -> BandAUC:
    """The AUC of ``scores`` for a surviving weight (``mask_now``) being removed next (not in ``mask_next``),
    within bins of equal count of the survivors' |w| rank (``bins`` = 10: deciles), averaged over the bins
    that hold both outcomes. Magnitude pruning removes by |w|, so comparing only weights of about the same
    |w| asks what the score tells beyond magnitude: 0.5 is nothing.

    Survivors with a NaN score (dead unit, removal leaving its unit constant) are left out and counted."""
    mask_now, mask_next = mask_now.bool(), mask_next.bool()
    if (mask_next & ~mask_now).any():
        raise ValueError("mask_next revives weights pruned in mask_now: pruned weights never come back")
    s, w, removed = scores[mask_now], weights[mask_now].abs(), ~mask_next[mask_now]
    finite = s.isfinite()
    s, w, removed = s[finite], w[finite], removed[finite]
    order = w.argsort(stable=True)
    per_bin = [auc(s[i], removed[i]) for i in order.tensor_split(bins)] if len(s) else []
    usable = [a for a in per_bin if not math.isnan(a)]
    return BandAUC(auc=sum(usable) / len(usable) if usable else math.nan, bins=len(usable), candidates=len(s),
                   removed=int(removed.sum()), undefined=int((~finite).sum()))


@dataclass(frozen=True)
class MatchedAUC:
    """How well a score predicts the next removal between weights of neighbouring |w| rank (one pruning step)."""

    auc: float  # sum over strata of U / sum over strata of n1 n0; 0.5: nothing beyond magnitude; NaN: no comparison
    se: float  # its standard error, strata as independent clusters (see matched_band_auc)
    comparisons: int  # (removed, kept) pairs compared, all within a stratum: sum of n1 n0
    strata: int  # strata holding both a removed and a kept weight
    candidates: int  # surviving weights with a finite score
    removed: int  # of them, removed next
    undefined: int  # surviving weights left out for a NaN score


def matched_band_auc(scores: torch.Tensor, weights: torch.Tensor, mask_now: torch.Tensor, mask_next: torch.Tensor,
                     stratum: int = 2) -> MatchedAUC:
    """The AUC of ``scores`` for a surviving weight (``mask_now``) being removed next (not in ``mask_next``), comparing
    only weights of neighbouring |w| rank: the survivors with a finite score, sorted by |w| (ties by position), are
    cut into strata of ``stratum`` consecutive ranks (2: matched pairs of adjacent ranks; the last stratum may be
    smaller), and

        AUC = sum_k U_k / sum_k n1_k n0_k,

    U_k the Mann-Whitney U of stratum k's removed weights over its kept ones (ties one half): every
    (removed, kept) comparison within a stratum counts once (a stratified rank test; at ``stratum=2`` it is the
    matched-pair concordance over the discordant pairs, the nonparametric form of a conditional logistic model).

    Why: :func:`magnitude_band_auc` compares weights within |w| deciles, where |w| still varies by a tenth of the
    ranks; the next removal depends steeply on |w|, so a score that depends on |w| alone (as the cavity score does
    through IPR) leaks into it and lifts the AUC off 0.5. Within a pair of adjacent ranks |w| differs by one rank
    gap, so the leak shrinks with the number of survivors (tested on planted data: a score depending on |w| only
    gives 0.5 here where the decile AUC does not). Call it per pruning step and judge the steps as a curve or by
    phase, never as one mean over a rise and a fall.

    ``se``: with a_k = U_k / (n1_k n0_k) and c_k = n1_k n0_k, sqrt(sum_k c_k^2 (a_k - AUC)^2) / sum_k c_k (strata
    as independent clusters; at ``stratum=2``, the sd of the pair outcomes over sqrt of their count). Survivors
    with a NaN score (dead unit, removal leaving its unit constant) are left out and counted.
    """
    if stratum < 2:
        raise ValueError(f"stratum must be >= 2 ranks, got {stratum}")
    mask_now, mask_next = mask_now.bool(), mask_next.bool()
    if (mask_next & ~mask_now).any():
        raise ValueError("mask_next revives weights pruned in mask_now: pruned weights never come back")
    s, w, removed = scores[mask_now].double(), weights[mask_now].abs().double(), ~mask_next[mask_now]
    finite = s.isfinite()
    s, w, removed = s[finite], w[finite], removed[finite]
    n = len(s)
    order = w.argsort(stable=True)
    groups = -(-n // stratum)
    pad = groups * stratum - n
    valid = torch.cat([torch.ones(n, dtype=torch.bool, device=s.device), torch.zeros(pad, dtype=torch.bool, device=s.device)])
    S = torch.cat([s[order], s.new_zeros(pad)]).view(groups, stratum)
    R = torch.cat([removed[order], removed.new_zeros(pad)]).view(groups, stratum)
    V = valid.view(groups, stratum)
    pos, neg = (R & V).double(), (~R & V).double()
    wins = (S[:, :, None] > S[:, None, :]).double() + 0.5 * (S[:, :, None] == S[:, None, :]).double()
    U = (wins * pos[:, :, None] * neg[:, None, :]).sum((1, 2))
    c = pos.sum(1) * neg.sum(1)
    total = c.sum().item()
    auc_value = U.sum().item() / total if total else math.nan
    used = c > 0
    se = (c[used] * (U[used] / c[used] - auc_value)).square().sum().sqrt().item() / total if total else math.nan
    return MatchedAUC(auc=auc_value, se=se, comparisons=int(total), strata=int(used.sum()), candidates=n,
                      removed=int(removed.sum()), undefined=int((~finite).sum()))


def _chunks(X: torch.Tensor, chunk_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Consecutive row blocks of X as float64 on ``device``."""
    for start in range(0, X.shape[0], chunk_size):
        yield X[start:start + chunk_size].to(device=device, dtype=torch.float64)


def _central_moments(W: torch.Tensor, X: torch.Tensor, chunk_size: int) -> _Moments:
    """Two passes over X: the column means, then every central moment the expansion needs."""
    (K, D), n, device = W.shape, X.shape[0], W.device
    total = torch.zeros(D, dtype=torch.float64, device=device)
    lo = torch.full_like(total, math.inf)
    hi = torch.full_like(total, -math.inf)
    for x in _chunks(X, chunk_size, device):
        total += x.sum(0)
        lo, hi = torch.minimum(lo, x.amin(0)), torch.maximum(hi, x.amax(0))
    mean_x = torch.where(lo == hi, lo, total / n)  # constant columns centre to exact zeros

    m2, m4 = torch.zeros(K, dtype=torch.float64, device=device), torch.zeros(K, dtype=torch.float64, device=device)
    x2, x4 = torch.zeros_like(total), torch.zeros_like(total)
    h3x, h2x2 = (torch.zeros(K, D, dtype=torch.float64, device=device) for _ in range(2))
    linear = K > D  # E[h x_j], E[h x_j^3] as W @ E[x x_j], W @ E[x x_j^3]: n D^2 flops instead of n K D
    hx, hx3 = (torch.zeros(D if linear else K, D, dtype=torch.float64, device=device) for _ in range(2))
    for chunk in _chunks(X, chunk_size, device):
        x = chunk - mean_x  # not in place: a float64 X on this device comes as a view of X itself
        h = x @ W.T
        h2 = h.square()
        m2 += h2.sum(0)
        m4 += h2.square().sum(0)
        h3x.addmm_((h2 * h).T, x)
        xp = x.square()
        x2 += xp.sum(0)
        x4 += xp.square().sum(0)
        h2x2.addmm_(h2.T, xp)
        left = x if linear else h
        hx.addmm_(left.T, x)
        hx3.addmm_(left.T, xp.mul_(x))
    if linear:
        hx, hx3 = W @ hx, W @ hx3
    return _Moments(mean_x, m2 / n, m4 / n, hx / n, h3x / n, h2x2 / n, hx3 / n, x2 / n, x4 / n)


def _direct_removed_moments(
    W: torch.Tensor, X: torch.Tensor, mean_x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """m2', m4' of the centred h_i - w_ij x_j from the data, for the weights (rows[f], cols[f]) only."""
    units, unit_of = rows.unique(return_inverse=True)
    a = W[rows, cols]
    m2, m4 = torch.zeros_like(a), torch.zeros_like(a)
    for chunk in _chunks(X, chunk_size, W.device):
        x = chunk - mean_x
        h2 = ((x @ W[units].T)[:, unit_of] - a * x[:, cols]).square()
        m2 += h2.sum(0)
        m4 += h2.square().sum(0)
    return m2 / X.shape[0], m4 / X.shape[0]


def _summary(s: torch.Tensor) -> ScoreSummary:
    finite = s[s.isfinite()].double().sort().values
    n = len(finite)
    median = (finite[(n - 1) // 2] + finite[n // 2]).item() / 2 if n else math.nan
    return ScoreSummary(
        count=n,
        undefined=len(s) - n,
        mean=finite.mean().item(),
        median=median,
        frac_positive=(finite > 0).double().mean().item(),
    )


def _average_ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks 1 .. n of v, ties sharing the average of their ranks (as scipy.stats.rankdata)."""
    values, order = v.sort()
    _, group, size = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    average = size.cumsum(0) - (size - 1) / 2  # mean of the ranks last - size + 1 .. last of each group
    return torch.empty(len(v), dtype=torch.float64, device=v.device).scatter_(0, order, average[group].double())


def _spearman(u: torch.Tensor, v: torch.Tensor) -> float:
    """Spearman rank correlation (NaN with fewer than two points or a constant side)."""
    ru, rv = _average_ranks(u), _average_ranks(v)
    ru, rv = ru - ru.mean(), rv - rv.mean()
    return ((ru * rv).sum() / (ru.norm() * rv.norm())).item()
