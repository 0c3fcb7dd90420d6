"""Seeded random nulls shared by the measures: row shuffles and per-slice seeds.

A null's ``seed`` is one int, or a sequence of B seeds for a batch W (B, ..., D) of B layers (e.g.
one layer at B rounds of a run): slice W[b] then gets exactly the draws of an unbatched call with
seed ``seed[b]``, so batching changes no number. Every draw is made on the CPU through
:func:`ticketscope.seeding.generator`, so the same seed gives the same numbers on every device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from ..seeding import generator

Seeds = int | Sequence[int]


def row_shuffles(W: torch.Tensor, shuffles: int, seed: Seeds, stream: str) -> Iterator[torch.Tensor]:
    """``shuffles`` copies of W, each row's entries independently and uniformly permuted (seeded on
    ``stream``; a sequence of seeds seeds each slice of the batch W (B, ..., D) on its own): the same
    weights at random positions, the null of :func:`~ticketscope.metrics.spatial_localization` and
    :func:`~ticketscope.metrics.nongaussianity_null`."""
    if shuffles < 1:
        raise ValueError(f"shuffles must be >= 1, got {shuffles}")
    seeds, batch = seeded_slices(W, seed)
    gens = [generator(stream, s) for s in seeds]
    for _ in range(shuffles):
        u = torch.stack([torch.rand(batch.shape[1:], generator=g, dtype=torch.float64) for g in gens])
        yield batch.gather(-1, u.argsort(dim=-1).to(W.device)).reshape(W.shape)


def seeded_slices(W: torch.Tensor, seed: Seeds) -> tuple[list[int], torch.Tensor]:
    """(seeds, W as a batch of slices): ([seed], W[None]) for one seed, (seed, W) for one per slice of W."""
    if isinstance(seed, int):
        return [seed], W[None]
    if W.dim() < 2 or len(seed) != W.shape[0]:
        raise ValueError(f"a sequence of seeds needs one per slice of W (B, ..., D), got {len(seed)} for {tuple(W.shape)}")
    return list(seed), W
