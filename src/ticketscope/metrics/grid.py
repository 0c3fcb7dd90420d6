"""The input grid the spatial metrics share: the ``shape`` a layer's D inputs are laid out on.

``shape`` is the input shape whose row-major flattening gives D: ``(L,)``, ``(H, W)`` or
``(C, H, W)`` with a leading channel axis, whose channels share each pixel's position.
"""

from __future__ import annotations

import math

import torch

Shape = tuple[int, ...]


def on_pixel_grid(values: torch.Tensor, shape: Shape) -> torch.Tensor:
    """Per-input values (..., D) -> per-pixel values (..., *spatial), a channel axis summed over.

    Raises ValueError unless ``shape`` is ``(L,)``, ``(H, W)`` or ``(C, H, W)`` with product D.
    """
    if not 1 <= len(shape) <= 3 or math.prod(shape) != values.shape[-1]:
        raise ValueError(f"shape must be (L,), (H, W) or (C, H, W) with product D = {values.shape[-1]}, got {shape}")
    grid = values.reshape(*values.shape[:-1], *shape)
    return grid.sum(-3) if len(shape) == 3 else grid
