"""The copy of gclab that a graded notebook sees: the same package without the answers.

``gclab grade`` runs a notebook against this copy, never against the installed gclab. In it

* every lesson content module (``gclab/exercises/lessons/nbNN_*.py``: references, mistakes,
  hints) and the helpers they share (``lessons/common.py``: a softmax, a sigmoid) is one stub:
  any name read from it is a function that raises "not available while grading" (a
  demonstration cell that used one says so and the notebook goes on);
* every library function or method that answers an exercise of the lesson graded
  (:func:`gclab.grading.reference_code.answer_code`: what the references call, gclab's blocks,
  the other library routes to an answer; minus, function by function, the code the lesson's
  own solution uses) keeps its signature and decorators, but its body is one ``raise`` of the
  same message, so neither calling it, subclassing its class nor reading its source
  (``inspect.getsource``) gives the answer.

Nothing else of the checkout is in it (no ``.git``, no ``notebooks/``: solutions and lesson
sources stay outside); the course's ``data/`` is bound beside it by the sandbox.
"""

from __future__ import annotations

import ast
import atexit
import compileall
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

from gclab import paths

__all__ = ["CALLED", "UNAVAILABLE", "build_view", "unavailable", "view_for"]

PACKAGE = paths.PACKAGE  # the real gclab/
UNAVAILABLE = "is not available while grading"
_CONTENT = re.compile(r"^(?:nb\d\d_\w+|common)\.py$")  # the lessons: answers and their helpers
_VIEWS: Dict[Tuple, Path] = {}
_LOCK = threading.Lock()

#: the stubs called in this process (the sandbox's worker reads and clears it around a call)
CALLED: List[str] = []

_CONTENT_STUB = f'''"""This lesson's answers {UNAVAILABLE}."""


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)

    def stub(*args, **kwargs):
        from gclab.grading.view import unavailable

        raise unavailable(name, "the lesson's reference")

    stub.__name__ = stub.__qualname__ = name
    return stub
'''


def unavailable(name: str, what: str) -> RuntimeError:
    """The error a stub raises (and a note in :data:`CALLED` that it was called)."""
    CALLED.append(name)
    return RuntimeError(f"gclab's {name} {UNAVAILABLE} ({what})")


def _stub_line(qualname: str) -> str:
    return ('raise __import__("gclab.grading.view", fromlist=["unavailable"]).unavailable('
            f'{qualname!r}, "an exercise asks you to write it")')


def _functions(tree: ast.AST) -> Iterable[Tuple[ast.AST, str]]:
    """Every (function node, qualname) in ``tree``, nested ones included."""
    def walk(node: ast.AST, prefix: str):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qual = prefix + child.name
                yield child, qual
                yield from walk(child, qual + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, prefix + child.name + ".")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def stub_functions(text: str, qualnames: Iterable[str]) -> Tuple[str, List[str]]:
    """``text`` with the body of each function named by ``qualnames`` replaced by one
    ``raise``; returns the new text and the qualnames found."""
    wanted = set(qualnames)
    lines = text.splitlines(keepends=True)
    edits = []
    for node, qual in _functions(ast.parse(text)):
        if qual in wanted:
            edits.append((node, qual))
    found = []
    for node, qual in sorted(edits, key=lambda e: -e[0].lineno):
        first = node.body[0]
        start, end = first.lineno - 1, node.end_lineno  # body lines [start, end)
        if first.lineno == node.lineno:  # ``def f(): return x`` on one line
            line = lines[start]
            lines[start] = line[: first.col_offset] + _stub_line(qual) + "\n"
            del lines[start + 1:end]
        else:
            indent = " " * first.col_offset
            lines[start:end] = [indent + _stub_line(qual) + "\n"]
        found.append(qual)
    return "".join(lines), found


def build_view(dest: Path, answers: Iterable[Tuple[str, str]]) -> Path:
    """Write the view into ``dest`` (``dest/gclab``); ``answers``: (file under the real
    gclab, qualname) of every function to stub. Returns ``dest``."""
    dest = Path(dest)
    target = dest / "gclab"
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for path in (target / "exercises" / "lessons").iterdir():
        if _CONTENT.match(path.name):
            path.write_text(_CONTENT_STUB, encoding="utf-8")
    by_file: Dict[Path, set] = {}
    for filename, qualname in answers:
        try:
            rel = Path(filename).resolve().relative_to(PACKAGE)
        except ValueError:
            continue
        if rel.parts[:2] == ("exercises", "lessons") and _CONTENT.match(rel.name):
            continue  # stubbed whole above
        by_file.setdefault(target / rel, set()).add(qualname)
    for path, names in by_file.items():
        if path.is_file():
            text, _ = stub_functions(path.read_text(encoding="utf-8"), names)
            path.write_text(text, encoding="utf-8")
    (dest / "data").mkdir(exist_ok=True)  # where the sandbox binds the course's data
    compileall.compile_dir(str(target), quiet=2, workers=1)
    return dest


def view_for(key: str, answers: Iterable[Tuple[str, str]]) -> Path:
    """The view for ``key`` (a lesson), built once per process and removed at exit."""
    answers = tuple(sorted(set(answers)))
    with _LOCK:
        cached = _VIEWS.get((key, answers))
        if cached is not None and cached.is_dir():
            return cached
        dest = Path(tempfile.mkdtemp(prefix="gclab-view-"))
        atexit.register(shutil.rmtree, str(dest), True)
        _VIEWS[(key, answers)] = build_view(dest, answers)
        return dest
