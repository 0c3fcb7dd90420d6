"""Real image data sets read from their official distribution files.

* CIFAR-10, binary version: ``ROOT/cifar10/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin``;
  each record is 1 label byte then 3 x 1024 bytes (R, G, B planes, row-major 32 x 32).
* MNIST and Fashion-MNIST, IDX format: ``ROOT/{mnist,fashion-mnist}/{train,t10k}-{images-idx3,
  labels-idx1}-ubyte``, gzipped (``.gz``, as downloaded) or not.

ROOT is :func:`data_root`. Nothing is ever unpickled.

Pixels become features as :mod:`ticketscope.data.features` says (CIFAR in grayscale first takes the
luminance; then x = pixel / 255, or per-image standardized with ``standardize``). We deliberately do
not offer a global per-pixel mean/std fitted on the train split: it is an affine map of the inputs
that the network's first layer (or its batch norm) can absorb, it would make a data set depend on
which training subset was drawn, and the Gaussian clone keeps the class means anyway, so nothing
about the science depends on it.
"""

from __future__ import annotations

import gzip
import os
import zlib
from abc import abstractmethod
from math import prod
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..errors import TicketscopeError
from ..seeding import generator
from .base import Dataset
from .download import CIFAR_FOLDER, CIFAR_TEST, CIFAR_TRAIN, how_to_get, require_folder
from .features import Split, luminance, to_features


DATA_ENV = "TICKETSCOPE_DATA"
CIFAR_SIDE = 32
CIFAR_RECORD = 1 + 3 * CIFAR_SIDE * CIFAR_SIDE
MNIST_SIDE = 28

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                         "bag", "ankle boot")


def data_root(cfg_data_dir: str | Path | None = None) -> Path:
    """Folder holding the real data sets: ``cfg_data_dir`` > ``$TICKETSCOPE_DATA`` > ``~/.cache/ticketscope``;
    a file there is refused (:func:`~ticketscope.data.download.require_folder`)."""
    chosen = cfg_data_dir or os.environ.get(DATA_ENV)
    return require_folder(chosen if chosen else Path.home() / ".cache" / "ticketscope")


SIZE_FIELDS = {"train": "data.n_train (or prune.n_probe, a probe rule's probe set)", "test": "data.n_test"}
"""The config fields that ask a finite split for a number of items, named by the error when it holds fewer."""


def subset_indices(size: int, n: int | None, gen: torch.Generator, what: str, split: Split | None = None,
                   whole: str = "") -> np.ndarray:
    """All of ``0..size-1`` in order (``n=None``) or the first n of a seeded permutation (nested in n).
    Too many (or a negative n) is refused in one line naming ``split``'s config field (:data:`SIZE_FIELDS`);
    ``whole`` ends it (e.g. how to use the whole split)."""
    if n is None:
        return np.arange(size)
    if not 0 <= n <= size:
        field = f"; set {SIZE_FIELDS[split]} to at most {size}{whole}" if split in SIZE_FIELDS else ""
        raise TicketscopeError(f"asked for {n} {what} items, but there are {size}{field}")
    return torch.randperm(size, generator=gen)[:n].numpy()


