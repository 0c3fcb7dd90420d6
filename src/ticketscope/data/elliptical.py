"""Elliptical inputs: a Gaussian scale mixture with the requested covariance, one random radius per image.

Class c's item is

    x = R z / sqrt(E[R^2]),   z ~ N(0, R_c),   R independent of z,

with R_c the NLGP's field correlation (exp(-d^2 / xi_c^2) + ridge, unit diagonal; :func:`.nlgp.field_correlation`),
so Cov(x) = R_c exactly and every pixel has unit variance. Every direction is alike up to the covariance
(the law of x depends on x only through x^T R_c^-1 x), yet x is not Gaussian: its marginal excess kurtosis is

    3 (E[R^4] / E[R^2]^2 - 1) > 0,

the ``excess_kurtosis`` k asked for (k = 0: R = 1, Gaussian). The law of R^2 (``radius``), each scaled to k:

- ``gamma``: R^2 ~ Gamma(shape 3 / k), E R^4 / (E R^2)^2 = 1 + k / 3 (k = 3: Laplace marginals); all moments finite.
- ``inverse-gamma``: R^2 ~ InvGamma(shape a = 2 + 3 / k): Student-t marginals with 2a degrees of freedom; moments
  of x below order 2a (the sample kurtosis has a finite variance for a > 4, k < 1.5).
- ``lognormal``: log R^2 ~ N(0, s^2), s^2 = log(1 + k / 3); all moments finite.

**Sampling** (stream version 2, :mod:`.stream`): z is the NLGP's field sampler at unit scale
(:func:`.nlgp.field_sampler`: Fourier noise on the torus, the separable eigenbasis with open boundaries) from
white noise keyed by ``(seed,)``. The radius takes one more standard normal u per item, mapped through
the quantile of R^2 at Phi(u) (scipy's inverse incomplete gamma, each tail computed from its own side,
tabulated once and interpolated to 1e-10, :class:`RadiusLaw`):
on the torus it is the imaginary part of row 0's zero frequency, which the field sampler never reads
(:class:`.stream.TorusSampler`), so the noise is the NLGP's; with open boundaries it is an extra last
entry of each item's noise. Everything is a function of one item's noise: chunking invariant.

**Gaussian clone** (``gaussian_clone=True``): N(0, R_c), which is z itself: the clone of a seed is the
data of that seed with R = 1 (the same field noise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from ..config import Params
from .copula import FieldTask
from .nlgp import field_sampler
from .stream import LATEST, LinearSampler, TorusSampler

__all__ = ["EllipticalParams", "EllipticalTask", "RadiusLaw"]

RADII = ("gamma", "inverse-gamma", "lognormal")
U_MAX = 37.0
TABLE_U, TABLE_STEP = 8.0, 1 / 128
RADIUS_SLOT = 1
"""Flat index, within a torus item's noise, of the normal the radius is read from (row 0, frequency 0,
imaginary part: scaled by 0 in the field sampler)."""


class EllipticalParams(Params):
    """``data.params`` of ``elliptical`` (the grid, classes and ridge are ``data.L``, ``dim``, ``xis``, ``torus``, ``ridge``)."""

    excess_kurtosis: float = Field(
        1.0, ge=0, description="(dimensionless) excess kurtosis of every pixel's marginal, 3 (E R^4 / E[R^2]^2 - 1); "
        "0: Gaussian (R = 1)")
    radius: Literal["gamma", "inverse-gamma", "lognormal"] = Field(
        "gamma", description="law of R^2, scaled to excess_kurtosis k: gamma (shape 3/k), inverse-gamma (shape 2 + 3/k: "
        "Student-t marginals, heavy tails), lognormal (log-variance log(1 + k/3))")


def _gamma_quantile(shape: float, u: np.ndarray) -> np.ndarray:
    """The Gamma(shape, 1) quantile at Phi(u), accurate in both tails (the lower tail from P, the upper from Q),
    for |u| <= U_MAX (Phi(-37) is still a normal float64; a float32 normal never gets near it)."""
    from scipy import special

    out = np.empty_like(u)
    low = u < 0
    out[low] = special.gammaincinv(shape, special.ndtr(u[low]))
    out[~low] = special.gammainccinv(shape, special.ndtr(-u[~low]))
    return out


def _gamma_log_quantile(shape: float, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log G and d log G / du for G the Gamma(shape, 1) quantile at Phi(u): d log G / du = phi(u) / (G f(G)), f the
    Gamma density. Where G underflows (tiny shapes far in the lower tail) the lower-tail asymptote
    G = (Phi(u) Gamma(shape + 1))^(1 / shape), exact there to double precision (its relative error is O(G)), is used."""
    from scipy import special

    g = _gamma_quantile(shape, u)
    log_phi = -u * u / 2 - 0.5 * math.log(2 * math.pi)
    tiny = g < 1e-280
    log_g = np.log(np.where(tiny, 1.0, g))
    slope = np.exp(log_phi - (shape * log_g - g - special.gammaln(shape)))
    if tiny.any():
        log_p = special.log_ndtr(u[tiny])
        log_g[tiny] = (log_p + special.gammaln(shape + 1)) / shape
        slope[tiny] = np.exp(log_phi[tiny] - log_p) / shape
    return log_g, slope


