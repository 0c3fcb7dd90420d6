"""Elliptical inputs: the radius laws' moments by quadrature, one radius per image, samples against the
requested covariance and the analytic marginal kurtosis, the clone, the config entry.

Statistical checks use z-scores with standard errors estimated from per-image terms, i.i.d. across
images (the radius makes the pixels of one image dependent, so every statistic is first averaged within
the image), bounded by 5.5 as in test_copula.py (false alarms below 1e-4 per check). The laws tested keep
E x^8 finite (inverse-gamma: shape a = 2 + 3 / k > 4, i.e. k < 1.5), so the kurtosis estimate has a
finite variance. All seeds are fixed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from data.fields import by_class, cov_zscores, kurtosis_zscore, one_torch_thread  # noqa: F401 (autouse)
from ticketscope.config import DataConfig, parse_config
from ticketscope.data import CopulaTask, EllipticalTask, make_dataset
from ticketscope.data.elliptical import RADII, RADIUS_SLOT, EllipticalParams, RadiusLaw
from ticketscope.data.nlgp import field_correlation
from ticketscope.data.stream import TorusSampler
from ticketscope.errors import TicketscopeError

Z_MAX = 5.5


# ------------------------------------------------------------------------------------------- radius laws

@pytest.mark.parametrize("law", RADII)
@pytest.mark.parametrize("k", [0.3, 1.0, 3.0])
def test_radius_moments_by_quadrature(law: str, k: float) -> None:
    """E[R^2 / E R^2] = 1 and E[(R^2 / E R^2)^2] = 1 + k / 3 (so the excess kurtosis is 3 (E R^4 / E[R^2]^2 - 1) = k),
    integrating the map of u ~ N(0, 1) with QUADPACK: an independent check of each quantile transform and scale."""
    r = RadiusLaw(law, k)
    phi = lambda u: math.exp(-u * u / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    s2 = lambda u: float(r.squared(np.array([u]))[0])  # noqa: E731
    first = integrate.quad(lambda u: s2(u) * phi(u), -40, 40, epsabs=1e-12, epsrel=1e-12, limit=400, points=[0.0])[0]
    second = integrate.quad(lambda u: s2(u) ** 2 * phi(u), -40, 40, epsabs=1e-12, epsrel=1e-12, limit=400, points=[0.0])[0]
    assert first == pytest.approx(1.0, abs=1e-8)
    assert second == pytest.approx(1 + k / 3, rel=1e-7)


@pytest.mark.parametrize("law", ["gamma", "inverse-gamma"])
def test_tabulated_quantiles_match_the_exact_ones(law: str) -> None:
    """The interpolated table is the exact quantile to 1e-10 relative (k <= 30), far below the float32 rounding
    (6e-8) of the factor it feeds, on a dense set of u within the table and beyond it (exact there)."""
    u = np.concatenate([np.linspace(-9, 9, 400_001), [-8.0, 8.0, -8.0 + 1e-12]])
    for k in (0.05, 1.0, 3.0, 30.0):
        r = RadiusLaw(law, k)
        np.testing.assert_allclose(r.squared(u), r.exact_squared(u), rtol=1e-10, atol=0)


def test_radius_is_increasing_and_one_at_zero_kurtosis() -> None:
    u = np.linspace(-8, 8, 1601)
    for law in RADII:
        s2 = RadiusLaw(law, 2.0).squared(u)
        assert np.all(np.diff(s2) > 0) and np.all(s2 > 0) and np.isfinite(s2).all()
        assert np.isfinite(RadiusLaw(law, 2.0).squared(np.array([-1e3, 1e3]))).all()  # far tails capped, never inf
        assert np.array_equal(RadiusLaw(law, 0.0).squared(u), np.ones_like(u))


# ------------------------------------------------------------------------------------------------ samples

SAMPLED = [  # geometry, law, excess kurtosis, clone
    (dict(L=5, dim=2, xis=(1.0, 2.0)), "gamma", 1.0, False),
    (dict(L=5, dim=2, xis=(1.0, 2.0)), "gamma", 3.0, False),
    (dict(L=9, dim=1, xis=(1.0, 2.0), torus=False), "lognormal", 2.0, False),
    (dict(L=6, dim=2, xis=(1.0, 2.0), torus=False), "inverse-gamma", 1.0, False),
    (dict(L=5, dim=2, xis=(1.0, 2.0)), "gamma", 3.0, True),
    (dict(L=9, dim=1, xis=(1.0, 2.0), torus=False), "inverse-gamma", 1.0, True),
]


@pytest.mark.parametrize("kw,law,k,clone", SAMPLED)
def test_sample_covariance_and_kurtosis_match_the_requested_ones(kw: dict, law: str, k: float, clone: bool) -> None:
    task = EllipticalTask(**kw, excess_kurtosis=k, radius=law, gaussian_clone=clone)
    for c, X in enumerate(by_class(task, 40_000, seed=4)):
        requested = field_correlation(task.L, task.dim, task.xis[c], task.torus, task.ridge)
        assert torch.equal(task.covariance(c), requested)
        z = cov_zscores(X, requested.numpy())
        assert np.abs(z).max() < Z_MAX, f"class {c}: max |z| {np.abs(z).max():.2f}"
        assert np.abs(X.mean(0) / (X.std(0) / math.sqrt(len(X)))).max() < Z_MAX
        assert abs(kurtosis_zscore(X, task.marginal_excess_kurtosis())) < Z_MAX
    assert task.marginal_excess_kurtosis() == (0.0 if clone else k)


def test_a_wrong_kurtosis_is_detected() -> None:
    """Power of the check above: gamma k = 1 samples are far from k = 0.5 and 1.5, and not Gaussian."""
    X = np.concatenate(by_class(EllipticalTask(L=5, dim=2, xis=(1.0, 2.0), excess_kurtosis=1.0), 40_000, seed=4))
    assert min(abs(kurtosis_zscore(X, e)) for e in (0.0, 0.5, 1.5)) > 8


@pytest.mark.parametrize("torus", [True, False])
def test_one_radius_per_image(torus: bool) -> None:
    """The data of a seed are its clone's (the same field noise) times one positive factor per image."""
    kw = dict(L=6, dim=2, xis=(1.0, 2.0), excess_kurtosis=2.0, torus=torus)
    X, y = EllipticalTask(**kw).sample(600, seed=9)
    Z, y2 = EllipticalTask(**kw, gaussian_clone=True).sample(600, seed=9)
    assert torch.equal(y, y2)
    ratio = X / Z
    assert (ratio > 0).all()
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-5, atol=0)
    assert ratio[:, 0].std() > 0.3  # the radius varies between images