def _corrupt(path: Path, why: str) -> TicketscopeError:
    return TicketscopeError(f"corrupt data file {path}: {why}; delete it and download it again")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode a CIFAR-10 binary batch: uint8 images (n, 3, 32, 32) and labels (n,) in 0..9."""
    raw = path.read_bytes()
    if not raw or len(raw) % CIFAR_RECORD:
        raise _corrupt(path, f"{len(raw)} bytes is not a whole number of {CIFAR_RECORD}-byte records")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0]
    if labels.max() >= len(CIFAR10_CLASSES):
        bad = int(np.argmax(labels >= len(CIFAR10_CLASSES)))
        raise _corrupt(path, f"record {bad} has label {labels[bad]}, outside 0..9")
    return records[:, 1:].reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE), labels


def read_idx(path: Path) -> np.ndarray:
    """Decode an IDX file of unsigned bytes, gunzipping names that end in ``.gz``.

    Layout: magic bytes 0x00 0x00 0x08 ndim, then ndim big-endian uint32 sizes, then prod(sizes) bytes.
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise _corrupt(path, f"not a valid gzip stream ({e})") from None
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise _corrupt(path, f"bad IDX magic number {raw[:4].hex()} (expected 000008 then ndim)")
    header = 4 + 4 * raw[3]
    if len(raw) < header:
        raise _corrupt(path, "truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=raw[3], offset=4))
    if len(raw) - header != prod(shape):
        raise _corrupt(path, f"{len(raw) - header} data bytes, but the header announces {shape} = {prod(shape)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


class FileImages(Dataset):
    """A finite labelled image set read from ``data_root(root)/name``.

    Decoded uint8 pixels are cached per split on first use; features are made per request.
    ``train(n, seed)``: all images in file order (``n=None``) or a seeded random subset of n,
    nested in n for a fixed seed; ``test`` likewise on the official test split.
    """

    classes: tuple[str, ...]

    def __init__(self, root: str | Path | None, standardize: bool) -> None:
        self.root = data_root(root)
        self.folder = self.root / self.name
        self.standardize = standardize
        self._cache: dict[Split, tuple[np.ndarray, np.ndarray]] = {}

    def train(self, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return self._take("train", n, seed)

    def test(self, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return self._take("test", n, seed)

    @abstractmethod
    def _read(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        """Raw uint8 images (n, ...) and integer labels (n,) of a split, validated."""

    def _pixels(self, images: np.ndarray) -> np.ndarray:
        """Hook: raw images -> the pixel array whose entries become features."""
        return images

    @property
    def test_size(self) -> int:
        return len(self._split("test")[1])

    def _split(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        if split not in self._cache:
            self._cache[split] = self._read(split)
        return self._cache[split]

    def _take(self, split: Split, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self._split(split)
        idx = subset_indices(len(labels), n, generator(self.name, split, seed), f"{self.name} {split}", split)
        x = to_features(self._pixels(images[idx]), self.standardize)
        return torch.from_numpy(x), torch.from_numpy(labels[idx].astype(np.int64))

    def _require(self, path: Path, also: Path | None = None) -> Path:
        """``path`` (or ``also``) if it exists, else a TicketscopeError saying where and how to get it."""
        for p in (path, also):
            if p is not None and p.is_file():
                return p
        alt = f" (or {also.name})" if also is not None else ""
        raise TicketscopeError(f"{self.name}: missing file {path}{alt}; {how_to_get(self.name, self.root)}")


class Cifar10(FileImages):
    """CIFAR-10 from the binary batches: 50 000 train / 10 000 test images, 10 classes."""

    name = "cifar10"
    num_classes = 10
    classes = CIFAR10_CLASSES

    def __init__(self, root: str | Path | None = None, grayscale: bool = True, standardize: bool = False) -> None:
        super().__init__(root, standardize)
        self.grayscale = grayscale
        self.input_shape = (CIFAR_SIDE, CIFAR_SIDE) if grayscale else (3, CIFAR_SIDE, CIFAR_SIDE)
        batches = self.folder / CIFAR_FOLDER
        self._files: dict[Split, list[Path]] = {
            "train": [self._require(batches / f) for f in CIFAR_TRAIN],
            "test": [self._require(batches / f) for f in CIFAR_TEST],
        }

    def _read(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        parts = [read_cifar_batch(p) for p in self._files[split]]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _pixels(self, images: np.ndarray) -> np.ndarray:
        return luminance(images, axis=1) if self.grayscale else images


class IdxImages(FileImages):
    """MNIST or Fashion-MNIST (same IDX layout): 60 000 train / 10 000 test 28 x 28 images, 10 classes."""

    num_classes = 10
    input_shape = (MNIST_SIDE, MNIST_SIDE)

    def __init__(self, name: Literal["mnist", "fashion-mnist"], root: str | Path | None = None,
                 standardize: bool = False) -> None:
        self.name = name
        self.classes = MNIST_CLASSES if name == "mnist" else FASHION_MNIST_CLASSES
        super().__init__(root, standardize)
        self._files: dict[Split, tuple[Path, Path]] = {
            split: tuple(self._require(self.folder / f"{prefix}-{kind}-ubyte", self.folder / f"{prefix}-{kind}-ubyte.gz")
                         for kind in ("images-idx3", "labels-idx1"))
            for split, prefix in (("train", "train"), ("test", "t10k"))
        }

    def _read(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        image_path, label_path = self._files[split]
        images, labels = read_idx(image_path), read_idx(label_path)
        if images.shape[1:] != self.input_shape:
            raise _corrupt(image_path, f"images of shape {images.shape}, expected (n, 28, 28)")
        if labels.ndim != 1 or len(labels) != len(images):
            raise _corrupt(label_path, f"labels of shape {labels.shape} for {len(images)} images in {image_path.name}")
        if len(labels) and labels.max() >= self.num_classes:
            raise _corrupt(label_path, f"label {labels.max()} outside 0..{self.num_classes - 1}")
        return images, labels
