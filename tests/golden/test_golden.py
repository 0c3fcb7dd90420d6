"""The redesign's promise: every run directory name, checkpoint and measured value is what main wrote
before it (tests/golden/golden.json, taken at af92e81), on the same machine.

Bits are a same-machine promise (another CPU's GEMMs differ in the last bits, and training then
diverges), so the stored digests are compared only on the machine they were taken on: same CPU family,
model and vector extensions, not only the same model name (two EPYC generations both read "AMD EPYC"):
``tests/machine.py``'s fingerprint, which ``tests/data/test_stream.py`` keys its digests on too. Elsewhere,
when the git history is at hand, the old code is checked out and run beside the new: the same
comparison, made on this machine.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from machine import machine

from .fingerprint import run

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
BEFORE = "af92e81"  # main before the redesign ("A house where every room has one job")


def _reference(tmp_path: Path) -> dict[str, str]:
    golden = json.loads((HERE / "golden.json").read_text())
    if golden["machine"] == machine():
        return golden["files"]
    old = tmp_path / "old"
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE, "src"], check=True,
                                 capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"golden digests were taken on {golden['machine']}; this machine is {machine()} and "
                    f"commit {BEFORE} is not in this clone to recompute them")
    old.mkdir()
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    return run(tmp_path / "before", src=old / "src")["files"]


def test_redesign_changes_no_result(tmp_path: Path) -> None:
    expected = _reference(tmp_path)
    got = run(tmp_path / "after", src=ROOT / "src")["files"]
    assert sorted(got) == sorted(expected), "run directory names or files differ"
    changed = sorted(k for k in expected if got[k] != expected[k])
    assert not changed, f"{len(changed)} of {len(expected)} files differ, e.g. {changed[:5]}"
