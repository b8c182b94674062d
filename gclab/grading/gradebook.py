"""What ``gclab grade`` writes for a class: the gradebook (CSV and its JSON twin), one
Markdown feedback file per student (distinct students, distinct files), and the summary
table."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path
from typing import Any, List, Sequence

from gclab.grading.result import Grade, safe

__all__ = ["feedback_names", "summary", "write_feedback", "write_gradebook"]


def _cell(value: Any) -> Any:
    """A CSV field that a spreadsheet will not run as a formula (``=``, ``+``, ``-``, ``@``)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def write_gradebook(results: List[Grade], csv_path: Path) -> Path:
    """``csv_path`` (one row per student and exercise) and its JSON twin; returns the JSON."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["student", "exercise", "status", "points", "message", "flag", "trust"]
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
            "isolated": g.isolated,
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
        flag = ("  (flagged)" if g.flags else "") + (
            "" if g.isolated else "  (UNTRUSTED: not isolated)")
        lines.append(f"{safe(g.student):<{w}}  {g.passed:>2}/{g.total:<2}  {outcome}{flag}")
    return "\n".join(lines)


