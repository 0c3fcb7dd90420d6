"""CIFAR-10 / MNIST / Fashion-MNIST loaders on small files written here in the official formats."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
import torch

from ticketscope.config import DataConfig
from ticketscope.data import make_dataset
from ticketscope.data.features import luminance
from ticketscope.data.images import Cifar10, IdxImages, data_root
from ticketscope.data.natural import NaturalPatches
from ticketscope.errors import TicketscopeError

CIFAR_BATCHES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]


def cifar_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    """Official CIFAR-10 binary records: 1 label byte, then the R, G and B planes (1024 bytes each)."""
    return np.concatenate([labels[:, None], images.reshape(len(images), -1)], axis=1).astype(np.uint8).tobytes()


def idx_bytes(array: np.ndarray) -> bytes:
    """Official IDX encoding of a uint8 array: 0x00 0x00 0x08 ndim, big-endian uint32 sizes, data."""
    return bytes([0, 0, 8, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes() + array.tobytes()


def write_cifar(folder: Path, per_batch: int = 4, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Six batches of random records in ``folder``; returns each file's (images, labels)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in CIFAR_BATCHES:
        images = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch, dtype=np.uint8)
        (folder / name).write_bytes(cifar_bytes(images, labels))
        written[name] = (images, labels)
    return written


def write_idx_set(folder: Path, gz: bool, n_train: int = 30, n_test: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        data = idx_bytes(array)
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return arrays


def row_of(X: torch.Tensor, x: torch.Tensor) -> int:
    """Index of the first row of X equal to x."""
    return int(np.flatnonzero((X == x).all(1).numpy())[0])


@pytest.fixture
def cifar(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    return tmp_path, write_cifar(tmp_path / "cifar10" / "cifar-10-batches-bin")


def test_data_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TICKETSCOPE_DATA", raising=False)
    assert data_root(None) == tmp_path / "home" / ".cache" / "ticketscope"
    monkeypatch.setenv("TICKETSCOPE_DATA", str(tmp_path / "env"))
    assert data_root(None) == tmp_path / "env"
    assert data_root(str(tmp_path / "explicit")) == tmp_path / "explicit"


def test_cifar_rgb_reads_records_in_file_order(cifar) -> None:
    root, written = cifar
    ds = Cifar10(root, grayscale=False)
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10
    X, y = ds.train()
    images = np.concatenate([written[f][0] for f in CIFAR_BATCHES[:5]])
    labels = np.concatenate([written[f][1] for f in CIFAR_BATCHES[:5]])
    assert X.dtype == torch.float32 and y.dtype == torch.int64 and X.shape == (20, 3072)
    np.testing.assert_array_equal(X.numpy(), images.reshape(20, -1) / np.float32(255))
    np.testing.assert_array_equal(y.numpy(), labels)
    Xt, yt = ds.test()
    np.testing.assert_array_equal(Xt.numpy(), written["test_batch.bin"][0].reshape(4, -1) / np.float32(255))
    np.testing.assert_array_equal(yt.numpy(), written["test_batch.bin"][1])


def test_cifar_grayscale_is_luminance_of_the_planes(tmp_path: Path) -> None:
    """Pure red, green and blue images must come out as 0.299, 0.587 and 0.114: plane order and weights."""
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    write_cifar(folder)
    images = np.zeros((3, 3, 32, 32), dtype=np.uint8)
    for c in range(3):
        images[c, c] = 255
    (folder / "test_batch.bin").write_bytes(cifar_bytes(images, np.array([0, 1, 2])))
    X, _ = Cifar10(tmp_path, grayscale=True).test()
    assert X.shape == (3, 1024)
    np.testing.assert_allclose(X.numpy(), np.repeat([[0.299], [0.587], [0.114]], 1024, axis=1), rtol=1e-6)


def test_luminance_of_an_image_does_not_depend_on_its_batch() -> None:
    """Bit for bit, an image's luminance alone equals its row in any batch (a BLAS contraction fails this
    on some CPUs, which breaks nested subsets), and it matches the float64 formula to float32 rounding."""
    rgb = np.random.default_rng(0).integers(0, 256, size=(257, 3, 8, 8)).astype(np.uint8)
    batch = luminance(rgb, axis=1)
    for i in (0, 1, 100, 256):
        np.testing.assert_array_equal(luminance(rgb[i:i + 1], axis=1)[0], batch[i])
        np.testing.assert_array_equal(luminance(rgb[:i + 1], axis=1)[i], batch[i])
    exact = np.tensordot(rgb.astype(np.float64), [0.299, 0.587, 0.114], axes=([1], [0]))
    np.testing.assert_allclose(batch, exact, rtol=3e-7, atol=1e-4)  # |Y| <= 255: a few float32 ulps


def test_subsets_are_seeded_nested_and_distinct(cifar) -> None:
    root, _ = cifar
    ds = Cifar10(root, grayscale=False)
    X_all, y_all = ds.train()
    X7, y7 = ds.train(7, seed=1)
    rows = [row_of(X_all, x) for x in X7]
    assert len(set(rows)) == 7
    assert torch.equal(y7, y_all[rows])
    assert torch.equal(ds.train(5, seed=1)[0], X7[:5])
    assert torch.equal(Cifar10(root, grayscale=False).train(7, seed=1)[0], X7)
    assert not torch.equal(ds.train(7, seed=2)[0], X7)
    with pytest.raises(TicketscopeError, match="asked for 21"):
        ds.train(21)


def test_standardize_is_per_image(tmp_path: Path) -> None:
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    write_cifar(folder)
    images = np.random.default_rng(1).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    images[2] = 17  # a flat image: must come out as zeros, not NaN
    (folder / "test_batch.bin").write_bytes(cifar_bytes(images, np.array([0, 1, 2])))
    X, _ = Cifar10(tmp_path, grayscale=True, standardize=True).test()
    np.testing.assert_allclose(X[:2].mean(1).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(X[:2].std(1, correction=0).numpy(), 1, rtol=1e-5)
    assert torch.equal(X[2], torch.zeros(1024))


@pytest.mark.parametrize("damage", ["truncated", "bad label"])
def test_corrupt_cifar_batch_is_named(cifar, damage: str) -> None:
    root, written = cifar
    path = root / "cifar10" / "cifar-10-batches-bin" / "data_batch_3.bin"
    images, labels = written["data_batch_3.bin"]
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-1])
    else:
        path.write_bytes(cifar_bytes(images, np.where(np.arange(len(labels)) == 2, 10, labels)))
    with pytest.raises(TicketscopeError, match="data_batch_3.bin") as err:
        Cifar10(root).train()
    assert ("record 2 has label 10" if damage == "bad label" else "whole number of 3073-byte records") in str(err.value)


def test_missing_cifar_says_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(TicketscopeError) as err:
        Cifar10(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "cifar10" / "cifar-10-batches-bin" / "data_batch_1.bin") in msg
    assert "ticketscope data download cifar10" in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in msg


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("gz", [True, False])
def test_idx_sets_plain_and_gzipped(tmp_path: Path, name: str, gz: bool) -> None:
    arrays = write_idx_set(tmp_path / name, gz)
    ds = IdxImages(name, tmp_path)
    assert ds.name == name and ds.input_shape == (28, 28) and ds.num_classes == 10
    X, y = ds.train()
    np.testing.assert_array_equal(X.numpy(), arrays["train-images-idx3-ubyte"].reshape(30, -1) / np.float32(255))
    np.testing.assert_array_equal(y.numpy(), arrays["train-labels-idx1-ubyte"])
    Xt, yt = ds.test(5, seed=3)
    X_all, y_all = ds.test()
    rows = [row_of(X_all, x) for x in Xt]
    assert len(set(rows)) == 5 and torch.equal(yt, y_all[rows])


def _damage_idx(folder: Path, how: str) -> str:
    """Damage one file of a gzipped IDX set; return the damaged file's name."""
    if how == "bad magic":
        name = "train-images-idx3-ubyte.gz"
        raw = bytearray(gzip.decompress((folder / name).read_bytes()))
        raw[2] = 0x0D  # IDX type code 0x0D (float32) instead of 0x08 (unsigned byte)
        (folder / name).write_bytes(gzip.compress(bytes(raw)))
    elif how == "truncated data":
        name = "train-images-idx3-ubyte.gz"
        (folder / name).write_bytes(gzip.compress(gzip.decompress((folder / name).read_bytes())[:-1]))
    elif how == "truncated gzip":
        name = "t10k-images-idx3-ubyte.gz"
        (folder / name).write_bytes((folder / name).read_bytes()[:-30])
    elif how == "label out of range":
        name = "train-labels-idx1-ubyte.gz"
        (folder / name).write_bytes(gzip.compress(idx_bytes(np.full(30, 10, dtype=np.uint8))))
    else:  # "count mismatch"
        name = "t10k-labels-idx1-ubyte.gz"
        (folder / name).write_bytes(gzip.compress(idx_bytes(np.zeros(11, dtype=np.uint8))))
    return name


