"""R fully connected networks of one shape as one stacked network, and its hand-written step.

The stacked twin of :class:`ticketscope.models.FCN`, read in the same order: the layout of the
parameters, loading and saving FCN state dicts, then the forward pass (batch norm, ``W x + b``,
scale, activation) and its backward. Every definition it computes with (activations and their
derivatives, the loss and its gradient, batch-norm constants, meanfield scales, the fixed
readout) comes from the tables of :mod:`ticketscope.models`.

Every per-run slice starts on a 64-byte boundary and every GEMM writes a non-contiguous view, so
that a run's bits never depend on its neighbours: docs/REPRODUCIBILITY.md, section "Ensembles: why
a run's bits never depend on its neighbours".
"""

from __future__ import annotations

from typing import Iterable

import torch

from ..config import ModelConfig, TrainConfig
from ..models import ACTIVATIONS, BN_EPS, BN_MOMENTUM, LOSSES, layer_scales, trains_readout

ALIGN = 16
"""Per-run strides are multiples of this many floats (64 bytes), so every run slice is aligned."""


def aligned(n: int) -> int:
    """``n`` rounded up to a multiple of :data:`ALIGN`."""
    return -(-n // ALIGN) * ALIGN


def padded(n: int) -> int:
    """Per-run stride for ``n`` elements: a multiple of :data:`ALIGN` with at least one spare."""
    return aligned(n + 1)


def state_widths(state: dict[str, torch.Tensor]) -> list[int]:
    """Layer widths ``[input, hidden..., classes]`` of an FCN state dict."""
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
        self.fixed_readout = not trains_readout(model)
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
        self.scale = layer_scales(widths[:-1], model.scaling)
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

    def _layout(self, layers: Iterable[int]) -> tuple[list[tuple[int, int]], int]:
        """(weight offset, bias offset) of each of ``layers`` in one row, and the row's padded length."""
        offsets, off = [], 0
        for l in layers:
            n_out, n_in = self.widths[l + 1], self.widths[l]
            w_off = off
            off += aligned(n_out * n_in)
            b_off = off
            if self.cfg.bias:
                off += aligned(n_out)
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
        self.row_max = torch.empty(R, B, device=dev)  # softmax scratch
        self.row_sum = torch.empty(R, B, device=dev)


class ForwardBackward:
    """The gradient of one ensemble step: forward pass, loss gradient, hand-written backward pass.

    Calling it on a mini-batch fills ``net.grad`` (and updates the batch-norm running statistics);
    the optimizer step and the masks are the loop's (:func:`ticketscope.engine.train_ensemble`).
    """

    def __init__(self, net: StackedFCN, train: TrainConfig, B: int) -> None:
        self.net, self.cfg, self.B = net, train, B
        self.ws = _Workspace(net, B)
        self.act = ACTIVATIONS[net.cfg.activation]
        self.loss = LOSSES[train.loss]
        self.neg = torch.full((net.R, B, 1), -1.0, device=net.device)
        self.loss_scale = self.loss.scale(B, net.widths[-1])

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

    def __call__(self, X: torch.Tensor, y3: torch.Tensor, flag: torch.Tensor) -> None:
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
                self.act.into(h, a)
                x = a
        z = ws.h[L - 1]
        torch.sum(z, dim=(1, 2), out=flag)
        dz = ws.dh[L - 1]  # d loss / d z = scale * (link(z) - onehot(y))
        self.loss.link_into(z, dz, ws.row_max, ws.row_sum)
        dz.scatter_add_(2, y3, self.neg)
        dz.mul_(self.loss_scale)
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
            self.act.backward(dx, ws.a[l], ws.h[l - 1], ws.dh[l - 1])
        if bn:
            net.batches_tracked.add_(1)
