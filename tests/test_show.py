"""show_examples: a PNG of the expected pixel size whose cells show the examples of each class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from ticketscope.data import Dataset, NLGPTask
from ticketscope.data.show import (
    CELL,
    DPI,
    PAD_LEFT,
    PAD_TOP,
    figure_size,
    show_examples,
)


class ColourBlocks(Dataset):
    """Finite RGB toy set: class c lights channel c (values in [0.5, 1]), the others are 0."""

    name, input_shape, num_classes = "colour-blocks", (3, 6, 6), 3

    def _split(self, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = 30 if n is None else min(n, 30)
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(n) % 3
        X = torch.zeros(n, 3, 6, 6)
        X[torch.arange(n), y] = 0.5 + 0.5 * torch.rand(n, 6, 6, generator=g)
        return X.reshape(n, -1), y

    def train(self, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return self._split(n, seed)

    def test(self, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return self._split(n, seed + 1)


def cell(png: np.ndarray, row: int, col: int, block_offset_in: float = 0.0) -> np.ndarray:
    """The inner pixels of grid cell (row, col): the middle half of the cell, RGB."""
    x0 = round((PAD_LEFT + block_offset_in + (col + 0.25) * CELL) * DPI)
    y0 = round((PAD_TOP + (row + 0.25) * CELL) * DPI)
    size = round(CELL * DPI / 2)
    return png[y0:y0 + size, x0:x0 + size, :3]


def extreme_fraction(pixels: np.ndarray) -> float:
    grey = pixels[..., 0]
    return float(np.isin(grey, [grey.min(), grey.max()]).mean())


def read_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(path)


def test_2d_with_clone(tmp_path: Path) -> None:
    task = NLGPTask(L=12, dim=2, xis=(1.0, 3.0), gain=100.0)
    clone = NLGPTask(L=12, dim=2, xis=(1.0, 3.0), gain=100.0, gaussian_clone=True)
    out = show_examples(task, tmp_path / "sub" / "nlgp.png", clone=clone, n_per_class=3, title="NLGP")
    assert out == tmp_path / "sub" / "nlgp.png"
    assert sorted(p.name for p in out.parent.iterdir()) == ["nlgp.png"]  # no temp file left behind
    png = read_png(out)
    assert png.shape[:2] == (280, 690)  # (0.7 + 2 * 1 + 0.1) in x (0.5 + 2 * 3 * 1 + 0.3 + 0.1) in at 100 dpi
    data, gap = cell(png, 1, 0), 3 * CELL + 0.3
    assert np.allclose(data[..., 0], data[..., 1]) and np.allclose(data[..., 0], data[..., 2])  # grayscale
    # at g = 100 an NLGP pixel is a sign (98% have |z| > 0.03, saturating 8-bit grey): two levels
    # fill the cell; a clone cell is a continuum with few pixels at its extremes
    assert extreme_fraction(data) > 0.9
    assert extreme_fraction(cell(png, 1, 0, gap)) < 0.3


def test_1d_without_clone(tmp_path: Path) -> None:
    task = NLGPTask(L=30, dim=1, xis=(1.0, 2.0, 4.0), gain=3.0)
    png = read_png(show_examples(task, tmp_path / "line.png", n_per_class=2))
    assert png.shape[:2] == (380, 260)  # (0.7 + 3 + 0.1) in x (0.5 + 2 + 0.1) in at 100 dpi
    assert png.shape[:2] == tuple(round(v * DPI) for v in reversed(figure_size(3, 2, False)))
    assert (cell(png, 2, 1) < 0.5).any()  # a dark line is drawn in every cell


def test_rgb_finite_dataset(tmp_path: Path) -> None:
    png = read_png(show_examples(ColourBlocks(), tmp_path / "rgb.png", n_per_class=2))
    assert png.shape[:2] == (380, 260)
    for c in range(3):
        mean_rgb = cell(png, c, 1).reshape(-1, 3).mean(0)
        assert mean_rgb.argmax() == c and mean_rgb[c] > 0.5 and np.delete(mean_rgb, c).max() < 0.05


def test_clone_must_have_the_same_classes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="classes"):
        show_examples(NLGPTask(L=4, dim=1, xis=(1.0, 2.0)), tmp_path / "x.png", clone=ColourBlocks())
