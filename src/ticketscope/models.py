"""Masked fully connected networks: input -> hidden layers -> linear readout.

Each linear layer carries a binary mask buffer beside its weight; ``apply_masks`` re-zeroes
pruned weights and is called after every optimizer step, so pruned weights are exactly 0.0
at all times (momentum and weight decay included) and never come back.

Options for Ingrosso & Goldt's committee machine (``ModelConfig``): ``scaling: meanfield`` divides
each hidden layer's pre-activation W x + b by sqrt(fan_in); ``readout: fixed`` makes the readout a
constant (+-readout_value / K per unit for the two classes, zero bias, ``requires_grad`` off);
``bias_init: alternating`` starts hidden unit k's bias at +-bias_value (pre-activation units).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import ModelConfig

ACTIVATIONS = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "erf": torch.special.erf,
}


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
            nn.BatchNorm1d(w, affine=False) if cfg.batchnorm else nn.Identity() for w in widths
        )
        self.activation = ACTIVATIONS[cfg.activation]
        self.cfg = cfg
        self.scales = [1.0 / math.sqrt(w) if cfg.scaling == "meanfield" else 1.0 for w in widths]
        if cfg.readout == "fixed":
            if num_classes != 2:
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
                if i == last and self.cfg.readout == "fixed":
                    v = self.cfg.readout_value / fan_in
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
