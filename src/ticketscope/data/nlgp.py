"""The NLGP task of Ingrosso & Goldt (PNAS 2022) and its Gaussian clone.

A class with correlation length ``xi`` draws a Gaussian field on an ``L`` (1D) or ``L x L`` (2D)
grid and squashes it pixel by pixel:

    R = (C + r I) / (1 + r),   C_ij = exp(-d_ij^2 / xi^2)   (2D: C = C1 (x) C1),
    z ~ N(0, R),   x_i = erf(g z_i / sqrt 2) / sqrt(gamma(g)),   gamma(g) = (2/pi) arcsin(g^2 / (1 + g^2)),

with d_ij the torus (or plain) distance and r the ridge. Then, exactly,

    Cov(x_i, x_j) = (2 / (pi gamma(g))) arcsin(g^2 / (1 + g^2) * R_ij),

from the bivariate-normal identity E[erf(a u) erf(a v)] = (2/pi) arcsin(2 a^2 c / (1 + 2 a^2 s^2))
(u, v of variance s^2 and covariance c, here a = g / sqrt 2 and s = 1).

**Ridge normalization.** The ridge is added to C and the result is rescaled back to unit diagonal,
so the field is unit-variance for any r: R is a correlation matrix, the gain is exactly g, every
pixel has variance exactly 1 and the formula above holds with R in place of C (off-diagonal
correlations shrink by 1 / (1 + r), a 1e-3 effect at the default ridge). Adding r without the
rescaling would give the field variance 1 + r and pixel variance gamma(g sqrt(1 + r)) / gamma(g) != 1.
On the torus, C is not positive semi-definite when xi is not small against L (the torus distance
is cut at L/2; e.g. L = 6, xi = 2): there R is the nearest PSD circulant matrix to C + r I
(negative eigenvalues clipped), again rescaled to unit diagonal. ``covariance()`` always reports
the covariance the sampler produces.

**Sampling.** On the torus R and Cov(x) are circulant (2D: block circulant with circulant blocks),
so their eigenvalues lambda are the DFT of the first row (clipped at 0) and sampling costs an FFT per
sample. Version 1: z = IDFT(sqrt(lambda) * DFT(w)), w real white noise, is the symmetric square root
R^(1/2) applied to w (two real samples share one complex FFT pair, float64). Version 2: the white
noise is read as Fourier coefficients scaled by sqrt(lambda), so one real inverse FFT per row gives
covariance exactly R (in 2D along the last axis, then the real Fourier basis along the first;
:class:`~.stream.TorusSampler`), float32. The Gaussian clone is sampled the same way with Cov(x) in
place of R. Open boundaries use a dense factor from an eigendecomposition, cached per class
(version 2: of C1 along both axes for the field, (C1 (x) C1 + r I) / (1 + r) being diagonal in that
basis; of the dense covariance for the clone). Version 2 folds the gain g / sqrt 2 into the factor
ahead of the erf.

**Stream layout** (:mod:`.stream`). ``sample(n, seed, offset)`` returns items ``offset .. offset + n - 1``
of an infinite stream. Item i has label ``i % num_classes`` (every window of a multiple of
num_classes items is exactly balanced) and lives in block ``i // BLOCK``, whose white noise is keyed
by ``(seed, block)`` only, so any chunking of the stream gives the same bits as one call. Version 1
(the stream before versions existed, kept bit for bit): NumPy PCG64 float64 normals, block by
block. Version 2 (default): float32 ``torch.randn`` noise, many blocks transformed at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from numbers import Integral, Real
from typing import TYPE_CHECKING

import torch

from ..seeding import derive_seed
from .base import Capabilities, Dataset
from .stream import (
    LATEST,
    VERSIONS,
    BlockStream,
    LinearSampler,
    TorusSampler,
    numpy_noise,
    torch_noise,
)

if TYPE_CHECKING:
    from ..config import DataConfig


def gamma(gain: float) -> float:
    """Variance of erf(g z / sqrt 2) for z ~ N(0, 1): gamma(g) = (2/pi) arcsin(g^2 / (1 + g^2))."""
    return 2 / math.pi * math.asin(gain**2 / (1 + gain**2))


def torus_distance(i: torch.Tensor, j: torch.Tensor, L: int) -> torch.Tensor:
    """Distance between sites i and j on a ring of L sites: min(|i - j|, L - |i - j|)."""
    d = (i - j).abs() % L
    return torch.minimum(d, L - d)


def field_covariance_1d(L: int, xi: float, torus: bool = True) -> torch.Tensor:
    """The (L, L) float64 kernel C1_ij = exp(-d_ij^2 / xi^2), d the torus or plain distance."""
    site = torch.arange(L, dtype=torch.float64)
    i, j = site[:, None], site[None, :]
    d = torus_distance(i, j, L) if torus else (i - j).abs()
    return torch.exp(-(d**2) / xi**2)


def torus_kernel(L: int, dim: int, xi: float, ridge: float = 0.0) -> torch.Tensor:
    """First row of the torus field correlation R, shaped as the grid ``(L,) * dim``.

    It is the row of (C + r I) / (1 + r). When xi is not small against L, C (its distance cut at
    L/2) is not positive semi-definite: then the negative eigenvalues of C + r I are clipped (the
    nearest PSD circulant matrix) and the result rescaled to unit diagonal.
    """
    k1 = field_covariance_1d(L, xi, torus=True)[0]
    k = (k1 if dim == 1 else torch.outer(k1, k1)).clone()
    k.view(-1)[0] += ridge
    lam = torch.fft.fftn(k).real
    if (lam < 0).any():
        k = torch.fft.ifftn(lam.clamp_min(0)).real
    return k / k.view(-1)[0]


def circulant_matrix(kernel: torch.Tensor) -> torch.Tensor:
    """The (D, D) (block-)circulant matrix M_ij = kernel[(r_i - r_j) mod L] of an even grid kernel."""
    grid = kernel.shape
    coords = torch.stack(torch.meshgrid(*[torch.arange(n) for n in grid], indexing="ij"), -1).reshape(-1, len(grid))
    diff = (coords[:, None, :] - coords[None, :, :]) % torch.tensor(grid)
    return kernel[tuple(diff.unbind(-1))]


def field_correlation(L: int, dim: int, xi: float, torus: bool = True, ridge: float = 0.0) -> torch.Tensor:
    """The (D, D) float64 field covariance R, unit diagonal: (C1^(x dim) + r I) / (1 + r) with open
    boundaries, the circulant matrix of :func:`torus_kernel` on the torus."""
    if torus:
        return circulant_matrix(torus_kernel(L, dim, xi, ridge))
    c1 = field_covariance_1d(L, xi, torus=False)
    c = c1 if dim == 1 else torch.kron(c1, c1)
    return (c + ridge * torch.eye(c.shape[0], dtype=c.dtype)) / (1 + ridge)


def nlgp_covariance(correlation: torch.Tensor, gain: float) -> torch.Tensor:
    """Cov(x_i, x_j) = (2 / (pi gamma(g))) arcsin(g^2 / (1 + g^2) R_ij), elementwise in R."""
    return 2 / (math.pi * gamma(gain)) * torch.asin(gain**2 / (1 + gain**2) * correlation)


def nlgp_transform(z: torch.Tensor, gain: float) -> torch.Tensor:
    """The pixel non-linearity x = erf(g z / sqrt 2) / sqrt(gamma(g))."""
    return torch.erf(gain / math.sqrt(2) * z) / math.sqrt(gamma(gain))


def circulant_sqrt_spectrum(kernel: torch.Tensor) -> torch.Tensor:
    """sqrt(max(lambda, 0)), lambda = DFT(kernel) the eigenvalues of the (block-)circulant matrix
    whose first row is ``kernel`` (real and even, so lambda is real)."""
    return torch.fft.fftn(kernel).real.clamp_min(0).sqrt()


def sample_circulant(noise: torch.Tensor, sqrt_spectrum: torch.Tensor) -> torch.Tensor:
    """A w = IDFT(sqrt(lambda) * DFT(w)) for a batch of real white-noise grids ``noise`` (n, *grid).

    A, the symmetric square root of the circulant covariance, is real, so A (w1 + i w2) =
    A w1 + i A w2: pairs of grids are packed into one complex grid, one FFT pair for two samples.
    """
    n, dims = len(noise), tuple(range(1, noise.ndim))
    half = (n + 1) // 2
    imag = torch.zeros_like(noise[:half])
    imag[: n - half] = noise[half:]
    z = torch.fft.ifftn(torch.fft.fftn(torch.complex(noise[:half], imag), dim=dims) * sqrt_spectrum, dim=dims)
    return torch.cat([z.real, z.imag])[:n]


def symmetric_sqrt(cov: torch.Tensor) -> torch.Tensor:
    """The PSD square root V diag(sqrt(max(lambda, 0))) V^T of a symmetric matrix."""
    lam, vec = torch.linalg.eigh(cov)
    return (vec * lam.clamp_min(0).sqrt()) @ vec.T


def circulant_sampler(L: int, dim: int, kernels: Sequence[torch.Tensor], scale: float = 1.0) -> TorusSampler:
    """Version 2's torus sampler of the (block-)circulant covariances whose first rows are ``kernels``
    (one per class, each shaped as the grid), times ``scale``."""
    return TorusSampler(L, dim, [torch.fft.fftn(k).real for k in kernels], scale)


def dense_sampler(covariances: Sequence[torch.Tensor], scale: float = 1.0) -> LinearSampler:
    """Version 2's sampler of N(0, Cov_c) (times ``scale``) from each class's dense (D, D) covariance: its
    eigenbasis, scaled by the square roots of its eigenvalues clipped at 0."""
    bases, scales = [], []
    for cov in covariances:
        lam, vec = torch.linalg.eigh(cov)
        bases.append(vec)
        scales.append(lam.clamp_min(0).sqrt())
    return LinearSampler((len(bases[0]),), bases, scale * torch.stack(scales))


def field_sampler(L: int, dim: int, xis: Sequence[float], torus: bool, ridge: float,
                  scale: float = 1.0) -> TorusSampler | LinearSampler:
    """Version 2's sampler of the Gaussian field of each class (correlation length ``xis[c]``) times
    ``scale``: the correlation R of :func:`field_correlation`, from Fourier noise on the torus, else
    (C1 (x) C1 + r I) / (1 + r), diagonal in the eigenbasis of C1 (x) C1, from C1's eigenbasis applied
    along each axis."""
    if torus:
        return circulant_sampler(L, dim, [torus_kernel(L, dim, xi, ridge) for xi in xis], scale)
    bases, scales = [], []
    for xi in xis:
        lam, vec = torch.linalg.eigh(field_covariance_1d(L, xi, torus=False))
        lam = lam if dim == 1 else torch.outer(lam, lam)
        bases.append(vec)
        scales.append(((lam + ridge) / (1 + ridge)).clamp_min(0).sqrt())
    return LinearSampler((L,) * dim, bases, scale * torch.stack(scales))


def erf_excess_kurtosis(gain: float) -> float:
    """Excess kurtosis of the NLGP pixel erf(g z / sqrt 2) / sqrt(gamma(g)), z ~ N(0, 1):
    E[erf(g z / sqrt 2)^4] / gamma(g)^2 - 3, the fourth moment by adaptive 1D quadrature (scipy's
    QUADPACK, absolute error ~1e-13; split where the erf turns, at |z| ~ 1/g). It falls from 0 (g -> 0)
    to -2 (g -> infinity, a sign)."""
    from scipy import integrate, special

    a = gain / math.sqrt(2)
    f = lambda z: special.erf(a * z) ** 4 * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    knee = min(8.0, 8.0 / a)
    m4 = 2 * (integrate.quad(f, 0, knee, epsabs=1e-14, epsrel=1e-13, limit=200)[0]
              + integrate.quad(f, knee, math.inf, epsabs=1e-14, epsrel=1e-13, limit=200)[0])
    return m4 / gamma(gain) ** 2 - 3


def _check(ok: bool, name: str, valid: str, value: object) -> None:
    if not ok:
        raise ValueError(f"NLGPTask: {name} must be {valid}, got {value!r}")


class NLGPTask(Dataset):
    """Classify NLGP(xi_0) vs NLGP(xi_1) vs ... (same gain, balanced); or their Gaussian clones.

    With ``gaussian_clone=True`` class c is the Gaussian process N(0, Cov_c), Cov_c the exact
    NLGP covariance of class c (same first and second moments, no higher-order structure).
    ``stream`` is the sample-stream version (:mod:`.stream`): 1 reproduces the stream from before
    versions existed, 2 (default) is the fast one.
    """

    infinite = True

    def __init__(
        self,
        L: int = 20,
        dim: int = 2,
        xis: Sequence[float] = (1.0, 3.0),
        gain: float = 3.0,
        gaussian_clone: bool = False,
        torus: bool = True,
        ridge: float = 1e-3,
        stream: int = LATEST,
    ) -> None:
        _check(isinstance(L, Integral) and not isinstance(L, bool) and L >= 2, "L", "an integer >= 2", L)
        _check(dim in (1, 2), "dim", "1 or 2", dim)
        xis = tuple(xis) if isinstance(xis, Iterable) and not isinstance(xis, str) else (xis,)
        _check(all(isinstance(xi, Real) for xi in xis), "xis", "a sequence of numbers", xis)
        _check(len(xis) >= 2, "xis", "at least 2 correlation lengths (one per class)", xis)
        _check(all(math.isfinite(xi) and xi > 0 for xi in xis), "xis", "finite and > 0", xis)
        _check(math.isfinite(gain) and gain > 0, "gain", "finite and > 0", gain)
        _check(math.isfinite(ridge) and ridge >= 0, "ridge", "finite and >= 0", ridge)
        _check(not isinstance(stream, bool) and stream in VERSIONS, "stream", f"one of {VERSIONS}", stream)
        self.L, self.dim, self.xis, self.gain = int(L), dim, tuple(map(float, xis)), float(gain)
        self.gaussian_clone, self.torus, self.ridge, self.stream = gaussian_clone, torus, float(ridge), int(stream)
        self.name = "nlgp-clone" if gaussian_clone else "nlgp"
        self.input_shape = (L,) * dim
        self.num_classes = len(xis)
        self._samplers: dict[int, torch.Tensor] = {}
        self._gaussian: TorusSampler | LinearSampler | None = None
        labels = lambda key, start, count: self.labels(count, start)  # noqa: E731
        if self.stream == 1:
            self._stream = BlockStream(self.input_dim, self.input_shape, torch.float64, numpy_noise, labels,
                                       self._transform_v1, batched=False)
        else:
            self._stream = BlockStream(self.input_dim, self._noise_shape(), torch.float32, torch_noise, labels,
                                       self._transform_v2, batched=True)

    def __repr__(self) -> str:
        return (f"NLGPTask(L={self.L}, dim={self.dim}, xis={self.xis}, gain={self.gain:g}, "
                f"gaussian_clone={self.gaussian_clone}, torus={self.torus}, ridge={self.ridge:g}, stream={self.stream})")

    @classmethod
    def capabilities(cls, cfg: DataConfig) -> Capabilities:
        """An infinite stream (both versions) on the torus or not, with an analytic covariance and its
        own exact clone; one class per correlation length."""
        return Capabilities(infinite=True, torus=cfg.torus, analytic_covariance=True, natural_clone=True,
                            num_classes=len(cfg.xis), streams=VERSIONS)

    def marginal_excess_kurtosis(self, n: int = 8192, seed: int = 0) -> float:
        """Analytic: :func:`erf_excess_kurtosis` of the gain (from 0 at g -> 0 to -2 at g -> infinity);
        0 for the clone. ``n`` and ``seed`` are not used."""
        return 0.0 if self.gaussian_clone else erf_excess_kurtosis(self.gain)

    def field_correlation(self, label: int) -> torch.Tensor:
        """The (D, D) float64 correlation R of class ``label``'s Gaussian field z."""
        _check(0 <= label < self.num_classes, "label", f"in 0 .. {self.num_classes - 1}", label)
        return field_correlation(self.L, self.dim, self.xis[label], self.torus, self.ridge)

    def covariance(self, label: int) -> torch.Tensor:
        """The exact (D, D) float64 covariance of class ``label``'s inputs (NLGP and clone alike)."""
        return nlgp_covariance(self.field_correlation(label), self.gain)

    def _sampler(self, label: int) -> torch.Tensor:
        """Version 1: class ``label``'s square root of the covariance of what is sampled (field, or
        clone): the sqrt-spectrum on the torus, the dense (D, D) symmetric square root otherwise."""
        if label not in self._samplers:
            if self.torus:
                k = torus_kernel(self.L, self.dim, self.xis[label], self.ridge)
                self._samplers[label] = circulant_sqrt_spectrum(nlgp_covariance(k, self.gain) if self.gaussian_clone else k)
            else:
                cov = self.covariance(label) if self.gaussian_clone else self.field_correlation(label)
                self._samplers[label] = symmetric_sqrt(cov)
        return self._samplers[label]

    def _noise_shape(self) -> tuple[int, ...]:
        """Version 2's white noise per item (see :meth:`gaussian_sampler`)."""
        if self.torus:
            return TorusSampler.noise_shape_for(self.L, self.dim)
        return (self.input_dim,) if self.gaussian_clone else self.input_shape

    def gaussian_sampler(self) -> TorusSampler | LinearSampler:
        """Version 2's map from white noise to the Gaussian that is sampled, with covariance Cov_c
        (clone) or (g^2 / 2) R_c (the field, with the gain g / sqrt 2 of the erf folded in). On the
        torus the noise is read as Fourier coefficients (:class:`TorusSampler`); with open boundaries
        class c's items are Q_c (S_c * w), Q_c the eigenbasis of the 1D kernel C1 (applied along both
        axes in 2D) or, for the clone, of the dense covariance (:class:`LinearSampler`)."""
        if self._gaussian is None:
            if not self.gaussian_clone:
                self._gaussian = field_sampler(self.L, self.dim, self.xis, self.torus, self.ridge,
                                               self.gain / math.sqrt(2))
            elif self.torus:
                kernels = [nlgp_covariance(torus_kernel(self.L, self.dim, xi, self.ridge), self.gain) for xi in self.xis]
                self._gaussian = circulant_sampler(self.L, self.dim, kernels)
            else:  # the arcsin breaks the Kronecker structure: dense eigenbasis
                self._gaussian = dense_sampler([self.covariance(c) for c in range(self.num_classes)])
        return self._gaussian

    def _transform_v1(self, noise: torch.Tensor, labels: torch.Tensor, out: torch.Tensor) -> None:
        """Version 1, one block: each class's float64 noise through its square root (FFT pairs on the
        torus), the erf unless a clone, then float32."""
        x = torch.empty_like(noise)
        for c in range(self.num_classes):
            w = noise[labels == c]
            s = self._sampler(c)
            z = sample_circulant(w, s) if self.torus else (w.reshape(len(w), -1) @ s).reshape(w.shape)
            x[labels == c] = z if self.gaussian_clone else nlgp_transform(z, self.gain)
        out.copy_(x.reshape(len(noise), -1))

    def _transform_v2(self, noise: torch.Tensor, labels: torch.Tensor, out: torch.Tensor) -> None:
        """Version 2, any number of blocks: one batched linear map, then (NLGP) erf(.) / sqrt(gamma) in place."""
        self.gaussian_sampler()(noise, labels, out)
        if not self.gaussian_clone:
            torch.erf(out, out=out).mul_(1 / math.sqrt(gamma(self.gain)))

    def labels(self, n: int, offset: int = 0) -> torch.Tensor:
        """Labels of stream items offset .. offset + n - 1: item i has label i % num_classes."""
        return torch.arange(offset, offset + n) % self.num_classes

    def _check_window(self, n: int, offset: int) -> None:
        _check(isinstance(n, Integral) and n >= 0, "n", "an integer >= 0", n)
        _check(isinstance(offset, Integral) and offset >= 0, "offset", "an integer >= 0", offset)

    def sample(self, n: int, seed: int = 0, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Items offset .. offset + n - 1 of the stream for ``seed``: X float32 (n, D), y int64 (n,).
        Many consecutive batches at once: one call with n = steps * batch size."""
        self._check_window(n, offset)
        return self._stream.sample(int(n), (seed,), int(offset))

    def _split(self, n: int | None, seed: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        _check(n is not None, "n", "an integer >= 0 (a synthetic data set has no fixed size)", n)
        return self.sample(n, seed=derive_seed(seed, split))

    def train(self, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """n training samples: the stream for seed ``derive_seed(seed, "train")``."""
        return self._split(n, seed, "train")

    def test(self, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """n held-out samples: the independent stream for seed ``derive_seed(seed, "test")``."""
        return self._split(n, seed, "test")
