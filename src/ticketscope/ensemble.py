"""Ensemble training: many runs of one network shape trained together as one stacked network.

Runs whose networks have the same shapes and whose training settings agree (optimizer, lr,
schedule, budget, batch size, activation, bias, batch norm, loss: :func:`ensemble_key`) train as
one *ensemble*: every parameter is stacked along a leading run axis, each layer is one batched
matrix product for all runs (``torch.baddbmm`` / ``torch.bmm``), the forward and backward pass are
written out by hand (no autograd graph), and one ``torch.optim`` step updates every run at once
(SGD and Adam are elementwise, so each run's update only reads its own slice). Everything that
makes a run itself stays its own: its initial state, masks, mini-batch stream (its own seed,
data set, fixed training set or online stream), its snapshots and evaluations.

**A run's numbers never depend on its neighbours.** Every operation is computed per run slice
with the same arguments, alignment and thread count whatever else is in the ensemble, so a run's
result is bit-identical alone (an ensemble of one) or inside an ensemble of any size and mix,
on the same machine with the same torch thread count. Two findings about CPU GEMMs (torch 2.x with
MKL) shape the layout:

* MKL's results depend on the alignment of the operands and of the output: slice ``r`` of a
  contiguous ``(R, K, D)`` tensor starts at byte ``4 r K D`` and, unless ``K D`` is a multiple of 4,
  some runs got different bits than the same product on a fresh (64-byte aligned) tensor (seen
  for 37 x 50 @ 50 x 11 at one thread: every odd run differed). So every per-run
  slice here (parameters, gradients, activations, mini-batches) starts on a 64-byte boundary:
  per-run strides are padded to a multiple of :data:`ALIGN` floats.
* ``torch.bmm`` on CPU (products of at least 400 multiply-adds) calls MKL's batched GEMM when the
  output is contiguous; MKL then ran each product of the batch on one thread (its bits matched a
  one-thread ``sgemm``), but a batch of one goes to plain ``sgemm``, which splits one product
  across all threads: at two threads a run alone and the same run in an ensemble got different
  bits (e.g. the weight gradient of a 100 x 13 batch into 7 units). When the output is *not*
  contiguous, torch instead loops over the batch calling the same ``gemm`` per slice that a batch of
  one calls. Every GEMM output here is a padded, hence non-contiguous, view (at least one spare
  element per run), so each run's slice is always one plain ``gemm`` call: identical whatever the
  ensemble, for any thread count. (Small products below 400 multiply-adds use torch's own
  per-slice loop, also independent of the batch.)

Elementwise operations (activations, softmax rows, optimizer updates, mask multiply) and the
bias / batch-norm reductions over the mini-batch are per element or per run row; they were
checked to give the same bits at any offset, and the padding keeps every run's slice on the same
vector-lane alignment anyway. The one policy to respect: **compare runs at one torch thread
count** (``RunConfig.threads``, which is part of :func:`ensemble_key`); results on another machine
or at another thread count may differ in the last bits, as any BLAS result does. These findings
are for CPUs (MKL); on CUDA, cuBLAS chooses its batched kernels by the batch count, so there a
run's bits may depend on the ensemble's size (not verified: no GPU was at hand).

Mini-batches are gathered ``S`` steps at a time into one padded buffer ``(R, S, B*D)``: all fixed
training sets of the ensemble live in one pooled tensor and every run's indices for ``S`` steps are
gathered by one indexing operation; online runs draw ``S*B`` samples of their own stream per call,
and members reading the same stream (one data set object, one seed: e.g. the pruning methods of
one seed) share that call, a pure function of seed and offset.
A step then reads a view. ``S`` depends on the batch and input size only (:func:`chunk_steps`),
so a run's sample calls are the same alone and in any ensemble.

Divergence is checked without a host synchronisation per step: each step writes the sum of each
run's logits into a small buffer that is inspected once per chunk, and a non-finite entry names
the run, round and exact step; that run is reported as diverged while the others train on (a NaN
in one run's slice never reaches another's).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .config import ModelConfig, RunConfig, TrainConfig
from .errors import TicketscopeError
from .training import BatchSource, lr_factor, make_optimizer

ALIGN = 16
"""Per-run strides are multiples of this many floats (64 bytes), so every run slice is aligned."""

CHUNK_BYTES = 2**19
"""Target size of one run's part of the mini-batch buffer (``S`` steps of it)."""

