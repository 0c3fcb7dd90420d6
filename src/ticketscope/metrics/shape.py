"""What kind of local field a unit has: a one-signed blob or a balanced (difference) filter.

A sparse filter that tells correlation lengths apart can be local for two reasons: it sums a few neighbouring
pixels of one sign (a *blob*, which reads the local mean and, on NLGP inputs, the non-Gaussian marginal) or it
subtracts neighbours (a *difference* filter, +w_i - w_j, which reads the local covariance and works on a
Gaussian clone as well). The **signed balance** of unit i's surviving weights,

    B_i = |sum_j w_ij| / sum_j |w_ij|,

is 1 for a one-signed filter and 0 for a perfectly balanced one (NaN for a unit without surviving weights). It
depends only on the surviving weight values, not on their positions, so the "same weights at random positions"
null leaves it unchanged. Its null is therefore the same magnitudes with random signs
(:func:`signed_balance_null`): with n surviving weights it is about sqrt(2 / (pi n)) for equal magnitudes, so a
sparse unit is less balanced by chance alone, and balance must be read against that null at equal density.

``W`` is (K, D), one unit per row, or any batch (..., K, D) like the other layer measures (e.g. (B, K, D): one
layer at B rounds); pruned weights are exactly zero. Results have W's leading shape, float64, on W's device.
"""

from __future__ import annotations

import torch

from ..seeding import generator
from .nulls import Seeds, seeded_slices


def signed_balance(W: torch.Tensor) -> torch.Tensor:
    """|sum_j w_j| / sum_j |w_j| of each row (last axis) of W: 1 one-signed, 0 balanced; NaN for an all-zero row."""
    W = W.double()
    total = W.abs().sum(-1)
    return torch.where(total > 0, W.sum(-1).abs() / total, torch.nan)


def signed_balance_null(W: torch.Tensor, draws: int = 64, seed: Seeds = 0) -> torch.Tensor:
    """Mean over ``draws`` seeded sign patterns of :func:`signed_balance` of |w| with independent random signs
    (each surviving weight + or - with probability 1/2): the balance the same magnitudes give by chance.

    Seeds as the other nulls (:mod:`ticketscope.metrics.nulls`): one int, or one per slice of a batch W
    (B, ..., D), slice b then getting exactly the draws of an unbatched call with ``seed[b]``; drawn on the CPU,
    so every device gives the same numbers. NaN for an all-zero row."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    seeds, batch = seeded_slices(W, seed)
    magnitude = batch.double().abs()
    means = []
    for s, a in zip(seeds, magnitude):
        g = generator("signed_balance_null", s)
        total = torch.zeros(a.shape[:-1], dtype=torch.float64, device=W.device)
        for _ in range(draws):
            signs = torch.randint(0, 2, a.shape, generator=g, dtype=torch.int64).to(W.device) * 2 - 1
            total += signed_balance(a * signs)
        means.append(total / draws)
    return torch.stack(means).reshape(W.shape[:-1])
