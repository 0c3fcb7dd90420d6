"""requirements.lock: every dependency pinned with hashes, and the environment is the locked one."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
ENTRY = re.compile(r"^([A-Za-z0-9._-]+)==([^ ;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def locked() -> dict[str, list[tuple[str, str | None, int]]]:
    """name -> [(version, marker, number of hashes)] from requirements.lock."""
    entries: dict[str, list[tuple[str, str | None, int]]] = {}
    current = None
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if m := ENTRY.match(line):
            current = [m[2], m[3], 0]
            entries.setdefault(canonicalize_name(m[1]), []).append(current)
        elif line.strip().startswith("--hash=sha256:") and current is not None:
            current[2] += 1
    return {k: [tuple(e) for e in v] for k, v in entries.items()}


def test_every_declared_dependency_is_locked_with_hashes():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    declared += [Requirement(r) for extra in ("ray", "test") for r in project["optional-dependencies"][extra]]
    lock = locked()
    assert "torch" not in lock  # installed apart, pinned by scripts/bootstrap.sh
    for req in declared:
        name = canonicalize_name(req.name)
        if name == "torch":
            continue
        assert name in lock, f"{req.name} is declared in pyproject.toml but not in requirements.lock: run scripts/lock.sh"
        for version, _, n_hashes in lock[name]:
            assert n_hashes > 0, f"{name}=={version} has no hash"
            assert req.specifier.contains(version, prereleases=True), f"locked {name}=={version} violates {req}"


def test_installed_libraries_are_the_locked_ones():
    for name, versions in locked().items():
        applicable = [v for v, marker, _ in versions if marker is None or Marker(marker).evaluate()]
        if not applicable:
            continue
        installed = metadata.version(name)
        assert installed in applicable, f"{name} {installed} is installed, the lock pins {applicable}: run scripts/bootstrap.sh"
