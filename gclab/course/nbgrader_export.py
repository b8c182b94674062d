"""``gclab notebooks --nbgrader DIR``: the course as an nbgrader course directory.

Each lesson becomes nbgrader's *source* notebook: solution regions (with their markers) as
autograded answers, each ``check(id, name)`` line as a locked autograder test cell, every other
cell read-only; ``nbgrader_config.py`` names the lessons and nbgrader's solution delimiters.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Sequence

from gclab import paths
from gclab.course.copies import (
    dumps,
    lessons,
    new_cell,
    notebook_for,
    read_source,
    selected,
    write,
)
from gclab.course.solutions import BEGIN, CHECK_LINE, END, regions

__all__ = ["NBGRADER_CONFIG", "nbgrader_course", "nbgrader_notebook"]

NBGRADER_CONFIG = """\
# nbgrader configuration of the gclab course, written by `gclab notebooks --nbgrader`.
# Usage, in this folder:
#   nbgrader generate_assignment 04_simplified_nl      # release/: the student version
#   nbgrader autograde 04_simplified_nl                 # grades submitted/<student>/...
#   nbgrader export                                     # grades.csv
# The tests run in the student's own kernel (nbgrader's design); `gclab grade` is the
# sandboxed path (docs/instructors.md).
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "gclab"
c.CourseDirectory.db_assignments = {assignments}
c.ExecutePreprocessor.timeout = 600
c.ClearSolutions.begin_solution_delimeter = "{begin}"
c.ClearSolutions.end_solution_delimeter = "{end}"
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}}
"""


def _nbgrader_meta(grade_id: str, kind: str, points: int = 1) -> dict:
    meta = {"grade_id": grade_id, "schema_version": 3, "task": False,
            "grade": kind == "test", "solution": kind == "answer", "locked": kind != "answer"}
    if kind == "test":
        meta["points"] = points
    return meta


def _grade_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", text)


def _split_checks(source: str):
    """(the cell without its ``check(...)`` lines, [(id, checked expression)])."""
    body, checks = [], []
    for line in source.split("\n"):
        m = CHECK_LINE.match(line)
        if m:
            checks.append((m.group(1), m.group(2).strip()))
        else:
            body.append(line)
    return "\n".join(body).strip("\n"), checks


def _test_source(ex_id: str, obj: str) -> str:
    return (f'result = check("{ex_id}", {obj})\n'
            "print(result)\n"
            'assert result.passed, f"{result.id}: {result.message}"')


def nbgrader_notebook(text: str, lesson: str, points: int = 1):
    """The nbgrader *source* notebook of a lesson: solution regions (with their markers) as
    autograded answers, each ``check(id, name)`` line as a locked autograder test cell worth
    ``points`` that raises when the check fails, every other cell read-only."""
    nb = read_source(text)
    out = notebook_for(lesson, "nbgrader-source")

    def add(cell, source: str, kind: str, grade_id: str) -> None:
        new = new_cell(cell, source, len(out.cells))
        new.metadata["nbgrader"] = _nbgrader_meta(grade_id, kind, points)
        out.cells.append(new)

    seen_tests = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            add(cell, cell.source, "locked", f"cell-{len(out.cells):03d}")
            continue
        answer = bool(regions(cell.source.split("\n"), f"{lesson} cell {len(out.cells) + 1}"))
        source, checks = _split_checks(cell.source)
        if source:
            kind = "answer" if answer else "locked"
            add(cell, source, kind, f"{'answer' if answer else 'cell'}-{len(out.cells):03d}")
        for ex_id, obj in checks:
            gid = _grade_id(f"check-{ex_id}")
            if gid in seen_tests:
                gid = f"{gid}-{len(out.cells):03d}"
            seen_tests.add(gid)
            add(cell, _test_source(ex_id, obj), "test", gid)
    return out


def nbgrader_course(folder: Path, root: Path = paths.ROOT, only: Sequence[str] = ()) -> List[Path]:
    """Write an nbgrader course directory: ``source/<lesson>/<lesson>.ipynb`` per lesson and
    ``nbgrader_config.py``. Returns the paths written."""
    folder = Path(folder)
    written: List[Path] = []
    names = []
    for lesson in lessons(root):
        if only and not selected(lesson.name, only):
            continue
        text = lesson.source.read_text(encoding="utf-8")
        path = folder / "source" / lesson.name / f"{lesson.name}.ipynb"
        write(path, dumps(nbgrader_notebook(text, lesson.name)), written)
        names.append(lesson.name)
    config = NBGRADER_CONFIG.format(assignments=repr([{"name": n} for n in names]),
                                    begin=BEGIN.lstrip("# "), end=END.lstrip("# "))
    write(folder / "nbgrader_config.py", config, written)
    return written

