"""Copula inputs: a Gaussian field pushed through one pointwise map, the map chosen by the sign and size
of the marginals' excess kurtosis, the field's covariance solved so that the *output* has the requested
covariance. Also the base of the Gaussian-field families (:class:`FieldTask`, shared with :mod:`.elliptical`).

**The requested covariance** of class c is the NLGP's field correlation R_c (:func:`.nlgp.field_correlation`):
C_ij = exp(-d_ij^2 / xi_c^2) on the torus or open grid (2D: C1 (x) C1), plus the ridge, rescaled to unit
diagonal ((C + r I) / (1 + r); on the torus projected to the nearest PSD circulant matrix where C is not PSD).

**The maps** (each x = f(z), z ~ N(0, 1), has E x = 0 and E x^2 = 1; ``excess_kurtosis`` k picks one):

- k < 0, erf (the NLGP's): f(z) = erf(g z / sqrt 2) / sqrt(gamma(g)), gamma(g) = (2/pi) arcsin(t), t = g^2 / (1 + g^2),
  with the gain g solved (Brent) so that the excess kurtosis, E f^4 - 3 by 1D quadrature
  (:func:`.nlgp.erf_excess_kurtosis`), is k; it falls from 0 (g -> 0) to -2 (g -> infinity: f -> sign z).
- k = 0: f(z) = z (Gaussian).
- k > 0, Tukey-h: f(z) = (1 - 2h)^(3/4) z exp(h z^2 / 2), 0 < h < 1/4, heavy tailed: E[z^2 exp(h z^2)] = (1 - 2h)^(-3/2)
  and E[z^4 exp(2 h z^2)] = 3 (1 - 4h)^(-5/2) give the excess kurtosis 3 (1 - 2h)^3 / (1 - 4h)^(5/2) - 3, which rises
  from 0 (h -> 0) to infinity (h -> 1/4); h is solved from k (Brent). The sample kurtosis has a finite
  variance (E x^8 < infinity) for h < 1/8, k < 4.16.

**Correlation maps.** For z_i, z_j of correlation rho, Cov(f(z_i), f(z_j)) = F(rho), odd and increasing on
[-1, 1] with F(1) = 1 and |F(rho)| <= |rho|. In closed form:

- erf: F(rho) = arcsin(t rho) / arcsin(t) (the NLGP's arcsine formula), inverse rho = sin(c arcsin t) / t;
- Tukey-h: F(rho) = rho (1 - 2h)^(3/2) / ((1 - h)^2 - h^2 rho^2)^(3/2) (a Gaussian integral: exp(h (u^2 + v^2) / 2)
  tilts the bivariate normal's precision by -h I), inverted by bisection (64 halvings: exact
  to rounding, |F(F^-1(c)) - c| < 1e-15).

**Solving the field.** With ``covariance_of="output"`` (default) the field's correlation is F^-1(R_c), entry
by entry (on the torus: the first row of the circulant matrix, i.e. once per distinct displacement),
so Cov(x) = F(F^-1(R_c)) = R_c. F^-1 enlarges correlations (|F^-1(c)| >= |c|), so the solved field
correlation may fail to be PSD: then its negative eigenvalues are clipped (the DFT of the circulant's
first row on the torus, a dense eigendecomposition otherwise) and it is rescaled to unit diagonal, and
Cov(x) is F of that (exact, what ``covariance(c)`` reports); :meth:`CopulaTask.solution` reports the
smallest eigenvalue before the clipping and the largest entry error |Cov(x) - R_c| after it. The limit is
real: near a sign no process has a correlation function smooth at 0 (a binary process's discordance
P(x_0 != x_d) is a metric, so 1 - rho(2d) <= 2 (1 - rho(d)), which exp(-d^2 / xi^2) breaks for xi > 1.28 pixels),
and the error grows with |k| and xi (docs/SCIENCE.md lists it for typical settings). With
``covariance_of="field"`` the field has R_c, as the NLGP's does, and Cov(x) = F(R_c): the erf member
is then the NLGP, bit for bit (the same sampler, noise and transform).

**Sampling** (stream version 2 only, :mod:`.stream`): the field comes from white noise keyed by
``(seed,)`` like the NLGP's (on the torus read as Fourier coefficients; with open boundaries through
the separable eigenbasis for a given field, a dense one for a solved field), any gain folded into the
sampler, and the map is applied in place. Item i has label i % num_classes. The family members share
their white noise for a seed: two members differ only by the map (and the solved field).

**Gaussian clone** (``gaussian_clone=True``): per class N(0, Cov(x)), the output covariance (the
requested one where nothing was clipped), sampled as the NLGP's clone is.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field

from ..config import Params
from ..seeding import derive_seed
from .base import Capabilities, Dataset
from .nlgp import (
    circulant_matrix,
    circulant_sampler,
    dense_sampler,
    erf_excess_kurtosis,
    field_correlation,
    field_sampler,
    gamma,
    nlgp_covariance,
    nlgp_transform,
    torus_kernel,
)
from .stream import LATEST, BlockStream, LinearSampler, TorusSampler, torch_noise

if TYPE_CHECKING:
    from ..config import DataConfig

__all__ = ["CopulaParams", "CopulaTask", "ErfMap", "FieldSolution", "FieldTask", "GaussianMap", "Marginal",
           "TukeyHMap", "marginal_for_kurtosis"]

STREAMS = (2,)
"""The stream versions of the Gaussian-field families (born after version 1)."""
GAIN_RANGE = (1e-4, 1e6)
"""Gains the erf member's is solved within: excess kurtosis from about -1e-8 to about -2 + 1e-6."""
BISECTIONS = 64
PSD_TOL = 1e-12
"""A solved field correlation is clipped where an eigenvalue is below -PSD_TOL (rounding stays unclipped: the
samplers clip it at 0 anyway)."""


