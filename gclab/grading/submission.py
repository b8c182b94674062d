"""What ``gclab grade`` is handed: reading a submission, knowing its lesson and its student.

:func:`read_notebook` reads a notebook file defensively (any malformed input is one
:class:`SubmissionError` line saying what was expected and what came in), :func:`detect_lesson`
takes the lesson from ``--lesson`` or from the exercises the cells check (never from metadata
alone), :func:`student_of` names the student by the file or its folder, and :func:`clean` makes
learner-derived text safe to print (no ANSI escapes or control characters, capped length).
The grading itself is :mod:`gclab.grading.grade`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Any, Dict, List

TEXT_CAP = 500  # characters of learner-derived text in the CSV, JSON and feedback
_LESSON_FILE = re.compile(r"^\d\d_[\w-]+$")


class SubmissionError(ValueError):
    """A submission or argument that cannot be graded: one line saying what was expected."""


# --------------------------------------------------------------------------------------------
# Output hygiene
# --------------------------------------------------------------------------------------------
_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")


def clean(text: Any, cap: int = TEXT_CAP) -> str:
    """``text`` as one printable line: escape sequences removed, control and format characters
    (newlines, carriage returns, bidi overrides...) replaced by spaces, at most ``cap`` chars."""
    s = _ANSI.sub("", str(text))
    s = "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in s)
    s = re.sub(r" {2,}", " ", s).strip()
    if len(s) > cap:
        s = s[: max(0, cap - 3)].rstrip() + "..."
    return s


# --------------------------------------------------------------------------------------------
# Reading a submission
# --------------------------------------------------------------------------------------------
def _what(x: Any) -> str:
    return {dict: "a JSON object", list: "a JSON list", str: "a string", int: "a number",
            float: "a number", bool: "a boolean", type(None): "null"}.get(type(x), type(x).__name__)


def resolve_submission(path: Path, lesson: str | None = None) -> Path:
    """The notebook file of a submission (a .ipynb file, or a folder holding one)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        if lesson:
            named = [p for p in found if p.stem == lesson]
            found = named or found
        if len(found) == 1:
            return found[0]
        raise SubmissionError(
            f"{path}: expected a folder holding one .ipynb notebook, found {len(found)}"
        )
    if not path.exists():
        raise SubmissionError(f"{path}: no such file (expected a .ipynb notebook or a folder)")
    if not path.is_file():
        raise SubmissionError(f"{path}: expected a .ipynb notebook file, got something else")
    return path


