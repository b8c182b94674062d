"""Which code of gclab is an exercise's answer: what the sandbox must not offer.

The grader (:mod:`gclab.grading.trusted`) reads here which name the instructor's lesson source
checks for each exercise (:func:`checked_names`), which gclab functions are tripwires during a
call (:func:`forbidden_code`: the reference, its mistakes, and the gclab code the reference
calls directly, minus the helpers the lesson's own solution uses), and which are replaced by
stubs in the sandbox's view of gclab (:func:`answer_code`, for :mod:`gclab.grading.view`).
The functions that run references must be called under the grader's lock (torch's global RNG).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

from gclab import paths
from gclab.course import solutions

__all__ = ["BLOCK_MODULES", "answer_code", "checked_ids", "checked_names", "forbidden_code",
           "lesson_source"]

ROOT = paths.ROOT
GCLAB_DIR = str(paths.PACKAGE) + "/"


# --------------------------------------------------------------------------------------------
# What the instructor's lesson source says
# --------------------------------------------------------------------------------------------
def lesson_source(lesson: str) -> str:
    path = ROOT / "notebooks" / "src" / f"{lesson}.py"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def checked_names(lesson: str) -> Dict[str, str]:
    """exercise id -> the name the lesson source's ``check(id, name)`` checks."""
    return solutions.checked_names(lesson_source(lesson))


def checked_ids(sources: List[str]) -> List[str]:
    """Every exercise id that ``check("id", ...)`` calls in these cell sources name, in order."""
    return [ex_id for s in sources for ex_id in solutions.checked_ids(s)]


def _solution_text(lesson: str) -> Tuple[str, str]:
    src = lesson_source(lesson)
    regions = "\n".join(solutions.region_code(src))
    imports = "\n".join(
        line for line in src.splitlines() if line.startswith(("from gclab", "import gclab"))
    )
    block = re.findall(r"from gclab[\w.]* import \(([^)]*)\)", src, re.S)
    return regions, imports + "\n" + "\n".join(block)


def _allowed(qualname: str, filename: str, regions: str, imports: str) -> bool:
    """A gclab function/class that the lesson's own solution regions use (a helper it hands
    the learner, e.g. ``gnp.ops.conv1x1`` in lesson 2, ``Bottleneck`` in lesson 6)."""
    parts = qualname.split(".")
    if len(parts) >= 2 and not parts[-2].startswith("<"):  # a method: is its class used?
        return re.search(rf"\b{re.escape(parts[-2])}\b", regions) is not None
    name = parts[-1]
    if name.startswith("<"):
        return False
    stem = re.escape(Path(filename).stem)
    qualified = rf"\b(?:{stem}|gnp|numpy|nn|gclab)\.(?:\w+\.)*{re.escape(name)}\s*\("
    if re.search(qualified, regions):
        return True
    return bool(
        re.search(rf"\b{re.escape(name)}\b", imports)
        and re.search(rf"(?<!def )\b{re.escape(name)}\s*\(", regions)
    )


_FORBIDDEN: Dict[str, List[list]] = {}
#: gclab's own blocks: handing one of these in (or calling one) is not an answer, unless the
#: lesson's solution itself uses it
BLOCK_MODULES = (
    "gclab.numpy.non_local", "gclab.numpy.snl_block", "gclab.numpy.gc_block",
    "gclab.numpy.se_block", "gclab.numpy.framework", "gclab.numpy.naive",
    "gclab.nn.non_local", "gclab.nn.snl_block", "gclab.nn.gc_block", "gclab.nn.se_block",
    "gclab.nn.framework",
)
_BLOCKS: Dict[tuple, str] = {}


def _block_code() -> Dict[tuple, str]:
    """(file, line, name) -> qualname of every function and method of gclab's blocks."""
    if _BLOCKS:
        return _BLOCKS
    import importlib
    import inspect

    for name in BLOCK_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for obj in vars(module).values():
            if getattr(obj, "__module__", None) != name:
                continue
            funcs = [obj] if inspect.isfunction(obj) else []
            if inspect.isclass(obj):
                funcs = [f for f in vars(obj).values() if inspect.isfunction(f)]
            for f in funcs:
                private = f.__name__.startswith("_") and not f.__name__.startswith("__")
                if private:  # internals (e.g. a state_dict hook torch calls), not a block
                    continue
                code = f.__code__
                _BLOCKS[tuple(_key(code))] = getattr(code, "co_qualname", f.__qualname__)
    return _BLOCKS


