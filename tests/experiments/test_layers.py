"""The executors and report packages: their modules import each other without a circle."""

import ast
from pathlib import Path

import pytest

import ticketscope.experiments

ROOT = Path(ticketscope.experiments.__file__).parent


def sibling_imports(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (``from .x import ...``)."""
    graph = {}
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        graph[path.stem] = {node.module.split(".")[0] for node in ast.walk(tree)
                            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}
    return graph


@pytest.mark.parametrize("package, roots", [("executors", {"base"}), ("report", {"table"})])
def test_package_modules_form_layers(package, roots):
    graph = sibling_imports(ROOT / package)
    for root in roots:
        assert graph[root] == set(), f"{package}/{root}.py must import no sibling"
    assert all("__init__" not in deps for deps in graph.values())
    order, left = [], dict(graph)
    while left:  # peel off modules whose imports are all placed: a circle leaves some behind
        ready = [m for m, deps in left.items() if deps <= set(order)]
        assert ready, f"import circle among {sorted(left)} in {package}/"
        order += ready
        for m in ready:
            del left[m]
