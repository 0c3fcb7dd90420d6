"""Gaussian clones: same class means, covariances and frequencies as the source; Gaussian (kappa = 3)
where the source is not; samples that are the documented transform of the documented noise; both
stream versions (chunking and fingerprints: test_stream.py).

Tolerances are ~6 standard errors of the estimator being checked, for n independent samples:
  sample mean of pixel j:           sqrt(Sigma_jj / n)
  sample covariance entry (i, j):   sqrt((Sigma_ii Sigma_jj + Sigma_ij^2) / n)     (Gaussian x)
  sample kurtosis:                  sqrt(24 / n)                                  (Gaussian x)
With a few hundred checked entries, a false alarm at 6 sigma has probability < 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ticketscope.data.clone import GaussianClone, gaussian_factor
from ticketscope.data.natural import NaturalPatches
from ticketscope.data.stream import BLOCK
from ticketscope.errors import TicketscopeError
from ticketscope.seeding import derive_seed

FREQS = (0.5, 0.3, 0.2)


def kurtosis(x: torch.Tensor) -> torch.Tensor:
    """kappa = E[(x - E x)^4] / E[(x - E x)^2]^2 of each column (float64)."""
    c = x.double() - x.double().mean(0)
    return (c**4).mean(0) / (c**2).mean(0) ** 2


@pytest.fixture(scope="module")
def source() -> tuple[torch.Tensor, torch.Tensor]:
    """3 classes (frequencies 0.5 / 0.3 / 0.2) of 6 correlated, strongly non-Gaussian pixels:
    x = m_c + M_c e with e i.i.d. Laplace (kurtosis 6) and class-specific mixing M_c and mean m_c."""
    g = torch.Generator().manual_seed(0)
    n = 6000
    y = torch.repeat_interleave(torch.arange(3), torch.tensor([int(f * n) for f in FREQS]))
    mixing = 0.3 * torch.randn(3, 6, 6, generator=g) + 2 * torch.eye(6)
    means = 3 * torch.randn(3, 6, generator=g)
    sign = 2 * torch.randint(0, 2, (n, 6), generator=g) - 1
    e = sign * torch.empty(n, 6).exponential_(generator=g)  # Laplace(0, 1)
    X = means[y] + torch.einsum("nij,nj->ni", mixing[y], e)
    return X, y


@pytest.fixture(scope="module", params=[1, 2], ids=["stream1", "stream2"])
def clone(source, request) -> GaussianClone:
    X, y = source
    return GaussianClone.from_tensors(X, y, ridge=1e-3, input_shape=(2, 3), stream=request.param)


def reference_items(X: torch.Tensor, y: torch.Tensor, ridge: float, name: str, labels: torch.Tensor,
                    seed: int, offset: int = 0) -> np.ndarray:
    """Stream items offset .. offset + len(labels) - 1 recomputed from the documented definition, in
    float64 NumPy: block b's noise is ``torch.randn((BLOCK, D))`` under a generator seeded with
    ``derive_seed(name, "train", seed, b)``; item t of class c is mu_c + L_c z_t, L_c the Cholesky
    factor of class c's sample covariance (n_c - 1) + ridge I, fitted here from the data."""
    x, yn = X.reshape(len(X), -1).double().numpy(), y.numpy()
    first, stop = offset // BLOCK, -(-(offset + len(labels)) // BLOCK)
    z = torch.cat([torch.randn((BLOCK, x.shape[1]), generator=torch.Generator().manual_seed(
        derive_seed(name, "train", seed, b))) for b in range(first, stop)]).double().numpy()
    z = z[offset - first * BLOCK:][:len(labels)]
    out = np.empty_like(z)
    for c in np.unique(labels.numpy()):
        xc = x[yn == c]
        factor = np.linalg.cholesky(np.cov(xc.T) + ridge * np.eye(x.shape[1]))
        rows = labels.numpy() == c
        out[rows] = xc.mean(0) + z[rows] @ factor.T
    return out


