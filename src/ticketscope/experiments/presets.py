"""Sweep presets shipped with the package (``ticketscope presets`` lists them)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import TicketscopeError


def _files() -> dict[str, Path]:
    folder = resources.files("ticketscope.experiments") / "presets"
    return {Path(str(f)).stem: Path(str(f)) for f in folder.iterdir() if str(f).endswith(".yaml")}


def preset_names() -> list[str]:
    return sorted(_files())


def preset_path(name: str) -> Path:
    files = _files()
    if name not in files:
        raise TicketscopeError(f"no preset named {name!r}; the presets are {', '.join(sorted(files))}")
    return files[name]


def preset_summary(name: str) -> str:
    """``N runs; budget``, the description, then the registered claims, for `ticketscope presets`."""
    from .sweep import load_sweep

    sweep = load_sweep(preset_path(name))
    registered = ", ".join(c.id for c in sweep.claims) or "none (every testable claim is confirmatory)"
    return (f"{len(sweep.points())} runs; {sweep.budget or 'budget not measured'}\n    {sweep.description}\n"
            f"    registered claims: {registered}")
