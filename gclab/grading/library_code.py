"""gclab's library code read statically: its units (top-level functions and classes), what each
names, and which of them a lesson's own solution uses.

The sandbox's view of gclab (:mod:`gclab.grading.view`) stubs every function that answers an
exercise. A helper that the lesson's solution itself uses (``AttentionPooling`` in lesson 5,
``GlobalContextFramework`` in lesson 6) must keep working there, and so must everything it
calls: :func:`solution_units` finds the units the solution regions name (resolving the lesson
source's imports), :func:`closure` adds every unit those name in their own code, transitively
(a class counts whole: its methods, its gclab bases, what they name). The result is per
function (:func:`functions_of`), never "the whole module".
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Set, Tuple

from gclab import paths
from gclab.course import solutions

__all__ = ["Unit", "closure", "functions_of", "is_library", "library_units", "solution_units"]

PACKAGE = paths.PACKAGE
#: the course and the grader, not the library the exercises re-implement
NOT_LIBRARY = ("exercises", "grading", "course")

#: (file, top-level name) of a function or class of the library
Unit = Tuple[str, str]


def is_library(filename: str) -> bool:
    """Is ``filename`` a module of gclab's library (not the course, the engine or the grader)?"""
    try:
        rel = Path(filename).resolve().relative_to(PACKAGE)
    except ValueError:
        return False
    return rel.suffix == ".py" and rel.parts[0] not in NOT_LIBRARY


class _Module:
    """One parsed file: its top-level definitions and what its imports bind."""

    def __init__(self, path: Path, tree: ast.Module) -> None:
        self.path = path
        self.defs: Dict[str, ast.AST] = {}
        self.imports: Dict[str, Tuple[Path, str | None]] = {}  # name -> (file, attr or None)
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.defs[node.name] = node
        for node in ast.walk(tree):
            self.imports.update(_bindings(node, path))


