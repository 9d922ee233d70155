"""The package's shape, kept: no import cycles, at most 9 layers of modules (imports inside functions included), no
module over 300 lines. A change that breaks one says which modules to look at."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "melanoma_lab"
MAX_LAYERS, MAX_LINES = 9, 300


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (at the top or inside a function)."""
    modules = _modules()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {f"{node.module}.{alias.name}" for alias in node.names}
        graph[module] = {o for t in targets if t.startswith("melanoma_lab") and (o := owner(t))
                         and o not in (module, "melanoma_lab")}
    return graph


def layers(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """Each module's longest chain of imports down to a module that imports none of the package."""
    @functools.cache
    def chain(module: str, seen: frozenset = frozenset()) -> tuple[str, ...]:
        assert module not in seen, f"import cycle through {module}"
        below = [chain(m, seen | {module}) for m in graph[module]]
        return (module, *max(below, key=len, default=()))

    return {module: list(chain(module)) for module in graph}


def test_the_import_graph_has_no_cycle_and_at_most_nine_layers():
    longest = max(layers(import_graph()).values(), key=len)
    assert len(longest) <= MAX_LAYERS, " -> ".join(longest)


def test_no_module_is_over_300_lines():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_the_layer_count_sees_a_cycle_and_a_long_chain():
    """The checks above can fail: a cycle raises, and a chain of ten modules is ten layers."""
    import pytest

    with pytest.raises(AssertionError, match="import cycle"):
        layers({"a": {"b"}, "b": {"a"}})
    chain = {f"m{i}": {f"m{i + 1}"} for i in range(9)} | {"m9": set()}
    assert len(layers(chain)["m0"]) == 10
