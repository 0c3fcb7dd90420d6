"""Shared fixtures: tiny run configs that train in about a second."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

TINY: dict[str, Any] = {
    "data": {"name": "nlgp", "L": 8, "n_train": 1024, "n_test": 256, "gain": 3.0, "xis": [1.0, 3.0]},
    "model": {"hidden": [16]},
    "train": {"steps": 60, "batch_size": 64, "n_eval_train": 256},
    "prune": {"rounds": 3},
}


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture
def tiny() -> dict[str, Any]:
    return copy.deepcopy(TINY)


def kill_cli_run_after_round(config_path: Path, out: Path, round_: int = 1) -> list[str]:
    """Start `ticketscope run CONFIG --out OUT` in a real subprocess, SIGKILL it once round ``round_`` is
    complete (mid-run), check it did not finish, and return the command that resumes it."""
    from ticketscope.runs import RunDir

    cmd = [sys.executable, "-m", "ticketscope.cli", "run", str(config_path), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(SRC)})
    deadline = time.time() + 120
    while not (RunDir(out).round_dir(round_) / "round.json").exists():
        assert time.time() < deadline and proc.poll() is None, "run ended before it could be killed"
        time.sleep(0.01)
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "run.json").exists()
    return cmd
