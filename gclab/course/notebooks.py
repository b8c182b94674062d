"""``gclab notebooks``: generate the learner and solution copies of every lesson.

One source per lesson, ``notebooks/src/NN_slug.py`` (jupytext ``py:percent``), gives two copies:

* ``notebooks/NN_slug.ipynb`` -- the learner copy: every region between ``### BEGIN SOLUTION``
  and ``### END SOLUTION`` becomes a stub ``raise NotImplementedError("exercise <id>: <task>")``
  at the indentation of the ``BEGIN`` marker; no outputs.
* ``notebooks/solutions/NN_slug.ipynb`` -- the solution copy: markers removed, code kept,
  ``<details>`` blocks (worked derivations) open; ``--execute`` runs it with nbclient and
  stores its outputs (committed).

Which exercise a region belongs to (see ``docs/course.md``): an ``# exercise <id>: <task>``
comment in the same cell before the region (the comment stays in both copies, so it doubles as
the learner's instructions); otherwise the nearest ``check("<id>", ...)`` call after the region
(same cell first, then the following cells), then before it.

Usage::

    python -m gclab notebooks                  # regenerate (keeps outputs of unchanged cells)
    python -m gclab notebooks --execute        # ... and execute every solution copy
    python -m gclab notebooks --execute 00 03  # ... only lessons 00 and 03 (nothing else written)
    python -m gclab notebooks 00               # regenerate lesson 00 only
    python -m gclab notebooks --check          # exit 1 if a committed copy is stale/unexecuted
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import List, Sequence, Tuple

from gclab import paths

__all__ = [
    "ROOT",
    "BuildError",
    "Lesson",
    "check_copies",
    "execute_notebook",
    "learner_notebook",
    "lessons",
    "main",
    "nbgrader_course",
    "nbgrader_notebook",
    "read_source",
    "solution_notebook",
    "stub_regions",
    "strip_markers",
]



class _LazyNbformat:
    """``nbformat``, imported on first use, so that ``gclab notebooks --help`` works on a bare
    install (a missing package gives one line naming the extra that brings it)."""

    def __getattr__(self, name: str):
        from gclab._extras import require

        return getattr(require("nbformat", extra="course", why="gclab notebooks"), name)


nbformat = _LazyNbformat()

ROOT = paths.ROOT
BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}

_EXERCISE_COMMENT = re.compile(r"^\s*#\s*exercise\s+([A-Za-z_][\w]*\.[\w.]+)\s*:?\s*(.*)$")
_CHECK_CALL = re.compile(r"""\bcheck\(\s*["']([A-Za-z_][\w]*\.[\w.]+)["']""")
_SOURCE_NAME = re.compile(r"^\d\d_[\w-]+\.py$")


class BuildError(ValueError):
    """A lesson source that cannot be turned into copies (unbalanced markers, unknown id...)."""


class Lesson:
    """One lesson: its source and the paths of its two copies, under ``root``."""

    def __init__(self, source: Path, root: Path = ROOT) -> None:
        self.source = Path(source)
        self.name = self.source.stem  # e.g. "00_receptive_fields"
        self.learner = root / "notebooks" / f"{self.name}.ipynb"
        self.solution = root / "notebooks" / "solutions" / f"{self.name}.ipynb"

    def __repr__(self) -> str:
        return f"Lesson({self.name!r})"


def lessons(root: Path = ROOT) -> List[Lesson]:
    """Every lesson under ``root/notebooks/src`` (files ``NN_slug.py``), sorted."""
    src = Path(root) / "notebooks" / "src"
    if not src.is_dir():
        return []
    return [Lesson(p, Path(root)) for p in sorted(src.iterdir()) if _SOURCE_NAME.match(p.name)]


# --------------------------------------------------------------------------------------------
# The transformation
# --------------------------------------------------------------------------------------------
def read_source(text: str) -> nbformat.NotebookNode:
    """Parse a jupytext ``py:percent`` lesson into a notebook (cells and their tags)."""
    import jupytext

    return jupytext.reads(text, fmt="py:percent")


def _regions(lines: Sequence[str], where: str) -> List[Tuple[int, int]]:
    """(begin, end) line indices of every solution region of one cell."""
    regions, start = [], None
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith(BEGIN):
            if start is not None:
                raise BuildError(f"{where}: nested {BEGIN} at line {i + 1}")
            start = i
        elif s.startswith(END):
            if start is None:
                raise BuildError(f"{where}: {END} without {BEGIN} at line {i + 1}")
            regions.append((start, i))
            start = None
    if start is not None:
        raise BuildError(f"{where}: {BEGIN} at line {start + 1} has no {END}")
    return regions


def _exercise_for(
    cells: Sequence[str], k: int, begin: int, end: int, where: str
) -> Tuple[str, str]:
    """(id, task) of the region ``begin..end`` of cell ``k`` (see the module docstring)."""
    lines = cells[k].split("\n")
    for line in reversed(lines[:begin]):
        m = _EXERCISE_COMMENT.match(line)
        if m:
            return m.group(1), m.group(2).strip()
    after = ["\n".join(lines[end + 1 :]), *cells[k + 1 :]]
    for text in after:
        m = _CHECK_CALL.search(text)
        if m:
            return m.group(1), ""
    before = ["\n".join(lines[:begin]), *reversed(cells[:k])]
    for text in before:
        found = _CHECK_CALL.findall(text)
        if found:
            return found[-1], ""
    raise BuildError(
        f"{where}: cannot tell which exercise the solution region at line {begin + 1} belongs "
        "to; add a comment '# exercise <id>: <task>' above it"
    )


def stub_regions(cells: Sequence[str], k: int, where: str = "cell") -> str:
    """Cell ``k``'s source with every solution region replaced by a NotImplementedError stub.

    ``cells`` are the sources of all code cells (to find the nearest ``check`` call).
    """
    lines = cells[k].split("\n")
    regions = _regions(lines, where)
    if not regions:
        return cells[k]
    out: List[str] = []
    last = 0
    for begin, end in regions:
        out.extend(lines[last:begin])
        indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
        ex_id, task = _exercise_for(cells, k, begin, end, where)
        message = f"exercise {ex_id}: {task or 'your code here'}"
        out.append(f'{indent}# YOUR CODE HERE (stuck? hint("{ex_id}", level=1))')
        quoted = f'"{message}"' if '"' not in message and "\\" not in message else repr(message)
        out.append(f"{indent}raise NotImplementedError({quoted})")
        last = end + 1
    out.extend(lines[last:])
    return "\n".join(out)


def strip_markers(source: str, where: str = "cell") -> str:
    """The source with the marker lines removed (the solution copy)."""
    lines = source.split("\n")
    _regions(lines, where)  # validates the markers
    kept = [ln for ln in lines if not ln.strip().startswith((BEGIN, END))]
    return "\n".join(kept)


def _base(nb: nbformat.NotebookNode, lesson: str, role: str) -> nbformat.NotebookNode:
    out = nbformat.v4.new_notebook()
    out.metadata = nbformat.from_dict(
        {
            "kernelspec": dict(KERNELSPEC),
            "language_info": {"name": "python"},
            "gclab": {
                "lesson": lesson,
                "copy": role,
                "source": f"notebooks/src/{lesson}.py",
                "generated_by": "python -m gclab notebooks (do not edit; edit the source)",
            },
        }
    )
    return out


def _new_cell(cell: nbformat.NotebookNode, source: str, index: int) -> nbformat.NotebookNode:
    meta = {k: v for k, v in cell.metadata.items() if k in ("tags", "jupyter", "editable")}
    cell_id = f"c{index:03d}"
    if cell.cell_type == "code":
        new = nbformat.v4.new_code_cell(source=source, metadata=meta)
    elif cell.cell_type == "markdown":
        new = nbformat.v4.new_markdown_cell(source=source, metadata=meta)
    else:
        new = nbformat.v4.new_raw_cell(source=source, metadata=meta)
    new.id = cell_id
    return new


def learner_notebook(text: str, lesson: str) -> nbformat.NotebookNode:
    """The learner copy of a lesson source (stubs instead of solutions, no outputs)."""
    nb = read_source(text)
    codes = [c.source for c in nb.cells if c.cell_type == "code"]
    out = _base(nb, lesson, "learner")
    k = 0
    for i, cell in enumerate(nb.cells):
        source = cell.source
        if cell.cell_type == "code":
            source = stub_regions(codes, k, where=f"{lesson} code cell {k + 1}")
            k += 1
        out.cells.append(_new_cell(cell, source, i))
    return out


def solution_notebook(text: str, lesson: str) -> nbformat.NotebookNode:
    """The solution copy of a lesson source (markers removed, not executed)."""
    nb = read_source(text)
    out = _base(nb, lesson, "solution")
    for i, cell in enumerate(nb.cells):
        source = cell.source
        if cell.cell_type == "code":
            source = strip_markers(source, where=f"{lesson} cell {i + 1}")
        elif cell.cell_type == "markdown":
            source = open_details(source)
        out.cells.append(_new_cell(cell, source, i))
    return out


def open_details(markdown: str) -> str:
    """The markdown with every collapsed ``<details>`` block opened (``<details open>``): the
    solution copy shows the worked derivations that the learner copy keeps folded."""
    return re.sub(r"<details>", "<details open>", markdown)


# --------------------------------------------------------------------------------------------
# nbgrader
# --------------------------------------------------------------------------------------------
_CHECK_LINE = re.compile(r"""^check\(\s*["']([A-Za-z_]\w*\.[\w.]+)["']\s*,\s*(.+)\)\s*$""")

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
c.ClearSolutions.begin_solution_delimeter = "BEGIN SOLUTION"
c.ClearSolutions.end_solution_delimeter = "END SOLUTION"
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


def nbgrader_notebook(text: str, lesson: str, points: int = 1) -> nbformat.NotebookNode:
    """The nbgrader *source* notebook of a lesson: solution regions (with their markers) as
    autograded answers, each ``check(id, name)`` line as a locked autograder test cell worth
    ``points`` that raises when the check fails, every other cell read-only."""
    nb = read_source(text)
    out = _base(nb, lesson, "nbgrader-source")
    counter = [0]

    def add(cell, source: str, kind: str, grade_id: str) -> None:
        new = _new_cell(cell, source, counter[0])
        new.metadata["nbgrader"] = _nbgrader_meta(grade_id, kind, points)
        out.cells.append(new)
        counter[0] += 1

    seen_tests = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            add(cell, cell.source, "locked", f"cell-{counter[0]:03d}")
            continue
        where = f"{lesson} cell {counter[0] + 1}"
        lines = cell.source.split("\n")
        regions = _regions(lines, where)
        body, checks = [], []
        for line in lines:
            m = _CHECK_LINE.match(line)
            if m:
                checks.append((m.group(1), m.group(2).strip()))
            else:
                body.append(line)
        source = "\n".join(body).strip("\n")
        if source:
            kind = "answer" if regions else "locked"
            add(cell, source, kind, f"{'answer' if regions else 'cell'}-{counter[0]:03d}")
        for ex_id, obj in checks:
            test = (f'result = check("{ex_id}", {obj})\n'
                    "print(result)\n"
                    'assert result.passed, f"{result.id}: {result.message}"')
            gid = _grade_id(f"check-{ex_id}")
            if gid in seen_tests:
                gid = f"{gid}-{counter[0]:03d}"
            seen_tests.add(gid)
            add(cell, test, "test", gid)
    return out


def nbgrader_course(folder: Path, root: Path = ROOT, only: Sequence[str] = ()) -> List[Path]:
    """Write an nbgrader course directory: ``source/<lesson>/<lesson>.ipynb`` per lesson and
    ``nbgrader_config.py``. Returns the paths written."""
    folder = Path(folder)
    written: List[Path] = []
    names = []
    for lesson in lessons(root):
        if only and not _selected(lesson.name, only):
            continue
        text = lesson.source.read_text(encoding="utf-8")
        path = folder / "source" / lesson.name / f"{lesson.name}.ipynb"
        _write(path, dumps(nbgrader_notebook(text, lesson.name)), written)
        names.append(lesson.name)
    config = NBGRADER_CONFIG.format(assignments=repr([{"name": n} for n in names]))
    _write(folder / "nbgrader_config.py", config, written)
    return written


def dumps(nb: nbformat.NotebookNode) -> str:
    """Stable JSON (nbformat's: indent 1, sorted keys) with a final newline."""
    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def _same_cells(a: nbformat.NotebookNode, b: nbformat.NotebookNode) -> bool:
    def key(nb):
        return [(c.cell_type, c.source, sorted(c.metadata.get("tags", []))) for c in nb.cells]

    return key(a) == key(b)


def _with_outputs_of(
    fresh: nbformat.NotebookNode, old: nbformat.NotebookNode | None
) -> nbformat.NotebookNode:
    """``fresh`` with the outputs of ``old`` when both have the same cells, and the widget
    state those outputs refer to (an executed notebook keeps it in ``metadata.widgets``)."""
    if old is None or not _same_cells(fresh, old):
        return fresh
    for new_cell, old_cell in zip(fresh.cells, old.cells):
        if new_cell.cell_type == "code":
            new_cell.outputs = old_cell.get("outputs", [])
            new_cell.execution_count = old_cell.get("execution_count")
    if "widgets" in old.metadata:
        fresh.metadata["widgets"] = old.metadata["widgets"]
    return fresh


def _solution_text(lesson: Lesson, text: str) -> str:
    """What ``gclab notebooks`` (without --execute) writes as the lesson's solution copy: the
    fresh copy with the committed outputs when its cells are unchanged."""
    return dumps(_with_outputs_of(solution_notebook(text, lesson.name), _read(lesson.solution)))


def _read(path: Path) -> nbformat.NotebookNode | None:
    if not path.exists():
        return None
    return nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)


def execute_notebook(
    nb: nbformat.NotebookNode, cwd: Path, timeout: int = 600
) -> nbformat.NotebookNode:
    """Run every cell with nbclient (kernel python3, in ``cwd``), storing outputs; returns it.

    Cells tagged ``raises-exception`` may raise; any other error stops with CellExecutionError.
    """
    from nbclient import NotebookClient

    # one thread per kernel: on a small shared CPU, torch's thread pool otherwise spins against
    # other processes (10x slower under load); the kernel inherits this environment
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
        record_timing=False,
    )
    client.execute()
    # keep the metadata fixed (no interpreter versions that change from machine to machine)
    nb.metadata.language_info = {"name": "python"}
    nb.metadata.kernelspec = dict(KERNELSPEC)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    return nb


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------
def build(
    root: Path = ROOT,
    execute: Sequence[str] | None = None,
    quiet: bool = False,
    only: Sequence[str] = (),
) -> List[Path]:
    """Write both copies of every lesson (or of the lessons named in ``only``); execute the
    solution copies of ``execute`` (lesson names or numbers; ``[]`` = all). Returns the paths
    written."""
    written = []
    for lesson in lessons(root):
        if only and not _selected(lesson.name, only):
            continue
        text = lesson.source.read_text(encoding="utf-8")
        learner = dumps(learner_notebook(text, lesson.name))
        _write(lesson.learner, learner, written)
        run = execute is not None and (not execute or _selected(lesson.name, execute))
        if run:
            fresh = solution_notebook(text, lesson.name)
            start = time.perf_counter()
            execute_notebook(fresh, lesson.solution.parent)
            if not quiet:
                print(f"[gclab] executed {lesson.name} in {time.perf_counter() - start:.1f} s")
            _write(lesson.solution, dumps(fresh), written)
            continue
        solution = _solution_text(lesson, text)
        if not quiet and any(_unexecuted(nbformat.reads(solution, as_version=4))):
            print(
                f"[gclab] {lesson.solution.relative_to(root)} has unexecuted cells; run "
                f"python -m gclab notebooks --execute {lesson.name[:2]}"
            )
        _write(lesson.solution, solution, written)
    return written


