"""Your own data: a labelled set from a ``.safetensors`` or ``.npz`` file (``data: {name: tensors, path: F}``).

The file holds ``X`` (n, ...) float inputs and ``y`` (n,) integer labels 0..C-1; optionally a test split
``X_test`` / ``y_test`` (without one, the last ``max(1, n // 5)`` items of X are held out), its geometry
``input_shape`` (integers whose product is X's per-item size, e.g. ``[28, 28]`` or ``[3, 32, 32]``;
default: X's own item shape) and ``torus`` (one 0 or 1: whether that grid is periodic, as the NLGP's is;
default 0). ``ticketscope data sample`` writes both, so a sampled 12 x 12 NLGP file is measured as 12 x 12
images on a torus. The file's ``torus`` decides: the config's ``data.torus`` is the NLGP's setting and is
not read here. Inputs are used as given (flattened to float32), or per-item standardized with
``standardize``. ``.npz`` files are read without pickle. ``train(n, seed)`` / ``test(n, seed)``: all items
in file order (``n=None``, what a config's default null ``data.n_train`` / ``data.n_test`` asks for) or a
seeded subset of n, nested in n; more than a split holds is refused naming the field to lower.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import TicketscopeError
from ..seeding import generator
from .base import Dataset
from .features import Split, standardize_rows
from .images import SIZE_FIELDS, subset_indices

KEYS = ("X", "y", "X_test", "y_test", "input_shape", "torus")


def read_arrays(path: Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The arrays (all, or those of ``keys`` present) of a .safetensors or .npz file (no pickle), or one
    error naming the file."""
    if not path.is_file():
        raise TicketscopeError(f"data.path: no file {path}; give a .safetensors or .npz file with X and y")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files if keys is None or k in keys}
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "np") as f:
                return {k: f.get_tensor(k) for k in f.keys() if keys is None or k in keys}
    except Exception as e:  # numpy and safetensors raise several types on bad bytes
        raise TicketscopeError(f"data.path: cannot read {path}: {e}") from None
    raise TicketscopeError(f"data.path: {path} must end in .safetensors or .npz")


