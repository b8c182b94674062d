"""``gclab grade SUBMISSION... [--lesson NN] [--jobs N] [--csv F] [--feedback DIR]``: grade
learner notebooks where the learner's code cannot touch the verdict.

Each notebook runs in a sandbox (:mod:`gclab.grading.sandbox`: bubblewrap on Linux -- no
network, own PID namespace, nothing of the host but the interpreter and an answer-free gclab,
empty HOME, scrubbed environment, memory and process limits for all its processes together
(cgroup), capped tmpfs, wall clock; the output's ``limits:`` line says which hold). The
verdicts are computed in this process by :mod:`gclab.grading.trusted`, which draws the
inputs (from a secret seed), computes the references itself and compares what the learner's
objects return; nothing the sandbox writes is a verdict. The lesson comes from ``--lesson`` or
from the exercises the notebook's cells check (a warning says when that disagrees with the
file name, the notebook's metadata or, in a batch, the lesson of most of the batch), never from
the metadata alone.

Per exercise of the lesson: ``passed`` / ``failed`` (with the reason and the likely cause) /
``not implemented`` -- the LAST check of it counts (an exercise whose check cell is missing is
graded by the name the lesson's source checks) -- or ``not attempted``: the notebook never got
there because the kernel died or the time ran out (the report says which).

Many notebooks at once: ``--jobs N`` in parallel, a progress bar on stderr, ``--csv
grades.csv`` (one row per student and exercise: student, exercise, status, points, message,
flag) with a JSON twin (``grades.json``); ``flag`` says when a submission's answers match the
published solutions or a classmate's (:mod:`gclab.grading.similarity`; the score is not
changed); learner text is HTML-escaped in every output; ``--feedback DIR`` (one Markdown
file per student, distinct students in distinct files: each verdict, its likely cause, the
level-1 hint for what failed). The student is named by the submission's
file (``alice.ipynb``) or, when the file is named like a lesson, its folder
(``submissions/alice/04_simplified_nl.ipynb``).

Exit status: 0 when every exercise of every notebook passed, 1 when any failed, was not
implemented or not attempted, 2 when an argument or a submission cannot be read (a bad
submission in a batch gets its own rows; the others are graded).

Reading a submission and recognising its lesson: :mod:`gclab.grading.submission`.

Example::

    $ gclab grade notebooks/00_receptive_fields.ipynb
    $ gclab grade submissions/*/04_simplified_nl.ipynb --lesson 04 --jobs 2 --csv grades.csv
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Sequence

from gclab.grading.class_report import report_path, write_report
from gclab.grading.gradebook import summary, write_feedback, write_gradebook
from gclab.grading.result import Grade, rows_of, safe
from gclab.grading.similarity import flag_copies
from gclab.grading.submission import (
    SubmissionError,
    batch_lessons,
    checked_lesson,
    clean,
    detect_lesson,
    read_notebook,
    resolve_lesson,
    resolve_submission,
    student_of,
)

__all__ = ["grade", "grade_many", "main"]

DEFAULT_TIMEOUT = 600.0
DEFAULT_MEMORY = 4 * 2**30


# --------------------------------------------------------------------------------------------
# Grading
# --------------------------------------------------------------------------------------------
def grade(
    path: Path,
    timeout: float = DEFAULT_TIMEOUT,
    lesson: str | None = None,
    memory: int = DEFAULT_MEMORY,
    use_bwrap: bool | None = None,
    fallback: str | None = None,
) -> Grade:
    """Execute the submission at ``path`` in a sandbox and grade its lesson's exercises
    (``fallback``: the lesson to grade it as when its cells check no known exercise).

    Raises :class:`SubmissionError` when it cannot be read or its lesson cannot be told."""
    from gclab.exercises.registry import exercises as registered
    from gclab.grading.bwrap import bwrap_available
    from gclab.grading.sandbox import limits_in_force
    from gclab.grading.trusted import run_and_grade

    path = resolve_submission(Path(path), lesson)
    cells, meta = read_notebook(path)
    wanted = resolve_lesson(lesson) if lesson else None
    name, warnings = detect_lesson(path, cells, meta, wanted, fallback)
    exercises = registered(name) if name else []
    run = run_and_grade(cells, name, exercises, timeout, memory, use_bwrap=use_bwrap)
    g = Grade(str(path), name, run, rows_of(exercises, run.verdicts, run.outcome),
              student_of(path), warnings)
    g.limits = limits_in_force(memory, timeout, use_bwrap)
    g.isolated = bwrap_available() if use_bwrap is None else bool(use_bwrap)
    g.cells = cells
    return g


def _unreadable(path: Path, lesson: str | None, error: str) -> Grade:
    from gclab.exercises.registry import exercises as registered
    from gclab.grading.trusted import SandboxRun

    exercises = registered(lesson) if lesson else []
    g = Grade(str(path), lesson or "?", SandboxRun("error", error),
              rows_of(exercises, {}, "error"), student_of(path), [], error)
    for r in g.rows:
        r["detail"] = r["message"] = f"unreadable submission: {error}"
    return g


def grade_many(
    paths: Sequence[Path],
    timeout: float = DEFAULT_TIMEOUT,
    lesson: str | None = None,
    memory: int = DEFAULT_MEMORY,
    jobs: int = 1,
    progress: bool = True,
    use_bwrap: bool | None = None,
) -> List[Grade]:
    """Grade every submission (``jobs`` at a time); an unreadable one gets rows saying so."""
    from tqdm.auto import tqdm

    name = resolve_lesson(lesson) if lesson else None
    majority, disagree = batch_lessons([None if name else _own_lesson(p) for p in paths])

    def one(path: Path) -> Grade:
        try:
            return grade(path, timeout, name, memory, use_bwrap, fallback=majority)
        except SubmissionError as exc:
            return _unreadable(Path(path), name, clean(exc, 300))
        except Exception as exc:  # noqa: BLE001 - one submission must not stop the batch
            g = _unreadable(Path(path), name, "")
            g.error = ""
            g.run.detail = clean(f"the grader failed on it ({type(exc).__name__}: {exc})", 300)
            for r in g.rows:
                r["detail"] = r["message"] = g.run.detail
            return g

    bar = tqdm(total=len(paths), file=sys.stderr, unit="notebook", disable=not progress)
    results: List[Grade] = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for g in pool.map(one, paths):
            results.append(g)
            bar.update(1)
    bar.close()
    for g, w in zip(results, disagree):
        if w:
            g.warnings.append(w)
    _unique_students(results)
    flag_copies(results)
    return results


def _own_lesson(path: Path) -> str | None:
    """The lesson a submission's cells check (None when unreadable or none)."""
    try:
        return checked_lesson(read_notebook(resolve_submission(Path(path)))[0])
    except SubmissionError:
        return None


