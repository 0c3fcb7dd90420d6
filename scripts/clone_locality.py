"""Can a local sparse filter solve the Gaussian clone's task? An exact pilot over NLGP settings (issue 28).

For the Gaussian clone of an NLGP task, class c's inputs are N(0, S_c), S_c the exact NLGP covariance of
class c (``NLGPTask.covariance``). One linear filter w gives h ~ N(0, w' S_c w): the classes differ only in the
variance of h, and the best accuracy of one filter (threshold on |h|, equal priors) has a closed form. The best
filter on a support of pixels is an extreme generalized eigenvector of the two restricted covariances. This
prints, per setting, the best accuracy of one filter on 2 and on 4 adjacent pixels (what a unit keeps at the
demo's sparsest rounds) against the best dense filter: where the local accuracy is near the dense one, the
clone's task rewards local filters and "IMP localizes on the clone" is expected without any higher-order
statistics; where it is near 0.5 while the dense one is not, it does not.

    .venv/bin/python scripts/clone_locality.py
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, stats

from ticketscope.data import NLGPTask

SETTINGS = [  # (xi_0, xi_1, gain, ridge) on 1D rings of 64 pixels
    (2.0, 5.0, 10.0, 1e-3),  # the demo
    (1.0, 3.0, 10.0, 1e-3),
    (2.0, 3.0, 10.0, 1e-3),  # paper-nlgp's lengths
    (5.0, 10.0, 10.0, 1e-3),
    (2.0, 5.0, 10.0, 0.1),
    (2.0, 5.0, 10.0, 0.5),
    (5.0, 10.0, 10.0, 0.3),
    (5.0, 10.0, 10.0, 1.0),
]


def accuracy(s0: float, s1: float) -> float:
    """Best accuracy of a threshold on |h| between N(0, s0^2) and N(0, s1^2), equal priors (0.5: chance)."""
    lo, hi = sorted((s0, s1))
    if hi - lo < 1e-12 * hi:
        return 0.5
    t = np.sqrt(2 * np.log(hi / lo) * lo**2 * hi**2 / (hi**2 - lo**2))
    return 0.5 * ((2 * stats.norm.cdf(t / lo) - 1) + 2 * stats.norm.sf(t / hi))


def best_filter(S0: np.ndarray, S1: np.ndarray, support: list[int]) -> float:
    """The best one-filter accuracy on ``support``: the extreme generalized eigenvectors of (S1, S0) restricted."""
    A, B = S0[np.ix_(support, support)], S1[np.ix_(support, support)]
    _, vecs = linalg.eigh(B, A)
    return max(accuracy(np.sqrt(v @ A @ v), np.sqrt(v @ B @ v)) for v in (vecs[:, 0], vecs[:, -1]))


def main() -> None:
    print("xi_0 xi_1 gain ridge | best on 2 adjacent pixels | on 4 adjacent | dense | local/dense above chance (4 px)")
    for xi0, xi1, gain, ridge in SETTINGS:
        task = NLGPTask(L=64, dim=1, xis=(xi0, xi1), gain=gain, gaussian_clone=True, torus=True, ridge=ridge)
        S0, S1 = (task.covariance(c).double().numpy() for c in (0, 1))
        a2, a4, dense = (best_filter(S0, S1, s) for s in ([0, 1], [0, 1, 2, 3], list(range(64))))
        print(f"{xi0:4g} {xi1:4g} {gain:4g} {ridge:5g} | {a2:.3f} | {a4:.3f} | {dense:.3f} | {(a4 - .5) / (dense - .5):.2f}")


if __name__ == "__main__":
    main()
