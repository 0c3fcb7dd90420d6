"""row_shuffles: each copy permutes every row's entries; a sequence of seeds equals per-slice calls."""

import pytest
import torch

from ticketscope.metrics import row_shuffles


def test_rows_are_permuted_and_batched_seeds_match_unbatched_calls():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(3, 5, 7, generator=g, dtype=torch.float64)
    batched = list(row_shuffles(W, 4, [1, 2, 1], "test"))
    assert len(batched) == 4
    for V in batched:
        assert V.shape == W.shape
        torch.testing.assert_close(V.sort(-1).values, W.sort(-1).values, rtol=0, atol=0)
    for b, s in enumerate([1, 2, 1]):
        for V, one in zip(batched, row_shuffles(W[b], 4, s, "test")):
            assert torch.equal(V[b], one)


def test_bad_arguments():
    W = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="shuffles"):
        next(row_shuffles(W, 0, 0, "test"))
    with pytest.raises(ValueError, match="one per slice"):
        next(row_shuffles(W, 1, [0, 1, 2], "test"))
