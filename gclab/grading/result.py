"""One graded notebook: its rows (one per exercise), and how they are shown: the table
``gclab grade`` prints, the records of the gradebook, the learner's Markdown feedback. Every
piece of text a submission controls goes through :func:`safe` (one clean line, HTML-escaped)
or :func:`markdown_safe` on its way out.
"""

from __future__ import annotations

import html
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any, Dict, List

from gclab.grading.submission import TEXT_CAP, clean

__all__ = ["Grade", "NOT_ISOLATED", "markdown_safe", "rows_of", "safe"]

TABLE_WIDTH = 90  # characters of detail per table row
#: what a result graded without bubblewrap is marked with, in every output
NOT_ISOLATED = ("UNTRUSTED: not isolated (no bubblewrap): the notebook could read every file "
                "the grader can, the real gclab with its answers included")


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
    isolated: bool = True  # run inside bubblewrap; False: the result is marked untrusted

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
        lines += [] if self.isolated else [NOT_ISOLATED]
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
                "trust": "isolated" if self.isolated else NOT_ISOLATED,
            }
            for r in self.rows
        ]

    def feedback(self) -> str:
        """Markdown feedback for the student: each verdict, its likely cause, a hint."""
        lines = [
            f"# Feedback for {markdown_safe(self.student)}: lesson {self.lesson}",
            "",
            f"Score: **{self.passed}/{self.total}** exercises passed their public checks.",
            "",
            markdown_safe(self._run_line()),
            "",
        ]
        for r in self.rows:
            lines.append(f"## `{r['id']}`: {markdown_safe(r['title'])}")
            lines.append("")
            lines.append(f"**{r['status']}**: {markdown_safe(r['message'])}")
            if r.get("diagnosis"):
                lines.append("")
                lines.append(f"Likely cause: {markdown_safe(r['diagnosis'])}")
            if r["status"] != "passed" and r.get("hint"):
                lines.append("")
                lines.append(f"Try this: {markdown_safe(r['hint'])}")
            lines.append("")
        return "\n".join(lines)


def safe(text: Any, cap: int = TEXT_CAP) -> str:
    """Learner-controlled ``text`` for any output: one clean line (:func:`clean`) with the
    HTML specials escaped, so no viewer of the CSV, JSON or Markdown renders it as markup."""
    return html.escape(clean(text, cap), quote=False)


def markdown_safe(text: Any) -> str:
    """``text`` safe in Markdown: HTML-escaped (:func:`safe`), Markdown's specials
    backslash-escaped (an entity's ``&`` and ``;`` stay as they are)."""
    return re.sub(r"([\\`*_\[\]#|])", r"\\\1", safe(text))


_STOPPED = {
    "kernel died": "the kernel died before its check ran",
    "timed out": "the time ran out before its check ran",
    "error": "the notebook could not be executed",
    "completed": "no check of it ran (is its check cell there?)",
}


def rows_of(exercises, verdicts: Dict[str, Any], outcome: str) -> List[Dict[str, Any]]:
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