class RadiusLaw:
    """The law of R^2 with E R^4 / (E R^2)^2 = 1 + k / 3 (module docstring), as a map of a standard normal u.

    The gamma and inverse-gamma quantiles (scipy's inverse incomplete gamma, ~0.4 us each) are tabulated once:
    log(R^2 / E R^2) and its exact derivative on a grid of u spacing TABLE_STEP over |u| <= TABLE_U, read by
    cubic Hermite interpolation (relative error < 1e-10 for k <= 30, 4e-8 at k = 1000: below the float32 rounding of
    the factor; checked in tests/data/test_elliptical.py); beyond the table (probability 1e-15) the exact quantile.
    """

    def __init__(self, law: str, excess_kurtosis: float) -> None:
        if law not in RADII:
            raise ValueError(f"RadiusLaw: law must be one of {RADII}, got {law!r}")
        k = excess_kurtosis
        if not (isinstance(k, (int, float)) and math.isfinite(k) and k >= 0):
            raise ValueError(f"RadiusLaw: excess_kurtosis must be finite and >= 0, got {k!r}")
        self.law, self.excess_kurtosis = law, float(k)
        if law == "gamma":
            self.shape = 3 / k if k else math.inf
        elif law == "inverse-gamma":
            self.shape = 2 + 3 / k if k else math.inf
        else:
            self.shape = math.log1p(k / 3)  # s^2, the log-variance
        self._table: tuple[np.ndarray, np.ndarray] | None = None
        if k and law != "lognormal":
            grid = np.linspace(-TABLE_U, TABLE_U, round(2 * TABLE_U / TABLE_STEP) + 1)
            self._table = self._exact_log(grid)

    def _exact_log(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log(R^2 / E R^2) and its derivative in u, exactly (gamma or inverse-gamma, k > 0)."""
        if self.law == "gamma":
            log_g, slope = _gamma_log_quantile(self.shape, u)
            return log_g - math.log(self.shape), slope
        log_g, slope = _gamma_log_quantile(self.shape, -u)  # R^2 = (a - 1) / G(-u): increasing in u
        return math.log(self.shape - 1) - log_g, slope

    def exact_squared(self, u: np.ndarray) -> np.ndarray:
        """R^2 / E[R^2] for standard normals u (float64), increasing in u; 1 everywhere when k = 0. |u| is
        capped at U_MAX = 37 (probability ~1e-300), where every law's quantile is still a finite float64."""
        u = np.clip(np.asarray(u, dtype=np.float64), -U_MAX, U_MAX)
        if self.excess_kurtosis == 0:
            return np.ones_like(u)
        if self.law == "lognormal":
            return np.exp(math.sqrt(self.shape) * u - self.shape / 2)
        return np.exp(self._exact_log(u)[0])

    def squared(self, u: np.ndarray) -> np.ndarray:
        """R^2 / E[R^2] as :meth:`exact_squared`, the gamma laws read from the table where |u| <= TABLE_U."""
        u = np.asarray(u, dtype=np.float64)
        if self._table is None:
            return self.exact_squared(u)
        value, slope = self._table
        inside = np.abs(u) <= TABLE_U
        x = (u[inside] + TABLE_U) / TABLE_STEP
        i = np.minimum(x.astype(np.int64), len(value) - 2)
        t = x - i
        t2, t3 = t * t, t * t * t
        log = ((2 * t3 - 3 * t2 + 1) * value[i] + (t3 - 2 * t2 + t) * TABLE_STEP * slope[i]
               + (-2 * t3 + 3 * t2) * value[i + 1] + (t3 - t2) * TABLE_STEP * slope[i + 1])
        out = np.empty_like(u)
        out[inside] = np.exp(log)
        out[~inside] = self.exact_squared(u[~inside])
        return out

    def scale(self, u: torch.Tensor) -> torch.Tensor:
        """R / sqrt(E[R^2]) (float32) for the float32 normals u, one per item."""
        return torch.from_numpy(np.sqrt(self.squared(u.double().numpy()))).float()

    def __repr__(self) -> str:
        return f"RadiusLaw({self.law!r}, excess_kurtosis={self.excess_kurtosis!r})"


class EllipticalTask(FieldTask):
    """Elliptical inputs x = R z / sqrt(E R^2) with z ~ N(0, R_c), classes by correlation length (module docstring)."""

    family = "elliptical"

    def __init__(self, L: int = 20, dim: int = 2, xis: Sequence[float] = (1.0, 3.0), excess_kurtosis: float = 1.0,
                 radius: str = "gamma", gaussian_clone: bool = False, torus: bool = True, ridge: float = 1e-3,
                 stream: int = LATEST) -> None:
        self.radius = RadiusLaw(radius, excess_kurtosis)
        self._gaussian: TorusSampler | LinearSampler | None = None
        super().__init__(L, dim, xis, gaussian_clone, torus, ridge, stream)

    def __repr__(self) -> str:
        return (f"EllipticalTask(L={self.L}, dim={self.dim}, xis={self.xis}, excess_kurtosis={self.radius.excess_kurtosis!r}, "
                f"radius={self.radius.law!r}, gaussian_clone={self.gaussian_clone}, torus={self.torus}, "
                f"ridge={self.ridge:g}, stream={self.stream})")

    def covariance(self, label: int) -> torch.Tensor:
        """The exact (D, D) float64 covariance of class ``label``'s inputs: the requested R_c (data and clone)."""
        return self.requested_covariance(label)

    def marginal_excess_kurtosis(self, n: int = 8192, seed: int = 0) -> float:
        """Analytic: 3 (E R^4 / E[R^2]^2 - 1), the ``excess_kurtosis`` given (0 for the clone)."""
        return 0.0 if self.gaussian_clone else self.radius.excess_kurtosis

    def _noise_shape(self) -> tuple[int, ...]:
        return TorusSampler.noise_shape_for(self.L, self.dim) if self.torus else (self.input_dim + 1,)

    def gaussian_sampler(self) -> TorusSampler | LinearSampler:
        """White noise to z ~ N(0, R_c): the NLGP's field sampler at unit scale."""
        if self._gaussian is None:
            sampler = field_sampler(self.L, self.dim, self.xis, self.torus, self.ridge)
            if isinstance(sampler, TorusSampler) and sampler.scales.flatten(1)[:, RADIUS_SLOT].any():
                raise AssertionError("the torus field sampler reads the radius's noise slot")
            self._gaussian = sampler
        return self._gaussian

    def _transform(self, noise: torch.Tensor, labels: torch.Tensor, out: torch.Tensor) -> None:
        """z from the field noise, then (not a clone) each item times its R / sqrt(E R^2)."""
        flat = noise.view(len(noise), -1)
        if self.torus:
            u = flat[:, RADIUS_SLOT].clone()  # read before the sampler scales the noise in place
            field = noise
        else:
            u, field = flat[:, -1].clone(), flat[:, :-1]
        self.gaussian_sampler()(field, labels, out)
        if not self.gaussian_clone:
            out.mul_(self.radius.scale(u)[:, None])
