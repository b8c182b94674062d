"""Every gclab module imports only what it uses: no module hands on names it imported.

A caller imports each name from the module that defines it. Two things would break that and
are caught here, in every module of the package:

(a) an import silenced with ``# noqa: F401`` (ruff's "imported but unused"): the one allowed
    is listed in SIDE_EFFECT_IMPORTS with the reason it is imported;
(b) a name imported into a module that the module neither uses nor defines but lists in
    ``__all__``: a re-export;
(c) a caller (in gclab, tests or scripts) that imports a name from a module that only imported
    it (``from gclab.exercises.core import Case`` when ``Case`` lives in ``registry``).

A package's ``__init__.py`` is its public face (``from gclab.nn import GCBlock``): gathering
its modules' names is its job, so (b) and (c) do not apply to it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import List

import gclab

ROOT = Path(gclab.__file__).resolve().parent  # .../gclab

# module (relative to gclab/) -> the module it imports for its side effect, and why
SIDE_EFFECT_IMPORTS = {
    "nn/fast/non_local.py": (
        "flops",
        "importing gclab.nn.fast.flops registers FlopCounterMode formulas for SDPA on CPU",
    ),
}

_NOQA_F401 = re.compile(r"#\s*noqa(?::[^#\n]*\bF401\b|\s*$|\s+[^:])")


def _imported_names(node: ast.AST) -> List[str]:
    names = []
    for alias in node.names:
        if alias.name == "*":
            continue
        names.append(alias.asname or alias.name.split(".")[0])
    return names


def silenced_imports(source: str, rel: str) -> List[str]:
    """Imports marked ``# noqa: F401`` (or a bare ``# noqa``) that the allow-list lacks."""
    lines = source.splitlines()
    allowed = SIDE_EFFECT_IMPORTS.get(rel, (None,))[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        span = lines[node.lineno - 1 : node.end_lineno]
        if not any(_NOQA_F401.search(line) for line in span):
            continue
        if [alias.name for alias in node.names] == [allowed]:
            continue
        out.append(f"{rel}:{node.lineno}: {span[0].strip()}")
    return out


def _dunder_all(tree: ast.Module) -> List[str]:
    names: List[str] = []
    for node in tree.body:
        if _is_all(node) and node.value is not None:
            for elt in ast.walk(node.value):
                if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                    names.append(elt.value)
    return names


def reexported_names(source: str, rel: str) -> List[str]:
    """Names in ``__all__`` that the module imports and never uses nor defines."""
    tree = ast.parse(source)
    imported, defined = {}, set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for name in _imported_names(node):
                imported.setdefault(name, node.lineno)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
    defined.discard("__all__")
    used = _names_used_outside_all(tree)
    return [
        f"{rel}:{imported[name]}: {name}"
        for name in sorted(set(_dunder_all(tree)))
        if name in imported and name not in defined and name not in used
    ]


def _is_all(node: ast.stmt) -> bool:
    targets = node.targets if isinstance(node, ast.Assign) else (
        [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
    return any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)


def _names_used_outside_all(tree: ast.Module) -> set:
    """Names the module reads, string annotations (``-> "Tensor"``) included."""
    used = set()
    for node in tree.body:
        if _is_all(node):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and not isinstance(sub.ctx, ast.Store):
                used.add(sub.id)
            elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                try:  # an annotation in quotes is an expression; prose is not
                    expr = ast.parse(sub.value, mode="eval")
                except SyntaxError:
                    continue
                used.update(n.id for n in ast.walk(expr) if isinstance(n, ast.Name))
    return used


MODULES = sorted(ROOT.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_the_checker_sees_a_reexport_and_a_silenced_import():
    shim = (
        "from .compare import _clone, helper  # noqa: F401\n"
        "from .registry import (  # noqa: F401 - kept for old imports\n"
        "    Case,\n    catalog,\n)\n"
        "from .verdict import CheckResult\n"
        "import numpy as np\n"
        "def check(x) -> 'CheckResult':\n    return helper(np.asarray(x))\n"
        "__all__ = ['Case', 'CheckResult', 'check', 'np']\n"
    )
    assert len(silenced_imports(shim, "exercises/core.py")) == 2
    assert reexported_names(shim, "exercises/core.py") == ["exercises/core.py:2: Case"]
    used = "from .registry import Case\nX = Case\n__all__ = ['Case', 'X']\n"
    assert reexported_names(used, "m.py") == []
    side_effect = "from . import flops as _flops  # noqa: F401 - registers formulas\n"
    assert silenced_imports(side_effect, "nn/fast/non_local.py") == []
    assert len(silenced_imports(side_effect, "nn/gc_block.py")) == 1


def test_the_side_effect_allow_list_is_true():
    for rel, (name, _why) in SIDE_EFFECT_IMPORTS.items():
        source = (ROOT / rel).read_text(encoding="utf-8")
        assert any(
            isinstance(n, (ast.Import, ast.ImportFrom))
            and name in [alias.name for alias in n.names]
            for n in ast.walk(ast.parse(source))
        ), f"{rel} no longer imports {name}: drop it from SIDE_EFFECT_IMPORTS"


def test_no_module_silences_an_unused_import():
    found = [
        hit for path in MODULES
        for hit in silenced_imports(path.read_text(encoding="utf-8"), _rel(path))
    ]
    assert not found, (
        "imports marked `noqa: F401` (import each name where it is defined, and drop the "
        "ones the module does not use):\n" + "\n".join(found)
    )


def test_no_module_reexports_what_it_imports():
    found = [
        hit for path in MODULES if path.name != "__init__.py"
        for hit in reexported_names(path.read_text(encoding="utf-8"), _rel(path))
    ]
    assert not found, (
        "names a module imports, never uses, and lists in __all__ (callers should import "
        "them from the module that defines them):\n" + "\n".join(found)
    )


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_not_defined(source: str) -> set:
    """Names a module binds by importing them and never assigns or defines itself."""
    tree = ast.parse(source)
    imported, defined = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imported.update(_imported_names(node))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
    return imported - defined


def _absolute(node: ast.ImportFrom, rel: str) -> str:
    """The module a ``from`` import names; ``rel`` is the importing file's path (gclab/...)."""
    if node.level == 0:
        return node.module or ""
    base = list(Path(rel).with_suffix("").parts)[:-1]  # the importer's package
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def passed_on_imports(source: str, rel: str, borrowed: dict) -> List[str]:
    """``from gclab.m import name`` where module ``gclab.m`` only imported ``name`` itself."""
    out = []
    for node in ast.walk(ast.parse(source)):
        module = _absolute(node, rel) if isinstance(node, ast.ImportFrom) else None
        if module in borrowed:
            out += [f"{rel}:{node.lineno}: from {module} import {a.name}"
                    for a in node.names if a.name in borrowed[module]]
    return out


def test_callers_import_each_name_from_the_module_that_defines_it():
    borrowed = {
        _module_of(p): _imported_not_defined(p.read_text(encoding="utf-8"))
        for p in MODULES if p.name != "__init__.py"
    }
    assert "check" not in borrowed["gclab.exercises.core"]  # the checker itself
    assert "Case" in borrowed["gclab.exercises.core"]
    relative = "from .core import Case, check\n"
    assert passed_on_imports(relative, "gclab/exercises/x.py", borrowed) == [
        "gclab/exercises/x.py:1: from gclab.exercises.core import Case"]
    callers = [p for d in ("gclab", "tests", "scripts") for p in (ROOT.parent / d).rglob("*.py")]
    found = [
        hit for path in callers if path.exists()
        for hit in passed_on_imports(path.read_text(encoding="utf-8"),
                                     path.relative_to(ROOT.parent).as_posix(), borrowed)
    ]
    assert not found, "names imported through a module that only imports them:\n" + "\n".join(
        found)
