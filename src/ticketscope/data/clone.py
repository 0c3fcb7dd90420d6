"""Gaussian clone of a labelled data set: each class keeps its mean and covariance, nothing else.

Fit, in float64, on ``source.train(n_fit)`` (flattened images x, classes c with n_c samples):
    p_c = n_c / n,   mu_c = mean of class c,   Sigma_c = sum (x - mu_c)(x - mu_c)^T / (n_c - 1) + ridge I.
Sample: x = mu_c + A_c z with z ~ N(0, I_D) and A_c A_c^T = Sigma_c, so x ~ N(mu_c, Sigma_c) exactly.
A_c is the Cholesky factor; if Sigma_c is not numerically positive definite (ridge = 0 with constant
pixels, or fewer samples than pixels) it is V diag(sqrt(max(lambda, 0))) from the eigendecomposition
Sigma_c = V diag(lambda) V^T, i.e. tiny negative eigenvalues are clipped to 0. Factors and draws are
float32 (relative rounding 1e-7, far below any sampling error); ``covariance(c)`` is the covariance the
sampler really uses.

Streams (:mod:`.stream`, keyed by ``(name, split, seed)``): labels follow a golden-ratio Weyl
sequence, class(i) = the c with u_i = frac(s + i / phi) in [P_{c-1}, P_c) (P the cumulative
frequencies, s set by the key); it is deterministic in i and any n consecutive samples hold
n p_c + O(log n) of class c. The noise z comes in blocks of BLOCK samples; block b is
``torch.randn`` under ``generator(name, split, seed, b)`` in both stream versions, so any chunking of
a stream is bit-identical to one call. Version 1 transforms block by block (the bits from before
versions existed); version 2 (default) gathers each class's rows of all blocks of a call into one
GEMM. ``sample`` and ``train`` read the "train" split (``train(n, seed) == sample(n, seed, 0)``),
``test`` an independent "test" split.
"""

from __future__ import annotations

from math import prod

import numpy as np
import torch

from ..errors import TicketscopeError
from ..seeding import derive_seed
from .base import Dataset
from .stream import LATEST, VERSIONS, BlockStream, LinearSampler, torch_noise

_WEYL_STEP = np.uint64(round((5**0.5 - 1) / 2 * 2**64))  # 2^64 / phi, the Weyl step in 64-bit fixed point


def gaussian_factor(sigma: torch.Tensor) -> torch.Tensor:
    """A with A A^T = sigma: Cholesky, else eigenvectors scaled by sqrt(max(eigenvalue, 0))."""
    chol, info = torch.linalg.cholesky_ex(sigma)
    if info == 0:
        return chol
    lam, vecs = torch.linalg.eigh(sigma)
    return vecs * lam.clamp(min=0).sqrt()


def weyl_labels(index: np.ndarray, start: int, cumulative: np.ndarray) -> np.ndarray:
    """Class of each stream index: u_i = frac(start / 2^64 + i / phi) located in the cumulative frequencies."""
    u = (np.uint64(start) + index.astype(np.uint64) * _WEYL_STEP) >> np.uint64(11)  # wraps mod 2^64: frac
    return np.searchsorted(cumulative[:-1], u.astype(np.float64) * 2.0**-53, side="right")


