"""Fetch the official distribution files of the real image data sets, verified by their MD5.

Layout under a data root (see :func:`ticketscope.data.images.data_root`)::

    ROOT/cifar10/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin   (unpacked from the tar.gz)
    ROOT/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz           (kept gzipped)
    ROOT/fashion-mnist/...                                               (same names as MNIST)

Every file is streamed to a staging folder inside ROOT, its checksum is checked *before*
anything is unpacked or moved, and each verified file is moved into place with an atomic
rename; the staging folder is always removed, so a failed or interrupted download leaves
no partial file where the loaders look.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import TicketscopeError

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_FOLDER = "cifar-10-batches-bin"
CIFAR_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR_TEST = ("test_batch.bin",)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """Where a data set comes from: files at ``url_base`` with their MD5, and the files the loader reads."""

    name: str
    url_base: str
    checksums: Mapping[str, str]
    needed: tuple[str, ...]


def _idx_source(name: str, url_base: str, md5s: tuple[str, str, str, str]) -> Source:
    """MNIST-style data set: the four gzipped IDX files, read as they are."""
    files = tuple(f + ".gz" for f in IDX_FILES)
    return Source(name, url_base, dict(zip(files, md5s)), needed=files)


SOURCES: dict[str, Source] = {
    "cifar10": Source(
        "cifar10", "https://www.cs.toronto.edu/~kriz/",
        {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"},
        needed=tuple(f"{CIFAR_FOLDER}/{f}" for f in CIFAR_TRAIN + CIFAR_TEST),
    ),
    "mnist": _idx_source("mnist", "https://ossci-datasets.s3.amazonaws.com/mnist/", (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")),
    "fashion-mnist": _idx_source("fashion-mnist", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")),
}


def require_folder(root: str | Path) -> Path:
    """``root`` (user-expanded) unless it, or the nearest of its parents that exists, is something other
    than a folder: then one error naming the options that set it (a missing folder is fine, download
    creates it)."""
    root = Path(root).expanduser()
    there = next((p for p in (root, *root.parents) if p.exists()), None)
    if there is not None and not there.is_dir():
        where = "it is" if there == root else f"{there} is"
        raise TicketscopeError(f"data folder {root}: {where} a file, not a folder; point --data-dir, data.data_dir "
                               f"or $TICKETSCOPE_DATA at a folder (download creates it if missing)")
    return root


def how_to_get(name: str, root: Path) -> str:
    """One sentence telling the user how to put data set ``name`` under ``root``."""
    src = SOURCES[name]
    urls = ", ".join(src.url_base + f for f in src.checksums)
    unpack = " and unpack it there" if any(_is_tar(f) for f in src.checksums) else ""
    return (f"run `ticketscope data download {name}` (data root {root}; set data.data_dir or "
            f"$TICKETSCOPE_DATA to use another), or fetch {urls} into {root / name}{unpack}")


def download(name: str, root: str | Path, url_base: str | None = None,
             checksums: Mapping[str, str] | None = None) -> Path:
    """Download data set ``name`` into ``root/name`` and return that folder.

    Files already in place are not fetched again. ``url_base`` replaces the official server and
    ``checksums`` (same file names as the official ones) the published MD5s, e.g. to serve test
    files from a local server.
    """
    if name not in SOURCES:
        hint = "; 'natural' needs no download (it ships with scikit-image)" if name == "natural" else ""
        raise TicketscopeError(f"cannot download {name!r}: known data sets are {sorted(SOURCES)}{hint}")
    src = SOURCES[name]
    folder = require_folder(root) / name
    if all((folder / f).is_file() for f in src.needed):
        return folder
    files = dict(src.checksums if checksums is None else checksums)
    if set(files) != set(src.checksums):
        raise TicketscopeError(f"checksums for {name!r} must name exactly the files {sorted(src.checksums)}")
    base = (url_base or src.url_base).rstrip("/") + "/"
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{name}-download-"))
    try:
        for fname, md5 in files.items():
            if not _is_tar(fname) and (folder / fname).is_file():
                continue
            fetched = _fetch(base + fname, md5, staging / fname)
            if _is_tar(fname):
                _install(_unpack(fetched, staging / "unpacked", src.needed), src.needed, folder)
            else:
                _install(staging, (fname,), folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _is_tar(fname: str) -> bool:
    return fname.endswith((".tar.gz", ".tgz", ".tar"))


def _fetch(url: str, md5: str, dest: Path) -> Path:
    """Stream ``url`` to ``dest`` (in the staging folder) while hashing; raise unless its MD5 is ``md5``."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, dest.open("wb") as out:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as e:
        raise TicketscopeError(f"could not download {url}: {e}; check the network connection and retry") from None
    if digest.hexdigest() != md5.lower():
        raise TicketscopeError(
            f"checksum mismatch for {url}: MD5 {digest.hexdigest()}, expected {md5}; the file was "
            "discarded (a truncated transfer or a changed mirror); retry, or fetch it by hand")
    return dest


def _unpack(archive: Path, dest: Path, members: tuple[str, ...]) -> Path:
    """Extract ``members`` (regular files only) of a verified tar archive into ``dest``.

    Every member name is checked first: an absolute path or a ``..`` component rejects the whole
    archive; extraction also uses tarfile's ``data`` filter (no links out, no special files).
    """
    try:
        with tarfile.open(archive) as tar:
            infos = tar.getmembers()
            for info in infos:
                parts = PurePosixPath(info.name).parts
                if info.name.startswith(("/", "\\")) or ".." in parts:
                    raise TicketscopeError(f"refusing to unpack {archive.name}: unsafe member path {info.name!r}")
            chosen = [i for i in infos if i.name in members and i.isfile()]
            missing = sorted(set(members) - {i.name for i in chosen})
            if missing:
                raise TicketscopeError(f"archive {archive.name} lacks the expected files {missing}")
            tar.extractall(dest, members=chosen, filter="data")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise TicketscopeError(f"cannot unpack {archive.name}: {e}") from None
    return dest


def _install(staged: Path, names: tuple[str, ...], folder: Path) -> None:
    """Move each verified ``staged/name`` to ``folder/name`` by an atomic rename."""
    for name in names:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged / name, target)
