"""The one data-set interface the IMP engine, the metrics and the CLI rely on, and what a data set
says of itself (:class:`Capabilities`) before any of it is loaded."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING

import torch

from ..errors import TicketscopeError
from ..seeding import derive_seed

if TYPE_CHECKING:
    from ..config import DataConfig


@dataclass(frozen=True)
class Capabilities:
    """What a data set can do, known from its config alone (nothing loaded): config validation asks
    this instead of naming data sets, so a new family is one module, its registration and its tests.

    - ``infinite``: ``sample(n, seed, offset)`` draws fresh items forever (online training needs it);
    - ``torus``: the spatial geometry is periodic;
    - ``analytic_covariance``: ``covariance(c)`` is each class's exact covariance, not an estimate;
    - ``natural_clone``: with ``data.gaussian_clone`` the data set makes its own exact Gaussian clone
      (its analytic covariance), instead of being wrapped in a fitted :class:`~.clone.GaussianClone`;
    - ``num_classes``: the number of classes, or None where only the loaded data tell;
    - ``streams``: the sample-stream versions (``data.stream``) it can draw (an infinite set's own
      stream, or a finite set's fitted clone).
    """

    infinite: bool = False
    torus: bool = False
    analytic_covariance: bool = False
    natural_clone: bool = False
    num_classes: int | None = None
    streams: tuple[int, ...] = (1, 2)


class Dataset(ABC):
    """A labelled image data set with flattened float32 inputs.

    Subclasses set ``name``, ``input_shape`` (e.g. ``(L, L)``, ``(L,)`` or ``(3, 32, 32)``; the
    flattened input has ``prod(input_shape)`` entries, row-major), ``num_classes``, ``torus``
    (whether the spatial geometry is periodic) and ``infinite`` (whether fresh samples can be
    drawn forever with ``sample``). A class answers :meth:`capabilities` from a config, before it
    is built; the default reads its class attributes.
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    torus: bool = False
    infinite: bool = False

    @classmethod
    def capabilities(cls, cfg: DataConfig) -> Capabilities:
        """What an instance built from ``cfg`` can do (see :class:`Capabilities`); nothing is loaded.
        Override where it depends on the config (torus, classes) or the set has more to declare."""
        return Capabilities(infinite=cls.infinite, torus=cls.torus)

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

    def marginal_excess_kurtosis(self, n: int = 8192, seed: int = 0) -> float:
        """Excess kurtosis of the input marginals, kappa - 3 of a pixel's value, signed.

        Synthetic families override this with the analytic value (every pixel alike). The default is
        empirical: over ``train(n, seed)`` (a finite set: n items of its training split drawn with
        ``seed``, or all of it when it holds fewer), each pixel's excess kurtosis within each class (a
        class mixture is non-Gaussian by itself), pooled over classes by frequency, then the median over
        pixels (robust to the nearly constant border pixels of digit images, whose kurtosis is huge);
        constant pixels are left out. NaN when every pixel is constant.
        """
        from ..metrics.moments import class_kurtosis

        if self.infinite:
            X, y = self.train(n, seed)
        else:
            X, y = self.train(None)
            if len(X) > n:
                keep = torch.randperm(len(X), generator=torch.Generator().manual_seed(derive_seed(seed, "marginals")))[:n]
                X, y = X[keep], y[keep]
        pooled = class_kurtosis(X, y, self.num_classes, excess=True).pooled
        pooled = pooled[pooled.isfinite()]
        return float(pooled.quantile(0.5)) if len(pooled) else math.nan

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, input_shape={self.input_shape}, num_classes={self.num_classes})"