def _selected(name: str, wanted: Sequence[str]) -> bool:
    return any(
        name == w or name[:2] == w.zfill(2) or (len(w) > 2 and name.startswith(w)) for w in wanted
    )


def _write(path: Path, text: str, written: List[Path]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
        written.append(path)


def _unexecuted(nb: nbformat.NotebookNode) -> List[int]:
    """Indices (1-based) of non-empty code cells that were never executed."""
    return [
        i + 1
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and c.source.strip() and c.get("execution_count") is None
    ]


def check_copies(root: Path = ROOT) -> List[str]:
    """Every problem with the committed copies (empty when they are up to date)."""
    problems = []
    for lesson in lessons(root):
        text = lesson.source.read_text(encoding="utf-8")
        rel_l = lesson.learner.relative_to(root)
        rel_s = lesson.solution.relative_to(root)
        try:
            learner = dumps(learner_notebook(text, lesson.name))
            solution = solution_notebook(text, lesson.name)
        except BuildError as exc:
            problems.append(f"{lesson.source.relative_to(root)}: {exc}")
            continue
        if not lesson.learner.exists():
            problems.append(f"{rel_l} is missing")
        elif lesson.learner.read_text(encoding="utf-8") != learner:
            problems.append(f"{rel_l} is stale (differs from what its source generates)")
        committed = _read(lesson.solution)
        if committed is None:
            problems.append(f"{rel_s} is missing")
            continue
        if not _same_cells(solution, committed):
            problems.append(f"{rel_s} is stale (its cells differ from the source)")
        elif lesson.solution.read_text(encoding="utf-8") != _solution_text(lesson, text):
            problems.append(f"{rel_s} is stale (python -m gclab notebooks would rewrite it: "
                            "its metadata or format differ from what the build writes)")
        bad = _unexecuted(committed)
        if bad:
            problems.append(f"{rel_s} has unexecuted code cells: {bad[:10]}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gclab notebooks`` / ``python -m gclab notebooks``."""
    parser = argparse.ArgumentParser(
        prog="gclab notebooks", description="generate learner and solution copies of the lessons"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a committed copy is stale or unexecuted"
    )
    parser.add_argument(
        "--execute",
        nargs="*",
        metavar="LESSON",
        help="execute the solution copies (all, or the given names/numbers) and store outputs",
    )
    parser.add_argument(
        "lessons",
        nargs="*",
        metavar="LESSON",
        help="only these lessons (names or numbers, e.g. 00 or 00_receptive_fields)",
    )
    parser.add_argument(
        "--nbgrader",
        type=Path,
        metavar="DIR",
        help="write an nbgrader course directory (source/<lesson>/<lesson>.ipynb with nbgrader "
        "cell metadata, nbgrader_config.py) for the lessons (all, or those given)",
    )
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(list(argv) if argv is not None else None)
    from gclab._extras import MissingExtra, require

    try:
        require("nbformat", extra="course", why="gclab notebooks")
    except MissingExtra as exc:
        print(f"[gclab] {exc}", file=sys.stderr)
        return 2
    root = args.root.resolve()
    if args.nbgrader is not None:
        if args.nbgrader.exists() and not args.nbgrader.is_dir():
            print(f"[gclab] --nbgrader {args.nbgrader}: expected a folder, got a file",
                  file=sys.stderr)
            return 2
        try:
            written = nbgrader_course(args.nbgrader, root, only=args.lessons)
        except BuildError as exc:
            print(f"[gclab] {exc}", file=sys.stderr)
            return 1
        for p in written:
            print(f"[gclab] wrote {p}")
        print(f"[gclab] nbgrader course in {args.nbgrader}: cd there, then "
              "nbgrader generate_assignment LESSON")
        return 0
    if not lessons(root):
        print(f"[gclab] no lesson sources under {root / 'notebooks' / 'src'}", file=sys.stderr)
        return 1
    if args.check:
        problems = check_copies(root)
        for p in problems:
            print(f"[gclab] {p}", file=sys.stderr)
        if problems:
            print("[gclab] fix: python -m gclab notebooks --execute", file=sys.stderr)
            return 1
        print(f"[gclab] {len(lessons(root))} lessons: learner and solution copies up to date")
        return 0
    from nbclient.exceptions import CellExecutionError

    try:
        only = list(args.lessons) + list(args.execute or [])
        written = build(root, execute=args.execute, only=only)
    except BuildError as exc:
        print(f"[gclab] {exc}", file=sys.stderr)
        return 1
    except CellExecutionError as exc:
        print(f"[gclab] a solution notebook failed to execute:\n{exc}", file=sys.stderr)
        return 1
    for p in written:
        print(f"[gclab] wrote {p.relative_to(root)}")
    if not written:
        print("[gclab] nothing to do: every copy is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
