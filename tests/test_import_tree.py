"""The imports inside gclab form a tree (a DAG): no module imports, directly or through
others, a module that imports it back.

Every ``import``/``from ... import`` statement counts, at module level or inside a function
(a function-level import that closes a circle still makes the modules depend on each other),
except those under ``if TYPE_CHECKING:``. ``from .pkg import name`` is an edge to the module
``pkg.name`` when that is a module, else to ``pkg``. Importing a submodule also runs its
package's ``__init__``, but that implicit edge is not counted (it would make every package a
circle with its own submodules).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import gclab

ROOT = Path(gclab.__file__).resolve().parent  # .../gclab


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES: Dict[str, Path] = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _resolve(name: str, level: int, importer: str) -> str:
    if level == 0:
        return name
    base = importer.split(".")
    if not _is_package(importer):
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _type_checking_only(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def imports_of(name: str) -> Set[str]:
    """The gclab modules that module ``name`` imports."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    out: Set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node.module or "", node.level, name)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in MODULES else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    # keep gclab's own modules; ``import gclab.nn.x`` -> the longest known module name
    found = set()
    for target in out:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def find_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components: List[List[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_a_cycle(graph, set(c)) for c in components]


def _a_cycle(graph: Dict[str, Set[str]], comp: Set[str]) -> List[str]:
    """A closed path a -> b -> ... -> a inside one strongly connected component."""
    start = min(comp)
    path, seen = [start], {start}
    while True:
        nxt = sorted(w for w in graph[path[-1]] if w in comp)
        back = [w for w in nxt if w in seen]
        if back:
            return path[path.index(back[0]):] + [back[0]]
        path.append(nxt[0])
        seen.add(nxt[0])


GRAPH = {m: imports_of(m) for m in MODULES}


def test_the_graph_sees_the_known_imports():
    # the checker itself: it must see relative, absolute, function-level imports
    assert "gclab.nn.mmcv.keys" in GRAPH["gclab.nn.framework"]
    assert "gclab.nn.gc_block" in GRAPH["gclab.nn.mmcv.convert"]  # inside from_mmcv()
    assert "gclab.numpy.ops" in GRAPH["gclab.numpy.non_local"]  # ``from . import ops``


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_imports_inside_gclab_form_a_tree():
    cycles = find_cycles(GRAPH)
    assert not cycles, "import cycles inside gclab:\n" + "\n".join(
        " -> ".join(c) for c in cycles
    )
