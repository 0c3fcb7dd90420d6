"""Files on disk: atomic writes, checksummed safetensors, and a per-directory run lock."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import TicketscopeError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise TicketscopeError(f"missing file {path}") from None
    except json.JSONDecodeError as e:
        raise TicketscopeError(f"corrupt JSON file {path}: {e}; delete it to recompute") from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> str:
    """Atomically save ``tensors`` as safetensors; return the file's SHA-256 for later checks."""
    data = st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


def load_tensors(path: str | Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load a safetensors file; with ``sha256`` verify it first and name the file if it differs."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TicketscopeError(f"missing checkpoint {path}") from None
    if sha256 is not None and sha256_bytes(data) != sha256:
        raise TicketscopeError(
            f"corrupt checkpoint {path}: its checksum does not match the one recorded when it was "
            "written; delete this round's directory and run the same command again to recompute it"
        )
    try:
        return st_load(data)
    except Exception as e:  # safetensors raises several types (SafetensorError, ValueError, ...) on bad bytes
        raise TicketscopeError(f"corrupt checkpoint {path}: {e}") from None


def write_table(path: str | Path, df: pd.DataFrame) -> None:
    """Atomically write a tidy table as Parquet."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


@contextmanager
def exclusive_lock(directory: str | Path, what: str = "run") -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (released by the OS even on SIGKILL)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TicketscopeError(
                f"another process is already working on the {what} in {directory}; wait for it to "
                "finish or stop it, then run again"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)
