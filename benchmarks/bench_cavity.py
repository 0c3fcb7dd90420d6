"""Benchmark cavity_scores: (a) against per-weight brute force, (b) against its four GEMMs alone.

    python benchmarks/bench_cavity.py [--threads N] [--subset 2048] [--device cpu]

(a) K = D = 256, n = 4096. The brute force, for each weight, forms h' = h_i - w_ij x_j (n,) and
    its kurtosis (numpy float64, contiguous rows, BLAS dot products): O(n) per weight, the
    sensible per-weight method; for context also the literal one, h' = X w' with w_ij zeroed,
    O(n D) per weight. Both are timed on a random subset of weights, extrapolated linearly to
    all K * D (every weight costs the same), and checked against cavity_scores there.
    Note the sensible brute force costs O(n K D) in all, like the four GEMMs: the expansion wins
    by a constant factor (BLAS-3 efficiency, no per-weight overhead), not asymptotically.
(b) K = D = 1024, n = 16384. cavity_scores against the four float64 (K, n) @ (n, D) products
    E[h x], E[h^3 x], E[h^2 x^2], E[h x^3] on precomputed operands, which bound it from below.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # numpy's BLAS in the brute force: one thread
    os.environ.setdefault(_var, "1")
from collections.abc import Callable

import numpy as np
import torch

from ticketscope.metrics import cavity_scores

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference import cavity_brute_force  # noqa: E402  (tests/reference.py: the tests' literal definition)


def best_time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Smallest wall time of ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def problem(K: int, D: int, n: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """NLGP-like float32 inputs (signs of smoothed noise, 1D torus) and a 50%-pruned layer."""
    g = torch.Generator().manual_seed(seed)
    z = torch.fft.irfft(torch.fft.rfft(torch.randn(n, D, generator=g)) * torch.exp(-torch.arange(D // 2 + 1) / 8.0), n=D)
    W = torch.randn(K, D, generator=g) * (torch.rand(K, D, generator=g) < 0.5)
    return W.to(device), torch.sign(z).to(device)


def kappa(h: np.ndarray) -> float:
    """Population kurtosis by its formula (the brute force's kernel: scipy's per-call overhead left out)."""
    c = h - h.mean()
    c2 = c * c
    return len(h) * (c2 @ c2) / c2.sum() ** 2


def brute_force(W: np.ndarray, X: np.ndarray, rows: np.ndarray, cols: np.ndarray, literal: bool) -> np.ndarray:
    """Kurtosis score of each listed weight, one weight at a time: kappa(h_i') - kappa(h_i), with
    h_i' = h_i - w_ij x_j, or when ``literal`` recomputed from scratch as X w_i' with w_ij zeroed (the
    tests' :func:`reference.cavity_brute_force`, with the kernel above)."""
    if literal:
        return cavity_brute_force(W, X, "kurtosis", weights=(rows, cols), kappa=kappa)
    xt = np.ascontiguousarray(X.T)  # (D, n): x_j contiguous
    ht = W @ xt  # (K, n)
    base = {i: kappa(ht[i]) for i in np.unique(rows)}
    return np.array([kappa(ht[i] - W[i, j] * xt[j]) - base[i] for i, j in zip(rows, cols)])


def part_a(args: argparse.Namespace, device: torch.device) -> None:
    K = D = 256
    n = 4096
    W, X = problem(K, D, n, device)
    t_cavity = best_time(lambda: cavity_scores(W, X), args.repeats, device)
    scores = cavity_scores(W, X).cpu().numpy()
    W64, X64 = W.double().cpu().numpy(), X.double().cpu().numpy()
    rng = np.random.default_rng(0)
    print(f"(a) K = D = {K}, n = {n}")
    print(f"    cavity_scores, all {K * D} weights: {t_cavity * 1e3:.1f} ms")
    for name, literal, subset in (("h' = h - w x_j", False, args.subset), ("h' = X w' (literal)", True, args.subset // 4)):
        flat = rng.choice(K * D, size=subset, replace=False)
        rows, cols = flat // D, flat % D
        start = time.perf_counter()
        ref = brute_force(W64, X64, rows, cols, literal)
        t_subset = time.perf_counter() - start
        t_brute = t_subset * K * D / subset
        error = np.max(np.abs(scores[rows, cols] - ref) / np.maximum(np.abs(ref), 1e-3))
        print(f"    brute force {name:20s}: {t_subset / subset * 1e6:7.1f} us per weight, timed on {subset} random weights;"
              f" all weights extrapolated linearly: {t_brute:7.2f} s -> cavity_scores {t_brute / t_cavity:5.0f}x faster"
              f" (max rel. difference {error:.0e})")
    print("    target: >= 200x against the brute force of the acceptance criteria (remove each weight, recompute")
    print("    its unit's pre-activations and kurtosis: the literal line); the O(n) line is the tougher reference")


def part_b(args: argparse.Namespace, device: torch.device) -> None:
    K = D = 1024
    n = 16384
    W, X = problem(K, D, n, device)
    t_cavity = best_time(lambda: cavity_scores(W, X), args.repeats, device)
    x = X.double() - X.double().mean(0)
    h = x @ W.double().T
    h2, h3, x2, x3 = h**2, h**3, x**2, x**3

    def four_gemms() -> None:
        for a, b in ((h, x), (h3, x), (h2, x2), (h, x3)):
            a.T @ b

    t_gemm = best_time(four_gemms, args.repeats, device)
    gflop = 4 * 2 * K * D * n / 1e9
    print(f"(b) K = D = {K}, n = {n}")
    print(f"    four float64 GEMMs (K, n) @ (n, D) alone   {t_gemm:8.2f} s   ({gflop / t_gemm:.0f} GFLOP/s)")
    print(f"    cavity_scores                              {t_cavity:8.2f} s")
    print(f"    ratio {t_cavity / t_gemm:.2f}x   (target <= 3x; cavity_scores also needs h = x W^T, a fifth GEMM)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch CPU threads (default: all cores; use 1 on a machine shared with other jobs,"
                             " where OpenMP threads stall each other)")
    parser.add_argument("--subset", type=int, default=2048, help="weights timed by brute force in (a)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (best kept)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=["a", "b"], help="run one part")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads")
    if args.only != "b":
        part_a(args, device)
    if args.only != "a":
        part_b(args, device)


if __name__ == "__main__":
    main()