def test_fitted_moments_are_the_source_moments(source, clone: GaussianClone) -> None:
    """The clone's target: class means, sample covariances + ridge I, class frequencies of the data."""
    X, y = source
    assert clone.input_shape == (2, 3) and clone.num_classes == 3 and clone.infinite
    np.testing.assert_allclose(clone.class_freqs.numpy(), FREQS, rtol=1e-12)
    for c in range(3):
        xc = X[y == c].double()
        np.testing.assert_allclose(clone.class_means[c].numpy(), xc.mean(0).numpy(), rtol=1e-6, atol=1e-6)
        target = torch.cov(xc.T) + 1e-3 * torch.eye(6, dtype=torch.float64)
        np.testing.assert_allclose(clone.covariance(c).numpy(), target.numpy(), rtol=1e-5, atol=1e-5 * target.diag().max().item())


def test_samples_are_the_documented_transform_of_the_noise(source, clone: GaussianClone) -> None:
    """Values recomputed independently (NumPy moments and Cholesky, the documented noise) for a window
    across a block boundary. Tolerance: float32 factors, means and products against float64, for
    |x| < 30 and 6 terms per entry: 1e-4 (a wrong factor, mean or noise block is off by O(1))."""
    X, y = source
    Xs, ys = clone.sample(300, seed=3, offset=BLOCK - 100)
    np.testing.assert_allclose(Xs.double().numpy(), reference_items(X, y, 1e-3, clone.name, ys, 3, BLOCK - 100),
                               rtol=0, atol=1e-4)


def test_samples_match_mean_and_covariance(clone: GaussianClone) -> None:
    X, y = clone.sample(40000, seed=1)
    for c in range(3):
        xc = X[y == c].double()
        n = len(xc)
        sigma = clone.covariance(c)
        var = sigma.diag()
        z_mean = (xc.mean(0) - clone.class_means[c].double()) / (var / n).sqrt()
        se_cov = ((var[:, None] * var[None, :] + sigma**2) / n).sqrt()
        z_cov = (torch.cov(xc.T) - sigma) / se_cov
        assert z_mean.abs().max() < 6 and z_cov.abs().max() < 6, (c, z_mean, z_cov)


def test_clone_is_gaussian_where_the_source_is_not(source, clone: GaussianClone) -> None:
    """Per class and pixel: kappa(clone) = 3 within 6 sqrt(24/n); the Laplace-driven source is far above."""
    X, y = clone.sample(40000, seed=2)
    Xs, ys = source
    for c in range(3):
        n = int((y == c).sum())
        assert (kurtosis(X[y == c]) - 3).abs().max() < 6 * (24 / n) ** 0.5
        assert kurtosis(Xs[ys == c]).min() > 3.5


