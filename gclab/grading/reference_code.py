"""Which code of gclab is an exercise's answer: what the sandbox must not offer.

The grader (:mod:`gclab.grading.trusted`) reads here which name the instructor's lesson source
checks for each exercise (:func:`checked_names`), which gclab functions are tripwires during a
call (:func:`forbidden_code`: the reference, its mistakes, and the gclab code the reference
calls directly, minus the helpers the lesson's own solution uses), and which are replaced by
stubs in the sandbox's view of gclab (:func:`answer_code`, for :mod:`gclab.grading.view`).
The functions that run references must be called under the grader's lock (torch's global RNG).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

from gclab import paths
from gclab.course import solutions
from gclab.grading import library_code

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


def _solution_text(lesson: str, upto: str | None = None) -> Tuple[str, str]:
    """The solution regions of the lesson source (``upto``: only those before that
    exercise's check, so a helper the lesson hands out later is not allowed earlier), and
    its gclab imports."""
    src = lesson_source(lesson)
    end = next((m.start() for m in solutions.CHECK_CALL.finditer(src) if m.group(1) == upto),
               len(src))
    regions = "\n".join(solutions.region_code(src[:end]))
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
    "gclab.nn.framework", "gclab.nn.fast.fused", "gclab.nn.fast.non_local",
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
    return [code.co_filename, code.co_firstlineno, code.co_qualname]


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
    regions, imports = _solution_text(ex.notebook, upto=ex.id)
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
            content = "/exercises/lessons/" in k[0]
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
    """(file, qualname) of every library function and method that answers these exercises,
    which the sandbox's view of gclab replaces by stubs (the lesson content modules are stubbed
    whole besides): each library function that running a reference calls, at any depth, and
    all the code of gclab's blocks (:data:`BLOCK_MODULES`), minus the helpers the lesson's own
    solution uses and the code they name (:func:`gclab.grading.library_code.closure`), function
    by function. Without the lesson's source (a pip-installed gclab) its helpers cannot be
    told, so only the references that live in the library are stubbed."""
    from gclab.exercises.trials import trials

    answers: set = set()
    helpers: set = set()
    sourced = set()
    for lesson in sorted({ex.notebook for ex in exercises}):
        if not _solution_text(lesson)[0]:
            continue
        sourced.add(lesson)
        path = ROOT / "notebooks" / "src" / f"{lesson}.py"
        units = library_code.solution_units(lesson_source(lesson), path,
                                            list(checked_names(lesson).values()))
        helpers |= library_code.functions_of(library_code.closure(units))
        blocks = [str(Path(GCLAB_DIR, *m.split(".")[1:]).with_suffix(".py"))
                  for m in BLOCK_MODULES]
        answers |= library_code.functions_of(library_code.library_units(blocks))
    for ex in exercises:
        called, given = _called_library_code(ex, trials(ex))
        if ex.notebook not in sourced:
            code = getattr(ex.reference, "__code__", None)
            called = {k for k in called if code is not None and k[0] == code.co_filename
                      and k[1] == code.co_qualname}
        answers |= called | (library_code.also_answers(ex.id) if ex.notebook in sourced
                             else set())
        helpers |= library_code.functions_of(library_code.closure(given))
    return sorted((f, q) for f, q in answers - helpers if "<" not in q.replace("<locals>", ""))


def _called_library_code(ex, trials) -> Tuple[set, set]:
    """(file, qualname) of every library function the reference calls on its first case, and
    the library units that the case's own callables call (a function handed to the learner's
    code as an argument: what it needs stays in the view)."""
    from gclab.exercises.trials import run_reference

    seen: set = set()
    given: set = set()
    code = getattr(ex.reference, "__code__", None)
    if code is not None and library_code.is_library(code.co_filename):
        seen.add((code.co_filename, code.co_qualname))
    if not trials:
        return seen, given
    case = trials[0].case
    case_codes = {getattr(a, "__code__", None)
                  for a in [*getattr(case, "args", ()), *getattr(case, "kwargs", {}).values()]}
    case_codes.discard(None)

    def hook(frame, event, arg):  # noqa: ARG001
        if event != "call" or not library_code.is_library(frame.f_code.co_filename):
            return
        code = frame.f_code
        seen.add((code.co_filename, code.co_qualname))
        if frame.f_back is not None and frame.f_back.f_code in case_codes:
            given.add((code.co_filename, code.co_qualname.split(".")[0]))

    sys.setprofile(hook)
    try:
        run_reference(ex, ex.reference, case, trials[0].seed)
    except Exception:  # noqa: BLE001 - what it called before it failed still counts
        pass
    finally:
        sys.setprofile(None)
    return seen, given