class GaussianClone(Dataset):
    """Per-class Gaussian with a source's class means, covariances (+ ridge) and frequencies.

    ``stream``: the sample-stream version (:mod:`.stream`), 1 (the bits from before versions existed)
    or 2 (default, batched).
    """

    infinite = True

    def __init__(self, source: Dataset, ridge: float = 1e-3, n_fit: int | None = None, stream: int = LATEST) -> None:
        x, y = source.train(n_fit)
        self._fit(f"{source.name}-clone", source.input_shape, source.num_classes, source.torus, x, y, ridge, stream)

    @classmethod
    def from_tensors(cls, X: torch.Tensor, y: torch.Tensor, ridge: float = 1e-3, *, num_classes: int | None = None,
                     input_shape: tuple[int, ...] | None = None, name: str = "tensors-clone",
                     stream: int = LATEST) -> "GaussianClone":
        """Clone of arbitrary samples X (n, ...) with labels y (n,) in 0..num_classes-1 (default max(y) + 1)."""
        shape = input_shape or (tuple(X.shape[1:]) if X.dim() > 2 else (prod(X.shape[1:]),))
        clone = cls.__new__(cls)
        clone._fit(name, shape, int(y.max()) + 1 if num_classes is None else num_classes, False,
                   X.reshape(len(X), -1), y, ridge, stream)
        return clone

    def _fit(self, name: str, input_shape: tuple[int, ...], num_classes: int, torus: bool,
             x: torch.Tensor, y: torch.Tensor, ridge: float, stream: int) -> None:
        self.name, self.input_shape, self.num_classes, self.torus, self.ridge = name, input_shape, num_classes, torus, ridge
        if isinstance(stream, bool) or stream not in VERSIONS:
            raise TicketscopeError(f"{name}: stream must be one of {VERSIONS}, got {stream!r}")
        self.stream = int(stream)
        if x.shape != (len(y), self.input_dim):
            raise TicketscopeError(f"{name}: data of shape {tuple(x.shape)} and {len(y)} labels do not match "
                                   f"{len(y)} flattened inputs of {self.input_dim}")
        y = y.long()
        if len(y) == 0 or y.min() < 0 or y.max() >= num_classes:
            raise TicketscopeError(f"{name}: labels must lie in 0..{num_classes - 1}")
        counts = torch.bincount(y, minlength=num_classes)
        if counts.min() < 2:
            raise TicketscopeError(f"{name}: every class 0..{num_classes - 1} needs at least 2 samples to fit "
                                   f"a covariance; class counts are {counts.tolist()}")
        self.class_freqs = counts.double() / len(y)
        self._cumulative = np.cumsum(self.class_freqs.numpy())
        self._cumulative[-1] = 1.0
        means, factors = [], []
        for c in range(num_classes):
            xc = x[y == c].double()
            mu = xc.mean(0)
            sigma = torch.cov(xc.T, correction=1).reshape(self.input_dim, self.input_dim)
            sigma.diagonal().add_(ridge)
            means.append(mu.float())
            factors.append(gaussian_factor(sigma).float())
        self.class_means = torch.stack(means)
        self._factors = factors
        self._linear = LinearSampler((self.input_dim,), factors, means=self.class_means)
        transform = self._transform_v1 if self.stream == 1 else self._transform_v2
        self._stream = BlockStream(self.input_dim, (self.input_dim,), torch.float32, torch_noise, self._labels,
                                   transform, batched=self.stream != 1)

    def covariance(self, c: int) -> torch.Tensor:
        """Covariance of class c that the sampler realises, A_c A_c^T (float64, D x D)."""
        a = self._factors[c].double()
        return a @ a.T

    def train(self, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return self._stream.sample(self._count(n), (self.name, "train", seed), 0)

    def test(self, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return self._stream.sample(self._count(n), (self.name, "test", seed), 0)

    def sample(self, n: int, seed: int = 0, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Items offset .. offset + n - 1 of the "train" split for ``seed``: X float32 (n, D), y int64 (n,)."""
        return self._stream.sample(self._count(n), (self.name, "train", seed), self._offset(offset))

    def _count(self, n: int | None) -> int:
        if n is None or n < 1:
            raise TicketscopeError(f"{self.name} is an infinite Gaussian stream: ask for n >= 1 samples, got {n}")
        return n

    def _offset(self, offset: int) -> int:
        if offset < 0:
            raise TicketscopeError(f"{self.name}: stream offset must be >= 0, got {offset}")
        return offset

    def _labels(self, key: tuple, start: int, count: int) -> torch.Tensor:
        index = np.arange(start, start + count)
        return torch.from_numpy(weyl_labels(index, derive_seed(*key, "labels"), self._cumulative))

    def _transform_v1(self, z: torch.Tensor, labels: torch.Tensor, out: torch.Tensor) -> None:
        """Version 1, one block: x = mu_c + z A_c^T for each class's rows."""
        for c, factor in enumerate(self._factors):
            mask = labels == c
            out[mask] = self.class_means[c] + z[mask] @ factor.T

    def _transform_v2(self, z: torch.Tensor, labels: torch.Tensor, out: torch.Tensor) -> None:
        """Version 2, any number of blocks: one batched GEMM per class."""
        self._linear(z, labels, out)