def test_the_torus_field_is_the_nlgp_field_and_ignores_the_radius_noise() -> None:
    """On the torus the radius reads a normal the field sampler scales by 0: the clone (R = 1) is the Gaussian
    copula member with the field given, i.e. the NLGP's unit-scale field, bit for bit."""
    kw = dict(L=8, dim=2, xis=(1.0, 3.0))
    clone = EllipticalTask(**kw, gaussian_clone=True).sample(600, seed=2)
    field = CopulaTask(**kw, excess_kurtosis=0.0, covariance_of="field").sample(600, seed=2)
    assert torch.equal(clone[0], field[0]) and torch.equal(clone[1], field[1])
    sampler = EllipticalTask(**kw).gaussian_sampler()
    assert isinstance(sampler, TorusSampler) and not sampler.scales.flatten(1)[:, RADIUS_SLOT].any()


# ------------------------------------------------------------------------------------- config and args

def test_configured_from_a_run_config() -> None:
    cfg = parse_config({"data": {"name": "elliptical", "L": 7, "dim": 1, "torus": False,
                                 "params": {"excess_kurtosis": 0.5, "radius": "inverse-gamma"}}})
    assert isinstance(cfg.data.params, EllipticalParams)
    task = make_dataset(cfg.data)
    assert isinstance(task, EllipticalTask) and task.name == "elliptical" and task.radius.law == "inverse-gamma"
    assert task.radius.shape == 8.0 and task.marginal_excess_kurtosis() == 0.5 and task.input_shape == (7,)
    clone = make_dataset(DataConfig(name="elliptical", L=6, gaussian_clone=True))
    assert isinstance(clone, EllipticalTask) and clone.name == "elliptical-clone" and clone.marginal_excess_kurtosis() == 0


@pytest.mark.parametrize("params, match", [
    ({"excess_kurtosis": -0.5}, "data.params.excess_kurtosis"),
    ({"radius": "student"}, "data.params.radius"),
    ({"gain": 1.0}, "data.params.gain"),
])
def test_bad_params_are_refused_naming_the_field(params: dict, match: str) -> None:
    with pytest.raises(TicketscopeError, match=match):
        parse_config({"data": {"name": "elliptical", "params": params}})


@pytest.mark.parametrize("kwargs, match", [
    (dict(excess_kurtosis=-1.0), "excess_kurtosis"),
    (dict(radius="student"), "law must be one of"),
    (dict(stream=1), "no version-1 stream"),
    (dict(xis=(1.0,)), "xis"),
    (dict(ridge=-1.0), "ridge"),
])
def test_bad_arguments_name_the_argument(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EllipticalTask(**kwargs)
