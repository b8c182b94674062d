"""Modules talk through public names: a private ``_name`` stays in its module, and a private
module ``_mod`` stays in its package.

Checked on every import statement in gclab, tests and scripts (any depth: a function-level
import counts). A violation is importing a ``_name`` that another module defines (anywhere), or
a ``_module`` from outside the package that holds it (in gclab: a private module of ``gclab``
itself serves all of gclab, one of ``gclab.nn`` serves ``gclab.nn`` and its subpackages; a test
may import the private module it tests, never a private name). Dunder names are public.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import List

import gclab

PACKAGE = Path(gclab.__file__).resolve().parent
ROOT = PACKAGE.parent


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _package_of(rel: str) -> str:
    """``gclab/nn/framework.py`` -> ``gclab.nn``; files outside gclab have no package."""
    parts = Path(rel).with_suffix("").parts
    if parts[0] != "gclab":
        return ""
    return ".".join(parts[:-1])


def _absolute(node: ast.ImportFrom, rel: str) -> str:
    if node.level == 0:
        return node.module or ""
    base = _package_of(rel).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _outside(owner: str, package: str, rel: str) -> bool:
    """Whether a private module of package ``owner`` is out of reach of ``rel``."""
    if not rel.startswith("gclab/"):
        return False
    return not (package == owner or package.startswith(owner + "."))


def private_imports(source: str, rel: str) -> List[str]:
    """``rel:line: ...`` for every import of a private name, or of a private module from
    outside its package."""
    found = []
    package = _package_of(rel)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            module = _absolute(node, rel)
            if not module.startswith("gclab"):
                continue
            parts = module.split(".")
            for i, part in enumerate(parts):
                owner = ".".join(parts[:i])
                if _private(part) and _outside(owner, package, rel):
                    found.append(f"{rel}:{node.lineno}: from {module} import ...")
                    break
            else:
                for alias in node.names:
                    if not _private(alias.name):
                        continue
                    # a private submodule of the importer's own package is fine
                    is_module = (ROOT / Path(*parts) / f"{alias.name}.py").exists() or (
                        ROOT / Path(*parts) / alias.name / "__init__.py").exists()
                    if is_module and not _outside(module, package, rel):
                        continue
                    found.append(f"{rel}:{node.lineno}: from {module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] != "gclab":
                    continue
                for i, part in enumerate(parts):
                    if _private(part) and _outside(".".join(parts[:i]), package, rel):
                        found.append(f"{rel}:{node.lineno}: import {alias.name}")
                        break
    return found


def _files() -> List[Path]:
    out = sorted(PACKAGE.rglob("*.py"))
    for folder in ("tests", "scripts"):
        out += sorted((ROOT / folder).rglob("*.py"))
    return [p for p in out if "__pycache__" not in p.parts]


def test_the_checker_sees_private_names_and_modules():
    src = ("from gclab.exercises.core import _check, check\n"
           "from gclab.nn import _checks\n"
           "from gclab.nn._checks import check_int\n"
           "import gclab.nn._checks\n")
    assert private_imports(src, "gclab/course/x.py") == [
        "gclab/course/x.py:1: from gclab.exercises.core import _check",
        "gclab/course/x.py:2: from gclab.nn import _checks",
        "gclab/course/x.py:3: from gclab.nn._checks import ...",
        "gclab/course/x.py:4: import gclab.nn._checks",
    ]
    assert private_imports(src, "tests/test_x.py") == [
        "tests/test_x.py:1: from gclab.exercises.core import _check"]
    inside = "from ._checks import check_int\nfrom . import _checks\nfrom .framework import _x\n"
    assert private_imports(inside, "gclab/nn/gc_block.py") == [
        "gclab/nn/gc_block.py:3: from gclab.nn.framework import _x"]
    assert private_imports("from gclab.nn._checks import check_int\n", "gclab/nn/fast/a.py") == []
    assert private_imports("from gclab._extras import require\n", "gclab/course/site.py") == []
    assert private_imports("from gclab import __version__\n", "tests/t.py") == []


def test_no_private_name_crosses_a_module():
    found = []
    for path in _files():
        rel = path.relative_to(ROOT).as_posix()
        found += private_imports(path.read_text(encoding="utf-8"), rel)
    assert not found, "private names imported across modules:\n" + "\n".join(found)
