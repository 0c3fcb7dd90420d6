"""NLGP task: exact moments against independent references, the samplers of both stream versions
(version 1: float64 FFT pairs; version 2: float32 Fourier-noise and eigenbasis maps), argument checks.
The stream's layout, chunking and fingerprints are tested in test_stream.py.

Statistical checks use z-scores, (estimate - reference) / standard error, with the standard error
estimated from the samples themselves (per-sample terms are i.i.d. across samples, so the CLT
applies). A bound of 5.5 on |z| has a false-alarm rate below 4e-8 per entry (under 1e-4 over the
few hundred entries of one check), yet catches any error larger than ~6 standard errors: with
10^4 samples per class that is ~0.05 on a covariance entry, far below a wrong gain, gamma or xi.
All seeds are fixed, so the tests are deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.polynomial.hermite_e import hermegauss
from scipy import integrate, special, stats

from ticketscope.data import NLGPTask
from ticketscope.data.nlgp import (
    circulant_sqrt_spectrum,
    nlgp_covariance,
    sample_circulant,
    symmetric_sqrt,
    torus_kernel,
)
from ticketscope.seeding import derive_seed

Z_MAX = 5.5
STREAMS = pytest.mark.parametrize("stream", [1, 2])


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These tensors are small: one intra-op thread is fastest, and on a busy shared machine
    two spinning OpenMP threads make this file ~5x slower. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- independent references (numpy / scipy only, written from the formulas in SCIENCE.md) ---

def ref_correlation(L: int, dim: int, xi: float, torus: bool, ridge: float) -> np.ndarray:
    """C + r I, C_ij = exp(-|r_i - r_j|^2 / xi^2) from the pixel coordinates (row-major), made PSD
    by clipping negative eigenvalues (dense eigh; torus only), rescaled to unit diagonal."""
    coords = np.stack(np.meshgrid(*[np.arange(L)] * dim, indexing="ij"), -1).reshape(-1, dim)
    diff = np.abs(coords[:, None, :] - coords[None, :, :])
    if torus:
        diff = np.minimum(diff, L - diff)
    k = np.exp(-(diff**2).sum(-1) / xi**2) + ridge * np.eye(len(coords))
    lam, vec = np.linalg.eigh(k)
    if torus and lam.min() < 0:
        k = (vec * np.clip(lam, 0, None)) @ vec.T
    d = np.sqrt(np.diag(k))
    return k / np.outer(d, d)


def ref_gamma(g: float) -> float:
    """Var erf(g z / sqrt 2), z ~ N(0, 1), by quadrature (not the arcsin closed form)."""
    return integrate.quad(lambda z: special.erf(g * z / math.sqrt(2)) ** 2 * stats.norm.pdf(z), -np.inf, np.inf)[0]


def ref_nlgp_cov(R: np.ndarray, g: float) -> np.ndarray:
    t = g * g / (1 + g * g)
    return 2 / (np.pi * (2 / np.pi * np.arcsin(t))) * np.arcsin(t * R)


def ref_nlgp_samples(R: np.ndarray, g: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """The NLGP by a dense Cholesky sampler: z = chol(R) w, x = erf(g z / sqrt 2) / sqrt(gamma)."""
    z = rng.standard_normal((n, len(R))) @ np.linalg.cholesky(R).T
    return special.erf(g * z / math.sqrt(2)) / math.sqrt(ref_gamma(g))


def ref_gaussian_samples(cov: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((n, len(cov))) @ np.linalg.cholesky(cov).T


def cov_zscores(X: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """z-scores of the zero-mean sample covariance X^T X / n against ``cov`` (upper triangle)."""
    iu = np.triu_indices(X.shape[1])
    prods = X[:, iu[0]] * X[:, iu[1]]
    return (prods.mean(0) - cov[iu]) / (prods.std(0) / math.sqrt(len(X)))


def two_sample_cov_zscores(X1: np.ndarray, X2: np.ndarray) -> np.ndarray:
    iu = np.triu_indices(X1.shape[1])
    p1, p2 = X1[:, iu[0]] * X1[:, iu[1]], X2[:, iu[0]] * X2[:, iu[1]]
    se = np.sqrt(p1.var(0) / len(p1) + p2.var(0) / len(p2))
    return (p1.mean(0) - p2.mean(0)) / se


def by_class(task: NLGPTask, n: int, seed: int = 0) -> list[np.ndarray]:
    X, y = task.sample(n, seed=seed)
    return [X[y == c].double().numpy() for c in range(task.num_classes)]


# --- the analytic covariance ---

@pytest.mark.parametrize("dim,L", [(1, 9), (2, 5)])
@pytest.mark.parametrize("torus", [True, False])
def test_covariance_matches_formula_from_coordinates(dim: int, L: int, torus: bool) -> None:
    task = NLGPTask(L=L, dim=dim, xis=(1.0, 2.5), gain=3.0, torus=torus, ridge=0.05)
    for c, xi in enumerate(task.xis):
        C = task.covariance(c)
        assert C.dtype == torch.float64 and C.shape == (L**dim, L**dim)
        np.testing.assert_allclose(C.numpy(), ref_nlgp_cov(ref_correlation(L, dim, xi, torus, 0.05), 3.0), atol=1e-12)


@pytest.mark.parametrize("g", [0.5, 3.0])
def test_arcsin_formula_by_gauss_hermite_quadrature(g: float) -> None:
    """Cov(x_0, x_d) against E[erf(g u/sqrt2) erf(g v/sqrt2)] / gamma integrated numerically
    (v = rho u + sqrt(1 - rho^2) e, 200 x 200 Gauss-Hermite nodes: exact to ~1e-12 for an
    analytic integrand of this smoothness), rho = exp(-d^2/xi^2) / (1 + r) the field correlation."""
    L, xi, ridge = 6, 2.0, 0.05
    C = NLGPTask(L=L, dim=1, xis=(xi, 1.0), gain=g, torus=False, ridge=ridge).covariance(0).numpy()
    nodes, weights = hermegauss(200)
    weights = weights / math.sqrt(2 * math.pi)
    u, e = np.meshgrid(nodes, nodes, indexing="ij")
    w = np.outer(weights, weights)
    gam = ref_gamma(g)
    for d in range(L):
        rho = math.exp(-d * d / xi**2) / (1 + ridge) if d else 1.0
        v = rho * u + math.sqrt(max(1 - rho * rho, 0.0)) * e
        expected = (w * special.erf(g * u / math.sqrt(2)) * special.erf(g * v / math.sqrt(2))).sum() / gam
        assert C[0, d] == pytest.approx(expected, abs=1e-9)


def test_arcsin_formula_by_monte_carlo_at_high_gain() -> None:
    """g = 10: erf is nearly a step, so check by Monte Carlo on 2e6 bivariate normals instead.
    |x_0 x_1| <= 1/gamma ~ 1.1, so the standard error is <= 1.1 / sqrt(2e6) ~ 8e-4; the
    empirical one is used with the 5.5-sigma bound."""
    g, xi, ridge = 10.0, 1.5, 1e-3
    C = NLGPTask(L=4, dim=1, xis=(xi, 1.0), gain=g, torus=False, ridge=ridge).covariance(0).numpy()
    rng = np.random.default_rng(1)
    for d in (1, 2):
        rho = math.exp(-d * d / xi**2) / (1 + ridge)
        u = rng.standard_normal(2_000_000)
        v = rho * u + math.sqrt(1 - rho * rho) * rng.standard_normal(len(u))
        prod = special.erf(g * u / math.sqrt(2)) * special.erf(g * v / math.sqrt(2)) / ref_gamma(g)
        assert abs(prod.mean() - C[0, d]) < Z_MAX * prod.std() / math.sqrt(len(u))


def test_circulant_spectrum_is_the_eigenvalues_of_the_covariance() -> None:
    task = NLGPTask(L=6, dim=2, xis=(1.0, 2.0), gain=4.0, ridge=1e-3)
    for c, xi in enumerate(task.xis):
        C = task.covariance(c)
        kernel = nlgp_covariance(torus_kernel(6, 2, xi, 1e-3), 4.0)
        torch.testing.assert_close(kernel.reshape(-1), C[0], rtol=0, atol=1e-14)
        spectrum = circulant_sqrt_spectrum(kernel) ** 2
        torch.testing.assert_close(spectrum.reshape(-1).sort().values, torch.linalg.eigvalsh(C), rtol=0, atol=1e-10)


@pytest.mark.parametrize("dim,L,torus,xis", [(1, 9, True, (1.0, 2.5)), (1, 10, True, (1.0, 2.5)), (2, 6, True, (1.0, 2.5)),
                                         (2, 7, True, (1.0, 2.5)), (2, 8, True, (1.0, 3.0)), (1, 9, False, (1.0, 2.5)),
                                         (2, 5, False, (1.0, 2.5))])
def test_version_2_sampling_maps_realise_the_covariances_exactly(dim: int, L: int, torus: bool, xis: tuple) -> None:
    """Version 2 draws item = A_c w from white noise w: A_c A_c^T must be the clone's covariance (the
    independent arcsin formula) and, ahead of the erf, (g^2 / 2) times the field's correlation
    (odd and even L; L = 8, xi = 3 is the non-PSD torus kernel that is projected). Exact up to the
    float32 rounding of A_c: entries of order 1, D <= 64 terms, so 1e-5."""
    g = 3.0
    for clone in (False, True):
        task = NLGPTask(L=L, dim=dim, xis=xis, gain=g, torus=torus, ridge=0.05, gaussian_clone=clone)
        for c, xi in enumerate(xis):
            A = task.gaussian_sampler().matrix(c).numpy()
            R = ref_correlation(L, dim, xi, torus, 0.05)
            np.testing.assert_allclose(A @ A.T, ref_nlgp_cov(R, g) if clone else g * g / 2 * R, rtol=0, atol=1e-5)


# --- sampled moments ---

@pytest.mark.parametrize("dim,L", [(1, 12), (2, 5)])
@pytest.mark.parametrize("torus", [True, False])
@pytest.mark.parametrize("clone", [False, True])
@STREAMS
def test_sample_covariance_matches_analytic(dim: int, L: int, torus: bool, clone: bool, stream: int) -> None:
    """Samples of the NLGP and of its clone against the independent reference covariance (the clone's
    samples must have the NLGP's covariance, not the field's)."""
    task = NLGPTask(L=L, dim=dim, xis=(1.0, 2.5), gain=3.0, torus=torus, ridge=0.05, gaussian_clone=clone, stream=stream)
    for c, X in enumerate(by_class(task, 40_000, seed=1)):
        reference = ref_nlgp_cov(ref_correlation(L, dim, task.xis[c], torus, 0.05), 3.0)
        assert np.abs(X.mean(0) / (X.std(0) / math.sqrt(len(X)))).max() < Z_MAX
        assert np.abs(cov_zscores(X, reference)).max() < Z_MAX


@pytest.mark.parametrize("gain,ridge,xis", [(0.1, 1e-3, (1.0, 2.0)), (3.0, 0.5, (1.0, 2.0)),
                                            (30.0, 1e-3, (1.0, 2.0)), (3.0, 0.0, (1.0, 8.0))])
@pytest.mark.parametrize("torus", [True, False])
@STREAMS
def test_unit_pixel_variance(gain: float, ridge: float, xis: tuple[float, float], torus: bool, stream: int) -> None:
    """Analytic diagonal is 1; the pooled sample variance (per-sample means of x_i^2 are i.i.d.)
    is 1 within 5.5 standard errors. (3, 0, xi=8) has eigenvalues ~0 that are clipped."""
    for clone in (False, True):
        task = NLGPTask(L=16, dim=1, xis=xis, gain=gain, ridge=ridge, torus=torus, gaussian_clone=clone, stream=stream)
        for c in range(2):
            np.testing.assert_allclose(task.covariance(c).diagonal().numpy(), 1.0, atol=1e-12)
        X = task.sample(20_000, seed=2)[0].double().numpy()
        assert np.isfinite(X).all()
        per_sample = (X**2).mean(1)
        assert abs(per_sample.mean() - 1) < Z_MAX * per_sample.std() / math.sqrt(len(X))


def pooled_kurtosis(X: np.ndarray) -> tuple[float, float]:
    """kappa = m4 / m2^2 pooled over pixels, and its delta-method standard error from the
    i.i.d. per-sample means a_s = mean_i x^4, b_s = mean_i x^2: psi_s = (a_s - 2 kappa m2 b_s) / m2^2."""
    a, b = (X**4).mean(1), (X**2).mean(1)
    m4, m2 = a.mean(), b.mean()
    kappa = m4 / m2**2
    return kappa, ((a - 2 * kappa * m2 * b) / m2**2).std() / math.sqrt(len(X))


@STREAMS
def test_high_gain_nlgp_is_sign_like_and_clone_is_gaussian(stream: int) -> None:
    """NLGP pixel kurtosis at g = 10 equals E[erf^4]/E[erf^2]^2 by quadrature (1.066: near 1,
    a sign); the clone's pixels are N(0, 1), kurtosis 3."""
    g = 10.0

    def moment(k: int) -> float:
        return integrate.quad(lambda z: special.erf(g * z / math.sqrt(2)) ** k * stats.norm.pdf(z), -np.inf, np.inf)[0]

    expected = {False: moment(4) / moment(2) ** 2, True: 3.0}
    assert expected[False] < 1.1
    for clone in (False, True):
        task = NLGPTask(L=8, dim=2, xis=(1.0, 3.0), gain=g, gaussian_clone=clone, stream=stream)
        kappa, se = pooled_kurtosis(task.sample(20_000, seed=3)[0].double().numpy())
        assert abs(kappa - expected[clone]) < Z_MAX * se, (clone, kappa, se)


