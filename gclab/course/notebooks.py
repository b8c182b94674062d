"""``gclab notebooks``: write, check and execute the learner and solution copies of every lesson.

What the copies are: :mod:`gclab.course.copies`; the solution regions and which exercise each
answers: :mod:`gclab.course.solutions` (``docs/course.md``); execution:
:mod:`gclab.course.execute`; ``--nbgrader``: :mod:`gclab.course.nbgrader_export`.

Usage::

    python -m gclab notebooks                  # regenerate (keeps outputs of unchanged cells)
    python -m gclab notebooks --execute        # ... and execute every solution copy
    python -m gclab notebooks --execute 00 03  # ... only lessons 00 and 03 (nothing else written)
    python -m gclab notebooks 00               # regenerate lesson 00 only
    python -m gclab notebooks --check          # exit 1 if a committed copy is stale/unexecuted
    python -m gclab notebooks --nbgrader DIR   # an nbgrader course directory
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Sequence

from gclab import paths
from gclab.course.copies import (
    Lesson,
    dumps,
    learner_notebook,
    lessons,
    nbformat,
    read_notebook,
    selected,
    solution_notebook,
    write,
)
from gclab.course.execute import execute_notebook
from gclab.course.nbgrader_export import nbgrader_course
from gclab.course.solutions import BuildError

__all__ = ["build", "check_copies", "main"]


def _same_cells(a, b) -> bool:
    def key(nb):
        return [(c.cell_type, c.source, sorted(c.metadata.get("tags", []))) for c in nb.cells]

    return key(a) == key(b)


def _with_outputs_of(fresh, old):
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
    fresh = solution_notebook(text, lesson.name)
    return dumps(_with_outputs_of(fresh, read_notebook(lesson.solution)))


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------
def build(
    root: Path = paths.ROOT,
    execute: Sequence[str] | None = None,
    quiet: bool = False,
    only: Sequence[str] = (),
) -> List[Path]:
    """Write both copies of every lesson (or of the lessons named in ``only``); execute the
    solution copies of ``execute`` (lesson names or numbers; ``[]`` = all). Returns the paths
    written."""
    written = []
    for lesson in lessons(root):
        if only and not selected(lesson.name, only):
            continue
        text = lesson.source.read_text(encoding="utf-8")
        learner = dumps(learner_notebook(text, lesson.name))
        write(lesson.learner, learner, written)
        run = execute is not None and (not execute or selected(lesson.name, execute))
        if run:
            fresh = solution_notebook(text, lesson.name)
            start = time.perf_counter()
            execute_notebook(fresh, lesson.solution.parent)
            if not quiet:
                print(f"[gclab] executed {lesson.name} in {time.perf_counter() - start:.1f} s")
            write(lesson.solution, dumps(fresh), written)
            continue
        solution = _solution_text(lesson, text)
        if not quiet and any(_unexecuted(nbformat.reads(solution, as_version=4))):
            print(
                f"[gclab] {lesson.solution.relative_to(root)} has unexecuted cells; run "
                f"python -m gclab notebooks --execute {lesson.name[:2]}"
            )
        write(lesson.solution, solution, written)
    return written


def _unexecuted(nb) -> List[int]:
    """Indices (1-based) of non-empty code cells that were never executed."""
    return [
        i + 1
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and c.source.strip() and c.get("execution_count") is None
    ]


def check_copies(root: Path = paths.ROOT) -> List[str]:
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
        committed = read_notebook(lesson.solution)
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


def _parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--root", type=Path, default=paths.ROOT, help=argparse.SUPPRESS)
    return parser


def _export_nbgrader(folder: Path, root: Path, only: Sequence[str]) -> int:
    if folder.exists() and not folder.is_dir():
        print(f"[gclab] --nbgrader {folder}: expected a folder, got a file", file=sys.stderr)
        return 2
    try:
        written = nbgrader_course(folder, root, only=only)
    except BuildError as exc:
        print(f"[gclab] {exc}", file=sys.stderr)
        return 1
    for p in written:
        print(f"[gclab] wrote {p}")
    print(f"[gclab] nbgrader course in {folder}: cd there, then "
          "nbgrader generate_assignment LESSON")
    return 0


def _check(root: Path) -> int:
    problems = check_copies(root)
    for p in problems:
        print(f"[gclab] {p}", file=sys.stderr)
    if problems:
        print("[gclab] fix: python -m gclab notebooks --execute", file=sys.stderr)
        return 1
    print(f"[gclab] {len(lessons(root))} lessons: learner and solution copies up to date")
    return 0


def _build(root: Path, execute: Sequence[str] | None, only: Sequence[str]) -> int:
    from nbclient.exceptions import CellExecutionError

    try:
        written = build(root, execute=execute, only=only)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gclab notebooks`` / ``python -m gclab notebooks``."""
    args = _parser().parse_args(list(argv) if argv is not None else None)
    from gclab._extras import MissingExtra, require

    try:
        require("nbformat", extra="course", why="gclab notebooks")
    except MissingExtra as exc:
        print(f"[gclab] {exc}", file=sys.stderr)
        return 2
    root = args.root.resolve()
    if args.nbgrader is not None:
        return _export_nbgrader(args.nbgrader, root, args.lessons)
    if not lessons(root):
        print(f"[gclab] no lesson sources under {root / 'notebooks' / 'src'}", file=sys.stderr)
        return 1
    if args.check:
        return _check(root)
    return _build(root, args.execute, list(args.lessons) + list(args.execute or []))


if __name__ == "__main__":
    sys.exit(main())
