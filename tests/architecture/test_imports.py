"""The house rules of ARCHITECTURE.md, checked on the source: arrows point down, no import circles.

Every import counts: module level, inside functions and under ``TYPE_CHECKING`` alike, because a
deferred import hides a circle rather than removing it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "cocoon"

# Which rooms each room may import (besides itself, ``cocoon.errors`` and ``cocoon.__init__``).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "wire": {"core"},
    "oai": {"core"},
    "e2ee": {"core"},
    "tee": {"core", "wire"},
    "chain": {"core"},
    "inference": {"core", "oai"},
    "net": {"core", "wire", "tee"},
    "node": {"core", "wire", "tee", "net", "chain", "oai", "e2ee"},
    "worker": {"core", "wire", "tee", "net", "chain", "oai", "e2ee", "inference", "node"},
    "proxy": {"core", "wire", "tee", "net", "chain", "oai", "e2ee", "node"},
    "client": {"core", "wire", "tee", "net", "chain", "oai", "e2ee", "node"},
    "health": {"core", "wire", "tee", "net", "chain", "oai", "e2ee", "inference", "node"},
    "localnet": {
        "core", "wire", "tee", "net", "chain", "oai", "e2ee", "inference", "node", "worker", "proxy", "client",
        "health",
    },
    "cli": {
        "core", "wire", "tee", "net", "chain", "oai", "e2ee", "inference", "node", "worker", "proxy", "client",
        "health", "localnet",
    },
}  # fmt: skip
ROOT_MODULES = {"__init__", "errors"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in SRC.rglob("*.py")}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The cocoon modules ``path`` imports (``from cocoon import x`` means module ``cocoon.x``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("cocoon"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("cocoon"):
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, known) & known for name, path in modules.items()}


def test_src_holds_only_packages_and_the_root_modules() -> None:
    loose = {p.stem for p in SRC.glob("*.py")} - ROOT_MODULES
    assert not loose, f"top-level modules belong in a room: {sorted(loose)}"
    rooms = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms <= set(ALLOWED), f"a new room needs its arrows in ALLOWED: {sorted(rooms - set(ALLOWED))}"


def test_arrows_point_down() -> None:
    upward = []
    for module, targets in _graph().items():
        room = _room(module)
        if room in ROOT_MODULES:
            continue
        for target in targets:
            target_room = _room(target)
            if target_room in ROOT_MODULES or target_room == room:
                continue
            if target_room not in ALLOWED[room]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports against ARCHITECTURE.md:\n" + "\n".join(sorted(upward))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        result.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return result


def test_no_import_circles() -> None:
    graph = _graph()
    # A package's __init__ re-exporting its modules is not a circle: drop edges into __init__ from
    # inside the same package, and edges from an __init__ down into its own modules.
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not (module.startswith(t + ".") or t.startswith(module + "."))}
    cycles = _cycles(graph)
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


LONGEST_FUNCTION = 80
LARGEST_CLASS = 500


def _too_long() -> list[str]:
    found = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > LONGEST_FUNCTION:
                    found.append(f"{name}.{node.name}: function of {length} lines")
            elif isinstance(node, ast.ClassDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > LARGEST_CLASS:
                    found.append(f"{name}.{node.name}: class of {length} lines")
    return found


def test_no_function_over_80_lines_and_no_class_over_500() -> None:
    found = _too_long()
    assert not found, "\n".join(sorted(found))


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_every_room_has_a_docstring(room: str) -> None:
    init = SRC / room / "__init__.py"
    if not init.exists():
        pytest.skip(f"{room} does not exist yet")
    tree = ast.parse(init.read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"cocoon.{room} needs a docstring that says its one job"


def test_graph_sees_deferred_imports() -> None:
    graph = _graph()
    assert "cocoon.wire" in graph["cocoon.net.connection"] or any(
        t.startswith("cocoon.wire") for t in graph["cocoon.net.connection"]
    )
