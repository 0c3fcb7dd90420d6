"""Mini-batches: one run's source (by step index), and the ensemble's aligned chunk buffer.

Mini-batch ``t`` is a pure function of (seed, t): a seeded permutation per epoch of an
in-memory training set, or, online, items ``t*B .. (t+1)*B`` of the data set's sample stream.
So a round restarted at step k (late rewinding, resume) sees exactly the same data.

An ensemble gathers its mini-batches ``S`` steps at a time into one padded buffer ``(R, S, B*D)``
(:class:`BatchBuffer`): all fixed training sets of the ensemble live in one pooled tensor and every
run's indices for ``S`` steps are gathered by one indexing operation; online runs draw ``S*B``
samples of their own stream per call, and members reading the same stream (one data set object,
one seed: e.g. the pruning methods of one seed) share that call, a pure function of seed and
offset. A step then reads a view. ``S`` depends on the batch and input size only
(:func:`chunk_steps`), so a run's sample calls are the same alone and in any ensemble.
"""

from __future__ import annotations

import math

import torch

from ..config import TrainConfig
from ..data import Dataset
from ..errors import TicketscopeError
from ..seeding import generator
from .stacked import aligned

CHUNK_BYTES = 2**19
"""Target size of one run's part of the mini-batch buffer (``S`` steps of it)."""

MIN_CHUNK, MAX_CHUNK = 8, 64
"""Bounds on the steps per chunk ``S``: also the interval between divergence checks."""


