"""download() against a local HTTP server on 127.0.0.1 serving small files in the official formats.

No test touches the real network: every call passes ``url_base`` of the local server.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from data.test_images import CIFAR_BATCHES, cifar_bytes, idx_bytes

from ticketscope.data.download import download
from ticketscope.data.images import Cifar10, IdxImages
from ticketscope.errors import TicketscopeError


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(folder served, its base URL) on 127.0.0.1 at a free port."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def write_cifar_tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def cifar_members(records: int = 3) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {f"cifar-10-batches-bin/{f}": cifar_bytes(rng.integers(0, 256, (records, 3, 32, 32)),
                                                     rng.integers(0, 10, records))
            for f in CIFAR_BATCHES}


def test_cifar_archive_is_verified_unpacked_and_loadable(server, tmp_path: Path) -> None:
    served, url = server
    members = cifar_members() | {"cifar-10-batches-bin/readme.html": b"<html/>"}
    write_cifar_tar(served / "cifar-10-binary.tar.gz", members)
    root = tmp_path / "data"
    folder = download("cifar10", root, url_base=url, checksums={"cifar-10-binary.tar.gz": md5(served / "cifar-10-binary.tar.gz")})
    assert folder == root / "cifar10"
    assert files_under(root) == sorted(f"cifar10/cifar-10-batches-bin/{f}" for f in CIFAR_BATCHES)  # no archive, no staging
    for f in CIFAR_BATCHES:
        assert (folder / "cifar-10-batches-bin" / f).read_bytes() == members[f"cifar-10-batches-bin/{f}"]
    assert Cifar10(root).train()[0].shape == (15, 1024)
    # already in place: no network needed (the port below is closed)
    assert download("cifar10", root, url_base="http://127.0.0.1:9/") == folder


def test_mnist_files_are_fetched_gzipped(server, tmp_path: Path) -> None:
    served, url = server
    rng = np.random.default_rng(1)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (8, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, 8, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, 3, dtype=np.uint8)}
    for name, array in arrays.items():
        (served / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array)))
    root = tmp_path / "data"
    download("mnist", root, url_base=url, checksums={f"{n}.gz": md5(served / f"{n}.gz") for n in arrays})
    assert files_under(root) == sorted(f"mnist/{n}.gz" for n in arrays)
    X, y = IdxImages("mnist", root).test()
    np.testing.assert_array_equal(y.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_checksum_mismatch_leaves_nothing_behind(server, tmp_path: Path) -> None:
    served, url = server
    write_cifar_tar(served / "cifar-10-binary.tar.gz", cifar_members())
    root = tmp_path / "data"
    with pytest.raises(TicketscopeError, match="checksum mismatch .*cifar-10-binary.tar.gz"):
        download("cifar10", root, url_base=url, checksums={"cifar-10-binary.tar.gz": "0" * 32})
    assert files_under(root) == [] and list(root.iterdir()) == []


@pytest.mark.parametrize("bad", ["../escape.bin", "/abs.bin"])
def test_unsafe_archive_paths_are_refused(server, tmp_path: Path, bad: str) -> None:
    served, url = server
    write_cifar_tar(served / "cifar-10-binary.tar.gz", cifar_members() | {bad: b"x"})
    root = tmp_path / "data"
    with pytest.raises(TicketscopeError, match="unsafe member path"):
        download("cifar10", root, url_base=url, checksums={"cifar-10-binary.tar.gz": md5(served / "cifar-10-binary.tar.gz")})
    assert list(root.iterdir()) == []
    assert not (tmp_path / "escape.bin").exists() and not Path("/abs.bin").exists()


def test_archive_without_expected_files_is_refused(server, tmp_path: Path) -> None:
    served, url = server
    members = cifar_members()
    del members["cifar-10-batches-bin/test_batch.bin"]
    write_cifar_tar(served / "cifar-10-binary.tar.gz", members)
    root = tmp_path / "data"
    with pytest.raises(TicketscopeError, match="lacks the expected files .*test_batch.bin"):
        download("cifar10", root, url_base=url, checksums={"cifar-10-binary.tar.gz": md5(served / "cifar-10-binary.tar.gz")})
    assert list(root.iterdir()) == []


def test_http_error_is_clear_and_clean(server, tmp_path: Path) -> None:
    _, url = server  # serves nothing: 404
    root = tmp_path / "data"
    with pytest.raises(TicketscopeError, match="could not download .*cifar-10-binary.tar.gz"):
        download("cifar10", root, url_base=url, checksums={"cifar-10-binary.tar.gz": "0" * 32})
    assert list(root.iterdir()) == []


def test_bad_requests(tmp_path: Path) -> None:
    with pytest.raises(TicketscopeError, match="needs no download"):
        download("natural", tmp_path)
    with pytest.raises(TicketscopeError, match="must name exactly the files"):
        download("cifar10", tmp_path, url_base="http://127.0.0.1:9/", checksums={"other.tar.gz": "0" * 32})


def test_a_data_dir_that_is_a_file_is_one_clear_error_naming_the_options(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ticketscope.cli import app

    (tmp_path / "afile").write_text("not a folder")
    runner = CliRunner()
    cases = [(["data", "download", "mnist", "--data-dir", str(tmp_path / "afile")], {}, "it is"),
             (["data", "download", "mnist", "--data-dir", str(tmp_path / "afile" / "sub")], {}, f"{tmp_path / 'afile'} is"),
             (["data", "sample", "--task", "mnist", "--out", str(tmp_path / "x.safetensors")],
              {"TICKETSCOPE_DATA": str(tmp_path / "afile")}, "it is")]
    for args, env, where in cases:
        res = runner.invoke(app, args, env=env)
        assert isinstance(res.exception, TicketscopeError), (args, res.exception)
        msg = str(res.exception)
        assert f"{where} a file, not a folder" in msg and "--data-dir" in msg and "$TICKETSCOPE_DATA" in msg, msg
    assert not (tmp_path / "x.safetensors").exists()