class CopulaParams(Params):
    """``data.params`` of ``copula`` (the grid, classes and ridge are ``data.L``, ``dim``, ``xis``, ``torus``, ``ridge``)."""

    excess_kurtosis: float = Field(
        -1.0, gt=-2, description="(dimensionless) excess kurtosis kappa - 3 of every pixel's marginal: < 0 the erf map "
        "(-> -2: a sign), 0 Gaussian, > 0 the Tukey-h map (heavy tails; finite-variance estimates below 4.16)")
    covariance_of: Literal["output", "field"] = Field(
        "output", description="which has the covariance exp(-d^2/xi^2) (+ ridge): output (the field's covariance is "
        "solved for it) or field (as the NLGP's; the output's is then the map's transform of it)")


# ------------------------------------------------------------------------------------------------ maps


class Marginal(ABC):
    """A pointwise map x = f(z) of a standard normal z with E x = 0, E x^2 = 1, and its correlation map."""

    kind: str
    field_scale: float = 1.0
    """Factor folded into the field sampler: :meth:`apply_` receives ``field_scale * z``."""

    @abstractmethod
    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """f(z), elementwise (a new tensor)."""

    @abstractmethod
    def apply_(self, scaled: torch.Tensor) -> None:
        """f, in place, on ``field_scale * z`` (the sampler's output)."""

    @abstractmethod
    def correlation(self, rho: torch.Tensor) -> torch.Tensor:
        """F(rho) = Cov(f(u), f(v)) for standard normals u, v of correlation rho, elementwise (float64)."""

    @abstractmethod
    def inverse_correlation(self, c: torch.Tensor) -> torch.Tensor:
        """F^-1(c), elementwise, for c in [-1, 1] (float64)."""

    @abstractmethod
    def excess_kurtosis(self) -> float:
        """E f(z)^4 - 3."""


class GaussianMap(Marginal):
    """f(z) = z."""

    kind = "gaussian"

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return z.clone()

    def apply_(self, scaled: torch.Tensor) -> None:
        return None

    def correlation(self, rho: torch.Tensor) -> torch.Tensor:
        return rho.clone()

    def inverse_correlation(self, c: torch.Tensor) -> torch.Tensor:
        return c.clone()

    def excess_kurtosis(self) -> float:
        return 0.0

    def __repr__(self) -> str:
        return "GaussianMap()"