def test_clone_of_natural_patches_loses_their_heavy_tails() -> None:
    """Natural images have sparse edges: the horizontal pixel difference d = x[r, c+1] - x[r, c] at a fixed
    position has a heavy-tailed distribution within each photograph (observed kappa ~ 6-90, and robust,
    unlike the pixel values, whose kappa is below 3 for bimodal photographs). In the clone every d is
    Gaussian: its kappa, averaged over positions (an average of estimates each with s.e. sqrt(24/n), so
    itself within that s.e.), must be 3 within 6 sqrt(24/n), while the photographs' is above 4.5."""
    L = 8
    natural = NaturalPatches(L=L)
    clone = GaussianClone(natural, ridge=1e-6)
    assert clone.name == "natural-clone" and clone.input_shape == (L, L) and clone.num_classes == natural.num_classes
    assert not clone.torus

    def diff_kurtosis(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        img = X.reshape(-1, L, L)
        d = (img[:, :, 1:] - img[:, :, :-1]).reshape(len(X), -1)
        return torch.stack([kurtosis(d[y == c]).mean() for c in range(natural.num_classes)])

    Xc, yc = clone.train(20000, seed=0)
    n_per_class = torch.bincount(yc).min().item()
    assert (diff_kurtosis(Xc, yc) - 3).abs().max() < 6 * (24 / n_per_class) ** 0.5
    assert diff_kurtosis(*natural.train(5000, seed=0)).min() > 4.5


def test_class_frequencies_are_kept_in_every_window(clone: GaussianClone) -> None:
    """Labels follow a golden-ratio Weyl sequence: any window of n samples is off by O(log n) (observed <= 3),
    where i.i.d. labels would be off by ~ sqrt(n p (1 - p)) ~ 45 at n = 10 000."""
    for n, offset in ((100, 0), (1000, 777), (10000, 5 * BLOCK + 3)):
        _, y = clone.sample(n, seed=4, offset=offset)
        assert (torch.bincount(y, minlength=3).double() - n * torch.tensor(FREQS)).abs().max() <= 3


def test_seeds_and_splits(source, clone: GaussianClone) -> None:
    X, y = source
    twin = GaussianClone.from_tensors(X, y, ridge=1e-3, input_shape=(2, 3), stream=clone.stream)
    assert torch.equal(twin.train(300, seed=7)[0], clone.train(300, seed=7)[0])
    assert torch.equal(clone.train(300, seed=7)[0], clone.sample(300, seed=7)[0])
    assert not torch.equal(clone.train(300, seed=7)[0], clone.train(300, seed=8)[0])
    assert not torch.equal(clone.train(300, seed=7)[0], clone.test(300, seed=7)[0])
    assert torch.equal(clone.test(300, seed=7)[0], twin.test(300, seed=7)[0])


def test_singular_covariance_without_ridge() -> None:
    """ridge = 0 with a constant pixel (like MNIST's border): Cholesky fails, the eigen factor samples it."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(4000, 4, generator=g) @ torch.randn(4, 4, generator=g)
    X[:, 2] = 0.25
    y = torch.arange(4000) % 2
    clone = GaussianClone.from_tensors(X, y, ridge=0.0)
    for c in range(2):
        np.testing.assert_allclose(clone.covariance(c).numpy(), torch.cov(X[y == c].double().T).numpy(), atol=1e-4)
    Xs, _ = clone.sample(2000, seed=0)
    assert torch.isfinite(Xs).all() and torch.allclose(Xs[:, 2], torch.tensor(0.25), atol=1e-5)


def test_gaussian_factor() -> None:
    a = torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for sigma in (a @ a.T + torch.eye(5, dtype=torch.float64), a[:, :2] @ a[:, :2].T):  # definite, rank 2
        f = gaussian_factor(sigma)
        np.testing.assert_allclose((f @ f.T).numpy(), sigma.numpy(), atol=1e-12)


def test_errors(source) -> None:
    X, y = source
    with pytest.raises(TicketscopeError, match="at least 2 samples"):
        GaussianClone.from_tensors(X[:10], torch.tensor([0] * 9 + [1]))
    with pytest.raises(TicketscopeError, match="labels must lie in 0..1"):
        GaussianClone.from_tensors(X, y, num_classes=2)
    with pytest.raises(TicketscopeError, match="infinite"):
        GaussianClone.from_tensors(X, y).train()


@pytest.mark.slow
def test_rgb_cifar_sized_clone() -> None:
    """D = 3072 (RGB 32 x 32, 10 classes, 200 samples each: the covariance is rank 199 + ridge): the
    streamed values are the documented transform of the documented noise, recomputed in float64
    NumPy (tolerance: float32 factor and GEMM over 3072 terms, |x| < 5: 1e-3), and a window inside
    the stream is the same (about 10 s on 2 cores)."""
    X = torch.rand(2000, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    y = torch.arange(2000) % 10
    clone = GaussianClone.from_tensors(X, y)
    assert clone.input_shape == (3, 32, 32) and clone.input_dim == 3072
    Xs, ys = clone.sample(300, seed=1, offset=200)
    np.testing.assert_allclose(Xs.double().numpy(), reference_items(X, y, 1e-3, clone.name, ys, 1, 200), rtol=0, atol=1e-3)
    assert torch.equal(clone.sample(100, seed=1, offset=400)[0], Xs[200:])