MIN_CHUNK, MAX_CHUNK = 8, 64
"""Bounds on the steps per chunk ``S``: also the interval between divergence checks."""

BN_EPS, BN_MOMENTUM = 1e-5, 0.1  # torch.nn.BatchNorm1d defaults (the FCN's norms)


def chunk_steps(batch_size: int, input_dim: int) -> int:
    """Steps per chunk: a function of the run's own shapes only, never of the ensemble's size, so
    a run's online samples are drawn in the same calls alone or inside any ensemble."""
    per_step = -(-batch_size * input_dim // ALIGN) * ALIGN * 4
    return max(MIN_CHUNK, min(MAX_CHUNK, CHUNK_BYTES // per_step))


def padded(n: int) -> int:
    """Per-run stride for ``n`` elements: a multiple of :data:`ALIGN` with at least one spare."""
    return -(-(n + 1) // ALIGN) * ALIGN


_NOT_TRAINING = {"eval_every", "n_eval_train", "snapshots"}
"""TrainConfig fields that never enter an update: members of one ensemble may differ in them."""


def ensemble_key(cfg: RunConfig) -> str:
    """Runs with the same key can train in one ensemble (a JSON string; equal keys, same ensemble).

    It holds what the stacked training shares: the network's shapes and non-linearity (hidden
    widths, activation, bias, batch norm; not its init, which is per run), every training setting
    that enters an update (optimizer, lr, momentum, schedule, budget, batch size, loss; not
    ``eval_every`` or ``n_eval_train``), the input shape and number of classes as far as the config
    fixes them, the device and the thread count. Seeds, data set variants of the same shape (NLGP
    or its clone, gain, correlation lengths, online or fixed, training set size) and every pruning
    setting may differ.
    """
    d = cfg.data
    if d.name == "nlgp":
        shape: list[Any] = ["nlgp", d.dim, d.L, len(d.xis)]
    elif d.name == "natural":
        shape = ["natural", d.L]
    elif d.name == "cifar10":
        shape = ["cifar10", d.grayscale]
    else:
        shape = [d.name]
    key = {
        "model": cfg.model.model_dump(mode="json", exclude={"init", "init_std"}),
        "train": cfg.train.model_dump(mode="json", exclude=_NOT_TRAINING),
        "shape": shape, "device": cfg.device, "threads": cfg.threads,
    }
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def _shape(cfg: RunConfig) -> tuple[int, int]:
    """(input size, classes) as far as the config fixes them (no data set is built)."""
    d = cfg.data
    if d.name == "nlgp":
        return d.L ** d.dim, len(d.xis)
    if d.name == "natural":
        return d.L * d.L, 10
    if d.name == "cifar10":
        return 1024 if d.grayscale else 3072, 10
    return 784, 10


def run_memory_bytes(cfg: RunConfig) -> int:
    """Rough memory one run takes inside an ensemble: stacked parameters with their gradient,
    mask and optimizer state, activations of a step, its share of the mini-batch buffer, its
    training set (fixed) and evaluation sets."""
    D, C = _shape(cfg)
    widths = [D, *cfg.model.hidden, C]
    B = cfg.train.batch_size
    params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    states = 3 + (2 if cfg.train.optimizer == "adam" else 1)
    activations = 6 * B * sum(widths)
    batches = chunk_steps(B, D) * B * (D + 2)
    data = (0 if cfg.data.online else cfg.data.n_train) * D + (cfg.train.n_eval_train + cfg.data.n_test) * D
    return 4 * (states * params + activations + batches + data)


def plan_ensembles(configs: list[RunConfig], max_runs: int | None = None,
                   max_bytes: int | None = 2 * 2**30) -> list[list[int]]:
    """Indices of ``configs`` grouped into ensembles: equal :func:`ensemble_key` (device included), in
    order of first appearance, each cut to at most ``max_runs`` runs and about ``max_bytes`` of
    memory (:func:`run_memory_bytes`). For schedulers: each group is one ``run_ensemble`` call.
    Before the cut, runs that read one sample stream (equal data config and seed, e.g. the pruning
    methods of one seed) are put side by side, so that they land in one ensemble and draw it once."""
    groups: dict[str, dict[tuple[str, int], list[int]]] = {}
    for i, cfg in enumerate(configs):
        streams = groups.setdefault(ensemble_key(cfg), {})
        streams.setdefault((cfg.data.model_dump_json(), cfg.seed), []).append(i)
    out = []
    for streams in groups.values():
        members = [i for same in streams.values() for i in same]
        cap = len(members) if max_runs is None else max(1, max_runs)
        if max_bytes is not None:
            cap = min(cap, max(1, max_bytes // max(1, max(run_memory_bytes(configs[i]) for i in members))))
        out.extend(members[k:k + cap] for k in range(0, len(members), cap))
    return out


@dataclass
class Member:
    """One run's part in an ensemble's training of one round.

    ``state`` is the network's state dict (``FCN.state_dict()`` keys: weights, biases, masks, batch
    norm statistics) when the round's training starts, with the masks already applied.
    ``on_snapshot(step, state)`` is called when step ``snapshot_at`` begins (or at the end when it
    equals the budget), ``on_eval(step, state)`` when a step that is a multiple of
    ``train.eval_every`` begins (after the first), ``on_step(step, get_state)`` after every step
    (slow: only for tests and the single-model :func:`ticketscope.training.train`),
    ``on_record(step, state)`` when each step of ``record_at`` begins (weight snapshots; a step equal
    to the budget: at the end).
    """

    model: ModelConfig
    train: TrainConfig
    state: dict[str, torch.Tensor]
    batches: BatchSource
    round: int = 0
    label: str = "run"
    snapshot_at: int | None = None
    on_snapshot: Callable[[int, dict[str, torch.Tensor]], None] | None = None
    on_eval: Callable[[int, dict[str, torch.Tensor]], None] | None = None
    on_step: Callable[[int, Callable[[], dict[str, torch.Tensor]]], None] | None = None
    record_at: tuple[int, ...] = ()
    on_record: Callable[[int, dict[str, torch.Tensor]], None] | None = None


@dataclass
class EnsembleResult:
    """Each member's final state (None if it diverged), its error, and the training wall time."""

    states: list[dict[str, torch.Tensor] | None]
    errors: list[TicketscopeError | None]
    train_time_s: float
    steps: int = 0
    hook_time_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _widths(state: dict[str, torch.Tensor]) -> list[int]:
    n_layers = sum(1 for k in state if k.startswith("layers.") and k.endswith(".weight"))
    shapes = [tuple(state[f"layers.{i}.weight"].shape) for i in range(n_layers)]
    return [shapes[0][1]] + [s[0] for s in shapes]


class StackedFCN:
    """R fully connected networks of one shape, parameters stacked along a leading run axis.

    All weights and biases of run r live in row r of one ``(R, P)`` tensor ``theta`` (each layer's
    segment starting on a 64-byte boundary); ``mask`` has the same layout (1 for biases, 0 on the
    padding) so re-applying every mask of every run is one multiply, and ``grad`` is the gradient
    buffer the optimizer reads. ``W[l]`` is the ``(R, out, in)`` view of layer l's weights.
    """

    def __init__(self, widths: list[int], model: ModelConfig, R: int, device: torch.device) -> None:
        self.widths, self.cfg, self.R, self.device = list(widths), model, R, device
        self.L = len(widths) - 1
        # a fixed readout (model.readout) lives in its own constant buffer, outside theta: the
        # optimizer never sees it, and theta's layout of the trained layers is the usual one
        self.fixed_readout = model.readout == "fixed"
        n_trained = self.L - 1 if self.fixed_readout else self.L
        offsets, self.P = self._layout(range(n_trained))
        self.theta = torch.zeros(R, self.P, device=device)
        self.mask = torch.zeros(R, self.P, device=device)
        self.grad = torch.zeros(R, self.P, device=device)
        owners = [(self.theta, self.mask, self.grad, self.P)] * n_trained
        if self.fixed_readout:
            const_offsets, Pc = self._layout([self.L - 1])
            offsets += const_offsets
            owners.append((torch.zeros(R, Pc, device=device), torch.zeros(R, Pc, device=device),
                           torch.zeros(R, Pc, device=device), Pc))  # (its gradient buffer is never written)
        # meanfield (model.scaling): hidden layer l's pre-activation is (W x + b) * scale[l]
        self.scale = [1.0 / math.sqrt(widths[l]) if model.scaling == "meanfield" and l < self.L - 1 else 1.0
                      for l in range(self.L)]
        self.W, self.Wt, self.gW, self.Wmask, self.b, self.b3, self.gb = [], [], [], [], [], [], []
        for l, ((w_off, b_off), (theta, mask, grad, P)) in enumerate(zip(offsets, owners)):
            n_out, n_in = widths[l + 1], widths[l]
            view = lambda t, o=w_off, a=n_out, c=n_in, P=P: t.as_strided((R, a, c), (P, c, 1), o)  # noqa: E731
            self.W.append(view(theta))
            self.Wt.append(self.W[-1].transpose(1, 2))
            self.gW.append(view(grad))
            self.Wmask.append(view(mask))
            if model.bias:
                bview = lambda t, o=b_off, a=n_out, P=P: t.as_strided((R, a), (P, 1), o)  # noqa: E731
                self.b.append(bview(theta))
                self.b3.append(self.b[-1].unsqueeze(1))
                self.gb.append(bview(grad))
                bview(mask).fill_(1.0)
        if model.batchnorm:
            self.running_mean = [torch.zeros(R, w, device=device) for w in widths[:-1]]
            self.running_var = [torch.ones(R, w, device=device) for w in widths[:-1]]
            self.batches_tracked = torch.zeros(self.L, R, dtype=torch.long, device=device)

    def _layout(self, layers: Any) -> tuple[list[tuple[int, int]], int]:
        """(weight offset, bias offset) of each of ``layers`` in one row, and the row's padded length."""
        offsets, off = [], 0
        for l in layers:
            n_out, n_in = self.widths[l + 1], self.widths[l]
            w_off = off
            off += -(-n_out * n_in // ALIGN) * ALIGN
            b_off = off
            if self.cfg.bias:
                off += -(-n_out // ALIGN) * ALIGN
            offsets.append((w_off, b_off))
        return offsets, padded(off)

    @torch.no_grad()
    def load(self, i: int, state: dict[str, torch.Tensor]) -> None:
        """Copy an FCN state dict into run slot ``i`` (weights re-masked, as the FCN keeps them)."""
        for l in range(self.L):
            self.Wmask[l][i].copy_(state[f"layers.{l}.mask"])
            self.W[l][i].copy_(state[f"layers.{l}.weight"])
            self.W[l][i].mul_(self.Wmask[l][i])
            if self.cfg.bias:
                self.b[l][i].copy_(state[f"layers.{l}.bias"])
            if self.cfg.batchnorm:
                self.running_mean[l][i].copy_(state[f"norms.{l}.running_mean"])
                self.running_var[l][i].copy_(state[f"norms.{l}.running_var"])
                self.batches_tracked[l, i] = state[f"norms.{l}.num_batches_tracked"]

    @torch.no_grad()
    def state(self, i: int) -> dict[str, torch.Tensor]:
        """Run ``i``'s FCN state dict (copies, on the ensemble's device)."""
        out: dict[str, torch.Tensor] = {}
        for l in range(self.L):
            out[f"layers.{l}.weight"] = self.W[l][i].clone()
            if self.cfg.bias:
                out[f"layers.{l}.bias"] = self.b[l][i].clone()
            out[f"layers.{l}.mask"] = self.Wmask[l][i].clone()
        if self.cfg.batchnorm:
            for l in range(self.L):
                out[f"norms.{l}.running_mean"] = self.running_mean[l][i].clone()
                out[f"norms.{l}.running_var"] = self.running_var[l][i].clone()
                out[f"norms.{l}.num_batches_tracked"] = self.batches_tracked[l, i].clone()
        return out


def _buffer(R: int, rows: int, cols: int, device: torch.device) -> torch.Tensor:
    """A zeroed ``(R, rows, cols)`` view whose run slices start 64-byte aligned, never contiguous."""
    P = padded(rows * cols)
    return torch.zeros(R, P, device=device).as_strided((R, rows, cols), (P, cols, 1))


class _Workspace:
    """Activation and gradient buffers of one training step (aligned, reused every step)."""

    def __init__(self, net: StackedFCN, B: int) -> None:
        R, w, dev = net.R, net.widths, net.device
        L = net.L
        self.h = [_buffer(R, B, w[l + 1], dev) for l in range(L)]  # pre-activations (h[L-1]: logits)
        self.a = [None] + [_buffer(R, B, w[l], dev) for l in range(1, L)]  # a[l]: input of layer l
        self.dh = [_buffer(R, B, w[l + 1], dev) for l in range(L)]  # gradient w.r.t. h[l]
        self.dx = [None] + [_buffer(R, B, w[l], dev) for l in range(1, L)]  # gradient w.r.t. layer l's input
        if net.cfg.batchnorm:
            self.xn = [_buffer(R, B, w[l], dev) for l in range(L)]  # normalized layer inputs
            self.da = [None] + [_buffer(R, B, w[l], dev) for l in range(1, L)]  # gradient w.r.t. a[l]
            self.inv: list[torch.Tensor | None] = [None] * L
        self.inputs: list[torch.Tensor | None] = [None] * L


class _Stream:
    """Every member's mini-batches for ``S`` steps at a time, in one aligned ``(R, S, B*D)`` buffer."""

    def __init__(self, sources: list[BatchSource], B: int, D: int, device: torch.device) -> None:
        R = len(sources)
        self.sources, self.B, self.D, self.R = sources, B, D, R
        self.Px = -(-B * D // ALIGN) * ALIGN
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


def _check_members(members: list[Member]) -> None:
    first = members[0]
    widths = _widths(first.state)
    m0 = first.model.model_dump(exclude={"init", "init_std"})
    t0 = first.train.model_dump(exclude=_NOT_TRAINING)
    for m in members[1:]:
        if (_widths(m.state) != widths or m.model.model_dump(exclude={"init", "init_std"}) != m0
                or m.train.model_dump(exclude=_NOT_TRAINING) != t0
                or m.batches.B != first.batches.B or m.batches.device != first.batches.device):
            raise ValueError(f"{m.label} cannot train in one ensemble with {first.label}: network shapes, "
                             "training settings or devices differ (see ensemble_key)")


class _Trainer:
    """The step of one ensemble: forward, hand-written backward, optimizer step, masks."""

    def __init__(self, net: StackedFCN, train: TrainConfig, B: int) -> None:
        self.net, self.cfg, self.B = net, train, B
        self.ws = _Workspace(net, B)
        self.act = net.cfg.activation
        self.neg = torch.full((net.R, B, 1), -1.0, device=net.device)
        C = net.widths[-1]
        self.scale = 1.0 / B if train.loss == "ce" else 2.0 / (B * C)
        self.row_max = torch.empty(net.R, B, device=net.device)
        self.row_sum = torch.empty(net.R, B, device=net.device)

    def _softmax(self, z: torch.Tensor, out: torch.Tensor) -> None:
        """Softmax over the classes into ``out``. For few classes, elementwise over class slices:
        ~4x faster than ``torch.softmax``, whose per-row overhead dominates rows of 2 to 10."""
        C = z.shape[-1]
        if C > 16:
            out.copy_(torch.softmax(z, -1))  # (torch._softmax's out= ignores a strided out's layout)
            return
        m, s = self.row_max, self.row_sum
        m.copy_(z[..., 0])
        for c in range(1, C):
            torch.maximum(m, z[..., c], out=m)
        torch.sub(z, m.unsqueeze(-1), out=out)
        out.exp_()
        s.copy_(out[..., 0])
        for c in range(1, C):
            s.add_(out[..., c])
        out.div_(s.unsqueeze(-1))

    def _bn_forward(self, l: int, x: torch.Tensor) -> torch.Tensor:
        """Batch norm of layer l's input with batch statistics (training mode); running stats updated."""
        net, ws, B = self.net, self.ws, self.B
        mean = x.sum(1).div_(B)
        xc = x - mean.unsqueeze(1)
        var = (xc * xc).sum(1).div_(B)
        inv = (var + BN_EPS).sqrt_().reciprocal_()
        torch.mul(xc, inv.unsqueeze(1), out=ws.xn[l])
        ws.inv[l] = inv
        net.running_mean[l].mul_(1 - BN_MOMENTUM).add_(mean * BN_MOMENTUM)
        net.running_var[l].mul_(1 - BN_MOMENTUM).add_(var * (BN_MOMENTUM * B / max(B - 1, 1)))
        return ws.xn[l]

    def _bn_backward(self, l: int, dxn: torch.Tensor) -> torch.Tensor:
        """Gradient w.r.t. layer l's input before its batch norm, from the one after it."""
        ws, B = self.ws, self.B
        xn = ws.xn[l]
        g1 = dxn.sum(1).div_(B).unsqueeze(1)
        g2 = (dxn * xn).sum(1).div_(B).unsqueeze(1)
        t = dxn - g1
        t.sub_(xn * g2)
        torch.mul(t, ws.inv[l].unsqueeze(1), out=ws.da[l])
        return ws.da[l]

    def step(self, X: torch.Tensor, y3: torch.Tensor, flag: torch.Tensor) -> None:
        """Forward and backward pass of mini-batch ``X`` (R, B, D) with labels ``y3`` (R, B, 1):
        fills ``net.grad``; writes each run's sum of logits into ``flag`` (R,) for divergence checks."""
        net, ws, L = self.net, self.ws, self.net.L
        bn, bias = net.cfg.batchnorm, net.cfg.bias
        x = X
        for l in range(L):
            if bn:
                x = self._bn_forward(l, x)
            ws.inputs[l] = x
            h = ws.h[l]
            if bias:
                torch.baddbmm(net.b3[l], x, net.Wt[l], out=h)
            else:
                torch.bmm(x, net.Wt[l], out=h)
            if net.scale[l] != 1.0:
                h.mul_(net.scale[l])
            if l < L - 1:
                a = ws.a[l + 1]
                if self.act == "relu":
                    torch.clamp_min(h, 0.0, out=a)
                elif self.act == "tanh":
                    torch.tanh(h, out=a)
                else:
                    torch.erf(h, out=a)
                x = a
        z = ws.h[L - 1]
        torch.sum(z, dim=(1, 2), out=flag)
        dz = ws.dh[L - 1]
        if self.cfg.loss == "ce":
            self._softmax(z, dz)
        else:
            dz.copy_(z)
        dz.scatter_add_(2, y3, self.neg)
        dz.mul_(self.scale)
        for l in range(L - 1, -1, -1):
            dh = ws.dh[l]
            if net.scale[l] != 1.0:  # meanfield: d/d(W x + b) = scale * d/dh
                dh.mul_(net.scale[l])
            if not (net.fixed_readout and l == L - 1):
                torch.bmm(dh.transpose(1, 2), ws.inputs[l], out=net.gW[l])
                if bias:
                    torch.sum(dh, 1, out=net.gb[l])
            if l == 0:
                break
            dx = ws.dx[l]
            torch.bmm(dh, net.W[l], out=dx)
            if bn:
                dx = self._bn_backward(l, dx)
            out, a, h = ws.dh[l - 1], ws.a[l], ws.h[l - 1]
            if self.act == "relu":
                torch.ops.aten.threshold_backward.grad_input(dx, a, 0.0, grad_input=out)
            elif self.act == "tanh":
                torch.ops.aten.tanh_backward.grad_input(dx, a, grad_input=out)
            else:  # d erf(h) / dh = 2 / sqrt(pi) exp(-h^2)
                torch.mul(h, h, out=out)
                out.neg_().exp_().mul_(2.0 / math.sqrt(math.pi)).mul_(dx)
        if bn:
            net.batches_tracked.add_(1)


def warm_up() -> None:
    """Pay one-off import costs (``torch.optim``'s first construction imports ``torch._dynamo``,
    about a second) outside any timed region."""
    global _WARM
    if not _WARM:
        torch.optim.SGD([torch.zeros(1)], lr=0.1)
        _WARM = True


_WARM = False


def train_ensemble(members: list[Member], start: int, total: int,
                   on_step: Callable[[int], None] | None = None) -> EnsembleResult:
    """Train every member from step ``start`` to ``total`` as one ensemble.

    Members must agree on what :func:`ensemble_key` covers (checked: shapes and training settings)
    and train the same steps; each keeps its own state, masks and mini-batch stream. The optimizer
    starts fresh (no momentum carried over a rewind); the lr follows ``train.schedule`` over
    ``start .. total``; masks are re-applied after every step. A member whose loss becomes
    non-finite gets a :class:`TicketscopeError` naming its round, step and label (and no final
    state); the others are unaffected. ``train_time_s`` is the wall time of the training steps
    (mini-batch gathering included; optimizer construction and the members' hooks excluded).
    """
    if not members:
        return EnsembleResult([], [], 0.0)
    _check_members(members)
    torch.set_flush_denormal(True)  # subnormal momentum of tiny gradients: ~30x slower CPU arithmetic
    first = members[0]
    cfg, B, R = first.train, first.batches.B, len(members)
    device = first.batches.device
    widths = _widths(first.state)
    net = StackedFCN(widths, first.model, R, device)
    for i, m in enumerate(members):
        net.load(i, m.state)
    warm_up()
    opt = make_optimizer([net.theta], cfg)
    net.theta.grad = net.grad
    group = opt.param_groups[0]
    trainer = _Trainer(net, cfg, B)
    stream = _Stream([m.batches for m in members], B, widths[0], device)
    flags = torch.zeros(stream.S, R, device=device)
    errors: list[TicketscopeError | None] = [None] * R

    events: dict[int, list[tuple[str, int]]] = {}
    for i, m in enumerate(members):
        if m.on_snapshot is not None and m.snapshot_at is not None and start <= m.snapshot_at <= total:
            events.setdefault(m.snapshot_at, []).append(("snapshot", i))
        if m.on_record is not None:
            for s in sorted(set(m.record_at)):
                if start <= s <= total:
                    events.setdefault(s, []).append(("record", i))
        if m.on_eval is not None and m.train.eval_every:
            first_eval = (start // m.train.eval_every + 1) * m.train.eval_every
            for s in range(first_eval, total, m.train.eval_every):
                events.setdefault(s, []).append(("eval", i))
    per_step = [i for i, m in enumerate(members) if m.on_step is not None]
    hook_time = 0.0

    def fire(step: int) -> float:
        t = time.perf_counter()
        for kind, i in events.get(step, ()):
            if errors[i] is None:
                m = members[i]
                hook = {"snapshot": m.on_snapshot, "eval": m.on_eval, "record": m.on_record}[kind]
                hook(step, net.state(i))
        return time.perf_counter() - t

    t0 = time.perf_counter()
    for s0 in range(start, total, stream.S):
        s1 = min(s0 + stream.S, total)
        stream.fill(s0, s1)
        for step in range(s0, s1):
            if step in events:
                hook_time += fire(step)
            X, y3 = stream.views[step - s0]
            group["lr"] = cfg.lr * lr_factor(step, total, cfg)
            trainer.step(X, y3, flags[step - s0])
            opt.step()
            net.theta.mul_(net.mask)
            if per_step:
                t = time.perf_counter()
                for i in per_step:
                    members[i].on_step(step, lambda i=i: net.state(i))
                hook_time += time.perf_counter() - t
            if on_step is not None:
                on_step(step)
        bad = ~torch.isfinite(flags[:s1 - s0])
        if bool(bad.any()):
            for i in bad.any(0).nonzero().flatten().tolist():
                if errors[i] is None:
                    step = s0 + int(bad[:, i].nonzero()[0, 0])
                    m = members[i]
                    errors[i] = TicketscopeError(
                        f"training diverged in round {m.round} at step {step} ({m.label}): the loss is not "
                        "finite; lower train.lr or check the data")
    if total in events:
        hook_time += fire(total)
    elapsed = time.perf_counter() - t0 - hook_time
    states = [net.state(i) if errors[i] is None else None for i in range(R)]
    return EnsembleResult(states, errors, elapsed, steps=total - start, hook_time_s=hook_time,
                          extra={"chunk_steps": stream.S})