class ErfMap(Marginal):
    """The NLGP's f(z) = erf(g z / sqrt 2) / sqrt(gamma(g)); F(rho) = arcsin(t rho) / arcsin(t), t = g^2 / (1 + g^2)."""

    kind = "erf"

    def __init__(self, gain: float) -> None:
        if not (isinstance(gain, Real) and math.isfinite(gain) and gain > 0):
            raise ValueError(f"ErfMap: gain must be finite and > 0, got {gain!r}")
        self.gain = float(gain)
        self.field_scale = self.gain / math.sqrt(2)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return nlgp_transform(z, self.gain)

    def apply_(self, scaled: torch.Tensor) -> None:
        torch.erf(scaled, out=scaled).mul_(1 / math.sqrt(gamma(self.gain)))  # the NLGP's own ops

    def correlation(self, rho: torch.Tensor) -> torch.Tensor:
        return nlgp_covariance(rho, self.gain)

    def inverse_correlation(self, c: torch.Tensor) -> torch.Tensor:
        t = self.gain**2 / (1 + self.gain**2)
        return (torch.sin(c * math.asin(t)) / t).clamp(-1.0, 1.0)

    def excess_kurtosis(self) -> float:
        return erf_excess_kurtosis(self.gain)

    def __repr__(self) -> str:
        return f"ErfMap(gain={self.gain!r})"


class TukeyHMap(Marginal):
    """Tukey's h: f(z) = (1 - 2h)^(3/4) z exp(h z^2 / 2), 0 < h < 1/4 (finite kurtosis)."""

    kind = "tukey-h"

    def __init__(self, h: float) -> None:
        if not (isinstance(h, Real) and 0 < h < 0.25):
            raise ValueError(f"TukeyHMap: h must lie in (0, 1/4) (finite kurtosis), got {h!r}")
        self.h = float(h)
        self._norm = (1 - 2 * self.h) ** 0.75

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self._norm * z * torch.exp(self.h / 2 * z * z)

    def apply_(self, scaled: torch.Tensor) -> None:
        scaled.mul_(scaled.square().mul_(self.h / 2).exp_()).mul_(self._norm)

    def correlation(self, rho: torch.Tensor) -> torch.Tensor:
        h = self.h
        return rho * (1 - 2 * h) ** 1.5 / ((1 - h) ** 2 - h * h * rho * rho) ** 1.5

    def inverse_correlation(self, c: torch.Tensor) -> torch.Tensor:
        """Bisection of |c| on [0, 1], F being odd and increasing (after 64 halvings the bracket is below
        float64 spacing), the sign put back: exactly odd."""
        c = c.to(torch.float64)
        a = c.abs().clamp_max(1.0)
        lo, hi = torch.zeros_like(a), torch.ones_like(a)
        for _ in range(BISECTIONS):
            mid = (lo + hi) / 2
            below = self.correlation(mid) < a
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return torch.where(a >= 1, 1.0, (lo + hi) / 2) * c.sign()

    def excess_kurtosis(self) -> float:
        return tukey_excess_kurtosis(self.h)

    def __repr__(self) -> str:
        return f"TukeyHMap(h={self.h!r})"


def tukey_excess_kurtosis(h: float) -> float:
    """3 (1 - 2h)^3 / (1 - 4h)^(5/2) - 3, the Tukey-h map's excess kurtosis (h < 1/4)."""
    return 3 * (1 - 2 * h) ** 3 / (1 - 4 * h) ** 2.5 - 3


def marginal_for_kurtosis(excess_kurtosis: float) -> Marginal:
    """The family's member with this excess kurtosis: the erf map (k < 0), identity (k = 0), Tukey-h (k > 0).
    The gain or h is solved by Brent's method to ~1e-13 relative (the kurtosis is monotone in either)."""
    from scipy.optimize import brentq

    k = float(excess_kurtosis)
    if not (math.isfinite(k) and k > -2):
        raise ValueError(f"excess_kurtosis must be finite and > -2 (-2 is a sign), got {excess_kurtosis!r}")
    if k == 0:
        return GaussianMap()
    if k > 0:
        top = 0.25 * (1 - 1e-12)
        return TukeyHMap(brentq(lambda h: tukey_excess_kurtosis(h) - k, 0.0, top, xtol=1e-16, rtol=1e-14))
    lo, hi = (math.log(g) for g in GAIN_RANGE)
    f = lambda lg: erf_excess_kurtosis(math.exp(lg)) - k  # noqa: E731  decreasing in the gain
    if not f(hi) < 0 < f(lo):
        reach = (erf_excess_kurtosis(GAIN_RANGE[1]), erf_excess_kurtosis(GAIN_RANGE[0]))
        raise ValueError(f"excess_kurtosis {k!r} is out of the erf map's reach for gains in {GAIN_RANGE}: "
                         f"({reach[0]:.8g}, {reach[1]:.3g})")
    return ErfMap(math.exp(brentq(f, lo, hi, xtol=1e-14, rtol=1e-14)))


