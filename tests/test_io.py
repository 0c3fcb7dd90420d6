"""Files on disk: modes follow the umask (colleagues on a shared cluster can read results), atomic
writes leave nothing behind, and the directory locks: busy, waited for, mutually exclusive."""

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from ticketscope.errors import TicketscopeError
from ticketscope.io import (
    LockBusy,
    atomic_write_bytes,
    exclusive_lock,
    file_lock,
    save_tensors,
    wait_unlocked,
    write_json,
    write_table,
)


@pytest.fixture
def umask():
    """Set the process umask for one test (``umask(value)``), restored afterwards."""
    before = os.umask(0o022)
    os.umask(before)
    yield os.umask
    os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_all(d: Path) -> list[Path]:
    atomic_write_bytes(d / "raw.bin", b"x")
    write_json(d / "a.json", {"a": 1})
    save_tensors(d / "t.safetensors", {"w": torch.zeros(2)})
    write_table(d / "t.parquet", pd.DataFrame({"a": [1]}))
    with exclusive_lock(d / "run"):
        pass
    return [d / "raw.bin", d / "a.json", d / "t.safetensors", d / "t.parquet", d / "run" / ".lock"]


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600), (0o027, 0o640)],
                         ids=["umask022", "umask002", "umask077", "umask027"])
def test_new_files_get_0666_minus_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    for path in write_all(tmp_path):
        assert mode(path) == expected, f"{path.name}: {oct(mode(path))} != {oct(expected)}"
    assert not list(tmp_path.glob(".*.tmp")), "a temporary file was left behind"


def test_a_replaced_file_gets_the_umask_mode_too(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "a.json"
    path.write_text("{}")
    path.chmod(0o600)  # as written by an older version (mkstemp)
    write_json(path, {"a": 1})
    assert mode(path) == 0o644 and path.read_text() == '{\n  "a": 1\n}\n'


def test_a_run_directory_is_readable_by_the_group_and_others(tmp_path, umask, tiny):
    from ticketscope.config import parse_config
    from ticketscope.runs import run_experiment

    umask(0o022)
    tiny["prune"]["rounds"] = 1
    run_experiment(parse_config(tiny, "test"), tmp_path / "run", progress=False)
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert len(files) > 5 and {p.name: oct(mode(p)) for p in files} == {p.name: "0o644" for p in files}


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "x.bin", "not bytes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold(path: Path, seconds: float) -> subprocess.Popen:
    """Another process holding an exclusive flock on ``path`` for ``seconds``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_locked_run_directory_is_busy_and_can_be_waited_for(tmp_path):
    (tmp_path / "run").mkdir()
    proc = hold(tmp_path / "run" / ".lock", 1.0)
    with pytest.raises(LockBusy, match="another process is already working on the run in"):
        with exclusive_lock(tmp_path / "run"):
            pass
    assert issubclass(LockBusy, TicketscopeError)
    start = time.monotonic()
    wait_unlocked(tmp_path / "run")  # returns once the other process lets go
    assert time.monotonic() - start > 0.3 and proc.wait(10) == 0
    with exclusive_lock(tmp_path / "run"):
        assert (tmp_path / "run" / ".lock").read_text() == str(os.getpid())
    wait_unlocked(tmp_path / "never-locked")  # no lock file: nothing to wait for


def test_file_lock_excludes_other_holders(tmp_path, umask):
    umask(0o022)
    path, order = tmp_path / ".sweep.lock", []

    def second() -> None:
        with file_lock(path):
            order.append("second")

    with file_lock(path):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.2)
        order.append("first")
    t.join(10)
    assert order == ["first", "second"] and mode(path) == 0o644