def _header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Each array's shape from the file's headers alone (no array data is read)."""
    if path.suffix == ".npz":
        import zipfile

        shapes = {}
        with zipfile.ZipFile(path) as z:
            for member in z.namelist():
                with z.open(member) as f:
                    fmt = np.lib.format
                    header = fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0) else fmt.read_array_header_2_0
                    shapes[member.removesuffix(".npy")] = header(f)[0]
        return shapes
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def file_signature(path: str | Path | None) -> tuple[tuple[int, ...], int]:
    """(input_shape, num_classes) of a tensors file, reading X's shape from its header and only the
    small arrays (labels, input_shape); a file that cannot be read this way is read whole."""
    if path is None:
        raise TicketscopeError("data.name tensors needs data.path: a .safetensors or .npz file with X and y")
    path = Path(path)
    try:
        shapes = _header_shapes(path)
        small = {k: v for k, v in read_arrays(path, keys=("y", "y_test", "input_shape")).items()}
        item = shapes["X"][1:]
        shape = tuple(int(v) for v in small["input_shape"]) if "input_shape" in small else (item or (1,))
        classes = int(max(small[k].max() for k in ("y", "y_test") if k in small)) + 1
        if math.prod(shape) == math.prod(item):
            return shape, classes
    except Exception:  # noqa: BLE001  (anything unusual: let the full reader give its clear error)
        pass
    ds = TensorFile(path)
    return ds.input_shape, ds.num_classes


def file_split_sizes(path: str | Path) -> tuple[int, int]:
    """(train, test) items of a tensors file, from its headers (its own test split, else the last fifth held
    out), or read whole when its headers cannot be read this way."""
    path = Path(path)
    try:
        shapes = _header_shapes(path)
        n = shapes["X"][0]
        return (n, shapes["X_test"][0]) if "X_test" in shapes else (n - max(1, n // 5), max(1, n // 5))
    except Exception:  # noqa: BLE001  (anything unusual: let the full reader give its clear error)
        ds = TensorFile(path)
        return len(ds._splits["train"][1]), ds.test_size


class TensorFile(Dataset):
    """A finite labelled set read from one file (module docstring)."""

    def __init__(self, path: str | Path | None, standardize: bool = False) -> None:
        if path is None:
            raise TicketscopeError("data.name tensors needs data.path: a .safetensors or .npz file with X and y")
        self.path, self.standardize = Path(path), standardize
        arrays = read_arrays(self.path)
        missing = [k for k in ("X", "y") if k not in arrays]
        if missing:
            raise TicketscopeError(f"{self.path}: missing {', '.join(missing)}; it holds {sorted(arrays)} "
                                   f"(expected X, y and optionally X_test, y_test, input_shape, torus)")
        if ("X_test" in arrays) != ("y_test" in arrays):
            raise TicketscopeError(f"{self.path}: a test split needs both X_test and y_test; it holds {sorted(arrays)}")
        X, y = arrays["X"], arrays["y"]
        self._check("train", X, y, X.shape[1:])  # the whole file's X and y, before any hold-out
        if "X_test" in arrays:
            splits = {"train": (X, y), "test": (arrays["X_test"], arrays["y_test"])}
        else:
            hold = max(1, len(X) // 5)
            splits = {"train": (X[:-hold], y[:-hold]), "test": (X[-hold:], y[-hold:])}
        item = X.shape[1:]
        shape = self._shape(arrays["input_shape"]) if "input_shape" in arrays else (item or (1,))
        if math.prod(shape) != math.prod(item):
            raise TicketscopeError(f"{self.path}: input_shape {shape} does not match X's item size {math.prod(item)}")
        for split, (xs, ys) in splits.items():
            self._check(split, xs, ys, item)
        self.name, self.input_shape, self.torus = "tensors", shape, self._torus(arrays.get("torus"))
        self.num_classes = int(max(ys.max() for _, ys in splits.values())) + 1
        self._splits = {s: (xs.reshape(len(xs), -1).astype(np.float32), ys.astype(np.int64)) for s, (xs, ys) in splits.items()}

    def _shape(self, shape: np.ndarray) -> tuple[int, ...]:
        if shape.ndim != 1 or not len(shape) or not np.issubdtype(shape.dtype, np.integer) or shape.min() < 1:
            raise TicketscopeError(f"{self.path}: input_shape must be a list of positive integers, e.g. [12, 12]; "
                                   f"got {shape.dtype} {shape.tolist()}")
        return tuple(int(v) for v in shape)

    def _torus(self, flag: np.ndarray | None) -> bool:
        if flag is None:
            return False
        if flag.size != 1 or not (np.issubdtype(flag.dtype, np.integer) or flag.dtype == np.bool_) \
                or int(flag.reshape(-1)[0]) not in (0, 1):
            raise TicketscopeError(f"{self.path}: torus must be one 0 or 1 (whether input_shape's grid is periodic), "
                                   f"got {flag.dtype} {flag.reshape(-1)[:4].tolist()}")
        return bool(flag.reshape(-1)[0])

    def _check(self, split: Split, X: np.ndarray, y: np.ndarray, item: tuple[int, ...]) -> None:
        keys = ("X", "y") if split == "train" else ("X_test", "y_test")
        if y.ndim != 1 or len(X) != len(y):
            raise TicketscopeError(f"{self.path}: {keys[0]} has {len(X)} items but {keys[1]} has shape {y.shape}; "
                                   f"give one integer label per item")
        if len(y) == 0:
            raise TicketscopeError(f"{self.path}: the {split} split is empty")
        if X.shape[1:] != item:
            raise TicketscopeError(f"{self.path}: {keys[0]} items have shape {X.shape[1:]}, X's have {item}")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise TicketscopeError(f"{self.path}: {keys[1]} must hold integer labels 0..C-1, got {y.dtype} "
                                   f"from {y.min()} to {y.max()}")
        if not np.isfinite(X).all():
            raise TicketscopeError(f"{self.path}: {keys[0]} holds NaN or infinite values")

    def train(self, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return self._take("train", n, seed)

    def test(self, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return self._take("test", n, seed)

    @property
    def test_size(self) -> int:
        return len(self._splits["test"][1])

    def _take(self, split: Split, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        X, y = self._splits[split]
        whole = f", or leave {SIZE_FIELDS[split].split()[0]} out to use the whole split"
        idx = subset_indices(len(y), n, generator("tensors", split, seed), f"{self.path.name} {split}", split, whole)
        x = standardize_rows(X[idx]) if self.standardize else X[idx]
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y[idx])
