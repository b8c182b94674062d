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
import csv
import hashlib
import html
import json
import math
import os
import re
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence

from gclab.grading.class_report import report_path, write_report
from gclab.grading.similarity import flag_copies
from gclab.grading.submission import (
    TEXT_CAP,
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

__all__ = ["Grade", "grade", "grade_many", "main"]

DEFAULT_TIMEOUT = 600.0
DEFAULT_MEMORY = 4 * 2**30
TABLE_WIDTH = 90  # characters of detail per table row


# --------------------------------------------------------------------------------------------
# Grading
# --------------------------------------------------------------------------------------------
@dataclass
class Grade:
    """The graded result of one notebook: ``rows`` (id, title, status, points, detail, hint)."""

    notebook: str
    lesson: str
    run: Any
    rows: List[Dict[str, Any]]
    student: str = ""
    warnings: List[str] = field(default_factory=list)
    error: str = ""  # set when the submission could not be read
    limits: str = ""  # the resource limits it ran under (sandbox.limits_in_force)
    flags: List[str] = field(default_factory=list)  # similarity.flag_copies: for the instructor
    cells: List[str] = field(default_factory=list, repr=False)  # its code cells, as handed in

    @property
    def passed(self) -> int:
        return sum(r["status"] == "passed" for r in self.rows)

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def points(self) -> int:
        return sum(r["points"] for r in self.rows)

    @property
    def ok(self) -> bool:
        return not self.error and self.total > 0 and self.passed == self.total

    def table(self, width: int = TABLE_WIDTH) -> str:
        lines = [f"gclab grade: {safe(self.notebook, 120)} (lesson {self.lesson})"]
        lines += [f"warning: {safe(w)}" for w in self.warnings]
        lines += [f"flag: {safe(f)}" for f in self.flags]
        lines += [html.escape(self._run_line(), quote=False)]
        lines += textwrap.wrap(f"limits: {self.limits}", 100, subsequent_indent="  ")
        lines.append("")
        w_id = max([len("exercise")] + [len(r["id"]) for r in self.rows])
        w_st = max(len("not implemented"), len("not attempted"))
        lines.append(f"{'exercise':<{w_id}}  {'result':<{w_st}}  details")
        lines.append(f"{'-' * w_id}  {'-' * w_st}  {'-' * 40}")
        for r in self.rows:
            lines.append(f"{r['id']:<{w_id}}  {r['status']:<{w_st}}  {safe(r['detail'], width)}")
        lines.append("")
        lines.append(
            f"score: {self.passed}/{self.total} exercises passed their public checks"
            + ("" if self.ok else " (exit status 1: some failed, not implemented or not attempted)")
        )
        return "\n".join(lines)

    def _run_line(self) -> str:
        run = self.run
        if self.error:
            return f"the submission could not be read: {self.error}"
        where = f" at cell {run.cell}" if run.cell else ""
        memory = getattr(run, "memory", "")
        disk = getattr(run, "disk", "")
        if run.outcome == "completed":
            return f"the notebook ran to the end in {run.seconds:.1f} s" + (
                f" (with memory errors; likely cause: {memory})" if memory else "") + (
                f" ({disk}: writing more failed)" if disk else "")
        if run.outcome == "kernel died":
            return (
                f"the kernel died{where} after {run.seconds:.1f} s"
                + (f" (likely cause: {memory})" if memory else "")
                + (f" ({disk})" if disk else "")
                + "; exercises after that point are not attempted"
            )
        if run.outcome == "timed out":
            return (
                f"the notebook was stopped{where}: {clean(run.detail, 120)}; exercises after "
                "that point are not attempted"
            )
        return f"the notebook could not be executed: {clean(run.detail, 200)}"

    def records(self) -> List[Dict[str, Any]]:
        """One dict per exercise: student, exercise, status, points, message (and more)."""
        flag = "; ".join(safe(f) for f in self.flags)
        return [
            {
                "student": safe(self.student),
                "exercise": r["id"],
                "status": r["status"],
                "points": r["points"],
                "message": safe(r["detail"], TEXT_CAP),
                "lesson": self.lesson,
                "notebook": safe(self.notebook),
                "flag": flag,
            }
            for r in self.rows
        ]

    def feedback(self) -> str:
        """Markdown feedback for the student: each verdict, its likely cause, a hint."""
        lines = [
            f"# Feedback for {_md(self.student)}: lesson {self.lesson}",
            "",
            f"Score: **{self.passed}/{self.total}** exercises passed their public checks.",
            "",
            _md(self._run_line()),
            "",
        ]
        for r in self.rows:
            lines.append(f"## `{r['id']}`: {_md(r['title'])}")
            lines.append("")
            lines.append(f"**{r['status']}**: {_md(r['message'])}")
            if r.get("diagnosis"):
                lines.append("")
                lines.append(f"Likely cause: {_md(r['diagnosis'])}")
            if r["status"] != "passed" and r.get("hint"):
                lines.append("")
                lines.append(f"Try this: {_md(r['hint'])}")
            lines.append("")
        return "\n".join(lines)


def safe(text: Any, cap: int = TEXT_CAP) -> str:
    """Learner-controlled ``text`` for any output: one clean line (:func:`clean`) with the
    HTML specials escaped, so no viewer of the CSV, JSON or Markdown renders it as markup."""
    return html.escape(clean(text, cap), quote=False)


def _md(text: Any) -> str:
    """``text`` safe in Markdown: HTML-escaped (:func:`safe`), Markdown's specials
    backslash-escaped (an entity's ``&`` and ``;`` stay as they are)."""
    return re.sub(r"([\\`*_\[\]#|])", r"\\\1", safe(text))


_STOPPED = {
    "kernel died": "the kernel died before its check ran",
    "timed out": "the time ran out before its check ran",
    "error": "the notebook could not be executed",
    "completed": "no check of it ran (is its check cell there?)",
}


def _rows(exercises, verdicts: Dict[str, Any], outcome: str) -> List[Dict[str, Any]]:
    from gclab.exercises import hint

    rows = []
    for ex in exercises:
        result = verdicts.get(ex.id)
        level1 = clean(hint(ex.id, 1), TEXT_CAP)
        if result is None:
            rows.append(
                {"id": ex.id, "title": ex.title, "status": "not attempted", "points": 0,
                 "detail": _STOPPED.get(outcome, _STOPPED["error"]),
                 "message": _STOPPED.get(outcome, _STOPPED["error"]), "diagnosis": None,
                 "hint": level1}
            )
            continue
        detail = clean(result.message, TEXT_CAP)
        if result.diagnosis:
            detail += f" -- likely cause: {clean(result.diagnosis, 200)}"
        rows.append(
            {"id": ex.id, "title": ex.title, "status": result.status,
             "points": int(result.status == "passed"), "detail": detail,
             "message": result.message, "diagnosis": result.diagnosis, "hint": level1}
        )
    return rows


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
    from gclab.exercises.registry import _REGISTRY
    from gclab.grading.sandbox import limits_in_force
    from gclab.grading.trusted import run_and_grade

    path = resolve_submission(Path(path), lesson)
    cells, meta = read_notebook(path)
    wanted = resolve_lesson(lesson) if lesson else None
    name, warnings = detect_lesson(path, cells, meta, wanted, fallback)
    exercises = [e for e in _REGISTRY.values() if e.notebook == name]
    run = run_and_grade(cells, name, exercises, timeout, memory, use_bwrap=use_bwrap)
    g = Grade(str(path), name, run, _rows(exercises, run.verdicts, run.outcome),
              student_of(path), warnings)
    g.limits = limits_in_force(memory, timeout, use_bwrap)
    g.cells = cells
    return g


def _unreadable(path: Path, lesson: str | None, error: str) -> Grade:
    from gclab.exercises.registry import _REGISTRY
    from gclab.grading.trusted import SandboxRun

    exercises = [e for e in _REGISTRY.values() if lesson and e.notebook == lesson]
    g = Grade(str(path), lesson or "?", SandboxRun("error", error),
              _rows(exercises, {}, "error"), student_of(path), [], error)
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


def _cell(value: Any) -> Any:
    """A CSV field that a spreadsheet will not run as a formula (``=``, ``+``, ``-``, ``@``)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def write_gradebook(results: List[Grade], csv_path: Path) -> Path:
    """``csv_path`` (one row per student and exercise) and its JSON twin; returns the JSON."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["student", "exercise", "status", "points", "message", "flag"]
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for g in results:
            for rec in g.records():
                writer.writerow({k: _cell(v) for k, v in rec.items()})
    json_path = csv_path.with_suffix(".json")
    data = [
        {
            "student": safe(g.student),
            "notebook": safe(g.notebook),
            "lesson": g.lesson,
            "outcome": "unreadable" if g.error else g.run.outcome,
            "seconds": round(float(getattr(g.run, "seconds", 0.0)), 1),
            "points": g.points,
            "total": g.total,
            "warnings": [safe(w) for w in g.warnings],
            "flags": [safe(f) for f in g.flags],
            "limits": g.limits,
            "exercises": g.records(),
        }
        for g in results
    ]
    json_path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return json_path


def feedback_names(students: Sequence[str]) -> List[str]:
    """One file name per student, distinct for distinct students (also where the file system
    ignores case): the name itself where it is a plain, unused one, else its plain form plus a
    hash of the exact name."""
    names, used = [], set()
    for student in students:
        plain = re.sub(r"[^\w.-]", "_", student).lstrip(".")[:80] or "student"
        name = plain
        if plain != student or plain.lower() in used:
            digest = hashlib.sha256(student.encode("utf-8", "surrogatepass")).hexdigest()[:10]
            name = f"{plain}-{digest}"
        while name.lower() in used:  # the same student twice: number the repeats
            name = f"{name}-{len(used)}"
        used.add(name.lower())
        names.append(name)
    return names


def write_feedback(results: List[Grade], folder: Path) -> List[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for g, name in zip(results, feedback_names([g.student for g in results])):
        path = folder / f"{name}.md"
        path.write_text(g.feedback(), encoding="utf-8")
        written.append(path)
    return written


def summary(results: List[Grade]) -> str:
    w = max([len("student")] + [len(g.student) for g in results])
    lines = [f"{'student':<{w}}  score  run", f"{'-' * w}  -----  {'-' * 30}"]
    for g in results:
        outcome = "unreadable: " + safe(g.error, 60) if g.error else g.run.outcome
        flag = "  (flagged)" if g.flags else ""
        lines.append(f"{safe(g.student):<{w}}  {g.passed:>2}/{g.total:<2}  {outcome}{flag}")
    return "\n".join(lines)


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gclab grade``."""
    argv = list(sys.argv[1:] if argv is None else argv)
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
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad argument (2, one line already printed)
        return int(exc.code or 0)

    from gclab._extras import MissingExtra, require

    try:
        require("IPython", extra="course", why="gclab grade")
        require("numpy", extra="course", why="gclab grade")
    except MissingExtra as exc:
        print(f"gclab grade: {exc}", file=sys.stderr)
        return 2
    from gclab.grading import sandbox
    from gclab.grading.reaper import become_subreaper, kill_children

    if not sandbox.bwrap_available():
        print(
            "gclab grade: warning: bubblewrap (bwrap) is not usable here, so the notebooks run "
            "WITHOUT: " + "; ".join(sandbox.missing_protections())
            + " (install it: bash scripts/sandbox-deps.sh; see docs/instructors.md)",
            file=sys.stderr,
        )
        become_subreaper()
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
        if not sandbox.bwrap_available():
            kill_children(os.getpid())
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
    if any(g.error for g in results):
        return 2
    return 0 if all(g.ok for g in results) else 1


if __name__ == "__main__":
    sys.exit(main())
