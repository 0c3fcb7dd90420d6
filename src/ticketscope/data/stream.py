"""The one sample-stream mechanism of every synthetic data set: the NLGP task, its analytic Gaussian
clone (:mod:`.nlgp`) and fitted Gaussian clones (:mod:`.clone`).

**Layout.** A stream is named by a key, a tuple of printable parts (``(seed,)`` for the NLGP,
``(name, split, seed)`` for a fitted clone), and holds items 0, 1, 2, ... Item i lives in block
``i // BLOCK``. Block b's white noise is a function of (key, b) only; an item's label is a function
of (key, i); an item is a fixed function of its share of its block's noise and its label. So any
chunking of a stream into calls, and any grouping of its blocks into one batched computation, gives
the same bits.

**Versions** (``DataConfig.stream``; a run keeps the version it began with):

1. The streams as they were before versions existed, bit for bit. NLGP (and its analytic clone):
   float64 ziggurat normals of NumPy's PCG64 seeded with ``derive_seed(*key, b)``, each class's
   items of the block sampled by a float64 FFT pair (two items per complex FFT), then cast to
   float32. Fitted clone: float32 ``torch.randn`` under a torch generator seeded with
   ``derive_seed(*key, b)``, one GEMM per class and block. Each block is transformed on its own.
2. (the default) Every data set: float32 ``torch.randn((BLOCK, *noise_shape))`` under a torch CPU
   generator seeded with ``derive_seed(*key, b)``; row t is item t's white noise. On the torus
   (NLGP and its clone) the noise is read as Fourier coefficients, so one real inverse FFT per row
   (and, in 2D, one small GEMM per image for the other axis) gives the exact circulant covariance
   (:class:`TorusSampler`; one or two normals of each row go unused). With dense factors (fitted
   clones, open boundaries) item t of class c is ``mean_c + Q_c (S_c * w_t)`` (:class:`LinearSampler`),
   one batched GEMM per class for all blocks of a call. The noise, scaling, transforms and the erf
   run on whole chunks of blocks; the white noise is the floor, and the rest costs about as much
   again (``benchmarks/bench_stream.py``).

**Reproducibility, caching and read-ahead.** Every chunking gives the same bits on one machine and
torch build; why (GEMM row alignment, one-thread FFTs) and how the per-key block cache reads ahead:
docs/REPRODUCIBILITY.md, section "Sample streams: chunking, caching and read-ahead".
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from ..seeding import derive_seed

BLOCK = 256
"""Items per block: the unit of white noise (one generator seed per block)."""
VERSIONS = (1, 2)
LATEST = 2
"""The stream version new data sets and configs get."""
CHUNK_FLOATS = 1 << 19
"""Floats of white noise transformed per batched call (about 2 MB: the passes over it stay in cache)."""
READAHEAD_FLOATS = 1 << 20
"""At most this many floats of blocks are computed ahead of a sequential call."""
READAHEAD_BELOW = 4
"""Only sequential calls asking for fewer blocks than this read ahead."""
CACHE_FLOATS = 1 << 23
"""Floats of cached blocks per stream object, over all keys."""

Key = tuple
Rows = slice | torch.Tensor


_GENERATOR = torch.Generator()  # reseeded for every block (manual_seed resets all of its state)


def torch_noise(key: Key, b: int, out: torch.Tensor) -> None:
    """Fill ``out`` (BLOCK, ...) float32 with block b's N(0, 1) noise: ``torch.randn`` under a torch
    CPU generator seeded with ``derive_seed(*key, b)`` (version 2; fitted clones' version 1)."""
    torch.randn(out.shape, generator=_GENERATOR.manual_seed(derive_seed(*key, b)), out=out)


def numpy_noise(key: Key, b: int, out: torch.Tensor) -> None:
    """Fill ``out`` (BLOCK, ...) float64 with NumPy PCG64 float64 normals seeded with
    ``derive_seed(*key, b)`` (the NLGP's version 1)."""
    out.copy_(torch.from_numpy(np.random.default_rng(derive_seed(*key, b)).standard_normal(tuple(out.shape))))


def class_rows(labels: torch.Tensor, num_classes: int) -> list[Rows]:
    """Rows of each class: strided slices when the labels are ``t % num_classes`` (NLGP blocks when
    BLOCK is a multiple of the class count), else index tensors."""
    if torch.equal(labels, torch.arange(len(labels)) % num_classes):
        return [slice(c, None, num_classes) for c in range(num_classes)]
    return [(labels == c).nonzero().flatten() for c in range(num_classes)]


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside (restored after). MKL's threaded real FFT rounds differently
    from its serial one, and for these small transforms it is no faster (often far slower on a
    busy machine); serial, the stream's bits do not depend on torch's thread count."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def real_fourier_basis(L: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Q (L, L) float64 orthonormal columns and the frequency of each column: 1/sqrt(L);
    sqrt(2/L) cos(2 pi k x / L) and sqrt(2/L) sin(2 pi k x / L) for 0 < k < L/2; (-1)^x / sqrt(L) for
    even L. A symmetric circulant matrix with eigenvalues lambda_k (the DFT of its first row;
    lambda_k = lambda_{-k}) is Q diag(lambda[freq]) Q^T; in 2D, a kernel even in each axis gives
    (Q (x) Q) diag(lambda[freq_a, freq_b]) (Q (x) Q)^T."""
    x = torch.arange(L, dtype=torch.float64)
    cols, freq = [torch.full((L,), 1 / math.sqrt(L), dtype=torch.float64)], [0]
    for k in range(1, (L + 1) // 2):
        angle = 2 * math.pi * k * x / L
        cols += [math.sqrt(2 / L) * torch.cos(angle), math.sqrt(2 / L) * torch.sin(angle)]
        freq += [k, k]
    if L % 2 == 0:
        cols.append((1 - 2 * (x % 2)) / math.sqrt(L))
        freq.append(L // 2)
    return torch.stack(cols, 1), torch.tensor(freq)


class TorusSampler:
    """Gaussian items with a (block-)circulant covariance on the torus, L (1D) or L x L (2D), from white
    noise read as Fourier coefficients: one real inverse FFT per row, no forward FFT.

    An item's noise w has shape ``(2H,)`` (1D) or ``(L, 2H)`` (2D), H = L // 2 + 1: each row holds H
    complex numbers (real, imaginary parts). Item t of class c is z = irfft(S_c * w) along the last
    axis and, in 2D, then Q z along the first, with Q the real Fourier basis
    (:func:`real_fourier_basis`). For kernel eigenvalues lambda (the DFT of the covariance's first
    row, even in each axis, clipped at 0),

        S_c[a, k] = sqrt(L * m_k * lambda_c[freq(a), k])   on both parts of frequency k,
        m_k = 1 for k = 0 and k = L / 2, 1/2 otherwise,   0 on the imaginary parts irfft ignores,

    gives Cov z = the circulant covariance exactly: a pair k, L - k contributes
    (2 / L) a_k (u cos(theta) - v sin(theta)) to z (u, v the two normals, a_k = sqrt(L lambda_k / 2)),
    of covariance (2 / L) lambda_k cos(theta_x - theta_y), the DFT pair's share; k = 0 and L/2 are
    real. In 2D every first-axis basis function q_a carries the last-axis spectrum at its frequency.
    ``scale`` multiplies all S_c (the NLGP folds its gain g / sqrt 2 in here).
    """

    @staticmethod
    def noise_shape_for(L: int, dim: int) -> tuple[int, ...]:
        return (2 * (L // 2 + 1),) if dim == 1 else (L, 2 * (L // 2 + 1))

    def __init__(self, L: int, dim: int, spectra: Sequence[torch.Tensor], scale: float = 1.0) -> None:
        self.L, self.dim_grid, self.dim = L, dim, L**dim
        H = L // 2 + 1
        self.noise_shape = self.noise_shape_for(L, dim)
        k = torch.arange(H)
        weight = torch.where((k == 0) | (2 * k == L), 1.0, 0.5).double()
        q, freq = real_fourier_basis(L)
        self.q = q.to(torch.float32)
        scales = []
        for lam in spectra:
            lam = lam.clamp_min(0)[..., :H] if dim == 1 else lam.clamp_min(0)[freq][:, :H]
            amp = scale * (L * weight * lam).sqrt()
            imag = torch.where((k == 0) | (2 * k == L), 0.0, 1.0).double() * amp
            scales.append(torch.stack([amp, imag], -1).reshape(self.noise_shape))
        self.scales = torch.stack(scales).to(torch.float32)

    def __call__(self, w: torch.Tensor, labels: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Items (n, D) float32 (into ``out`` if given) from noise w (n, *noise_shape) float32 and their
        labels; w is overwritten."""
        for c, r in enumerate(class_rows(labels, len(self.scales))):
            if isinstance(r, slice):
                w[r].mul_(self.scales[c])
            elif len(r):
                w[r] = w[r] * self.scales[c]
        out = torch.empty(len(w), self.dim) if out is None else out
        spectrum = torch.view_as_complex(w.reshape(*w.shape[:-1], -1, 2))
        with one_thread():
            if self.dim_grid == 1:
                torch.fft.irfft(spectrum, n=self.L, out=out)
            else:  # the last axis, then the first, item by item
                torch.matmul(self.q, torch.fft.irfft(spectrum, n=self.L), out=out.view(len(w), self.L, self.L))
        return out

    def matrix(self, c: int) -> torch.Tensor:
        """A_c (D, noise size) float64 with item = A_c w (A_c A_c^T is the covariance sampled)."""
        size = math.prod(self.noise_shape)
        eye = torch.eye(size).reshape(size, *self.noise_shape)
        return self(eye, torch.full((size,), c)).double().T


class LinearSampler:
    """Item t of class c: ``mean_c + Q_c (S_c * w_t)``, for whole blocks of items at once.

    ``grid`` is an item's shape and noise shape: ``(D,)`` (Q_c is D x D) or ``(L, L)`` (Q_c is L x L,
    applied along both axes: the separable basis Q_c (x) Q_c). ``bases`` (one per class), ``scales``
    (K, *grid) the S_c or None, ``means`` (K, D) or None. Everything is float32.

    Each block's rows of class c are packed into a slot of a multiple of 16 rows (zero padding),
    and class c's blocks take one batched matmul, a batch element per block. MKL rounds a row
    differently depending on its memory alignment; with the padding every row sits at the same
    64-byte aligned offset whatever else is in the call (packed without it, a block gets other bits
    alone than next to others: the chunking tests catch that).
    """

    def __init__(self, grid: tuple[int, ...], bases: Sequence[torch.Tensor], scales: torch.Tensor | None = None,
                 means: torch.Tensor | None = None) -> None:
        self.grid, self.dim = tuple(grid), math.prod(grid)
        self.noise_shape = self.grid
        self.bases = [q.to(torch.float32).contiguous() for q in bases]
        self.scales = None if scales is None else scales.to(torch.float32).contiguous()
        self.means = None if means is None else means.to(torch.float32).contiguous()

    def _apply(self, q: torch.Tensor, w: torch.Tensor, blocks: int) -> torch.Tensor:
        """(Q (x) Q) applied to every item of w (blocks * rows, *grid), one batch element per block."""
        if len(self.grid) == 1:
            return torch.matmul(w.reshape(blocks, -1, self.dim), q.T).reshape(-1, self.dim)
        L = self.grid[0]
        t = torch.matmul(w.reshape(blocks, -1, L), q.T)  # (blocks, rows * L, L): the last axis
        return torch.matmul(q, t.reshape(-1, L, L)).reshape(-1, self.dim)  # then the first, item by item

    def __call__(self, w: torch.Tensor, labels: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Items (n, D) float32 (into ``out`` if given) from the white noise w (n, *grid) float32 of
        whole blocks (n a multiple of BLOCK) and their labels."""
        blocks = len(w) // BLOCK
        w = w.reshape(len(w), *self.grid)
        out = torch.empty(len(w), self.dim) if out is None else out
        for c, q in enumerate(self.bases):
            idx = (labels == c).nonzero().flatten()
            if not len(idx):
                continue
            block = idx // BLOCK
            counts = torch.bincount(block, minlength=blocks)
            rows = -(-int(counts.max()) // 16) * 16
            dest = block * rows + torch.arange(len(idx)) - (torch.cumsum(counts, 0) - counts)[block]
            x = w.new_zeros(blocks * rows, *self.grid)
            x[dest] = w[idx] if self.scales is None else w[idx] * self.scales[c]
            z = self._apply(q, x, blocks)[dest]
            out[idx] = z if self.means is None else self.means[c] + z
        return out

    def matrix(self, c: int) -> torch.Tensor:
        """A_c (D, D) float64 with item = mean_c + A_c w: what the sampler really applies (A_c A_c^T is
        the covariance it samples), by pushing the unit noises through it."""
        eye = torch.eye(self.dim)
        pad = -(-self.dim // BLOCK) * BLOCK
        w = torch.cat([eye, eye.new_zeros(pad - self.dim, self.dim)])
        out = self(w, torch.full((pad,), c))[:self.dim]
        return (out if self.means is None else out - self.means[c]).double().T


Window = tuple[int, torch.Tensor, torch.Tensor]  # first block, X (blocks * BLOCK, D), y


class BlockStream:
    """Items of keyed streams, computed and cached whole blocks at a time (module docstring).

    - ``noise(key, b, out)`` fills ``out`` (BLOCK, *noise_shape) of ``noise_dtype`` with block b's noise;
    - ``labels(key, start, count)`` gives the int64 labels of items start .. start + count - 1;
    - ``transform(noise, labels, out)`` maps the noise of whole blocks (m * BLOCK, *noise_shape) to
      float32 items, written into ``out`` (m * BLOCK, dim); ``batched=False`` hands it one block at a
      time (version 1's bits), else up to CHUNK_FLOATS of noise at a time.
    """

    def __init__(self, dim: int, noise_shape: tuple[int, ...], noise_dtype: torch.dtype,
                 noise: Callable[[Key, int, torch.Tensor], None], labels: Callable[[Key, int, int], torch.Tensor],
                 transform: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], object], batched: bool) -> None:
        self.dim, self.noise_shape, self.noise_dtype = dim, tuple(noise_shape), noise_dtype
        self.noise, self.labels, self.transform, self.batched = noise, labels, transform, batched
        self._windows: OrderedDict[Key, Window] = OrderedDict()
        self._next: dict[Key, tuple[int, int]] = {}  # key -> (where a sequential call starts, blocks read ahead)
        self._ahead_cap = max(1, READAHEAD_FLOATS // (BLOCK * dim))

    def sample(self, n: int, key: Key, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Items offset .. offset + n - 1 of stream ``key``: X float32 (n, dim), y int64 (n,).
        The result never shares memory with the cache."""
        if n == 0:
            return torch.empty(0, self.dim), torch.empty(0, dtype=torch.int64)
        stop = offset + n
        seq, ahead = self._next.get(key, (None, 0))
        window = self._windows.get(key)
        if window is not None and 0 <= offset - window[0] * BLOCK and stop - window[0] * BLOCK <= len(window[1]):
            a = offset - window[0] * BLOCK  # served from the window (a training step)
            self._next[key] = (stop, ahead)
            return window[1][a:a + n].clone(), window[2][a:a + n].clone()
        w0, X, y = self._windows.pop(key) if window is not None else (0, torch.empty(0, self.dim),
                                                                       torch.empty(0, dtype=torch.int64))
        first, last = offset // BLOCK, -(-stop // BLOCK)
        # read ahead only what every stream's window can keep at once: past CACHE_FLOATS the LRU would evict the
        # window a round-robin reader (an ensemble) needs next, and every block read ahead would be computed twice
        share = CACHE_FLOATS // (BLOCK * self.dim * (len(self._windows) + 1)) - 2  # minus the partial blocks
        ahead = (min(self._ahead_cap, share, 2 * ahead or 1) if seq == offset and last - first < READAHEAD_BELOW
                 and share > 0 else 0)
        self._next[key] = (stop, ahead)
        w1 = w0 + len(X) // BLOCK
        if not w0 <= first < w1:  # the window does not hold the start: compute from there
            w0, X, y, w1 = first, X[:0], y[:0], first
        nX, ny = self._compute(key, w1, last + ahead)
        if offset >= w1 * BLOCK:
            rX, ry = nX[offset - w1 * BLOCK:stop - w1 * BLOCK], ny[offset - w1 * BLOCK:stop - w1 * BLOCK]
        else:  # straddles the old window and the new blocks: a fresh tensor
            rX = torch.cat([X[offset - w0 * BLOCK:], nX[:stop - w1 * BLOCK]])
            ry = torch.cat([y[offset - w0 * BLOCK:], ny[:stop - w1 * BLOCK]])
        keep = (stop // BLOCK - w1) * BLOCK  # new blocks before the one holding item `stop` are consumed
        kX, ky = nX[keep:], ny[keep:]
        if offset >= w1 * BLOCK:  # the result and the window are views of nX: copy the smaller
            if len(rX) <= len(kX):
                rX, ry = rX.clone(), ry.clone()
            else:
                kX, ky = kX.clone(), ky.clone()
        if len(kX):
            self._windows[key] = (w1 + keep // BLOCK, kX, ky)
            self._evict()
        return rX, ry

    def _evict(self) -> None:
        total = sum(w[1].numel() for w in self._windows.values())
        while len(self._windows) > 1 and total > CACHE_FLOATS:
            total -= self._windows.popitem(last=False)[1][1].numel()
        while len(self._next) > 4096:
            self._next.pop(next(iter(self._next)))

    def _compute(self, key: Key, first: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Items of blocks first .. stop - 1 of stream ``key``: X (items, dim), y. Batched streams
        transform up to CHUNK_FLOATS of noise at a time (cache-sized, one buffer)."""
        X = torch.empty((stop - first) * BLOCK, self.dim)
        y = self.labels(key, first * BLOCK, (stop - first) * BLOCK)
        per = max(1, CHUNK_FLOATS // (BLOCK * math.prod(self.noise_shape))) if self.batched else 1
        noise = torch.empty(min(per, stop - first) * BLOCK, *self.noise_shape, dtype=self.noise_dtype)
        for start in range(first, stop, per):
            count = min(per, stop - start)
            for j in range(count):
                self.noise(key, start + j, noise[j * BLOCK:(j + 1) * BLOCK])
            rows = slice((start - first) * BLOCK, (start - first + count) * BLOCK)
            self.transform(noise[:count * BLOCK], y[rows], X[rows])
        return X, y
