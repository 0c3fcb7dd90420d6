"""Copula inputs: the maps' correlation and kurtosis formulas against independent quadrature, the solved
field covariance (exact where feasible, clipped and reported where not), samples against the analytic
moments, the erf member with the field given against the NLGP bit for bit, the config entry.

Statistical checks use z-scores, (estimate - reference) / standard error, the standard error estimated
from the samples (per-image terms are i.i.d. across images, so the CLT applies; pixels of one image are
dependent, so every statistic is first averaged within the image). A bound of 5.5 on |z| has a
false-alarm rate below 4e-8 per entry (under 1e-4 over the few hundred entries of one check), yet
catches any error larger than ~6 standard errors: at 2e4 images per class that is ~0.05 on a covariance
entry, and (measured standard errors at 4e4 images of 25 pixels: 3e-4 at k = -1.9, 2e-3 at -1, 0.07 at 2,
0.16 at 3) from ~0.002 near a sign to ~0.9 at k = 3 on a marginal excess kurtosis, far below what a wrong
map, gain or normalization gives. The heavy-tailed members tested keep E x^8 finite (h < 1/8), so the
kurtosis estimate has a finite variance and the CLT holds for it. All seeds are fixed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.polynomial.hermite_e import hermegauss
from scipy import integrate

from data.fields import by_class, cov_zscores, kurtosis_zscore, one_torch_thread  # noqa: F401 (autouse)
from ticketscope.config import DataConfig, parse_config
from ticketscope.data import CopulaTask, NLGPTask, make_dataset
from ticketscope.data.copula import (BISECTIONS, CopulaParams, ErfMap, GaussianMap, TukeyHMap, marginal_for_kurtosis,
                                     tukey_excess_kurtosis)
from ticketscope.data.nlgp import field_correlation
from ticketscope.data.stream import BLOCK
from ticketscope.errors import TicketscopeError

Z_MAX = 5.5


def gauss_hermite_2d(n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nodes, weights = hermegauss(n)
    u, e = np.meshgrid(nodes, nodes, indexing="ij")
    return u, e, np.outer(weights, weights) / (2 * math.pi)


# ----------------------------------------------------------------------------------- maps and formulas

MAPS = [ErfMap(0.5), ErfMap(3.0), TukeyHMap(0.05), TukeyHMap(0.12), TukeyHMap(0.2), GaussianMap()]


@pytest.mark.parametrize("m", MAPS, ids=repr)
def test_correlation_map_by_gauss_hermite_quadrature(m) -> None:
    """F(rho) = E[f(u) f(v)], u, v standard normals of correlation rho (v = rho u + sqrt(1 - rho^2) e), against
    200 x 200 Gauss-Hermite nodes: the integrands are entire and grow at most like exp(h x^2 / 2) against the
    weight exp(-x^2 / 2), so the rule is exact to ~1e-13 here (measured: < 1e-15 for Tukey-h)."""
    u, e, w = gauss_hermite_2d()
    fu = m(torch.from_numpy(u)).numpy()
    for rho in (-0.95, -0.4, 0.0, 0.2, 0.7, 0.99, 1.0):
        v = rho * u + math.sqrt(max(1 - rho * rho, 0.0)) * e
        expected = (w * fu * m(torch.from_numpy(v)).numpy()).sum()
        assert m.correlation(torch.tensor(rho, dtype=torch.float64)).item() == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("m", MAPS + [ErfMap(200.0), TukeyHMap(0.2499)], ids=repr)
def test_inverse_correlation_inverts_and_enlarges(m) -> None:
    """F^-1 is F's inverse to rounding (erf: the closed form; Tukey-h: 64 bisection halvings of [-1, 1], a bracket
    of 2^-63 < half a float64 spacing near 1, times F' <= F'(1) < 1e3 here), monotone, odd, F^-1(+-1) = +-1, and
    never shrinks a correlation (|F(rho)| <= |rho|)."""
    assert BISECTIONS >= 64
    c = torch.linspace(-1, 1, 4001, dtype=torch.float64)
    rho = m.inverse_correlation(c)
    assert (m.correlation(rho) - c).abs().max().item() < 1e-13
    assert (rho.diff() >= 0).all() and torch.equal(rho, -m.inverse_correlation(-c))
    assert rho[0].item() == -1.0 and rho[-1].item() == 1.0
    assert (rho.abs() >= c.abs() - 1e-15).all()


def reference_excess(m, lo: float = -12.0, hi: float = 12.0, points: int = 2_400_001) -> float:
    """E f(z)^4 - 3 by the trapezoid rule on a fine grid (spacing 1e-5: error ~1e-9 even where erf(g z) turns over
    1/g = 0.005; the tails beyond 12 weigh < 1e-30)."""
    z = np.linspace(lo, hi, points)
    f4 = m(torch.from_numpy(z)).numpy() ** 4 * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    return float(np.trapezoid(f4, z)) - 3


@pytest.mark.parametrize("m", [ErfMap(0.3), ErfMap(3.0), ErfMap(200.0), TukeyHMap(0.03), TukeyHMap(0.11), GaussianMap()],
                         ids=repr)
def test_marginal_excess_kurtosis_by_independent_quadrature(m) -> None:
    assert m.excess_kurtosis() == pytest.approx(reference_excess(m), abs=1e-7)
    z = torch.from_numpy(np.linspace(-12, 12, 2_400_001))
    second = np.trapezoid(m(z).numpy() ** 2 * np.exp(-z.numpy() ** 2 / 2) / math.sqrt(2 * math.pi), z.numpy())
    assert second == pytest.approx(1.0, abs=1e-9)  # unit variance


def test_tukey_kurtosis_closed_form_by_scipy_quad() -> None:
    """3 (1 - 2h)^3 / (1 - 4h)^(5/2) - 3 against QUADPACK on (-inf, inf) of f(z)^4 phi(z) (written as one exponential,
    which does not overflow in the far tails), near the finite-kurtosis edge too."""
    for h in (0.01, 0.1, 0.2, 0.24):
        f4 = lambda z: (1 - 2 * h) ** 3 * z**4 * math.exp((2 * h - 0.5) * z * z) / math.sqrt(2 * math.pi)  # noqa: E731
        assert f4(1.3) == pytest.approx(TukeyHMap(h)(torch.tensor(1.3, dtype=torch.float64)).item() ** 4
                                        * math.exp(-1.3**2 / 2) / math.sqrt(2 * math.pi), rel=1e-13)
        m4 = integrate.quad(f4, -np.inf, np.inf, epsabs=0, epsrel=1e-12, limit=500)[0]
        assert tukey_excess_kurtosis(h) == pytest.approx(m4 - 3, rel=1e-8)


@pytest.mark.parametrize("k", [-1.99, -1.5, -0.5, -1e-3, 0.0, 1e-3, 0.5, 3.0, 20.0])
def test_member_for_an_excess_kurtosis(k: float) -> None:
    m = marginal_for_kurtosis(k)
    assert m.kind == ("erf" if k < 0 else "gaussian" if k == 0 else "tukey-h")
    assert m.excess_kurtosis() == pytest.approx(k, abs=1e-10)


def test_kurtosis_is_monotone_along_the_family() -> None:
    gains, hs = np.geomspace(1e-2, 1e3, 40), np.linspace(1e-4, 0.24, 40)
    erf = [ErfMap(g).excess_kurtosis() for g in gains]
    tukey = [tukey_excess_kurtosis(h) for h in hs]
    assert np.all(np.diff(erf) < 0) and -2 < erf[-1] < -1.99 and -1e-3 < erf[0] < 0
    assert np.all(np.diff(tukey) > 0) and 0 < tukey[0] < 1e-2 and tukey[-1] > 100


@pytest.mark.parametrize("k", [-2.0, -2.5, -1.9999999999, math.inf, math.nan])
def test_unreachable_kurtosis_is_refused(k: float) -> None:
    with pytest.raises(ValueError, match="excess_kurtosis"):
        marginal_for_kurtosis(k)


# ------------------------------------------------------------------------- the erf member is the NLGP

GEOMETRIES = {
    "1d": dict(L=64, dim=1, xis=(2.0, 5.0)),
    "2d": dict(L=12, dim=2, xis=(1.0, 3.0)),
    "1d-open": dict(L=16, dim=1, xis=(1.0, 3.0), torus=False),
    "2d-open": dict(L=6, dim=2, xis=(1.0, 3.0), torus=False),
    "2d-3-classes": dict(L=5, dim=2, xis=(1.0, 2.0, 3.0)),
}


@pytest.mark.parametrize("clone", [False, True])
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_erf_member_with_the_field_given_is_the_nlgp_bit_for_bit(geometry: str, clone: bool) -> None:
    kw = GEOMETRIES[geometry]
    nlgp = NLGPTask(**kw, gain=3.0, gaussian_clone=clone)
    copula = CopulaTask(**kw, marginal=ErfMap(3.0), covariance_of="field", gaussian_clone=clone)
    for a, b in [(nlgp.sample(3 * BLOCK, seed=2024), copula.sample(3 * BLOCK, seed=2024)),
                 (nlgp.sample(100, seed=7, offset=300), copula.sample(100, seed=7, offset=300)),
                 (nlgp.train(64, seed=1), copula.train(64, seed=1)), (nlgp.test(64, seed=1), copula.test(64, seed=1))]:
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for c in range(nlgp.num_classes):
        assert torch.equal(nlgp.covariance(c), copula.covariance(c))
    assert copula.marginal_excess_kurtosis() == nlgp.marginal_excess_kurtosis()


def test_solved_erf_field_is_the_arcsine_formula_inverted() -> None:
    """covariance_of="output": the field correlation is sin(R arcsin(t)) / t, t = g^2 / (1 + g^2), entry by entry."""
    task = CopulaTask(L=7, dim=1, xis=(1.0, 1.5), marginal=ErfMap(1.0), torus=False)
    t = 1 / 2
    for c in range(2):
        assert not task.solution(c).clipped
        R = field_correlation(7, 1, task.xis[c], torus=False, ridge=1e-3)
        torch.testing.assert_close(task.field_covariance(c), torch.sin(R * math.asin(t)) / t, rtol=0, atol=1e-15)


# ------------------------------------------------------------------ solved covariance: exact or reported

FEASIBLE = [  # (geometry, excess kurtosis): the solved field is PSD, so the output covariance is the requested one
    (dict(L=20, dim=2, xis=(1.0, 3.0)), -0.5),
    (dict(L=20, dim=2, xis=(1.0, 3.0)), 1.0),
    (dict(L=64, dim=1, xis=(2.0, 5.0)), -0.5),
    (dict(L=9, dim=1, xis=(1.0, 1.5), torus=False), -1.0),
    (dict(L=9, dim=1, xis=(1.0, 1.5), torus=False), 3.0),
    (dict(L=5, dim=2, xis=(1.0, 1.5)), 2.0),
    (dict(L=6, dim=2, xis=(1.0, 2.0), torus=False), 2.0),
]


@pytest.mark.parametrize("kw,k", FEASIBLE)
def test_output_covariance_is_the_requested_one(kw: dict, k: float) -> None:
    task = CopulaTask(**kw, excess_kurtosis=k)
    for c in range(task.num_classes):
        s = task.solution(c)
        assert not s.clipped and s.max_error < 1e-13
        requested = task.requested_covariance(c)
        assert (task.covariance(c) - requested).abs().max().item() < 1e-13
        assert (task.covariance(c).diagonal() - 1).abs().max().item() < 1e-15  # unit pixel variance
    assert task.covariance_error < 1e-13


@pytest.mark.parametrize("torus", [True, False])
def test_an_infeasible_covariance_is_clipped_and_its_error_reported(torus: bool) -> None:
    """Near a sign (k = -1.99) the Gaussian kernel of xi = 4 is out of reach: a binary process's discordance
    P(x_0 != x_d) is a metric, so 1 - rho(2d) <= 2 (1 - rho(d)), which exp(-d^2 / xi^2) breaks for xi > 1.28 (at d = 1). The
    solved field is then clipped to PSD at unit diagonal, the covariance reported is F of it (what is sampled),
    and the error reported is its distance from the requested one."""
    task = CopulaTask(L=8, dim=2, xis=(1.0, 4.0), excess_kurtosis=-1.99, torus=torus)
    s = task.solution(1)
    assert s.clipped and s.min_eigenvalue < -0.1
    field = task.field_covariance(1)
    assert torch.linalg.eigvalsh(field)[0].item() > -1e-12
    torch.testing.assert_close(field.diagonal(), torch.ones(64, dtype=torch.float64), rtol=0, atol=1e-14)
    error = (task.covariance(1) - task.requested_covariance(1)).abs().max().item()
    assert s.max_error == pytest.approx(error, rel=1e-12) and 0.01 < error < 0.3
    assert task.covariance_error == max(s.max_error, task.solution(0).max_error)


# ------------------------------------------------------------------------------ samples against moments

SAMPLED = [  # geometry, excess kurtosis, clone; the starred ones are clipped: the samples follow covariance()
    (dict(L=5, dim=2, xis=(1.0, 1.5)), -1.5, False),  # *
    (dict(L=5, dim=2, xis=(1.0, 1.5)), 2.0, False),
    (dict(L=9, dim=1, xis=(1.0, 1.5), torus=False), -1.9, False),  # *
    (dict(L=9, dim=1, xis=(1.0, 1.5), torus=False), 3.0, False),
    (dict(L=8, dim=2, xis=(1.0, 4.0)), -1.99, False),  # *
    (dict(L=5, dim=2, xis=(1.0, 1.5)), 2.0, True),
    (dict(L=8, dim=2, xis=(1.0, 4.0), torus=False), -1.99, True),  # *
]


@pytest.mark.parametrize("kw,k,clone", SAMPLED)
def test_sample_covariance_and_kurtosis_match_the_analytic_ones(kw: dict, k: float, clone: bool) -> None:
    task = CopulaTask(**kw, excess_kurtosis=k, gaussian_clone=clone)
    for c, X in enumerate(by_class(task, 40_000, seed=3)):
        z = cov_zscores(X, task.covariance(c).numpy())
        assert np.abs(z).max() < Z_MAX, f"class {c}: max |z| {np.abs(z).max():.2f}"
        mean_z = X.mean(0) / (X.std(0) / math.sqrt(len(X)))
        assert np.abs(mean_z).max() < Z_MAX
        assert abs(kurtosis_zscore(X, task.marginal_excess_kurtosis())) < Z_MAX
    assert task.marginal_excess_kurtosis() == (0.0 if clone else pytest.approx(k, abs=1e-10))


def test_a_wrong_kurtosis_is_detected() -> None:
    """The kurtosis check has power: the samples of k = 2 (standard error ~0.07 at 40000 images of 25 pixels) are
    far from k = 1 or 3 (|z| > 10), and the near-sign samples of k = -1.9 from k = -1.8 or -2."""
    X = np.concatenate(by_class(CopulaTask(L=5, dim=2, xis=(1.0, 1.5), excess_kurtosis=2.0), 40_000, seed=3))
    assert abs(kurtosis_zscore(X, 1.0)) > 10 and abs(kurtosis_zscore(X, 3.0)) > 10
    X = np.concatenate(by_class(CopulaTask(L=5, dim=2, xis=(1.0, 1.5), excess_kurtosis=-1.9), 40_000, seed=3))
    assert abs(kurtosis_zscore(X, -1.8)) > 10 and abs(kurtosis_zscore(X, -2.0)) > 10


def test_family_members_share_the_field_noise() -> None:
    """Members differ by the map only: with the field given, the Gaussian member is the NLGP's field, and each
    member's items are its map of that field."""
    kw = dict(L=6, dim=2, xis=(1.0, 2.0), covariance_of="field")
    z, y = CopulaTask(**kw, excess_kurtosis=0.0).sample(512, seed=5)
    x, y2 = CopulaTask(**kw, marginal=TukeyHMap(0.1)).sample(512, seed=5)
    assert torch.equal(y, y2)
    torch.testing.assert_close(x, TukeyHMap(0.1)(z), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------- config and args

def test_configured_from_a_run_config() -> None:
    cfg = parse_config({"data": {"name": "copula", "L": 6, "dim": 1, "xis": [1, 2], "params": {"excess_kurtosis": 2.5}}})
    assert isinstance(cfg.data.params, CopulaParams) and cfg.data.params.covariance_of == "output"
    task = make_dataset(cfg.data)
    assert isinstance(task, CopulaTask) and task.name == "copula" and task.marginal.kind == "tukey-h"
    assert task.input_shape == (6,) and task.marginal_excess_kurtosis() == pytest.approx(2.5, abs=1e-10)
    clone = make_dataset(DataConfig(name="copula", L=6, gaussian_clone=True, params={"excess_kurtosis": -1}))
    assert isinstance(clone, CopulaTask) and clone.name == "copula-clone" and clone.marginal.kind == "erf"
    other = parse_config({"data": {"name": "copula", "params": {"excess_kurtosis": 1.0}}})
    assert other.digest() != parse_config({"data": {"name": "copula", "params": {"excess_kurtosis": 2.0}}}).digest()


@pytest.mark.parametrize("params, match", [
    ({"excess_kurtosis": -2.0}, "data.params.excess_kurtosis"),
    ({"excess_kurtosis": "high"}, "data.params.excess_kurtosis"),
    ({"covariance_of": "input"}, "data.params.covariance_of"),
    ({"gain": 3.0}, "data.params.gain"),
])
def test_bad_params_are_refused_naming_the_field(params: dict, match: str) -> None:
    with pytest.raises(TicketscopeError, match=match):
        parse_config({"data": {"name": "copula", "params": params}})


@pytest.mark.parametrize("kwargs, match", [
    (dict(), "exactly one of excess_kurtosis and marginal"),
    (dict(excess_kurtosis=1.0, marginal=ErfMap(1.0)), "exactly one"),
    (dict(excess_kurtosis=1.0, covariance_of="input"), "covariance_of"),
    (dict(excess_kurtosis=1.0, stream=1), "no version-1 stream"),
    (dict(excess_kurtosis=1.0, xis=(1.0,)), "xis"),
    (dict(excess_kurtosis=1.0, L=1), "L"),
    (dict(marginal="erf"), "marginal"),
])
def test_bad_arguments_name_the_argument(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CopulaTask(**kwargs)
    with pytest.raises(ValueError, match="h must lie in"):
        TukeyHMap(0.25)
    with pytest.raises(ValueError, match="gain"):
        ErfMap(0.0)
