"""Sample statistics shared by the tests of the Gaussian-field families (copula, elliptical): z-scores whose
standard errors come from per-image terms, i.i.d. across images (pixels of one image are dependent)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Sample bits are promised at one torch thread (the fingerprints); every test of a module using this runs so."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def by_class(task, n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` samples of ``task``, float64, split by class."""
    X, y = task.sample(n, seed=seed)
    return [X[y == c].double().numpy() for c in range(task.num_classes)]


def cov_zscores(X: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """z-scores of the zero-mean sample covariance X^T X / n against ``cov`` (upper triangle); the products of one
    image are i.i.d. across images."""
    iu = np.triu_indices(X.shape[1])
    prods = X[:, iu[0]] * X[:, iu[1]]
    return (prods.mean(0) - cov[iu]) / (prods.std(0) / math.sqrt(len(X)))


def kurtosis_zscore(X: np.ndarray, excess: float) -> float:
    """z-score of the pooled pixel kurtosis E x^4 / (E x^2)^2 (every pixel has the same marginal, mean 0) against
    3 + excess. Linearized at E x^2 = 1, m4 = 3 + excess, the estimate's error is the mean over images of
    a_i = mean_pixels(x^4) - m4 - 2 m4 (mean_pixels(x^2) - 1), i.i.d. across images: SE = sd(a) / sqrt(n)."""
    m4 = 3 + excess
    x2, x4 = (X**2).mean(1), (X**4).mean(1)
    estimate = x4.mean() / x2.mean() ** 2
    a = x4 - m4 - 2 * m4 * (x2 - 1)
    return (estimate - m4) / (a.std() / math.sqrt(len(X)))