def _key(code) -> list:
    return [code.co_filename, code.co_firstlineno, code.co_name]


def forbidden_code(ex, trials) -> List[list]:
    """Code objects (file, line, name) that are gclab's implementation of ``ex``."""
    if ex.id in _FORBIDDEN:
        return _FORBIDDEN[ex.id]
    from gclab.exercises.trials import run_reference

    keys: Dict[tuple, str] = {}
    roots = set()
    for fn in [ex.reference, *ex.mistakes.values()]:
        code = getattr(fn, "__code__", None)
        if code is not None and code.co_filename.startswith(GCLAB_DIR):
            keys[tuple(_key(code))] = getattr(code, "co_qualname", code.co_name)
            roots.add(code)
    regions, imports = _solution_text(ex.notebook)
    if trials and ex.kind != "value":
        seen: Dict[tuple, str] = {}

        def hook(frame, event, arg):  # noqa: ARG001
            if event != "call":
                return
            code = frame.f_code
            if not code.co_filename.startswith(GCLAB_DIR) or code in roots:
                return
            caller = frame.f_back
            cf = caller.f_code if caller is not None else None
            if cf is None or cf in roots or not cf.co_filename.startswith(GCLAB_DIR):
                seen[tuple(_key(code))] = getattr(code, "co_qualname", code.co_name)

        trial = trials[0]
        sys.setprofile(hook)
        try:
            run_reference(ex, ex.reference, trial.case, trial.seed)
        except Exception:  # noqa: BLE001 - then only the reference itself is a tripwire
            pass
        finally:
            sys.setprofile(None)
        if regions:  # without the lesson's source we cannot tell its helpers: be lenient
            seen.update(_block_code())
        for k, qual in seen.items():
            content = re.search(r"/exercises/lessons/nb\d\d_", k[0]) is not None
            engine = "/gclab/exercises/" in k[0] or "/gclab/grading/" in k[0]
            if engine and not content:
                continue  # the engine itself
            if not regions and not content:
                continue
            if not _allowed(qual, k[0], regions, imports):
                keys[k] = qual
    _FORBIDDEN[ex.id] = [list(k) for k in keys]
    return _FORBIDDEN[ex.id]


def answer_code(exercises: List[Any]) -> List[Tuple[str, str]]:
    """(file, qualname) of the gclab code that answers these exercises, which the sandbox's
    view of gclab replaces by stubs (the lesson content modules are stubbed whole besides):
    each reference that lives in the library, and the tripwire code (:func:`forbidden_code`)
    of gclab's blocks (:data:`BLOCK_MODULES`) -- except in a block module that the lesson's
    own solution needs, directly or through the modules it imports (a helper such as
    ``Bottleneck`` keeps its module whole)."""
    from gclab.exercises.trials import trials

    found = set()
    needed: set = set()
    for ex in exercises:
        code = getattr(ex.reference, "__code__", None)
        if code is not None and code.co_filename.startswith(GCLAB_DIR):
            found.add((code.co_filename, getattr(code, "co_qualname", code.co_name)))
        if ex.kind == "value":
            continue
        regions, imports = _solution_text(ex.notebook)
        for (filename, _line, _name), qual in _block_code().items():
            if regions and _allowed(qual, filename, regions, imports):
                needed.add(filename)
        blocks = {k[0] for k in _block_code()}
        for filename, _line, qualname in forbidden_code(ex, trials(ex)):
            if filename in blocks:
                found.add((filename, qualname))
    needed = _imported_closure(needed)
    return sorted((f, q) for f, q in found if f not in needed)


def _imported_closure(files: set) -> set:
    """``files`` and every gclab module file they import, transitively (static: the
    ``import`` statements)."""
    package = Path(GCLAB_DIR)
    todo, seen = list(files), set(files)
    while todo:
        path = Path(todo.pop())
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError):
            continue
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom):
                base = path.parent
                for _ in range(max(0, node.level - 1)):
                    base = base.parent
                if node.level == 0:
                    if not (node.module or "").startswith("gclab"):
                        continue
                    base = package.parent
                mod = (node.module or "").split(".") if node.module else []
                names = [base.joinpath(*mod)] + [base.joinpath(*mod, a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                names = [package.parent.joinpath(*a.name.split("."))
                         for a in node.names if a.name.startswith("gclab")]
            for n in names:
                for cand in (n.with_suffix(".py"), n / "__init__.py"):
                    key = str(cand)
                    if cand.is_file() and key not in seen:
                        seen.add(key)
                        todo.append(key)
    return seen