def read_notebook(path: Path) -> tuple:
    """``(code cell sources, metadata)`` of the notebook at ``path``; SubmissionError if it is
    not an nbformat-4 notebook."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        msg = f"{path}: expected a notebook (UTF-8 JSON), got binary data"
        raise SubmissionError(msg) from None
    except OSError as exc:
        raise SubmissionError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SubmissionError(
            f"{path}: expected a notebook (JSON), got invalid JSON at line {exc.lineno}"
        ) from None
    except RecursionError:
        msg = f"{path}: expected a notebook (JSON), got JSON nested too deeply"
        raise SubmissionError(msg) from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        got = _what(nb) if not isinstance(nb, dict) else "a JSON object without a list of cells"
        raise SubmissionError(
            f"{path}: expected a Jupyter notebook (a JSON object with a list of cells), got {got}"
        )
    if nb.get("nbformat") != 4:
        raise SubmissionError(
            f"{path}: expected an nbformat 4 notebook, got nbformat {clean(nb.get('nbformat'), 20)}"
        )
    cells = []
    for i, cell in enumerate(nb["cells"], 1):
        if not isinstance(cell, dict):
            raise SubmissionError(f"{path}: cell {i}: expected a JSON object, got {_what(cell)}")
        kind = cell.get("cell_type")
        if kind not in ("code", "markdown", "raw"):
            raise SubmissionError(
                f"{path}: cell {i}: expected cell_type code, markdown or raw, got {clean(kind, 20)}"
            )
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            source = "".join(source)
        if not isinstance(source, str):
            raise SubmissionError(
                f"{path}: cell {i}: expected its source as text (a string or a list of "
                f"strings), got {_what(source)}"
            )
        if kind == "code":
            cells.append(source)
    meta = nb.get("metadata") if isinstance(nb.get("metadata"), dict) else {}
    return cells, meta


# --------------------------------------------------------------------------------------------
# Which lesson
# --------------------------------------------------------------------------------------------
def known_lessons() -> List[str]:
    from gclab.exercises import catalog

    return sorted({e.notebook for e in catalog()})


def resolve_lesson(wanted: str) -> str:
    """The lesson named by ``--lesson`` (``04``, ``4``, ``04_simplified_nl``)."""
    lessons = known_lessons()
    w = str(wanted).strip()
    hits = [
        n for n in lessons
        if n == w or (w.isdigit() and n[:2] == w.zfill(2)) or (len(w) > 2 and n.startswith(w))
    ]
    if len(hits) != 1:
        raise SubmissionError(
            f"--lesson {clean(w, 40)}: expected one of {', '.join(n[:2] for n in lessons)} "
            f"(or a name such as {lessons[0]}), got {'no' if not hits else 'more than one'} match"
        )
    return hits[0]


def checked_lesson(cells: List[str]) -> str | None:
    """The lesson whose exercises the cells' ``check("id", ...)`` calls name most (ties: the
    later lesson), or None when they name none."""
    from gclab.exercises import catalog
    from gclab.grading.reference_code import checked_ids

    owner = {e.id: e.notebook for e in catalog()}
    counts: Dict[str, int] = {}
    for ex_id in checked_ids(cells):
        if ex_id in owner:
            counts[owner[ex_id]] = counts.get(owner[ex_id], 0) + 1
    return max(counts, key=lambda k: (counts[k], k)) if counts else None


def detect_lesson(path: Path, cells: List[str], meta: dict, wanted: str | None,
                  fallback: str | None = None) -> tuple:
    """``(lesson, warnings)``: ``wanted`` (``--lesson``) when given, else the lesson whose
    exercises the cells check, else ``fallback`` (the lesson of most of a batch); warnings
    when the file name or the metadata say otherwise. Metadata and file names never decide:
    a notebook whose cells check no known exercise, alone, needs ``--lesson``."""
    detected = checked_lesson(cells)
    warnings = []
    claimed = meta.get("gclab", {}).get("lesson") if isinstance(meta.get("gclab"), dict) else None
    stem = Path(path).stem
    lesson = wanted or detected
    if lesson is None and fallback:
        lesson = fallback
        warnings.append(f"its cells check no known exercise; graded as {fallback}, the lesson "
                        "of most of the batch (pass --lesson to be sure)")
    if lesson is None:
        raise SubmissionError(
            f"{path}: cannot tell which lesson this is (its cells check no known exercise); "
            "pass --lesson NN"
        )
    if wanted and detected and detected != wanted:
        warnings.append(f"its cells check lesson {detected}'s exercises; graded as {wanted}")
    if isinstance(claimed, str) and claimed != lesson:
        warnings.append(f"its metadata says lesson {clean(claimed, 60)}; graded as {lesson}")
    if _LESSON_FILE.match(stem) and stem != lesson:
        warnings.append(f"its file name says {clean(stem, 60)}; graded as {lesson}")
    return lesson, warnings


def batch_lessons(detected: List[str | None]) -> tuple:
    """``(majority, warnings)`` for a batch graded without ``--lesson``: ``detected`` is each
    submission's own lesson (None: not recognisable). ``majority`` is the lesson of more than
    half of the recognisable ones (or None); ``warnings[i]`` says, for submission ``i``, how
    it disagrees with the batch ("" where it does not)."""
    known = [d for d in detected if d]
    counts: Dict[str, int] = {}
    for d in known:
        counts[d] = counts.get(d, 0) + 1
    top = max(counts, key=lambda k: (counts[k], k)) if counts else None
    majority = top if top and counts[top] * 2 > len(known) else None
    warnings = []
    for d in detected:
        if d is None or len(counts) < 2:
            warnings.append("")
        elif majority is not None and d != majority:
            warnings.append(f"its cells check lesson {d}'s exercises, but most of the batch "
                            f"({counts[majority]} of {len(known)}) is {majority}; graded as "
                            f"{d}: pass --lesson to grade the whole batch as one lesson")
        elif majority is None:
            warnings.append(f"the batch's notebooks are of {len(counts)} different lessons "
                            f"(this one: {d}); pass --lesson to grade them as one lesson")
        else:
            warnings.append("")
    return majority, warnings


def student_of(path: Path) -> str:
    """alice.ipynb -> alice; submissions/alice/04_simplified_nl.ipynb -> alice."""
    path = Path(path)
    if _LESSON_FILE.match(path.stem) and path.parent.name not in ("", "."):
        return clean(path.parent.name, 80)
    return clean(path.stem, 80)
