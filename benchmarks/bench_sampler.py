"""Throughput of the NLGP FFT sampler against dense multivariate-normal samplers (2D, torus).

- fft: ``NLGPTask.sample`` (both classes, float64 inside, float32 out): O(D log D) per sample.
- mvn: how reference NLGP code samples: per class ``rng.multivariate_normal(0, R, size=n/2)``
  (numpy factorizes the D x D covariance by SVD on every call), then x = erf(g z / sqrt 2) / sqrt(gamma).
- chol: the best case for a dense sampler: Cholesky factor computed once (not timed), then one
  O(D^2)-per-sample matmul and the erf.
Both classes cost the same, so the dense samplers time one class (n/2 samples) and count it twice.

All three get the same number of threads (``--threads``, default 1: per-core numbers that a shared
machine does not distort). Usage: ``python benchmarks/bench_sampler.py [--L 32 64] [--n 4096]``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable


def best_time(fn: Callable[[], object], repeats: int, warm_up: bool = True) -> float:
    """Best wall time of ``repeats`` calls, after one untimed warm-up call if ``warm_up``."""
    if warm_up:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def throughputs(L: int, n: int, xis: tuple[float, float], gain: float, repeats: int) -> dict[str, float]:
    """Samples/s of the three samplers at side L (2D, torus), n samples per call (n even)."""
    import numpy as np
    from scipy.special import erf

    from ticketscope.data import NLGPTask
    from ticketscope.data.nlgp import gamma

    task = NLGPTask(L=L, dim=2, xis=xis, gain=gain)
    R = task.field_correlation(1).numpy()
    factor = np.linalg.cholesky(R)
    rng = np.random.default_rng(0)
    seeds = iter(range(10**6))

    def squash(z: np.ndarray) -> np.ndarray:
        return (erf(gain * z / np.sqrt(2)) / np.sqrt(gamma(gain))).astype(np.float32)

    # both classes cost the same, so the dense samplers time one class (xi_1), n/2 samples
    fft = best_time(lambda: task.sample(n, seed=next(seeds)), repeats)
    mvn = 2 * best_time(lambda: squash(rng.multivariate_normal(np.zeros(L * L), R, size=n // 2)), 1,
                        warm_up=False)  # nothing to warm up: the SVD is redone on every call
    chol = 2 * best_time(lambda: squash(rng.standard_normal((n // 2, L * L)) @ factor.T), repeats)
    return {"fft": n / fft, "mvn": n / mvn, "chol": n / chol}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--L", type=int, nargs="+", default=[32, 64], help="image sides (D = L^2)")
    parser.add_argument("--n", type=int, default=4096, help="samples per measured call (both classes; even)")
    parser.add_argument("--xis", type=float, nargs=2, default=[1.0, 3.0], help="correlation lengths")
    parser.add_argument("--gain", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of fft and chol (mvn: 1)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy / torch load their BLAS
    import torch

    torch.set_num_threads(args.threads)
    n = 2 * (args.n // 2)
    print(f"n = {n} samples per call, gain {args.gain}, xis {tuple(args.xis)}, {args.threads} thread(s)")
    print(f"{'L':>4} {'D':>6} {'fft /s':>10} {'mvn /s':>10} {'fft/mvn':>8} {'chol /s':>10} {'fft/chol':>9}")
    for L in args.L:
        r = throughputs(L, n, tuple(args.xis), args.gain, args.repeats)
        print(f"{L:>4} {L * L:>6} {r['fft']:>10.0f} {r['mvn']:>10.1f} {r['fft'] / r['mvn']:>7.0f}x "
              f"{r['chol']:>10.0f} {r['fft'] / r['chol']:>8.1f}x", flush=True)


if __name__ == "__main__":
    main()