# ----------------------------------------------------------------------------------- Gaussian-field tasks


def _field_check(cls: str, ok: bool, name: str, valid: str, value: object) -> None:
    if not ok:
        raise ValueError(f"{cls}: {name} must be {valid}, got {value!r}")


class FieldTask(Dataset):
    """Classes by correlation length on a grid, from a Gaussian field of the NLGP's geometry: L (1D) or
    L x L (2D), torus or open, one class per ``xis`` entry, balanced (item i has label i % classes),
    an infinite stream keyed by ``(seed,)`` (version 2), ``train`` / ``test`` its streams for
    ``derive_seed(seed, "train" / "test")``. Subclasses give the noise shape, the transform and the
    analytic moments."""

    infinite = True
    family: str

    def __init__(self, L: int, dim: int, xis: Sequence[float], gaussian_clone: bool, torus: bool, ridge: float,
                 stream: int) -> None:
        cls = type(self).__name__
        _field_check(cls, isinstance(L, Integral) and not isinstance(L, bool) and L >= 2, "L", "an integer >= 2", L)
        _field_check(cls, dim in (1, 2), "dim", "1 or 2", dim)
        xis = tuple(xis) if isinstance(xis, Iterable) and not isinstance(xis, str) else (xis,)
        _field_check(cls, all(isinstance(xi, Real) for xi in xis), "xis", "a sequence of numbers", xis)
        _field_check(cls, len(xis) >= 2, "xis", "at least 2 correlation lengths (one per class)", xis)
        _field_check(cls, all(math.isfinite(xi) and xi > 0 for xi in xis), "xis", "finite and > 0", xis)
        _field_check(cls, math.isfinite(ridge) and ridge >= 0, "ridge", "finite and >= 0", ridge)
        _field_check(cls, not isinstance(stream, bool) and stream in STREAMS, "stream",
                     f"one of {STREAMS} (the {self.family} family has no version-1 stream)", stream)
        self.L, self.dim, self.xis, self.torus = int(L), dim, tuple(map(float, xis)), bool(torus)
        self.gaussian_clone, self.ridge, self.stream = bool(gaussian_clone), float(ridge), int(stream)
        self.name = f"{self.family}-clone" if gaussian_clone else self.family
        self.input_shape = (self.L,) * dim
        self.num_classes = len(self.xis)
        self._stream = BlockStream(self.input_dim, self._noise_shape(), torch.float32, torch_noise,
                                   lambda key, start, count: self.labels(count, start), self._transform, batched=True)

    @classmethod
    def capabilities(cls, cfg: DataConfig) -> Capabilities:
        """An infinite stream (version 2), torus or not, analytic covariance, its own exact clone."""
        return Capabilities(infinite=True, torus=cfg.torus, analytic_covariance=True, natural_clone=True,
                            num_classes=len(cfg.xis), streams=STREAMS)

    @abstractmethod
    def _noise_shape(self) -> tuple[int, ...]:
        """White noise per item."""

    @abstractmethod
    def _transform(self, noise: torch.Tensor, labels: torch.Tensor, out: torch.Tensor) -> None:
        """Whole blocks of noise to float32 items, written into ``out`` (see :class:`.stream.BlockStream`)."""

    @abstractmethod
    def covariance(self, label: int) -> torch.Tensor:
        """The exact (D, D) float64 covariance of class ``label``'s inputs (data and clone alike)."""

    def _label(self, label: int) -> int:
        _field_check(type(self).__name__, isinstance(label, Integral) and 0 <= label < self.num_classes, "label",
                     f"in 0 .. {self.num_classes - 1}", label)
        return int(label)

    def requested_covariance(self, label: int) -> torch.Tensor:
        """The (D, D) float64 covariance asked of class ``label``'s inputs: the NLGP's field correlation R
        (exp(-d^2 / xi^2) + ridge, unit diagonal; projected to PSD on the torus where needed)."""
        return field_correlation(self.L, self.dim, self.xis[self._label(label)], self.torus, self.ridge)

    def labels(self, n: int, offset: int = 0) -> torch.Tensor:
        """Labels of stream items offset .. offset + n - 1: item i has label i % num_classes."""
        return torch.arange(offset, offset + n) % self.num_classes

    def sample(self, n: int, seed: int = 0, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Items offset .. offset + n - 1 of the stream for ``seed``: X float32 (n, D), y int64 (n,)."""
        cls = type(self).__name__
        _field_check(cls, isinstance(n, Integral) and n >= 0, "n", "an integer >= 0", n)
        _field_check(cls, isinstance(offset, Integral) and offset >= 0, "offset", "an integer >= 0", offset)
        return self._stream.sample(int(n), (seed,), int(offset))

    def _split(self, n: int | None, seed: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        _field_check(type(self).__name__, n is not None, "n", "an integer >= 0 (a synthetic data set has no fixed size)", n)
        return self.sample(n, seed=derive_seed(seed, split))

    def train(self, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """n training samples: the stream for seed ``derive_seed(seed, "train")``."""
        return self._split(n, seed, "train")

    def test(self, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """n held-out samples: the independent stream for seed ``derive_seed(seed, "test")``."""
        return self._split(n, seed, "test")


@dataclass(frozen=True)
class FieldSolution:
    """Class c's field correlation and how well the output covariance meets the requested one."""

    field: torch.Tensor
    """The realised field correlation: the (grid-shaped) first row on the torus, the (D, D) matrix otherwise."""
    min_eigenvalue: float
    """Smallest eigenvalue of the field correlation before clipping (< -PSD_TOL: it was not PSD and was clipped)."""
    max_error: float
    """max |Cov(x)_ij - R_ij| over all entries: 0 up to rounding unless clipping was needed (or the field was given)."""

    @property
    def clipped(self) -> bool:
        return self.min_eigenvalue < -PSD_TOL


class CopulaTask(FieldTask):
    """Copula inputs of one marginal map and a requested covariance per class (module docstring).

    Give ``excess_kurtosis`` (the member of the erf / Gaussian / Tukey-h family with it) or a
    ``marginal`` (a :class:`Marginal`, e.g. ``ErfMap(3.0)``). ``covariance_of``: ``"output"`` solves
    the field for the requested output covariance, ``"field"`` gives it to the field (the NLGP's way).
    """

    family = "copula"

    def __init__(self, L: int = 20, dim: int = 2, xis: Sequence[float] = (1.0, 3.0), excess_kurtosis: float | None = None,
                 marginal: Marginal | None = None, covariance_of: str = "output", gaussian_clone: bool = False,
                 torus: bool = True, ridge: float = 1e-3, stream: int = LATEST) -> None:
        if (excess_kurtosis is None) == (marginal is None):
            raise ValueError("CopulaTask: give exactly one of excess_kurtosis and marginal")
        _field_check("CopulaTask", covariance_of in ("output", "field"), "covariance_of", "'output' or 'field'",
                     covariance_of)
        if marginal is None:
            marginal = marginal_for_kurtosis(excess_kurtosis)  # type: ignore[arg-type]
        _field_check("CopulaTask", isinstance(marginal, Marginal), "marginal", "a Marginal", marginal)
        self.marginal, self.covariance_of = marginal, covariance_of
        self._solutions: dict[int, FieldSolution] = {}
        self._gaussian: TorusSampler | LinearSampler | None = None
        super().__init__(L, dim, xis, gaussian_clone, torus, ridge, stream)

    def __repr__(self) -> str:
        return (f"CopulaTask(L={self.L}, dim={self.dim}, xis={self.xis}, marginal={self.marginal!r}, "
                f"covariance_of={self.covariance_of!r}, gaussian_clone={self.gaussian_clone}, torus={self.torus}, "
                f"ridge={self.ridge:g}, stream={self.stream})")

    def solution(self, label: int) -> FieldSolution:
        """Class ``label``'s field correlation, solved (``covariance_of="output"``) or given, with the
        smallest eigenvalue before clipping and the largest entry error of the output covariance."""
        c = self._label(label)
        if c not in self._solutions:
            xi, m = self.xis[c], self.marginal
            if self.torus:
                requested = torus_kernel(self.L, self.dim, xi, self.ridge)
                if self.covariance_of == "field":
                    field, low = requested, float(torch.fft.fftn(requested).real.min())
                else:
                    field = m.inverse_correlation(requested)
                    lam = torch.fft.fftn(field).real
                    low = float(lam.min())
                    if low < -PSD_TOL:  # the nearest PSD circulant matrix, at unit diagonal again
                        field = torch.fft.ifftn(lam.clamp_min(0)).real
                        field = field / field.view(-1)[0]
                error = float((m.correlation(field) - requested).abs().max())
            else:
                requested = self.requested_covariance(c)
                if self.covariance_of == "field":
                    field, low = requested, float(torch.linalg.eigvalsh(requested)[0])
                else:
                    field = m.inverse_correlation(requested)
                    lam, vec = torch.linalg.eigh(field)
                    low = float(lam[0])
                    if low < -PSD_TOL:
                        field = (vec * lam.clamp_min(0)) @ vec.T
                        d = field.diagonal().sqrt()
                        field = field / torch.outer(d, d)
                error = float((m.correlation(field) - requested).abs().max())
            self._solutions[c] = FieldSolution(field, low, error)
        return self._solutions[c]

    @property
    def covariance_error(self) -> float:
        """max over classes and entries of |Cov(x) - requested|: ~1e-16 where every solved field was PSD."""
        return max(self.solution(c).max_error for c in range(self.num_classes))

    def field_covariance(self, label: int) -> torch.Tensor:
        """The (D, D) float64 correlation of class ``label``'s field z (solved or given)."""
        field = self.solution(label).field
        return circulant_matrix(field) if self.torus else field

    def covariance(self, label: int) -> torch.Tensor:
        """The exact (D, D) float64 covariance of class ``label``'s inputs, F(field correlation): the
        requested one up to rounding unless the solved field had to be clipped (see :meth:`solution`)."""
        return self.marginal.correlation(self.field_covariance(label))

    def marginal_excess_kurtosis(self, n: int = 8192, seed: int = 0) -> float:
        """Analytic: the map's excess kurtosis (0 for the clone). ``n`` and ``seed`` are not used."""
        return 0.0 if self.gaussian_clone else self.marginal.excess_kurtosis()

    def _noise_shape(self) -> tuple[int, ...]:
        if self.torus:
            return TorusSampler.noise_shape_for(self.L, self.dim)
        given = self.covariance_of == "field" and not self.gaussian_clone
        return self.input_shape if given else (self.input_dim,)

    def gaussian_sampler(self) -> TorusSampler | LinearSampler:
        """White noise to the Gaussian that is sampled: the field times the map's ``field_scale``, or (clone)
        N(0, Cov(x)). A given field uses the NLGP's own sampler (:func:`.nlgp.field_sampler`)."""
        if self._gaussian is None:
            classes = range(self.num_classes)
            if self.gaussian_clone:
                if self.torus:
                    kernels = [self.marginal.correlation(self.solution(c).field) for c in classes]
                    self._gaussian = circulant_sampler(self.L, self.dim, kernels)
                else:
                    self._gaussian = dense_sampler([self.covariance(c) for c in classes])
            elif self.covariance_of == "field":
                self._gaussian = field_sampler(self.L, self.dim, self.xis, self.torus, self.ridge, self.marginal.field_scale)
            elif self.torus:
                kernels = [self.solution(c).field for c in classes]
                self._gaussian = circulant_sampler(self.L, self.dim, kernels, self.marginal.field_scale)
            else:
                self._gaussian = dense_sampler([self.solution(c).field for c in classes], self.marginal.field_scale)
        return self._gaussian

    def _transform(self, noise: torch.Tensor, labels: torch.Tensor, out: torch.Tensor) -> None:
        """The Gaussian of :meth:`gaussian_sampler`, then (not a clone) the map in place."""
        self.gaussian_sampler()(noise, labels, out)
        if not self.gaussian_clone:
            self.marginal.apply_(out)
