"""Signed balance of a unit's surviving weights: planted blobs and difference filters, a brute-force loop, its null."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from ticketscope.metrics import signed_balance, signed_balance_null


def test_planted_blob_and_difference_filters():
    """On a ring of 32 pixels: a one-signed Gaussian blob (either sign) is 1; a difference of adjacent pixels
    (+a, -a), a centre-surround filter whose surround cancels its centre, and a Gabor-like +-+- pattern of equal
    weight are 0; a half-balanced filter (+2, -1) is 1/3. Exact up to rounding (1e-12)."""
    D = 32
    r = torch.arange(D, dtype=torch.float64)
    blob = torch.exp(-((r - 10) ** 2) / 4) * (torch.exp(-((r - 10) ** 2) / 4) > 1e-3)
    W = torch.zeros(6, D, dtype=torch.float64)
    W[0], W[1] = blob, -0.3 * blob
    W[2, 5], W[2, 6] = 0.7, -0.7
    W[3, 15], W[3, 14], W[3, 16] = 1.0, -0.5, -0.5
    W[4, 20:24] = torch.tensor([1.0, -1.0, 1.0, -1.0])
    W[5, 0], W[5, 31] = 2.0, -1.0
    np.testing.assert_allclose(signed_balance(W).numpy(), [1, 1, 0, 0, 0, 1 / 3], atol=1e-12)


def test_matches_a_loop_on_a_batch_and_zero_rows_are_nan():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(3, 5, 20, generator=g) * (torch.rand(3, 5, 20, generator=g) < 0.3)
    W[1, 2] = 0
    got = signed_balance(W)
    assert got.shape == (3, 5) and got.dtype == torch.float64
    for b, k in itertools.product(range(3), range(5)):
        w = [float(v) for v in W[b, k] if v != 0]
        want = abs(sum(w)) / sum(abs(v) for v in w) if w else math.nan
        if math.isnan(want):
            assert math.isnan(got[b, k].item())
        else:
            assert got[b, k].item() == pytest.approx(want, abs=1e-12)


def test_null_is_the_mean_over_random_signs():
    """Against the exact mean over all 2^n sign patterns (n = 6 surviving weights, enumerated): the null with 4000
    draws lies within 4 standard errors of it (se = sd over patterns / sqrt(4000), ~0.004). For n equal magnitudes
    the exact mean is E|S_n| / n with S_n a sum of n +-1: 0.3125 at n = 6, 0.246 at n = 10, about sqrt(2/(pi n));
    sparser units are less balanced by chance."""
    g = torch.Generator().manual_seed(1)
    w = torch.zeros(40, dtype=torch.float64)
    w[torch.randperm(40, generator=g)[:6]] = torch.rand(6, generator=g, dtype=torch.float64) + 0.2
    patterns = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=6)), dtype=torch.float64)
    exact = signed_balance(patterns * w[w != 0])
    got = signed_balance_null(w[None], draws=4000, seed=3)[0].item()
    assert got == pytest.approx(exact.mean().item(), abs=4 * exact.std().item() / math.sqrt(4000))
    equal = torch.zeros(2, 40, dtype=torch.float64)
    equal[0, :6], equal[1, :10] = 1.0, 1.0
    null = signed_balance_null(equal, draws=4000)
    assert null[0].item() == pytest.approx(0.3125, abs=0.02) and null[1].item() == pytest.approx(0.24609375, abs=0.02)


def test_null_seeds_batch_and_dead_units():
    """A batch (B, K, D) with one seed per layer equals the unbatched calls with those seeds (bit for bit: the same
    draws); the same seed gives the same numbers, another seed others; an all-zero row is NaN."""
    g = torch.Generator().manual_seed(2)
    W = torch.randn(3, 4, 16, generator=g) * (torch.rand(3, 4, 16, generator=g) < 0.5)
    W[0, 1] = 0
    batched = signed_balance_null(W, draws=16, seed=[5, 6, 7])
    for b, s in enumerate((5, 6, 7)):
        assert torch.equal(batched[b].nan_to_num(9), signed_balance_null(W[b], draws=16, seed=s).nan_to_num(9))
    assert batched[0, 1].isnan() and batched.isfinite().sum() == 11
    assert not torch.equal(signed_balance_null(W[1], draws=16, seed=1), signed_balance_null(W[1], draws=16, seed=2))
    with pytest.raises(ValueError, match="draws"):
        signed_balance_null(W, draws=0)
