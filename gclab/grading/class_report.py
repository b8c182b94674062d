"""The class report of ``gclab grade ... --report report.html``: what a class gets wrong.

From the graded notebooks of a class (the :class:`gclab.grading.grade.Grade` objects that
``gclab grade`` computes), per exercise in course order: how many submissions passed, failed,
were not implemented or not attempted; the named causes of the failures (the registered
mistake each wrong output matched) with their counts, most common first; the exercises nobody
passed; per lesson the median time a notebook ran; per student the score and how the run
ended. One report, four files: ``report.html`` (the plot inline), ``report.md`` and
``report.png`` (its plot), ``report.csv`` (one row per exercise).

It holds no learner code and no solution: only exercise ids and titles, the engine's names of
the mistakes, counts, times, student ids and how each run ended. Everything that comes from a
submission (student ids, run messages) is escaped for the format it lands in: HTML entities
(and a Content-Security-Policy that allows no script), Markdown punctuation, and CSV fields
that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR) get a leading
quote.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence

__all__ = ["ClassReport", "ExerciseStats", "report_path", "summarise", "to_csv_rows",
           "to_html", "to_markdown", "write_report"]

STATUSES = ("passed", "failed", "not implemented", "not attempted")
TOP_CAUSES = 5
UNNAMED = "no registered mistake matched"


@dataclass
class ExerciseStats:
    """One exercise across the class."""

    id: str
    title: str
    lesson: str
    counts: Counter = field(default_factory=Counter)  # status -> submissions
    causes: Counter = field(default_factory=Counter)  # named cause -> failed submissions

    @property
    def submissions(self) -> int:
        return sum(self.counts.values())

    @property
    def pass_rate(self) -> float:
        return self.counts["passed"] / self.submissions if self.submissions else 0.0


@dataclass
class ClassReport:
    exercises: List[ExerciseStats]
    students: List[Dict[str, Any]]
    median_seconds: Dict[str, float]

    @property
    def nobody(self) -> List[ExerciseStats]:
        """The exercises that no submission passed."""
        return [e for e in self.exercises if e.counts["passed"] == 0]


def _outcome(g) -> str:
    if g.error:
        return f"unreadable: {g.error}"
    run = g.run
    stopped = run.outcome != "completed" and getattr(run, "cell", None)
    where = f" at cell {run.cell}" if stopped else ""
    return f"{run.outcome}{where}"


def summarise(results: Sequence[Any]) -> ClassReport:
    """Aggregate graded notebooks (objects with ``student``, ``lesson``, ``rows``, ``run``,
    ``error``, as :class:`~gclab.grading.grade.Grade`) into a :class:`ClassReport`."""
    by_id: Dict[str, ExerciseStats] = {}
    seconds: Dict[str, List[float]] = {}
    students = []
    for g in sorted(results, key=lambda g: str(g.lesson)):
        for row in g.rows:
            stats = by_id.get(row["id"])
            if stats is None:
                stats = by_id[row["id"]] = ExerciseStats(row["id"], row["title"], g.lesson)
            status = row["status"] if row["status"] in STATUSES else "failed"
            stats.counts[status] += 1
            if status == "failed":
                stats.causes[_one_line(row.get("diagnosis") or UNNAMED)] += 1
        if not g.error:
            seconds.setdefault(g.lesson, []).append(float(getattr(g.run, "seconds", 0.0)))
        students.append({"student": g.student, "lesson": g.lesson,
                         "passed": sum(r["status"] == "passed" for r in g.rows),
                         "total": len(g.rows), "outcome": _one_line(_outcome(g)),
                         "seconds": None if g.error else float(getattr(g.run, "seconds", 0.0))})
    first = list(by_id)
    exercises = sorted(by_id.values(),
                       key=lambda e: (e.lesson, *_course_order(e.lesson, e.id, first)))
    medians = {lesson: statistics.median(v) for lesson, v in sorted(seconds.items())}
    return ClassReport(exercises, students, medians)


def _course_order(lesson: str, ex_id: str, first: List[str]) -> tuple:
    """Where ``ex_id`` comes in its lesson: the order of the lesson source's ``check`` calls
    (the order a learner meets them); else the order the grader listed it."""
    order = _source_order(lesson)
    return (order.index(ex_id), 0) if ex_id in order else (len(order), first.index(ex_id))


def _source_order(lesson: str, _cache: Dict[str, List[str]] = {}) -> List[str]:  # noqa: B006
    if lesson not in _cache:
        from gclab.course.copies import lessons

        found = [x for x in lessons() if x.name == lesson]
        text = found[0].source.read_text(encoding="utf-8") if found else ""
        ids = re.findall(r"""\bcheck\(\s*["']([A-Za-z_]\w*\.[\w.]+)["']""", text)
        _cache[lesson] = list(dict.fromkeys(ids))
    return _cache[lesson]


def _one_line(text: Any, cap: int = 300) -> str:
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", str(text)).strip()
    return text if len(text) <= cap else text[: cap - 1] + "…"


def _causes_text(e: ExerciseStats, sep: str = ", ") -> str:
    return sep.join(f"{n} {cause}" for cause, n in e.causes.most_common(TOP_CAUSES))


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------
def md_escape(text: Any) -> str:
    """Text that Markdown shows as it is (no emphasis, links, HTML, entities, math or table
    breaks)."""
    return re.sub(r"([\\`*_{}\[\]<>#!|~$&])", r"\\\1", _one_line(text))


def to_markdown(report: ClassReport, plot: str | None = None) -> str:
    n = len(report.students)
    lines = ["# Class report", "",
             f"{n} submissions; {len(report.exercises)} exercises, in course order.", ""]
    if plot:
        lines += [f"![pass rate per exercise]({plot})", ""]
    lines += ["| exercise | passed | failed | not implemented | not attempted | most common causes "
              "of failure |", "|---|---|---|---|---|---|"]
    for e in report.exercises:
        c = e.counts
        lines.append(
            f"| `{md_escape(e.id)}` | {c['passed']}/{e.submissions} ({e.pass_rate:.0%}) | "
            f"{c['failed']} | {c['not implemented']} | {c['not attempted']} | "
            f"{md_escape(_causes_text(e, '; ')) or ' '} |")
    nobody = ", ".join(f"`{md_escape(e.id)}`" for e in report.nobody) or "none"
    lines += ["", f"**Nobody passed:** {nobody}", "", "**Median time per notebook:** "
              + (", ".join(f"lesson {md_escape(k)}: {v:.1f} s"
                           for k, v in report.median_seconds.items()) or "no notebook ran"),
              "", "| student | lesson | score | run |", "|---|---|---|---|"]
    for s in report.students:
        lines.append(f"| {md_escape(s['student'])} | {md_escape(s['lesson'])} | "
                     f"{s['passed']}/{s['total']} | {md_escape(s['outcome'])} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#1a202c}"
          "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #cbd5e0;"
          "padding:3px 8px;text-align:left;vertical-align:top}.zero{color:#9b2c2c;"
          "font-weight:bold}img{max-width:100%}")


def _e(text: Any) -> str:
    return html.escape(_one_line(text), quote=True)


def to_html(report: ClassReport, plot_png: bytes | None = None) -> str:
    """The report as one self-contained HTML page (the plot inline; no script allowed)."""
    parts = ['<!doctype html><html lang="en"><head><meta charset="utf-8">',
             f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
             f"<title>gclab class report</title><style>{_STYLE}</style></head><body>",
             "<h1>Class report</h1>",
             f"<p>{len(report.students)} submissions; {len(report.exercises)} exercises, in "
             "course order.</p>"]
    if plot_png:
        data = base64.b64encode(plot_png).decode("ascii")
        parts.append(f'<img alt="pass rate per exercise" src="data:image/png;base64,{data}">')
    parts.append("<table><tr><th>exercise</th><th>title</th><th>passed</th><th>failed</th>"
                 "<th>not implemented</th><th>not attempted</th>"
                 "<th>most common causes of failure</th></tr>")
    for e in report.exercises:
        c = e.counts
        causes = "".join(f"<li>{n} &times; {_e(cause)}</li>"
                         for cause, n in e.causes.most_common(TOP_CAUSES))
        zero = ' class="zero"' if c["passed"] == 0 else ""
        parts.append(
            f"<tr><td><code>{_e(e.id)}</code></td><td>{_e(e.title)}</td>"
            f"<td{zero}>{c['passed']}/{e.submissions} ({e.pass_rate:.0%})</td>"
            f"<td>{c['failed']}</td><td>{c['not implemented']}</td><td>{c['not attempted']}</td>"
            f"<td>{'<ul>' + causes + '</ul>' if causes else ''}</td></tr>")
    parts.append("</table>")
    nobody = ", ".join(f"<code>{_e(e.id)}</code>" for e in report.nobody) or "none"
    medians = ", ".join(f"lesson {_e(k)}: {v:.1f} s" for k, v in report.median_seconds.items())
    parts.append(f"<p><b>Nobody passed:</b> {nobody}</p>"
                 f"<p><b>Median time per notebook:</b> {medians or 'no notebook ran'}</p>")
    parts.append("<h2>Students</h2><table><tr><th>student</th><th>lesson</th><th>score</th>"
                 "<th>run</th></tr>")
    for s in report.students:
        parts.append(f"<tr><td>{_e(s['student'])}</td><td>{_e(s['lesson'])}</td>"
                     f"<td>{s['passed']}/{s['total']}</td><td>{_e(s['outcome'])}</td></tr>")
    parts.append("</table></body></html>\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# CSV, the plot, the files
# --------------------------------------------------------------------------------------------
def csv_field(value: Any) -> Any:
    """A CSV field that a spreadsheet shows as text instead of running it as a formula."""
    if isinstance(value, str):
        value = _one_line(value)
        if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
            return "'" + value
    return value


CSV_FIELDS = ["lesson", "exercise", "title", "submissions", "passed", "failed",
              "not_implemented", "not_attempted", "pass_rate", "causes"]


def to_csv_rows(report: ClassReport) -> List[Dict[str, Any]]:
    return [{"lesson": e.lesson, "exercise": e.id, "title": e.title,
             "submissions": e.submissions, "passed": e.counts["passed"],
             "failed": e.counts["failed"], "not_implemented": e.counts["not implemented"],
             "not_attempted": e.counts["not attempted"], "pass_rate": round(e.pass_rate, 4),
             "causes": _causes_text(e, "; ")} for e in report.exercises]


def plot_png(report: ClassReport) -> bytes:
    """A horizontal bar per exercise (course order, top to bottom): its pass rate."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = max(1, len(report.exercises))
    fig, ax = plt.subplots(figsize=(8, 0.8 + 0.28 * n), dpi=100)
    rates = [100 * e.pass_rate for e in report.exercises]
    colors = ["#9b2c2c" if r == 0 else "#2b6cb0" for r in rates]
    ax.barh(range(len(rates)), rates, color=colors)
    ax.set_yticks(range(len(rates)), [e.id for e in report.exercises], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("submissions that passed (%)")
    for i, e in enumerate(report.exercises):
        inside = rates[i] > 88  # no room right of the bar: write it inside, in white
        ax.text(rates[i] - 1 if inside else rates[i] + 1, i,
                f"{e.counts['passed']}/{e.submissions}", va="center", fontsize=8,
                ha="right" if inside else "left", color="white" if inside else "black")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def report_path(text: str) -> Path:
    """The ``--report`` argument: a file name ending in .html (argparse type)."""
    import argparse

    path = Path(text)
    if path.suffix.lower() not in (".html", ".htm") or path.is_dir():
        raise argparse.ArgumentTypeError(
            f"expected a file name ending in .html (its .md, .csv and .png twins go beside "
            f"it), got {_one_line(text, 80)!r}")
    return path


def write_report(results: Sequence[Any], path: Path) -> List[Path]:
    """Write ``path`` (HTML) and its twins ``.md``, ``.csv`` and ``.png``; returns the paths."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--report: expected a file name ending in .html, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    report = summarise(results)
    png = plot_png(report)
    md, csv_path, png_path = (path.with_suffix(s) for s in (".md", ".csv", ".png"))
    png_path.write_bytes(png)
    path.write_text(to_html(report, png), encoding="utf-8")
    md.write_text(to_markdown(report, plot=png_path.name), encoding="utf-8")
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in to_csv_rows(report):
            writer.writerow({k: csv_field(v) for k, v in row.items()})
    return [path, md, csv_path, png_path]
