"""The README's Python snippets run as printed: each fenced ``python`` block, in a fresh interpreter in an
empty folder, except those that read results stored on disk (listed in :data:`NEEDS_RESULTS`, with the test
that covers what they show)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SRC

README = Path(__file__).resolve().parents[1] / "README.md"
NEEDS_RESULTS = {
    'run = ticketscope.open_run("runs/a")': "a finished run and sweep on disk; examples/explore_run.py shows it (tests/test_api.py)",
}
"""A line of each block left out -> why, and where that use is tested instead."""


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), re.DOTALL | re.MULTILINE)


def runnable() -> list[str]:
    return [b for b in python_blocks() if not any(line in b for line in NEEDS_RESULTS)]


def test_every_left_out_block_is_still_in_the_readme():
    blocks = python_blocks()
    assert all(any(line in b for b in blocks) for line in NEEDS_RESULTS), "a NEEDS_RESULTS line left the README"
    assert len(runnable()) >= 2  # the data and measurements, the pruning rule


@pytest.mark.parametrize("block", runnable(), ids=lambda b: b.splitlines()[0][:40])
def test_the_readme_python_block_runs(tmp_path, block):
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("TICKETSCOPE_PLUGINS", None)
    res = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert res.returncode == 0, f"{block}\n{res.stderr}"