def _module_file(dotted: Path) -> Path | None:
    for cand in (dotted.with_suffix(".py"), dotted / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _bindings(node: ast.AST, path: Path) -> Dict[str, Tuple[Path, str | None]]:
    """What an import statement in ``path`` binds to gclab: name -> (module file, attr)."""
    out: Dict[str, Tuple[Path, str | None]] = {}
    root = PACKAGE.parent
    if isinstance(node, ast.Import):
        for a in node.names:
            if a.name == "gclab" or a.name.startswith("gclab."):
                target = _module_file(root.joinpath(*a.name.split(".")))
                if target is not None:
                    if a.asname:
                        out[a.asname] = (target, None)
                    else:
                        out["gclab"] = (PACKAGE / "__init__.py", None)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = path.parent
            for _ in range(node.level - 1):
                base = base.parent
        elif (node.module or "").split(".")[0] == "gclab":
            base = root
        else:
            return out
        mod = base.joinpath(*node.module.split(".")) if node.module else base
        for a in node.names:
            sub = _module_file(mod / a.name)
            if sub is not None:  # ``from . import fused``: a module
                out[a.asname or a.name] = (sub, None)
            else:
                target = _module_file(mod)
                if target is not None:
                    out[a.asname or a.name] = (target, a.name)
    return out


@cache
def _parse(path: Path) -> _Module | None:
    try:
        return _Module(path, ast.parse(path.read_text(encoding="utf-8")))
    except (OSError, SyntaxError, ValueError):
        return None


def _resolve(path: Path, name: str, depth: int = 0):
    """What ``name`` is in module ``path``: a library unit (file, name), a module (its file), or
    None (not gclab's library)."""
    mod = _parse(path)
    if mod is None or depth > 8:
        return None
    if name in mod.defs:
        return (str(path), name) if is_library(str(path)) else None
    if name in mod.imports:
        target, attr = mod.imports[name]
        return target if attr is None else _resolve(target, attr, depth + 1)
    if path.name == "__init__.py":  # a submodule of this package
        return _module_file(path.parent / name)
    return None


def _names(node: ast.AST, path: Path) -> Iterator[Unit]:
    """The library units that the code under ``node`` (in module ``path``) names."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            got = _resolve(path, sub.id)
        elif isinstance(sub, ast.Attribute):
            chain = []
            cur: ast.AST = sub
            while isinstance(cur, ast.Attribute):
                chain.append(cur.attr)
                cur = cur.value
            if not isinstance(cur, ast.Name):
                continue
            got = _resolve(path, cur.id)
            for attr in reversed(chain):
                got = _resolve(got, attr) if isinstance(got, Path) else None
        else:
            continue
        if isinstance(got, tuple):
            yield got


def _node(unit: Unit) -> ast.AST | None:
    mod = _parse(Path(unit[0]))
    return None if mod is None else mod.defs.get(unit[1])


def closure(units: Iterable[Unit]) -> Set[Unit]:
    """``units`` and every library unit their code names, transitively."""
    seen: Set[Unit] = set()
    todo = list(units)
    while todo:
        unit = todo.pop()
        if unit in seen:
            continue
        node = _node(unit)
        if node is None:
            continue
        seen.add(unit)
        todo.extend(u for u in _names(node, Path(unit[0])) if u not in seen)
    return seen


def functions_of(units: Iterable[Unit]) -> Set[Tuple[str, str]]:
    """(file, qualname) of every function and method defined in ``units`` (nested ones too)."""
    out = set()
    for unit in units:
        node = _node(unit)
        if node is not None:
            out.update((unit[0], q) for q in _qualnames(node, ""))
    return out


def _qualnames(node: ast.AST, prefix: str) -> Iterator[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        qual = prefix + node.name
        yield qual
        prefix = qual + ".<locals>."
    elif isinstance(node, ast.ClassDef):
        prefix = prefix + node.name + "."
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield from _qualnames(child, prefix)
        else:
            for sub in ast.walk(child):
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    yield from _qualnames(sub, prefix)


def library_units(module_files: Iterable[str]) -> List[Unit]:
    """Every top-level function and class of these library files."""
    out = []
    for f in module_files:
        mod = _parse(Path(f).resolve())
        if mod is not None:
            out.extend((str(Path(f).resolve()), name) for name in mod.defs)
    return out


def solution_units(source: str, source_path: Path, checked: Iterable[str] = ()) -> Set[Unit]:
    """The library units that a lesson source's solution regions name, with the lesson's own
    (non-solution) functions and classes that the regions or the ``checked`` names use,
    transitively: the helpers the lesson hands out. Empty when the source holds no solution
    region."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    try:  # 1-based line numbers of each region's two markers
        spans = [(b + 1, e + 1) for b, e in solutions.regions(source.split("\n"), source_path)]
    except solutions.BuildError:
        return set()
    if not spans:
        return set()
    local = {n.name: n for n in tree.body
             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    imports: Dict[str, Tuple[Path, str | None]] = {}
    for node in ast.walk(tree):
        imports.update(_bindings(node, source_path))

    def lookup(name: str):
        if name not in imports:
            return None
        target, attr = imports[name]
        return target if attr is None else _resolve(target, attr)

    found: Set[Unit] = set()
    todo = [n for n in ast.walk(tree) if hasattr(n, "lineno")
            and any(a <= n.lineno <= b for a, b in spans)]
    todo += [ast.Name(id=name, ctx=ast.Load()) for name in checked]
    done: Set[str] = set()
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Name) and node.id in local and node.id not in done:
            done.add(node.id)
            todo.extend(ast.walk(local[node.id]))
            continue
        if isinstance(node, ast.Name):
            got = lookup(node.id)
        elif isinstance(node, ast.Attribute):
            chain, cur = [], node
            while isinstance(cur, ast.Attribute):
                chain.append(cur.attr)
                cur = cur.value
            got = lookup(cur.id) if isinstance(cur, ast.Name) else None
            for attr in reversed(chain):
                got = _resolve(got, attr) if isinstance(got, Path) else None
        else:
            continue
        if isinstance(got, tuple):
            found.add(got)
    return found


#: library code that computes an exercise's answer without being what its reference calls
#: ("module:qualname"; a class stands for all its methods). The reference's own calls are
#: found by running it; these are the other ways the library already answers the exercise.
ALSO_ANSWERS: Dict[str, Tuple[str, ...]] = {
    "snl.pool": ("gclab.numpy.ops:attention_pool", "gclab.numpy.ops:attention_pool_forward"),
    "gc.layer_norm": ("gclab.numpy.ops:layer_norm", "gclab.numpy.ops:layer_norm_forward"),
    "gc.sigmoid_grad": ("gclab.numpy.ops:sigmoid_backward",),
    "se.squeeze": ("gclab.numpy.ops:global_avg_pool", "gclab.numpy.ops:global_avg_pool_forward"),
    "exp.nl_flops": ("gclab.experiments.bench_core:nl_matmul_flops",),
    "use.unit_output": ("gclab.nn.insert:InsertedBlock",),
    "use.map_key": ("gclab.nn.mmcv.convert:mmcv_to_gclab_state_dict",
                    "gclab.nn.mmcv.convert:from_mmcv",
                    "gclab.nn.mmcv.checkpoints:map_checkpoint_keys"),
}


def also_answers(exercise_id: str) -> Set[Tuple[str, str]]:
    """(file, qualname) of the functions :data:`ALSO_ANSWERS` names for this exercise."""
    out: Set[Tuple[str, str]] = set()
    for spec in ALSO_ANSWERS.get(exercise_id, ()):
        module, name = spec.split(":")
        path = _module_file(PACKAGE.parent.joinpath(*module.split(".")))
        if path is None:
            raise ValueError(f"{spec}: no such module")
        unit = (str(path), name)
        if _node(unit) is None:
            raise ValueError(f"{spec}: no such function or class")
        out |= functions_of([unit])
    return out
