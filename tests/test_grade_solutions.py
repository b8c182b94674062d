"""Every executed solution notebook grades at 100 %.

All nine ``notebooks/solutions/*.ipynb`` in ONE ``gclab grade`` command, two at a time, each
notebook's lesson recognised from the notebook itself; every exercise of every lesson must pass.
The grader re-executes the notebooks in its sandbox, so this holds for the code, not for the
outputs committed with them."""

from __future__ import annotations

import csv
import time

import pytest
from gradekit import SOLUTIONS

from gclab.exercises import catalog
from gclab.grading.grade import main

pytestmark = pytest.mark.slow


def test_every_solution_notebook_grades_at_100_percent(tmp_path, capsys):
    paths = sorted(SOLUTIONS.glob("*.ipynb"))
    assert len(paths) == 9, paths
    out = tmp_path / "grades.csv"
    start = time.monotonic()
    rc = main([*map(str, paths), "--jobs", "2", "--timeout", "600", "--csv", str(out),
               "--quiet"])
    seconds = time.monotonic() - start
    captured = capsys.readouterr()
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    failing = [f"{r['student']} {r['exercise']}: {r['status']}: {r['message']}"
               for r in rows if r["status"] != "passed"]
    assert not failing, "\n".join(failing) + "\n" + captured.err[-2000:]
    assert len(rows) == sum(len(catalog(notebook=p.stem)) for p in paths)
    for p in paths:  # each notebook graded as its own lesson, every exercise of it
        got = {r["exercise"] for r in rows if r["student"].endswith(p.stem)}
        assert got == {e.id for e in catalog(notebook=p.stem)}, p.stem
    assert rc == 0, captured.err[-2000:]
    print(f"graded {len(paths)} solution notebooks ({len(rows)} exercises) in {seconds:.0f} s")
