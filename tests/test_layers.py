"""The package's layer contract: every module sits in one layer and imports only its own layer or lower ones,
and no module imports itself back through others (no cycle).

Layers, lowest first, by folder: ``core < device < nn < methods < study < present < book < cli``. The top
package's ``__init__`` counts as ``core`` (it may import nothing above ``core``); ``__main__`` sits above ``cli``.
The checker reads the sources with :mod:`ast`, so it sees every import, function-local and ``TYPE_CHECKING``
ones included (an import hidden inside a function still ties the two modules together), without importing
anything. A copy of the package with a planted upward import and a planted cycle shows that it fails.
"""
from __future__ import annotations

import ast
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import rramlib

PACKAGE = Path(rramlib.__file__).resolve().parent
LAYERS = ("core", "device", "nn", "methods", "study", "present", "book", "cli")


@dataclass(frozen=True)
class Edge:
    """``module`` imports ``target`` (both dotted module names of the package) at ``line``."""

    module: str
    target: str
    line: int


def modules(package: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of ``package`` (a package is named by its ``__init__.py``)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = path.relative_to(package.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def layer(module: str, package: str = "rramlib") -> int:
    """The rank of ``module``'s layer in :data:`LAYERS` (the package ``__init__``: core; ``__main__``: above cli)."""
    if module == package:
        return 0
    if module == f"{package}.__main__":
        return len(LAYERS)
    folder = module.split(".")[1]
    if folder not in LAYERS:
        raise AssertionError(f"module {module} is in no layer: put it in one of the folders {LAYERS}")
    return LAYERS.index(folder)


def edges(package: Path) -> Iterator[Edge]:
    """Every import of a package module by a package module, each resolved to the module it loads: for
    ``from a.b import c`` the submodule ``a.b.c`` if there is one, else ``a.b``; relative imports included."""
    mods = modules(package)
    root = package.name

    def resolve(name: str) -> str:
        while name not in mods and "." in name:
            name = name.rpartition(".")[0]
        return name

    for module, path in mods.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = module.split(".")[: None if is_package else -1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in mods else base for alias in node.names]
            else:
                continue
            for target in dict.fromkeys(resolve(t) for t in targets if t == root or t.startswith(root + ".")):
                yield Edge(module, target, node.lineno)


def upward_imports(package: Path) -> list[str]:
    """Each import of a higher layer, as ``"module (layer) line N imports target (layer)"``."""
    name = package.name
    for module in modules(package):
        layer(module, name)  # every module sits in a layer
    return [f"{e.module} ({_layer_name(e.module, name)}) line {e.line} imports {e.target} ({_layer_name(e.target, name)})"
            for e in edges(package) if layer(e.target, name) > layer(e.module, name)]


def _layer_name(module: str, package: str) -> str:
    rank = layer(module, package)
    return "__main__" if rank == len(LAYERS) else LAYERS[rank]


def cycles(package: Path) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` per strongly connected group of modules (Tarjan's algorithm), shortest
    through the group's first module; ``[]`` when the import graph is acyclic."""
    graph: dict[str, set[str]] = {m: set() for m in modules(package)}
    for e in edges(package):
        if e.target != e.module:
            graph[e.module].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_shortest_cycle(graph, group) for group in groups]


def _shortest_cycle(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    """The shortest path from ``group[0]`` back to itself inside ``group`` (breadth first)."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{group} is not a cycle")


# ------------------------------------------------------------------------------------------------ the contract
def test_every_module_sits_in_a_layer():
    for module in modules(PACKAGE):
        layer(module)  # raises for a module outside the layer folders
    assert {m.split(".")[1] for m in modules(PACKAGE) if m.count(".") >= 1} == {*LAYERS, "__main__"}


def check_no_upward_import(package: Path) -> None:
    found = upward_imports(package)
    assert not found, "imports of a higher layer (layers: " + " < ".join(LAYERS) + "):\n" + "\n".join(found)


def check_no_cycle(package: Path) -> None:
    found = cycles(package)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_module_imports_a_higher_layer():
    check_no_upward_import(PACKAGE)


def test_the_import_graph_has_no_cycle():
    check_no_cycle(PACKAGE)


def test_the_top_package_imports_core_only_and_main_runs_the_cli():
    top = {e.target for e in edges(PACKAGE) if e.module == "rramlib"}
    assert top and all(t.startswith("rramlib.core.") for t in top)
    assert {e.target for e in edges(PACKAGE) if e.module == "rramlib.__main__"} == {"rramlib.cli.main"}


# ------------------------------------------------------------------------------------------------ the checker
@pytest.fixture
def copy(tmp_path) -> Path:
    dest = tmp_path / "rramlib"
    shutil.copytree(PACKAGE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _plant(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n\n" + code + "\n")


def test_the_checker_reports_a_planted_upward_import(copy):
    before = upward_imports(copy)  # the package's own (none where the contract holds)
    _plant(copy / "core" / "times.py", "def _late():\n    from rramlib.study.profiles import PROFILES\n    return PROFILES")
    _plant(copy / "nn" / "models.py", "from ..methods import schedule  # relative")
    found = [f for f in upward_imports(copy) if f not in before]
    assert len(found) == 2
    assert found[0].startswith("rramlib.core.times (core) line ")
    assert found[0].endswith("imports rramlib.study.profiles (study)")
    assert found[1].startswith("rramlib.nn.models (nn) line ") and found[1].endswith("rramlib.methods.schedule (methods)")
    with pytest.raises(AssertionError, match="imports of a higher layer"):
        check_no_upward_import(copy)


def test_the_checker_reports_a_planted_cycle(copy):
    (copy / "study" / "_left.py").write_text("def f():\n    import rramlib.study._right\n")
    (copy / "study" / "_right.py").write_text("from rramlib.study._left import f\n")
    before = cycles(PACKAGE)  # the package's own (none where the contract holds)
    assert [c for c in cycles(copy) if c not in before] == [
        ["rramlib.study._left", "rramlib.study._right", "rramlib.study._left"]]
    with pytest.raises(AssertionError, match="rramlib.study._left -> rramlib.study._right -> rramlib.study._left"):
        check_no_cycle(copy)


def test_a_module_outside_the_layers_is_refused(copy):
    (copy / "extra.py").write_text("")
    with pytest.raises(AssertionError, match="rramlib.extra is in no layer"):
        upward_imports(copy)
