"""Throughput of the NLGP stream samplers against dense multivariate-normal samplers (2D, torus).

- v1, v2: ``NLGPTask.sample`` with stream version 1 (NumPy float64 noise, float64 FFT pairs, block
  by block) and 2 (float32 torch noise read as Fourier coefficients, one real inverse FFT per row and
  a small GEMM per image, many blocks at once): O(D log D) to O(D^1.5) per sample, float32 out.
- mvn: how reference NLGP code samples: per class ``rng.multivariate_normal(0, R, size=n/2)``
  (numpy factorizes the D x D covariance by SVD on every call), then x = erf(g z / sqrt 2) / sqrt(gamma).
- chol: the best case for a dense sampler: Cholesky factor computed once (not timed), then one
  O(D^2)-per-sample matmul and the erf.
Both classes cost the same, so the dense samplers time one class (n/2 samples) and count it twice.

All get the same number of threads (``--threads``, default 1: per-core numbers that a shared
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
    """Samples/s of the samplers at side L (2D, torus), n samples per call (n even)."""
    import numpy as np
    from scipy.special import erf

    from ticketscope.data import NLGPTask
    from ticketscope.data.nlgp import gamma

    tasks = {v: NLGPTask(L=L, dim=2, xis=xis, gain=gain, stream=v) for v in (1, 2)}
    R = tasks[1].field_correlation(1).numpy()
    factor = np.linalg.cholesky(R)
    rng = np.random.default_rng(0)
    seeds = iter(range(10**6))

    def squash(z: np.ndarray) -> np.ndarray:
        return (erf(gain * z / np.sqrt(2)) / np.sqrt(gamma(gain))).astype(np.float32)

    # both classes cost the same, so the dense samplers time one class (xi_1), n/2 samples
    v1, v2 = (best_time(lambda: tasks[v].sample(n, seed=next(seeds)), repeats) for v in (1, 2))
    mvn = 2 * best_time(lambda: squash(rng.multivariate_normal(np.zeros(L * L), R, size=n // 2)), 1,
                        warm_up=False)  # nothing to warm up: the SVD is redone on every call
    chol = 2 * best_time(lambda: squash(rng.standard_normal((n // 2, L * L)) @ factor.T), repeats)
    return {"v1": n / v1, "v2": n / v2, "mvn": n / mvn, "chol": n / chol}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--L", type=int, nargs="+", default=[32, 64], help="image sides (D = L^2)")
    parser.add_argument("--n", type=int, default=4096, help="samples per measured call (both classes; even)")
    parser.add_argument("--xis", type=float, nargs=2, default=[1.0, 3.0], help="correlation lengths")
    parser.add_argument("--gain", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of v1, v2 and chol (mvn: 1)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy / torch load their BLAS
    import torch

    torch.set_num_threads(args.threads)
    n = 2 * (args.n // 2)
    print(f"n = {n} samples per call, gain {args.gain}, xis {tuple(args.xis)}, {args.threads} thread(s)")
    print(f"{'L':>4} {'D':>6} {'v1 /s':>10} {'v2 /s':>10} {'mvn /s':>10} {'v2/mvn':>8} {'chol /s':>10} {'v2/chol':>8}")
    for L in args.L:
        r = throughputs(L, n, tuple(args.xis), args.gain, args.repeats)
        print(f"{L:>4} {L * L:>6} {r['v1']:>10.0f} {r['v2']:>10.0f} {r['mvn']:>10.1f} {r['v2'] / r['mvn']:>7.0f}x "
              f"{r['chol']:>10.0f} {r['v2'] / r['chol']:>7.1f}x", flush=True)


if __name__ == "__main__":
    main()
