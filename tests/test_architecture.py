"""The package's floors: every import, read from the source, points down or sideways, never up, and no
module imports another module's private names.

Rooms are the top-level modules and packages of ``ticketscope``; :data:`FLOORS` lists them from the
ground up (the README's reading order). A room may import rooms on its own floor or below; the whole
module graph (imports inside functions included) has no circle, except a package's ``__init__``
importing its own modules.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import ticketscope

SRC = Path(ticketscope.__file__).parent
FLOORS = [
    {"errors", "seeding", "provenance", "io", "plugins", "registry", "device", "progress"},
    {"config", "metrics"},
    {"data", "pruning", "plots"},
    {"models"},
    {"engine"},
    {"runs"},
    {"analysis"},
    {"experiments"},
    {"api", "cli", "checks", "__init__"},
]


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def import_graph() -> dict[str, set[str]]:
    """ticketscope module -> the ticketscope modules it imports (relative or absolute, anywhere in it)."""
    modules = {_module(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if _is_package(path) else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    target = f"{base}.{node.module}" if node.module else base
                else:
                    target = node.module or ""
                for alias in node.names:  # `from . import x` names a module
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in modules else target)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def floor(module: str) -> int:
    return next(i for i, rooms in enumerate(FLOORS) if room(module) in rooms)


def test_every_room_has_a_floor():
    assert not {room(m) for m in import_graph()} - set().union(*FLOORS)


def test_no_arrow_points_up():
    up = [f"{m} -> {d}" for m, deps in import_graph().items() for d in deps if floor(d) > floor(m)]
    assert not up, "imports from a lower floor to a higher one:\n" + "\n".join(sorted(up))


def test_no_import_circle():
    graph = import_graph()
    own = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}  # a package's own modules
    try:
        TopologicalSorter(own).prepare()
    except CycleError as e:
        pytest.fail(f"import circle: {' -> '.join(e.args[1])}")


def test_no_private_name_crosses_a_module():
    crossing = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("ticketscope")):
                crossing += [f"{path.relative_to(SRC)}: {alias.name}" for alias in node.names
                             if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not crossing, "private names imported from another module:\n" + "\n".join(crossing)


def test_the_checks_can_fail():
    """The graph reader sees real arrows (a check that cannot fail is a defect)."""
    graph = import_graph()
    assert "ticketscope.config" in graph["ticketscope.runs.store"]
    assert "ticketscope.runs.store" in graph["ticketscope.runs.round"]
    assert floor("ticketscope.cli") > floor("ticketscope.runs.store") > floor("ticketscope.config")
