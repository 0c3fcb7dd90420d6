"""Masked fully connected networks: input -> hidden layers -> linear readout.

Each linear layer carries a binary mask buffer beside its weight; ``apply_masks`` re-zeroes
pruned weights and is called after every optimizer step, so pruned weights are exactly 0.0
at all times (momentum and weight decay included) and never come back.

Options for Ingrosso & Goldt's committee machine (``ModelConfig``): ``scaling: meanfield`` divides
each hidden layer's pre-activation W x + b by sqrt(fan_in); ``readout: fixed`` makes the readout a
constant (+-readout_value / K per unit for the two classes, zero bias, ``requires_grad`` off);
``bias_init: alternating`` starts hidden unit k's bias at +-bias_value (pre-activation units).

This module is the one definition of the network. The ensemble engine's hand-written step
(:mod:`ticketscope.engine.stacked`) reads its tables: :data:`ACTIVATIONS` (each non-linearity with
its derivative), :data:`LOSSES` (each loss with its gradient w.r.t. the logits), the batch-norm
constants, :func:`layer_scales` and :func:`trains_readout`. A new activation or loss is one entry
here (plus its name in ``config.py``'s ``Literal``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig

Tensor = torch.Tensor

# --- activations ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Activation:
    """A hidden non-linearity ``a = f(h)``, as the FCN and the engine's hand-written step use it.

    ``fn(h)``: the FCN's forward. ``into(h, out)``: ``f(h)`` written into ``out`` (the engine's
    forward, same bits as ``fn``). ``backward(da, a, h, out)``: ``out = da * f'(h)`` from the
    gradient ``da`` w.r.t. ``a``, given both ``a = f(h)`` and ``h`` (each entry reads the cheaper one).
    """

    fn: Callable[[Tensor], Tensor]
    into: Callable[[Tensor, Tensor], None]
    backward: Callable[[Tensor, Tensor, Tensor, Tensor], None]


def _relu_backward(da: Tensor, a: Tensor, h: Tensor, out: Tensor) -> None:
    torch.ops.aten.threshold_backward.grad_input(da, a, 0.0, grad_input=out)  # da where a > 0, else 0


def _tanh_backward(da: Tensor, a: Tensor, h: Tensor, out: Tensor) -> None:
    torch.ops.aten.tanh_backward.grad_input(da, a, grad_input=out)  # da * (1 - a^2)


def _erf_backward(da: Tensor, a: Tensor, h: Tensor, out: Tensor) -> None:
    # d erf(h) / dh = 2 / sqrt(pi) exp(-h^2)
    torch.mul(h, h, out=out)
    out.neg_().exp_().mul_(2.0 / math.sqrt(math.pi)).mul_(da)


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(torch.relu, lambda h, out: torch.clamp_min(h, 0.0, out=out), _relu_backward),
    "tanh": Activation(torch.tanh, lambda h, out: torch.tanh(h, out=out), _tanh_backward),
    "erf": Activation(torch.special.erf, lambda h, out: torch.erf(h, out=out), _erf_backward),
}
"""``ModelConfig.activation`` -> its :class:`Activation`."""

# --- losses ---------------------------------------------------------------------------------------


def softmax_into(z: Tensor, out: Tensor, row_max: Tensor | None = None, row_sum: Tensor | None = None) -> None:
    """Softmax of ``z`` over its last axis into ``out`` (``row_max``/``row_sum``: optional buffers
    of ``z.shape[:-1]``). For few classes, elementwise over class slices: ~4x faster than
    ``torch.softmax``, whose per-row overhead dominates rows of 2 to 10."""
    C = z.shape[-1]
    if C > 16:
        out.copy_(torch.softmax(z, -1))  # (torch._softmax's out= ignores a strided out's layout)
        return
    m = torch.empty(z.shape[:-1], dtype=z.dtype, device=z.device) if row_max is None else row_max
    s = torch.empty(z.shape[:-1], dtype=z.dtype, device=z.device) if row_sum is None else row_sum
    m.copy_(z[..., 0])
    for c in range(1, C):
        torch.maximum(m, z[..., c], out=m)
    torch.sub(z, m.unsqueeze(-1), out=out)
    out.exp_()
    s.copy_(out[..., 0])
    for c in range(1, C):
        s.add_(out[..., c])
    out.div_(s.unsqueeze(-1))


def _copy_into(z: Tensor, out: Tensor, row_max: Tensor | None = None, row_sum: Tensor | None = None) -> None:
    out.copy_(z)


@dataclass(frozen=True)
class Loss:
    """A training loss of logits ``z`` (N, C) and labels ``y`` (N,), mean over the N samples.

    ``fn(z, y)``: the loss (the FCN's evaluation and autograd). Its gradient w.r.t. the logits is
    ``scale(N, C) * (link(z) - onehot(y))``: ``link_into(z, out, row_max, row_sum)`` writes
    ``link(z)`` into ``out`` (the engine's step then subtracts the one-hot labels and scales).
    """

    fn: Callable[[Tensor, Tensor], Tensor]
    link_into: Callable[..., None]
    scale: Callable[[int, int], float]


LOSSES: dict[str, Loss] = {
    "ce": Loss(lambda z, y: F.cross_entropy(z, y), softmax_into, lambda N, C: 1.0 / N),
    "mse": Loss(lambda z, y: F.mse_loss(z, F.one_hot(y, z.shape[1]).to(z.dtype)), _copy_into,
                lambda N, C: 2.0 / (N * C)),
}
"""``TrainConfig.loss`` -> its :class:`Loss` (ce: softmax cross-entropy; mse: on one-hot targets)."""


def loss_gradient(z: Tensor, y: Tensor, loss: str) -> Tensor:
    """d ``LOSSES[loss].fn(z, y)`` / d ``z``, from the table (out of place; for checks)."""
    entry = LOSSES[loss]
    out = torch.empty_like(z)
    entry.link_into(z, out)
    out.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(out[..., :1], -1.0))
    return out.mul_(entry.scale(z.shape[0], z.shape[-1]))


# --- batch norm, scales, readout ------------------------------------------------------------------

BN_EPS, BN_MOMENTUM = 1e-5, 0.1
"""Batch norm (``model.batchnorm``, no affine part) of every layer's input: the FCN's
``nn.BatchNorm1d`` and the engine's hand-written one (running variance unbiased, as torch's)."""


def layer_scales(fan_ins: list[int], scaling: str) -> list[float]:
    """Each layer's factor on ``W x + b``: meanfield (``model.scaling``) multiplies hidden layer l
    by 1/sqrt(fan_in); the readout (last) and every standard layer by 1.0."""
    last = len(fan_ins) - 1
    return [1.0 / math.sqrt(w) if scaling == "meanfield" and l < last else 1.0 for l, w in enumerate(fan_ins)]


FIXED_READOUT_CLASSES = 2
"""A fixed readout (``model.readout: fixed``) has one row per class of a two-class task."""


def trains_readout(cfg: ModelConfig) -> bool:
    """False for a fixed readout: a constant layer (+-readout_value / K, zero bias) never updated."""
    return cfg.readout != "fixed"


def fixed_readout_value(cfg: ModelConfig, fan_in: int) -> float:
    """A fixed readout's weight magnitude: row 0 is ``+v``, row 1 ``-v``."""
    return cfg.readout_value / fan_in

# --- the network ----------------------------------------------------------------------------------


def layer_index(name: str) -> int:
    """Position of a layer from its name in :meth:`FCN.weights`: ``"layers.2"`` -> 2."""
    return int(name.split(".")[1])


class MaskedLinear(nn.Linear):
    """``nn.Linear`` with a ``mask`` buffer of the weight's shape (1 = alive, 0 = pruned)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.register_buffer("mask", torch.ones_like(self.weight))

    @torch.no_grad()
    def apply_mask(self) -> None:
        self.weight.mul_(self.mask)


class FCN(nn.Module):
    """Fully connected network; layer ``l`` of ``layers`` is the l-th MaskedLinear (last = readout)."""

    def __init__(self, input_dim: int, num_classes: int, cfg: ModelConfig) -> None:
        super().__init__()
        widths = [input_dim, *cfg.hidden]
        self.layers = nn.ModuleList(
            MaskedLinear(a, b, bias=cfg.bias) for a, b in zip(widths[:-1], widths[1:])
        )
        self.layers.append(MaskedLinear(widths[-1], num_classes, bias=cfg.bias))
        self.norms = nn.ModuleList(
            nn.BatchNorm1d(w, eps=BN_EPS, momentum=BN_MOMENTUM, affine=False) if cfg.batchnorm else nn.Identity()
            for w in widths
        )
        self.activation = ACTIVATIONS[cfg.activation].fn
        self.cfg = cfg
        self.scales = layer_scales(widths, cfg.scaling)
        if not trains_readout(cfg):
            if num_classes != FIXED_READOUT_CLASSES:
                raise ValueError(f"model.readout: fixed needs two classes, not {num_classes}")
            for p in self.layers[-1].parameters():
                p.requires_grad_(False)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Initialize weights (kaiming | glorot | normal) from ``generator``, biases (zero | alternating),
        and a fixed readout's constants (its random draw is made and discarded, so the hidden layers
        get the same values as with a trained readout)."""
        last = len(self.layers) - 1
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                fan_out, fan_in = layer.weight.shape
                if self.cfg.init == "kaiming":
                    std = math.sqrt(2.0 / fan_in)
                elif self.cfg.init == "glorot":
                    std = math.sqrt(2.0 / (fan_in + fan_out))
                else:
                    std = self.cfg.init_std
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * std)
                if layer.bias is not None:
                    layer.bias.zero_()
                    if i < last and self.cfg.bias_init == "alternating":
                        value = self.cfg.bias_value / self.scales[i]  # in pre-activation units
                        layer.bias[0::2] = value
                        layer.bias[1::2] = -value
                if i == last and not trains_readout(self.cfg):
                    v = fixed_readout_value(self.cfg, fan_in)
                    layer.weight[0] = v
                    layer.weight[1] = -v
                layer.apply_mask()

    def layer_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The input each layer sees (after batch norm, if any): ``[x_0, x_1, ..., x_readout]``."""
        inputs = []
        for i, layer in enumerate(self.layers):
            x = self.norms[i](x)
            inputs.append(x)
            if i < len(self.layers) - 1:
                x = self.activation(self._pre(i, layer(x)))
        return inputs

    def _pre(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Hidden layer i's pre-activation from W x + b (meanfield: divided by sqrt(fan_in))."""
        return h if self.scales[i] == 1.0 else h * self.scales[i]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(self.norms[i](x))
            if i < last:
                x = self.activation(self._pre(i, x))
        return x

    @torch.no_grad()
    def apply_masks(self) -> None:
        for layer in self.layers:
            layer.apply_mask()

    def weights(self) -> dict[str, torch.Tensor]:
        """Layer name -> weight (views, not copies)."""
        return {f"layers.{i}": layer.weight for i, layer in enumerate(self.layers)}

    def masks(self) -> dict[str, torch.Tensor]:
        return {f"layers.{i}": layer.mask for i, layer in enumerate(self.layers)}

    @torch.no_grad()
    def set_masks(self, masks: dict[str, torch.Tensor]) -> None:
        for name, mask in masks.items():
            self.get_submodule(name).mask.copy_(mask)
        self.apply_masks()