class BatchSource:
    """Mini-batches by step index from a fixed training set or an online sample stream."""

    def __init__(self, batch_size: int, device: torch.device, seed: int,
                 X: torch.Tensor | None = None, y: torch.Tensor | None = None,
                 dataset: Dataset | None = None) -> None:
        if (X is None) == (dataset is None):
            raise ValueError("give either a fixed training set (X, y) or an online dataset")
        self.B, self.device, self.seed = batch_size, device, seed
        self.X, self.y, self.dataset = X, y, dataset
        if X is not None:
            if len(X) < batch_size:
                raise TicketscopeError(
                    f"train.batch_size = {batch_size} exceeds the training set ({len(X)} samples); "
                    "lower train.batch_size, or raise data.n_train where the data set holds more")
            self.per_epoch = len(X) // batch_size
        self._epoch, self._perm = -1, None

    def steps_for(self, cfg: TrainConfig) -> int:
        """The round's budget in steps (epochs converted with drop-last batches)."""
        if cfg.epochs is None:
            return int(cfg.steps)
        if self.X is None:
            raise TicketscopeError("train.epochs needs a fixed training set; with data.online give train.steps")
        return max(1, math.ceil(cfg.epochs * self.per_epoch))

    def _epoch_perm(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            perm = torch.randperm(len(self.X), generator=generator(self.seed, "order", epoch))
            self._epoch, self._perm = epoch, perm.to(self.X.device)
        return self._perm

    def indices(self, start: int, stop: int) -> torch.Tensor:
        """Fixed set: (stop - start, B) rows of ``X`` forming the mini-batches of steps start..stop-1."""
        out = torch.empty(stop - start, self.B, dtype=torch.long, device=self.X.device)
        step = start
        while step < stop:
            epoch, i = divmod(step, self.per_epoch)
            n = min(stop - step, self.per_epoch - i)
            out[step - start:step - start + n] = self._epoch_perm(epoch)[i * self.B:(i + n) * self.B].view(n, self.B)
            step += n
        return out

    def online(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Online: the samples of steps start..stop-1 in one call, X (n*B, D) and y (n*B,) (CPU)."""
        return self.dataset.sample((stop - start) * self.B, seed=self.seed, offset=start * self.B)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The mini-batch of one step, on ``device`` (the engine reads chunks: :class:`BatchBuffer`)."""
        if self.dataset is not None:
            X, y = self.online(step, step + 1)
            return X.to(self.device), y.to(self.device)
        idx = self.indices(step, step + 1)[0]
        return self.X[idx], self.y[idx]


def chunk_steps(batch_size: int, input_dim: int) -> int:
    """Steps per chunk: a function of the run's own shapes only, never of the ensemble's size, so
    a run's online samples are drawn in the same calls alone or inside any ensemble."""
    per_step = aligned(batch_size * input_dim) * 4
    return max(MIN_CHUNK, min(MAX_CHUNK, CHUNK_BYTES // per_step))


class BatchBuffer:
    """Every member's mini-batches for ``S`` steps at a time, in one aligned ``(R, S, B*D)`` buffer."""

    def __init__(self, sources: list[BatchSource], B: int, D: int, device: torch.device) -> None:
        R = len(sources)
        self.sources, self.B, self.D, self.R = sources, B, D, R
        self.Px = aligned(B * D)
        self.S = chunk_steps(B, D)
        self.X = torch.zeros(R, self.S, self.Px, device=device)
        self.y = torch.zeros(R, self.S, B, dtype=torch.long, device=device)
        self.views = [(self.X[:, i, :B * D].unflatten(1, (B, D)), self.y[:, i].unsqueeze(2)) for i in range(self.S)]
        self.fixed = [i for i, s in enumerate(sources) if s.dataset is None]
        shared: dict[tuple[int, int], list[int]] = {}
        for i, s in enumerate(sources):
            if s.dataset is not None:
                shared.setdefault((id(s.dataset), s.seed), []).append(i)
        self.online = list(shared.values())  # members drawing the same stream: drawn once per chunk
        if self.fixed:
            self.pool_X, self.pool_y, self.base = _pool([sources[i] for i in self.fixed], device)
            self.fixed_rows = torch.tensor(self.fixed, device=device)

    def fill(self, s0: int, s1: int) -> None:
        """Load the mini-batches of steps ``s0 .. s1-1`` (at most ``S``) into the buffer."""
        n, B, BD = s1 - s0, self.B, self.B * self.D
        if self.fixed:
            idx = torch.stack([self.sources[i].indices(s0, s1) + base for i, base in zip(self.fixed, self.base)])
            if len(self.fixed) == self.R and self.Px == BD and n == self.S:
                torch.index_select(self.pool_X, 0, idx.view(-1), out=self.X.view(-1, self.D))
                torch.index_select(self.pool_y, 0, idx.view(-1), out=self.y.view(-1))
            else:
                X, y = self.pool_X[idx].view(len(self.fixed), n, BD), self.pool_y[idx]
                if len(self.fixed) == self.R:
                    self.X[:, :n, :BD] = X
                    self.y[:, :n] = y
                else:
                    self.X[self.fixed_rows, :n, :BD] = X
                    self.y[self.fixed_rows, :n] = y
        for first, *rest in self.online:
            X, y = self.sources[first].online(s0, s1)
            self.X[first, :n, :BD].copy_(X.view(n, BD))  # one host-to-device copy per stream
            self.y[first, :n].copy_(y.view(n, B))
            for i in rest:
                self.X[i, :n, :BD].copy_(self.X[first, :n, :BD])
                self.y[i, :n].copy_(self.y[first, :n])


def _pool(sources: list[BatchSource], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """One tensor holding every fixed training set, and each set's first row in it.

    When the sets already share one storage (``runs`` pools them) that storage is used as is;
    otherwise they are concatenated.
    """
    D = sources[0].X.shape[1]

    def shared(ts: list[torch.Tensor], width: int) -> tuple[torch.Tensor, list[int]] | None:
        st = ts[0].untyped_storage()
        rows = st.nbytes() // (ts[0].element_size() * width)
        if rows * ts[0].element_size() * width != st.nbytes():
            return None
        for t in ts:
            if (t.untyped_storage().data_ptr() != st.data_ptr() or not t.is_contiguous()
                    or t.storage_offset() % width):
                return None
        base = ts[0].as_strided((rows, width) if width > 1 else (rows,), (width, 1) if width > 1 else (1,), 0)
        return base, [t.storage_offset() // width for t in ts]

    got_X = shared([s.X for s in sources], D)
    got_y = shared([s.y for s in sources], 1)
    if got_X is not None and got_y is not None and got_X[1] == got_y[1]:
        return got_X[0], got_y[0], got_X[1]
    starts = [0]
    for s in sources[:-1]:
        starts.append(starts[-1] + len(s.X))
    return (torch.cat([s.X.to(device) for s in sources]), torch.cat([s.y.to(device) for s in sources]), starts)
