"""show_examples: a PNG of the expected pixel size whose cells show, pixel by pixel, the examples of each class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from ticketscope.data import Dataset, NLGPTask
from ticketscope.data.show import show_examples

# The layout the PNG promises, in pixels at 100 dpi: a 50 px column of class labels, a 70 px title
# band, then one 100 px cell per example (a 30 px gap before the clone block); each cell's axes is
# inset by 4 px on every side, so an example is drawn in a 92 x 92 px box.
LEFT, TOP, CELL_PX, GAP_PX, INSET, BOX = 50, 70, 100, 30, 4, 92


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


def panel(png: np.ndarray, row: int, col: int, block: int = 0, n_per_class: int = 0) -> np.ndarray:
    """The RGB pixels of the 92 x 92 px box of example ``col`` of class ``row`` in ``block`` (0: data,
    1: clone, which starts after the data block's ``n_per_class`` cells and the gap)."""
    x0 = LEFT + block * (n_per_class * CELL_PX + GAP_PX) + col * CELL_PX + INSET
    y0 = TOP + row * CELL_PX + INSET
    return png[y0:y0 + BOX, x0:x0 + BOX, :3]


def expected_examples(dataset: Dataset, n_per_class: int) -> list[np.ndarray]:
    """What each row should show: the first n_per_class inputs of each class of ``test(n, 0)``, n =
    n_per_class * classes (these sets label item i with class i % classes, so every class is filled)."""
    X, y = dataset.test(n_per_class * dataset.num_classes, 0)
    rows = [X.numpy()[y.numpy() == c][:n_per_class].reshape(-1, *dataset.input_shape) for c in range(dataset.num_classes)]
    assert all(len(r) == n_per_class for r in rows)
    return rows


def at_pixel_centres(box: np.ndarray, height: int, width: int) -> np.ndarray:
    """The box's colour at the centre of each of the (height, width) image pixels drawn in it."""
    rows = ((np.arange(height) + 0.5) * BOX / height).astype(int)
    cols = ((np.arange(width) + 0.5) * BOX / width).astype(int)
    return box[np.ix_(rows, cols)]


def assert_grey_image(box: np.ndarray, x: np.ndarray, vmax: float) -> None:
    """The box shows x in grey, black at -vmax and white at +vmax (clipped). Tolerance 2.5/255: the
    'gray' colormap is a 256-entry table, so a value in [k/256, (k+1)/256) is drawn as k/255, at most
    1/256 away; matplotlib rescales the data in float32 before the lookup, which can land one table
    entry lower (one more 1/255; 1.75/255 is the largest error seen); the PNG stores 8-bit levels
    exactly, and nearest-neighbour upsampling (~7.7 px per image pixel here) blends nothing at a
    pixel's centre. A wrong image, scale or position is off by tens of levels."""
    expected = np.clip((x + vmax) / (2 * vmax), 0, 1)
    np.testing.assert_allclose(at_pixel_centres(box, *x.shape), np.repeat(expected[..., None], 3, -1), atol=2.5 / 255)


def assert_line_through(box: np.ndarray, x: np.ndarray, vmax: float) -> None:
    """The box shows the line plot of x on [0, len - 1] x [-vmax, vmax]: within 2 px of every vertex
    (i, x_i) lies a dark pixel (the 0.8 pt = 1.1 px black line, antialiased, is darker than 0.5 grey on
    its centre; 2 px covers that width plus rounding of the vertex to a pixel). Vertices within 4 px of
    the axes frame (black too) prove nothing and are skipped; consecutive vertices are 3.2 px apart."""
    grey = box[..., 0]
    checked = 0
    for i, v in enumerate(x):
        px, py = i * (BOX - 1) / (len(x) - 1), (vmax - v) / (2 * vmax) * (BOX - 1)
        if not (4 <= px <= BOX - 5 and 4 <= py <= BOX - 5):
            continue
        c, r = round(px), round(py)
        assert grey[r - 2:r + 3, c - 2:c + 3].min() < 0.5, f"no line near vertex {i} ({v:.3f})"
        checked += 1
    assert checked >= 15  # at least half the vertices: the check is not vacuous


def extreme_fraction(box: np.ndarray) -> float:
    """Fraction of the middle half of a box (clear of the black frame) at its darkest or lightest grey."""
    grey = box[BOX // 4:3 * BOX // 4, BOX // 4:3 * BOX // 4, 0]
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
    blocks = [expected_examples(task, 3), expected_examples(clone, 3)]
    vmax = np.percentile(np.abs(np.concatenate([x.ravel() for rows in blocks for x in rows])), 99.5)
    for b, rows in enumerate(blocks):
        for c, examples in enumerate(rows):
            for k, x in enumerate(examples):
                assert_grey_image(panel(png, c, k, b, 3), x, vmax)
    # at g = 100 an NLGP pixel is a sign (98% have |z| > 0.03, saturating 8-bit grey): two levels
    # fill the cell; a clone cell is a continuum with few pixels at its extremes
    assert extreme_fraction(panel(png, 1, 0)) > 0.9
    assert extreme_fraction(panel(png, 1, 0, 1, 3)) < 0.3


def test_1d_without_clone(tmp_path: Path) -> None:
    # gain 1: each pixel is uniform on [-sqrt 3, sqrt 3], so most vertices lie clear of the frame
    task = NLGPTask(L=30, dim=1, xis=(1.0, 2.0, 4.0), gain=1.0)
    png = read_png(show_examples(task, tmp_path / "line.png", n_per_class=2))
    assert png.shape[:2] == (380, 260)  # (0.7 + 3 + 0.1) in x (0.5 + 2 + 0.1) in at 100 dpi
    rows = expected_examples(task, 2)
    vmax = np.percentile(np.abs(np.concatenate(rows).ravel()), 99.5)
    for c, examples in enumerate(rows):
        for k, x in enumerate(examples):
            assert_line_through(panel(png, c, k), x, vmax)


def test_rgb_finite_dataset(tmp_path: Path) -> None:
    """(3, H, W) inputs are drawn in colour, each image rescaled to [0, 1] by its own min and max.
    Tolerance 1/255: the rescaled floats are stored as 8-bit levels (0.5/255) and nearest-neighbour
    upsampling of 6 x 6 pixels to 92 px blends nothing at a pixel's centre."""
    dataset = ColourBlocks()
    png = read_png(show_examples(dataset, tmp_path / "rgb.png", n_per_class=2))
    assert png.shape[:2] == (380, 260)
    for c, examples in enumerate(expected_examples(dataset, 2)):
        for k, x in enumerate(examples):
            rgb = np.moveaxis((x - x.min()) / (x.max() - x.min()), 0, -1)
            np.testing.assert_allclose(at_pixel_centres(panel(png, c, k), 6, 6), rgb, atol=1 / 255)


def test_clone_must_have_the_same_classes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="classes"):
        show_examples(NLGPTask(L=4, dim=1, xis=(1.0, 2.0)), tmp_path / "x.png", clone=ColourBlocks())
