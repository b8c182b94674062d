"""docs/architecture.md draws the package diagram: its edges are the imports, no more, no less.

The diagram is a Mermaid ``graph`` whose nodes are gclab's parts (``nn``, ``numpy``,
``exercises``, ``exercises.lessons``, ``grading``, ``course``, ``experiments`` and the top-level
modules) and whose edges ``A --> B`` say "some module of A imports some module of B". The
edges are computed here from every import statement (tests/test_import_tree.py's graph) and
compared with the document's, so the picture cannot go stale; the parts form a DAG too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Set, Tuple

from test_import_tree import GRAPH, find_cycles

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
#: sub-packages drawn as parts of their own; every other module belongs to its top package
PARTS = ("gclab.exercises.lessons",)


def part_of(module: str) -> str:
    for part in PARTS:
        if module == part or module.startswith(part + "."):
            return part[len("gclab."):]
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "gclab"


def part_graph() -> Dict[str, Set[str]]:
    graph: Dict[str, Set[str]] = {}
    for module, targets in GRAPH.items():
        src = part_of(module)
        if src == "gclab":
            continue  # the package's __init__
        graph.setdefault(src, set())
        for target in targets:
            dst = part_of(target)
            if dst not in (src, "gclab"):
                graph[src].add(dst)
    return graph


def doc_edges() -> Set[Tuple[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"```mermaid\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md has no ```mermaid block"
    edges = set()
    for line in block.group(1).splitlines():
        m = re.match(r"\s*([\w.]+)(?:\[[^\]]*\])?\s*-->\s*([\w.]+)", line)
        if m:
            edges.add((m.group(1), m.group(2)))
    return edges


def test_the_parts_form_a_dag():
    assert find_cycles(part_graph()) == []


def test_the_diagram_is_the_import_graph():
    actual = {(a, b) for a, targets in part_graph().items() for b in targets}
    drawn = doc_edges()
    assert drawn == actual, (
        f"edges drawn but not imported: {sorted(drawn - actual)}; "
        f"imported but not drawn: {sorted(actual - drawn)}")
