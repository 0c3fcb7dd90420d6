"""Pixels to features, shared by every image data set (files on disk and natural patches).

Colour images first take the luminance Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601) when a
grayscale set is asked for. Then x = pixel / 255 in [0, 1] or, with ``standardize``, each image
separately is mapped to (x - mean x) / max(std x, 1/255) (zero mean, unit variance; the floor of
one grey level keeps near-flat images from blowing up quantization noise).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Split = Literal["train", "test"]

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
MIN_STD = 1 / 255


def luminance(rgb: np.ndarray, axis: int = -1) -> np.ndarray:
    """Y = 0.299 R + 0.587 G + 0.114 B over the channel ``axis`` (float32, same scale as the input).

    Elementwise products and sums, not a BLAS contraction: a GEMM's last bits depend on how many
    images it is given, and an image's features must not depend on which subset it came in."""
    r, g, b = (np.take(rgb, c, axis=axis).astype(np.float32) for c in range(3))
    return (r * LUMA[0] + g * LUMA[1]) + b * LUMA[2]


def standardize_rows(x: np.ndarray) -> np.ndarray:
    """Each row mapped to (x - mean x) / max(std x, MIN_STD): zero mean, unit variance unless nearly flat."""
    centred = x - x.mean(axis=1, keepdims=True)
    return centred / np.maximum(centred.std(axis=1, keepdims=True), np.float32(MIN_STD))


def to_features(pixels: np.ndarray, standardize: bool) -> np.ndarray:
    """(n, ...) pixel values in [0, 255] -> (n, D) float32: x = pixel / 255, per-image standardized if asked."""
    x = pixels.reshape(len(pixels), -1).astype(np.float32) / np.float32(255)
    return standardize_rows(x) if standardize else x