# --- the FFT sampler against dense samplers ---

@pytest.mark.parametrize("dim,L", [(1, 10), (2, 6)])
def test_fft_sampler_is_the_symmetric_square_root(dim: int, L: int) -> None:
    """On the torus IDFT(sqrt(lambda) DFT(w)) = R^(1/2) w exactly (the PSD square root is unique),
    for the field and for the clone's covariance; odd batch (7) exercises the complex packing."""
    w = torch.randn(7, *(L,) * dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    R = ref_correlation(L, dim, 1.7, True, 1e-3)
    for kernel, dense in [(torus_kernel(L, dim, 1.7, 1e-3), R),
                          (nlgp_covariance(torus_kernel(L, dim, 1.7, 1e-3), 5.0), ref_nlgp_cov(R, 5.0))]:
        z = sample_circulant(w, circulant_sqrt_spectrum(kernel)).reshape(7, -1)
        sqrt_dense = symmetric_sqrt(torch.from_numpy(dense))
        torch.testing.assert_close(sqrt_dense @ sqrt_dense, torch.from_numpy(dense), rtol=0, atol=1e-10)
        torch.testing.assert_close(z, w.reshape(7, -1) @ sqrt_dense, rtol=0, atol=1e-10)


@pytest.mark.parametrize("clone", [False, True])
@STREAMS
def test_sampler_matches_cholesky_sampler_in_distribution(clone: bool, stream: int) -> None:
    """Against an independent numpy Cholesky sampler: two-sample covariance z-scores, and
    two-sample KS tests on 6 fixed random projections and 2 pixels (p > 1e-4 each; Bonferroni
    over 16 tests keeps the false-alarm rate below 2e-3)."""
    L, g, xis = 6, 10.0, (1.0, 1.5)  # the field correlation is PSD here: Cholesky works
    task = NLGPTask(L=L, dim=2, xis=xis, gain=g, ridge=1e-3, gaussian_clone=clone, stream=stream)
    rng = np.random.default_rng(4)
    directions = rng.standard_normal((L * L, 6))
    directions /= np.linalg.norm(directions, axis=0)
    for c, X in enumerate(by_class(task, 30_000, seed=4)):
        R = ref_correlation(L, 2, xis[c], True, 1e-3)
        Y = ref_gaussian_samples(ref_nlgp_cov(R, g), len(X), rng) if clone else ref_nlgp_samples(R, g, len(X), rng)
        Y = Y.astype(np.float32).astype(np.float64)  # same rounding as X: saturated pixels tie exactly
        assert np.abs(two_sample_cov_zscores(X, Y)).max() < Z_MAX
        for a, b in zip(np.hstack([X @ directions, X[:, :2]]).T, np.hstack([Y @ directions, Y[:, :2]]).T):
            assert stats.ks_2samp(a, b).pvalue > 1e-4


def test_ks_detects_a_wrong_gain() -> None:
    """Power check for the test above: the same KS test tells g = 10 from g = 5."""
    X = by_class(NLGPTask(L=6, dim=2, xis=(1.0, 2.0), gain=10.0), 30_000, seed=4)[0]
    Y = ref_nlgp_samples(ref_correlation(6, 2, 1.0, True, 1e-3), 5.0, len(X), np.random.default_rng(4))
    Y = Y.astype(np.float32).astype(np.float64)
    assert stats.ks_2samp(X[:, 0], Y[:, 0]).pvalue < 1e-10


# --- torus translation invariance ---

def roll_index(L: int, shift: tuple[int, int]) -> np.ndarray:
    return np.roll(np.arange(L * L).reshape(L, L), shift, axis=(0, 1)).reshape(-1)


def test_analytic_covariance_is_circulant_on_the_torus_only() -> None:
    L = 7
    for torus in (True, False):
        C = NLGPTask(L=L, dim=2, xis=(1.0, 2.5), gain=3.0, torus=torus).covariance(1).numpy()
        worst = max(np.abs(C[np.ix_(idx, idx)] - C).max() for idx in (roll_index(L, s) for s in [(1, 0), (0, 3), (2, 5)]))
        assert (worst < 1e-14) if torus else (worst > 0.3)


@STREAMS
def test_sample_covariance_is_invariant_under_a_roll(stream: int) -> None:
    """Paired test: d_s = x_a x_b - x_a' x_b' with (a', b') the rolled pair has mean 0 for every
    pair on the torus (z-scores from the i.i.d. d_s); with open boundaries the wrap-around pairs
    break it, which shows the test has power."""
    L, shift = 6, (2, 3)
    idx = roll_index(L, shift)
    iu = np.triu_indices(L * L)
    for torus in (True, False):
        X = by_class(NLGPTask(L=L, dim=2, xis=(1.0, 2.5), gain=3.0, torus=torus, stream=stream), 20_000, seed=5)[1]
        d = X[:, iu[0]] * X[:, iu[1]] - X[:, idx[iu[0]]] * X[:, idx[iu[1]]]
        sd = d.std(0)
        z = np.abs(d.mean(0)[sd > 0] / (sd[sd > 0] / math.sqrt(len(X))))
        assert (z.max() < Z_MAX) if torus else (z.max() > 20)


# --- determinism and the stream ---

def test_seed_determinism() -> None:
    a = NLGPTask(L=5, dim=2, xis=(1.0, 2.0), gain=3.0)
    b = NLGPTask(L=5, dim=2, xis=(1.0, 2.0), gain=3.0)
    X, y = a.sample(300, seed=7)
    assert X.dtype == torch.float32 and y.dtype == torch.int64 and X.shape == (300, 25) and y.shape == (300,)
    assert torch.equal(X, b.sample(300, seed=7)[0]) and torch.equal(y, b.sample(300, seed=7)[1])
    assert not torch.equal(X, a.sample(300, seed=8)[0])
    Xtr, Xte = a.train(100, seed=7)[0], a.test(100, seed=7)[0]
    assert not torch.equal(Xtr, Xte)
    assert torch.equal(Xtr, b.sample(100, seed=derive_seed(7, "train"))[0])
    assert torch.equal(Xte, b.sample(100, seed=derive_seed(7, "test"))[0])


def test_labels_are_balanced_in_every_window() -> None:
    task = NLGPTask(L=4, dim=1, xis=(1.0, 2.0, 3.0), gain=3.0)
    for offset in (0, 1, 5, 700):
        y = task.sample(300, seed=0, offset=offset)[1]
        assert torch.equal(y, (torch.arange(offset, offset + 300) % 3))
        assert torch.bincount(y, minlength=3).tolist() == [100, 100, 100]
    X, y = task.sample(0, seed=0, offset=3)
    assert X.shape == (0, 4) and y.shape == (0,)


# --- attributes and argument checks ---

def test_attributes() -> None:
    task = NLGPTask(L=7, dim=2, xis=(1.0, 2.0, 4.0), gain=2.0, torus=False)
    assert (task.name, task.input_shape, task.num_classes, task.torus, task.infinite, task.input_dim) == (
        "nlgp", (7, 7), 3, False, True, 49)
    clone = NLGPTask(L=7, dim=1, gaussian_clone=True)
    assert (clone.name, clone.input_shape, clone.torus, clone.stream) == ("nlgp-clone", (7,), True, 2)


@pytest.mark.parametrize("kwargs,name", [
    ({"L": 1}, "L"), ({"L": 2.5}, "L"), ({"dim": 3}, "dim"), ({"xis": (1.0,)}, "xis"),
    ({"xis": (1.0, 0.0)}, "xis"), ({"xis": (1.0, -2.0)}, "xis"), ({"xis": ("a", "b")}, "xis"),
    ({"gain": 0.0}, "gain"), ({"gain": -1.0}, "gain"), ({"gain": math.inf}, "gain"), ({"ridge": -1e-3}, "ridge"),
    ({"stream": 3}, "stream"),
])
def test_bad_arguments_name_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{name} must be"):
        NLGPTask(**kwargs)


def test_bad_call_arguments_name_the_argument() -> None:
    task = NLGPTask(L=4, dim=1)
    for call, name in [(lambda: task.train(None), "n"), (lambda: task.test(), "n"), (lambda: task.sample(-1), "n"),
                       (lambda: task.sample(3, offset=-1), "offset"), (lambda: task.covariance(2), "label")]:
        with pytest.raises(ValueError, match=rf"\b{name} must be"):
            call()


def test_non_psd_torus_kernel_is_projected() -> None:
    """L = 8, xi = 3: the cut torus kernel has an eigenvalue ~ -0.56 (far below -ridge); the field
    correlation is then PSD with unit diagonal, and so is the NLGP covariance (Schur product)."""
    L, xi, ridge = 8, 3.0, 1e-3
    coords = np.stack(np.meshgrid(np.arange(L), np.arange(L), indexing="ij"), -1).reshape(-1, 2)
    diff = np.abs(coords[:, None] - coords[None])
    raw = np.exp(-(np.minimum(diff, L - diff) ** 2).sum(-1) / xi**2)
    assert np.linalg.eigvalsh(raw).min() < -0.5
    task = NLGPTask(L=L, dim=2, xis=(1.0, xi), gain=3.0, ridge=ridge)
    for M in (task.field_correlation(1), task.covariance(1)):
        np.testing.assert_allclose(M.diagonal().numpy(), 1.0, atol=1e-12)
        assert torch.linalg.eigvalsh(M).min() > -1e-12
