"""Files on disk: atomic writes, checksummed safetensors, and per-directory locks.

Every file is created with mode ``0o666 & ~umask`` (0644 under the usual umask 022), like
``open(path, "w")``, so colleagues sharing a cluster can read the results.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import TicketscopeError


def _create_temp(directory: Path, name: str) -> tuple[int, Path]:
    """A new empty file beside ``name`` opened for writing; its mode is ``0o666 & ~umask`` (as ``open``).

    Unlike ``tempfile.mkstemp`` (always 0600) the kernel applies the process umask and the
    directory's default ACLs, so the renamed file gets the permissions any new file would get.
    """
    for _ in range(100):
        tmp = directory / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {directory}")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory, fsync, rename.

    The file gets mode ``0o666 & ~umask`` (0644 by default), whether it is new or replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
            f"corrupt checkpoint {path}: its checksum does not match the one recorded when it was written")
    try:
        return st_load(data)
    except Exception as e:  # safetensors raises several types (SafetensorError, ValueError, ...) on bad bytes
        raise TicketscopeError(f"corrupt checkpoint {path}: {e}") from None


def write_table(path: str | Path, df: pd.DataFrame) -> str:
    """Atomically write a tidy table as Parquet; return the file's SHA-256."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())
    return sha256_bytes(buf.getvalue())


class LockBusy(TicketscopeError):
    """Another process holds the lock of a directory (the message names it and what to do)."""


LOCK_FILE = ".lock"


@contextmanager
def exclusive_lock(directory: str | Path, what: str = "run") -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (released by the OS even on SIGKILL).

    Raises :class:`LockBusy` at once when another process holds it. The lock file holds the
    holder's process id.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusy(
                f"another process is already working on the {what} in {directory}; wait for it to "
                "finish or stop it, then run again"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)


def wait_unlocked(directory: str | Path) -> None:
    """Block until no process holds the :func:`exclusive_lock` of ``directory`` (no lock file: return)."""
    try:
        fd = os.open(Path(directory) / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # granted once the exclusive holder lets go; released at once
    finally:
        os.close(fd)


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if absent), waiting for other holders.

    For short critical sections shared by processes, e.g. writing a set of files that must agree.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
