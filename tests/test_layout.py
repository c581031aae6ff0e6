"""The house rules of ARCHITECTURE.md "Layout", checked on the source: no import cycle, nothing
imports upward.

Floors, top to bottom: ``cli`` -> ``agent`` / ``server`` -> ``core``; ``plugins`` hang off core's
contract. Every import counts, also those inside functions (a lazy import is still a dependency)
and under ``TYPE_CHECKING``. Deprecated alias modules import through ``importlib`` with strings,
so they are invisible here by construction.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "launchplane"

ALLOWED: dict[str, frozenset[str]] = {
    # floor of the importing module -> floors it may import
    "face": frozenset({"face", "core"}),  # launchplane/__init__.py, _version.py
    "core": frozenset({"face", "core"}),
    "plugins": frozenset({"face", "core", "plugins"}),
    "agent": frozenset({"face", "core", "agent"}),
    "server": frozenset({"face", "core", "server"}),
    "testing": frozenset({"face", "core", "agent", "testing"}),
    "cli": frozenset({"face", "core", "agent", "server", "cli"}),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


MODULES = _modules()


def floor(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "_version":
        return "face"
    return parts[1]


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: str) -> Iterator[tuple[str, int]]:
    """``(imported launchplane module, line)`` for every import in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path.name == "__init__.py", node)
            # ``from launchplane.core import paths`` imports the module launchplane.core.paths.
            names = [
                f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # ``import a.b.c`` where c is a name
                name = name.rpartition(".")[0]
            if name.startswith("launchplane") and name != module:
                yield name, node.lineno


GRAPH = {module: sorted(set(imports_of(module))) for module in MODULES}


def test_nothing_imports_upward() -> None:
    problems = [
        f"{module} (line {line}) imports {target}: {floor(module)}/ may import only "
        f"{', '.join(sorted(ALLOWED[floor(module)]))}"
        for module, targets in GRAPH.items()
        for target, line in targets
        if floor(target) not in ALLOWED[floor(module)]
    ]
    assert not problems, "\n".join(problems)


def test_no_import_cycle() -> None:
    edges = {module: {target for target, _ in targets} for module, targets in GRAPH.items()}
    cycle = _find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path ``a -> b -> ... -> a``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ],
)
def test_the_cycle_finder_names_the_cycle(edges: dict[str, set[str]], expected: object) -> None:
    assert _find_cycle(edges) == expected


def test_the_layout_is_the_documented_one() -> None:
    """The folders ARCHITECTURE.md's Layout names, each a package."""
    for folder in ("cli", "core", "core/config", "agent", "server", "server/store", "plugins"):
        assert (PACKAGE / folder / "__init__.py").is_file(), folder
    for folder in ("builders", "runners", "secrets"):
        assert (PACKAGE / "plugins" / folder / "__init__.py").is_file(), folder
