"""The package's modules import each other one way: no import cycle, however late the import.

The graph is read from the source with ``ast``: every ``import`` and ``from ... import`` of
a ``pytest_medprobe`` module, at module level, inside functions (a late import is still a
dependency) and under ``if TYPE_CHECKING:`` (a type-only import still says which module
knows of which). ``from package import name`` is an edge to the submodule ``name`` when
there is one, else to the package's ``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pytest_medprobe

PACKAGE = Path(pytest_medprobe.__file__).parent


def _modules() -> dict[str, tuple[Path, bool]]:
    """``{dotted name: (file, is a package __init__)}`` of every module of the package."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The package's modules that one import statement of ``module`` imports."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & known
    if node.level:  # relative: resolved against the importing module's package
        base = (module if is_package else module.rpartition(".")[0]).split(".")
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, *([node.module] if node.module else [])])
    else:
        target = node.module or ""
    found = {f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target for alias in node.names}
    return found & known


def import_graph() -> dict[str, dict[str, int]]:
    """``{module: {imported module: line of the first such import}}``."""
    modules = _modules()
    known = set(modules)
    graph: dict[str, dict[str, int]] = {}
    for module, (path, is_package) in modules.items():
        edges = graph.setdefault(module, {})
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _imported(node, module, is_package, known) - {module}:
                    edges.setdefault(target, node.lineno)
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle of ``graph`` (first module repeated at the end), or None: a depth-first search."""
    state: dict[str, str] = {}  # "open" while on the path, "done" once every edge from it is explored
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph.get(module, {})):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state:
                cycle = visit(target)
                if cycle is not None:
                    return cycle
        state[module] = "done"
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle is not None:
                return cycle
    return None


def _describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    steps = [f"{a} imports {b} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
    return "import cycle: " + " -> ".join(cycle) + "\n  " + "\n  ".join(steps)


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, _describe(cycle, graph)


def test_the_graph_sees_late_and_type_only_imports() -> None:
    graph = import_graph()
    # session imports matrix inside a method; matrix names ExtractionRun for types only.
    assert "pytest_medprobe.matrix" in graph["pytest_medprobe.session"]
    assert "pytest_medprobe.extraction_run" in graph["pytest_medprobe.matrix"]
    assert len(graph) > 50 and all(module.startswith("pytest_medprobe") for module in graph)


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b": 1}, "b": {"c": 2}, "c": {}}, None),
        ({"a": {"b": 1}, "b": {"a": 7}}, ["a", "b", "a"]),
        ({"a": {"b": 1}, "b": {"c": 2}, "c": {"b": 3}}, ["b", "c", "b"]),
    ],
)
def test_a_cycle_is_found_and_named(graph: dict[str, dict[str, int]], expected: list[str] | None) -> None:
    assert find_cycle(graph) == expected
    if expected is not None:
        assert "line" in _describe(expected, graph)
