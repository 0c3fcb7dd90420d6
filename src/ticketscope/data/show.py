"""A picture of a data set: example inputs of each class, next to those of its Gaussian clone.

The first figure to look at: NLGP images are sharp-edged blobs, their clones blurry Gaussian fields
with the same covariance. The drawing is :func:`ticketscope.plots.examples_grid`'s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import Dataset


def examples_by_class(dataset: Dataset, n_per_class: int, seed: int = 0) -> list[np.ndarray]:
    """Up to ``n_per_class`` held-out inputs of each class, float64, shaped ``input_shape``.

    Draws ``test(n, seed)`` with n growing until every class is filled or the split runs out."""
    n = n_per_class * dataset.num_classes
    while True:
        X, y = dataset.test(n, seed)
        picked = [X[y == c][:n_per_class] for c in range(dataset.num_classes)]
        if all(len(p) == n_per_class for p in picked) or len(y) < n or n >= 64 * n_per_class * dataset.num_classes:
            return [p.to(torch.float64).reshape(-1, *dataset.input_shape).numpy() for p in picked]
        n *= 4


def show_examples(
    dataset: Dataset,
    path: str | Path,
    clone: Dataset | None = None,
    n_per_class: int = 4,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Write a PNG grid of ``n_per_class`` held-out examples per class (one row per class), with
    the same number from ``clone`` in a right-hand block; return the path.

    1D inputs are drawn as line plots, 2D as grayscale images and (3, H, W) as RGB. Line plots and
    grayscale images share one symmetric scale, the 99.5th percentile of |x| over everything drawn.
    The file is written atomically.
    """
    from .. import plots  # matplotlib only when a figure is drawn

    if clone is not None and clone.num_classes != dataset.num_classes:
        raise ValueError(f"show_examples: clone has {clone.num_classes} classes, the data set {dataset.num_classes}")
    blocks = [("data", examples_by_class(dataset, n_per_class, seed))]
    if clone is not None:
        blocks.append(("Gaussian clone", examples_by_class(clone, n_per_class, seed)))
    return plots.examples_grid(blocks, path, n_per_class, title if title is not None else repr(dataset))
