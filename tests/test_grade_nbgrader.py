"""The nbgrader round trip: ``gclab notebooks --nbgrader DIR 00`` writes a course directory;
the real ``nbgrader`` (with its SQLite gradebook) generates the student version, autogrades a
simulated submission with every answer right but one, and exports the scores."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gclab.course.notebooks import main as notebooks_main
from gclab.exercises import catalog

ROOT = Path(__file__).resolve().parent.parent
LESSON = "00_receptive_fields"
BIN = Path(sys.executable).parent
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("nbgrader", path=f"{BIN}{os.pathsep}{os.environ['PATH']}")
                       is None, reason="nbgrader is not installed (pip install -e .[test])"),
]

WRONG = "def layers_to_cover(size, kernel=3):\n    return (size - 1) // (kernel - 1)\n"


def _nbgrader(course: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["nbgrader", *args], cwd=course, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _strip_markers(source: str) -> str:
    return "\n".join(ln for ln in source.split("\n")
                     if "BEGIN SOLUTION" not in ln and "END SOLUTION" not in ln)


def test_nbgrader_generate_autograde_export(tmp_path):
    course = tmp_path / "course"
    assert notebooks_main(["--nbgrader", str(course), "00"]) == 0
    source = json.loads((course / "source" / LESSON / f"{LESSON}.ipynb").read_text())
    tests = [c for c in source["cells"] if c["metadata"]["nbgrader"]["grade"]]
    ids = [e.id for e in catalog(notebook=LESSON)]
    assert len(tests) == len(ids)
    assert all(c["metadata"]["nbgrader"]["locked"] and c["metadata"]["nbgrader"]["points"] == 1
               for c in tests)
    assert all("assert result.passed" in "".join(c["source"]) for c in tests)

    _nbgrader(course, "generate_assignment", LESSON, "--force")
    release = json.loads((course / "release" / LESSON / f"{LESSON}.ipynb").read_text())
    answers = {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"])
               for c in source["cells"] if c["metadata"]["nbgrader"]["solution"]}
    student = [c for c in release["cells"] if c["metadata"].get("nbgrader", {}).get("solution")]
    assert student and all("raise NotImplementedError()" in "".join(c["source"])
                           for c in student)  # nbgrader replaced the solution regions

    # alice answers everything from the solutions, but gets rf.layers_to_cover wrong
    for cell in release["cells"]:
        gid = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if gid in answers:
            text = _strip_markers(answers[gid])
            if "def layers_to_cover" in text:
                text = "# exercise rf.layers_to_cover\n" + WRONG
            cell["source"] = text
    sub = course / "submitted" / "alice" / LESSON
    sub.mkdir(parents=True)
    (sub / f"{LESSON}.ipynb").write_text(json.dumps(release))
    _nbgrader(course, "db", "student", "add", "alice")
    _nbgrader(course, "autograde", LESSON)
    _nbgrader(course, "export")

    with open(course / "grades.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["student_id"] == "alice"]
    assert len(rows) == 1, rows
    assert float(rows[0]["max_score"]) == len(ids)
    assert float(rows[0]["score"]) == len(ids) - 1
