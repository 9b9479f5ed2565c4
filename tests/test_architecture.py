"""The package keeps its shape: layers that import only downwards, and no import cycles.

Every ``import`` of every module is read with ast (those inside functions and under
TYPE_CHECKING too: a late import is still a dependency), and checked against the layer
map of docs/architecture.md: a module may import its own layer and the layers below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "reconciler"

# Lowest first. A module belongs to the first entry that is its name or a prefix of it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("reconciler", "reconciler.codes", "reconciler.errors", "reconciler.testbed", "reconciler.wording"),
    ("reconciler.domain",),
    ("reconciler.config",),
    ("reconciler.importers",),
    ("reconciler.planning",),
    ("reconciler.transport",),
    ("reconciler.gather",),
    ("reconciler.execute",),
    ("reconciler.render",),
    ("reconciler.planfile",),
    ("reconciler.operate",),
    ("reconciler.api", "reconciler.demo"),
    ("reconciler.commands",),
    ("reconciler.cli",),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package's modules ``path`` imports (``from x import y`` counts y when y is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        for name in names:
            while name and name not in known:  # a module's attribute: the module itself
                name = name.rpartition(".")[0]
            if name.startswith("reconciler"):
                found.add(name)
    return found


def layer_of(module: str) -> int:
    best = (-1, -1)  # (length of the matching prefix, layer)
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[0]:
                best = (len(prefix), index)
    if best[1] < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")
    return best[1]


GRAPH = {name: imports_of(path, set(modules())) - {name} for name, path in modules().items()}


def test_every_module_has_a_layer() -> None:
    for name in GRAPH:
        layer_of(name)


def test_imports_point_down_or_sideways() -> None:
    upward = sorted(f"{name} (layer {layer_of(name)}) imports {dep} (layer {layer_of(dep)})"
                    for name, deps in GRAPH.items() for dep in deps
                    if layer_of(dep) > layer_of(name) and not name.startswith(dep + "."))
    assert upward == [], "\n".join(upward)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in graph.get(node, ()):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    # A package's __init__ importing its own modules is how a package is built, not a cycle.
    graph = {name: {d for d in deps if not d.startswith(name + ".")} for name, deps in GRAPH.items()}
    assert cycles(graph) == []


def test_the_checks_see_a_cycle_and_an_upward_import() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_of("reconciler.config.models") < layer_of("reconciler.planning.planner")
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("elsewhere.module")
