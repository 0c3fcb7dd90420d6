"""A picture of a data set: example inputs of each class, next to those of its Gaussian clone.

The first figure to look at: NLGP images are sharp-edged blobs, their clones blurry Gaussian fields
with the same covariance.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..io import atomic_write_bytes
from .base import Dataset

if TYPE_CHECKING:
    from matplotlib.axes import Axes

DPI = 100
CELL = 1.0  # inches per example
PAD_LEFT, PAD_TOP, MARGIN, GAP = 0.5, 0.7, 0.1, 0.3  # inches: class labels, titles, right/bottom, data|clone


def figure_size(num_classes: int, n_per_class: int, with_clone: bool) -> tuple[float, float]:
    """(width, height) of the figure in inches; times ``DPI`` gives the PNG's pixel size."""
    blocks = 2 if with_clone else 1
    width = PAD_LEFT + blocks * n_per_class * CELL + (blocks - 1) * GAP + MARGIN
    return width, PAD_TOP + num_classes * CELL + MARGIN


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


def _fit_title(text: str, width: float, max_size: float = 9.0) -> tuple[str, float]:
    """Wrap ``text`` to the figure ``width`` (inches) in at most two lines, shrinking the font if
    needed (a character is ~0.6 em wide; 72 points per inch)."""
    size = min(max_size, 2 * width * 72 / (0.6 * max(len(text), 1)))
    return textwrap.fill(text, width=max(int(width * 72 / (0.6 * size)), 1)), size


def _draw(ax: Axes, x: np.ndarray, vmax: float) -> None:
    """One example: line plot (1D), grayscale image on [-vmax, vmax] (2D or (1, H, W)), per-image
    rescaled RGB (3, H, W)."""
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 1:
        ax.plot(x, lw=0.8, color="k")
        ax.axhline(0, lw=0.4, color="0.6")
        ax.set_ylim(-vmax, vmax)
        ax.set_xlim(0, len(x) - 1)
    elif x.ndim == 2:
        ax.imshow(x, cmap="gray", vmin=-vmax, vmax=vmax, interpolation="nearest")
    else:
        rgb = np.moveaxis(x, 0, -1)
        span = rgb.max() - rgb.min()
        ax.imshow((rgb - rgb.min()) / (span if span > 0 else 1.0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


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
    # no pyplot: no global backend state; a bare Figure renders with Agg
    from matplotlib.figure import Figure

    if clone is not None and clone.num_classes != dataset.num_classes:
        raise ValueError(f"show_examples: clone has {clone.num_classes} classes, the data set {dataset.num_classes}")
    blocks = [("data", examples_by_class(dataset, n_per_class, seed))]
    if clone is not None:
        blocks.append(("Gaussian clone", examples_by_class(clone, n_per_class, seed)))
    every = np.concatenate([x.ravel() for _, rows in blocks for x in rows])
    vmax = float(np.percentile(np.abs(every), 99.5)) if every.size else 1.0
    vmax = vmax if vmax > 0 else 1.0

    width, height = figure_size(dataset.num_classes, n_per_class, clone is not None)
    fig = Figure(figsize=(width, height), dpi=DPI)
    for b, (label, rows) in enumerate(blocks):
        left = PAD_LEFT + b * (n_per_class * CELL + GAP)
        fig.text((left + n_per_class * CELL / 2) / width, 1 - (PAD_TOP - 0.12) / height, label,
                 ha="center", va="bottom", fontsize=11, weight="bold")
        for c, examples in enumerate(rows):
            bottom = height - PAD_TOP - (c + 1) * CELL
            for k in range(n_per_class):
                ax = fig.add_axes(((left + k * CELL + 0.04) / width, (bottom + 0.04) / height,
                                   (CELL - 0.08) / width, (CELL - 0.08) / height))
                if k < len(examples):
                    _draw(ax, examples[k], vmax)
                else:
                    ax.set_axis_off()
                if k == 0:
                    ax.set_ylabel(f"class {c}", fontsize=9)
    text, fontsize = _fit_title(title if title is not None else repr(dataset), width)
    fig.suptitle(text, y=1 - 0.06 / height, va="top", fontsize=fontsize)

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path