@pytest.mark.parametrize("how", ["bad magic", "truncated data", "truncated gzip", "label out of range", "count mismatch"])
def test_corrupt_idx_file_is_named(tmp_path: Path, how: str) -> None:
    write_idx_set(tmp_path / "mnist", gz=True)
    name = _damage_idx(tmp_path / "mnist", how)
    ds = IdxImages("mnist", tmp_path)
    with pytest.raises(TicketscopeError, match="corrupt data file .*" + name.replace(".", r"\.")):
        ds.train()
        ds.test()


def test_missing_idx_says_where_and_how(tmp_path: Path) -> None:
    write_idx_set(tmp_path / "fashion-mnist", gz=True)
    (tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(TicketscopeError) as err:
        IdxImages("fashion-mnist", tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte") in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "ticketscope data download fashion-mnist" in msg
    assert "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-labels-idx1-ubyte.gz" in msg


def test_registered_image_data_sets_build_with_options(tmp_path: Path) -> None:
    write_cifar(tmp_path / "cifar10" / "cifar-10-batches-bin")
    write_idx_set(tmp_path / "mnist", gz=False)
    rgb = make_dataset(DataConfig(name="cifar10", grayscale=False, data_dir=str(tmp_path)))
    assert isinstance(rgb, Cifar10) and rgb.input_shape == (3, 32, 32)
    gray = make_dataset(DataConfig(name="cifar10", standardize=True, data_dir=str(tmp_path)))
    assert gray.input_shape == (32, 32) and gray.standardize
    mnist = make_dataset(DataConfig(name="mnist", data_dir=str(tmp_path)))
    assert isinstance(mnist, IdxImages) and mnist.train()[0].shape == (30, 784)
    natural = make_dataset(DataConfig(name="natural", L=12))
    assert isinstance(natural, NaturalPatches) and natural.input_shape == (12, 12)
    with pytest.raises(ValidationError, match="no data set named 'imagenet'; the registered data sets are cifar10"):
        DataConfig(name="imagenet")