def _unique_students(results: List[Grade]) -> None:
    names = [g.student for g in results]
    for g in results:  # several notebooks in one folder: folder-notebook
        stem = Path(g.notebook).stem
        if names.count(g.student) > 1 and stem != g.student:
            g.student = f"{g.student}-{clean(stem, 60)}"
    seen: Dict[str, int] = {}
    for g in results:
        n = seen.get(g.student, 0)
        seen[g.student] = n + 1
        if n:
            g.student = f"{g.student}-{n + 1}"


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        print(f"gclab grade: {clean(message, 300)}", file=sys.stderr)
        sys.exit(2)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds > 0, got {clean(text, 40)!r}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text}")
    return value


def _bytes(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.I)
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 4G or 512M, got {clean(text, 40)!r}"
        )
    scale = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[m.group(2).upper()]
    value = int(float(m.group(1)) * scale)
    if value < 256 * 2**20:
        raise argparse.ArgumentTypeError(f"expected at least 256M, got {text}")
    return value


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {clean(text, 40)!r}")
    return value


def _parser() -> _Parser:
    parser = _Parser(
        prog="gclab grade",
        description="run learner notebooks in a sandbox and grade their exercises "
        "(exit 0: all passed; 1: something failed, was not implemented or not attempted; "
        "2: an unreadable argument or submission)",
    )
    parser.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION",
                        help="learner notebooks (.ipynb) or folders holding one each")
    parser.add_argument("--lesson", help="the lesson they are (e.g. 04); default: recognised "
                        "from the exercises the notebook checks")
    parser.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT,
                        help="wall-clock limit in seconds per notebook "
                        f"(default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--memory", type=_bytes, default=DEFAULT_MEMORY,
                        help="memory limit per notebook (default 4G)")
    parser.add_argument("--jobs", type=_jobs, default=1, help="notebooks graded in parallel")
    parser.add_argument("--csv", type=Path, help="write the gradebook here (and a .json twin)")
    parser.add_argument("--feedback", type=Path, metavar="DIR",
                        help="write one Markdown feedback file per student here")
    parser.add_argument("--report", type=report_path, metavar="FILE.html",
                        help="write the class report here (and .md, .csv, .png twins)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _warn_if_not_isolated() -> None:
    from gclab.grading import sandbox
    from gclab.grading.bwrap import bwrap_available
    from gclab.grading.reaper import become_subreaper

    if not bwrap_available():
        print(
            "gclab grade: warning: NOT ISOLATED: bubblewrap (bwrap) is not usable here, so the "
            "notebooks run WITHOUT: " + "; ".join(sandbox.missing_protections())
            + ". A notebook can read every file you can, the real gclab with its answers "
            "included: every result is marked UNTRUSTED (the table, the CSV's trust column, "
            "the JSON's isolated) (install it: bash scripts/sandbox-deps.sh; see "
            "docs/instructors.md)",
            file=sys.stderr,
        )
        become_subreaper()


def _report(results: List[Grade], args, single: bool) -> None:
    """Print the results and write the files the arguments ask for."""
    from gclab.grading import sandbox

    for g in results:
        for w in g.warnings:
            print(f"gclab grade: warning: {clean(g.notebook, 120)}: {w}", file=sys.stderr)
        if g.error:
            print(f"gclab grade: {g.error}", file=sys.stderr)
    if single:
        print(results[0].table())
    else:
        print(summary(results))
        for g in results:
            for f in g.flags:
                print(f"gclab grade: flag: {safe(g.student, 80)}: {safe(f)}", file=sys.stderr)
        print(f"gclab grade: limits: {sandbox.limits_in_force(args.memory, args.timeout)}",
              file=sys.stderr)
    if args.csv:
        json_path = write_gradebook(results, args.csv)
        print(f"gradebook: {args.csv} and {json_path}")
    if args.feedback:
        write_feedback(results, args.feedback)
        print(f"feedback: {len(results)} files in {args.feedback}")
    if args.report:
        print("class report: " + ", ".join(map(str, write_report(results, args.report))))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gclab grade``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad argument (2, one line already printed)
        return int(exc.code or 0)

    from gclab._extras import MissingExtra, require

    try:
        require("IPython", extra="course", why="gclab grade")
        require("numpy", extra="course", why="gclab grade")
    except MissingExtra as exc:
        print(f"gclab grade: {exc}", file=sys.stderr)
        return 2
    from gclab.grading.bwrap import bwrap_available
    from gclab.grading.reaper import kill_children

    _warn_if_not_isolated()
    try:
        lesson = resolve_lesson(args.lesson) if args.lesson else None
    except SubmissionError as exc:
        print(f"gclab grade: {exc}", file=sys.stderr)
        return 2

    single = len(args.submissions) == 1 and not args.csv and not args.feedback
    try:
        if single:
            try:
                results = [grade(args.submissions[0], args.timeout, lesson, args.memory)]
            except SubmissionError as exc:
                print(f"gclab grade: {clean(exc, 400)}", file=sys.stderr)
                return 2
        else:
            results = grade_many(args.submissions, args.timeout, lesson, args.memory,
                                 args.jobs, progress=not args.quiet)
    finally:
        if not bwrap_available():
            kill_children(os.getpid())
    _report(results, args, single)
    if any(g.error for g in results):
        return 2
    return 0 if all(g.ok for g in results) else 1


if __name__ == "__main__":
    sys.exit(main())
