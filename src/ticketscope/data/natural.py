"""Offline natural images: L x L grayscale patches of the photographs inside scikit-image's wheel.

Classes are the source photographs (:data:`PHOTOGRAPHS`: a person, a cat, objects, textures, a
lunar surface, a street scene). Left out: synthetic images, text, microscopy, deep-sky astronomy, and
``rocket`` (over half of its 8 x 8 patches are flat sky, under one grey level of contrast). The files are read
straight from the installed ``skimage/data`` folder, never through scikit-image's fetcher, so
nothing is downloaded.

Disjoint splits: a photograph of width W is cut at column b = floor(0.75 W); a training patch lies
entirely in columns [0, b), a test patch entirely in [b, W), so no test pixel is ever seen in
training. Patch i has class i mod C (equal counts, up to one when C does not divide n); its top-left
corner is uniform over the corners allowed in its class's region, drawn from
``generator("natural", seed, split, call_seed)``. The set is finite (``infinite = False``): patches
of one photograph overlap, so they are not fresh independent samples.

Pixels: luminance Y = 0.299 R + 0.587 G + 0.114 B of colour photographs, then the same features as
the other image sets (x = Y / 255 in [0, 1], or per-patch standardized; see :mod:`ticketscope.data.features`).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from skimage.io import imread

from ..errors import TicketscopeError
from ..seeding import generator
from .base import Dataset
from .features import Split, luminance, to_features

PHOTOGRAPHS: dict[str, str] = {
    "astronaut": "astronaut.png", "brick": "brick.png", "camera": "camera.png", "chelsea": "chelsea.png",
    "coffee": "coffee.png", "coins": "coins.png", "grass": "grass.png", "gravel": "gravel.png",
    "moon": "moon.png", "motorcycle": "motorcycle_left.png",
}
TRAIN_FRACTION = 0.75


def photograph(name: str) -> np.ndarray:
    """Photograph ``name`` of :data:`PHOTOGRAPHS` as float32 luminance (H, W) in [0, 255]."""
    path = Path(str(files("skimage.data") / PHOTOGRAPHS[name]))
    if not path.is_file():
        raise TicketscopeError(f"photograph {path} is missing from the scikit-image install; reinstall scikit-image")
    image = imread(path)
    return luminance(image[..., :3]) if image.ndim == 3 else image.astype(np.float32)


def column_ranges(width: int, L: int) -> dict[Split, range]:
    """Allowed left columns c of an L-wide patch: train c in [0, b - L], test c in [b, W - L], b = floor(0.75 W)."""
    b = int(TRAIN_FRACTION * width)
    return {"train": range(0, b - L + 1), "test": range(b, width - L + 1)}


def cut_patches(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, L: int) -> np.ndarray:
    """Patches image[r : r + L, c : c + L] for each (r, c): shape (k, L, L)."""
    return sliding_window_view(image, (L, L))[rows, cols]


class NaturalPatches(Dataset):
    """L x L patches of scikit-image's photographs, one class per photograph (see the module docstring).

    ``train(n, seed)`` / ``test(n, seed)``: n patches (default 5000 / 1000) from the disjoint regions.
    ``seed`` at construction picks the data set; the call's seed picks a draw from it.
    """

    name = "natural"
    torus = False
    infinite = False
    classes = tuple(PHOTOGRAPHS)
    num_classes = len(PHOTOGRAPHS)
    default_n: dict[Split, int] = {"train": 5000, "test": 1000}

    def __init__(self, L: int = 20, seed: int = 0, standardize: bool = False) -> None:
        self.L, self.seed, self.standardize = L, seed, standardize
        self.input_shape = (L, L)
        self.images = [photograph(c) for c in self.classes]
        for c, img in zip(self.classes, self.images):
            if img.shape[0] < L or not all(column_ranges(img.shape[1], L).values()):
                raise TicketscopeError(
                    f"natural patches: L={L} is too large for photograph {c!r} ({img.shape[0]} x {img.shape[1]}): "
                    f"its test region is only {img.shape[1] - int(TRAIN_FRACTION * img.shape[1])} columns wide")

    def train(self, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return self._patches("train", n, seed)

    def test(self, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return self._patches("test", n, seed)

    def positions(self, split: Split, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Labels, top rows and left columns (each (n,) int64) of the patches ``split`` returns."""
        u = torch.rand(n, 2, generator=generator(self.name, self.seed, split, seed), dtype=torch.float64).numpy()
        labels = np.arange(n) % self.num_classes
        heights = np.array([img.shape[0] - self.L + 1 for img in self.images])
        ranges = [column_ranges(img.shape[1], self.L)[split] for img in self.images]
        starts = np.array([r.start for r in ranges])
        widths = np.array([len(r) for r in ranges])
        rows = (u[:, 0] * heights[labels]).astype(np.int64)
        cols = starts[labels] + (u[:, 1] * widths[labels]).astype(np.int64)
        return labels, rows, cols

    def _patches(self, split: Split, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.default_n[split] if n is None else n
        if n < 0:
            raise TicketscopeError(f"asked for {n} natural patches")
        labels, rows, cols = self.positions(split, n, seed)
        pixels = np.empty((n, self.L, self.L), dtype=np.float32)
        for c, img in enumerate(self.images):
            mask = labels == c
            pixels[mask] = cut_patches(img, rows[mask], cols[mask], self.L)
        return torch.from_numpy(to_features(pixels, self.standardize)), torch.from_numpy(labels)
