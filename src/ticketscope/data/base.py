"""The one data-set interface the IMP engine, the metrics and the CLI rely on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from math import prod

import torch

from ..errors import TicketscopeError


class Dataset(ABC):
    """A labelled image data set with flattened float32 inputs.

    Subclasses set ``name``, ``input_shape`` (e.g. ``(L, L)``, ``(L,)`` or ``(3, 32, 32)``; the
    flattened input has ``prod(input_shape)`` entries, row-major), ``num_classes``, ``torus``
    (whether the spatial geometry is periodic) and ``infinite`` (whether fresh samples can be
    drawn forever with ``sample``).
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    torus: bool = False
    infinite: bool = False

    @property
    def test_size(self) -> int | None:
        """Items in a fixed held-out split (``test(n)`` needs n <= this); None: any number can be drawn."""
        return None

    @property
    def input_dim(self) -> int:
        return prod(self.input_shape)

    @abstractmethod
    def train(self, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Training split: X float32 (n, D), y int64 (n,). ``n=None``: all of it (finite sets)."""

    @abstractmethod
    def test(self, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Held-out split, disjoint from ``train`` (independent samples for synthetic sets)."""

    def sample(self, n: int, seed: int = 0, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples ``offset .. offset+n`` of the infinite stream for ``seed`` (synthetic sets only)."""
        raise TicketscopeError(f"data set {self.name!r} is finite: it has no infinite sample stream")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, input_shape={self.input_shape}, num_classes={self.num_classes})"
