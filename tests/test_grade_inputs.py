"""``gclab grade`` on arguments and files that are not what it expects: one clear line on
stderr saying what was expected and what came in, exit status 2, no traceback."""

from __future__ import annotations

import csv
import json

import pytest
from gradekit import write_notebook

from gclab.exercises import catalog
from gclab.grading.grade import main


def _one_line_exit_2(capsys, argv, *expect):
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if "warning: bubblewrap" not in line]
    assert len(err) == 1, err
    assert err[0].startswith("gclab grade: "), err
    assert "Traceback" not in err[0]
    for text in expect:
        assert text in err[0], err[0]
    return err[0]


@pytest.mark.parametrize(
    "content, expect",
    [
        ("{not json", ["expected a notebook (JSON)", "invalid JSON at line 1"]),
        ("[1, 2]", ["expected a Jupyter notebook", "got a JSON list"]),
        ('{"nbformat": 1, "cells": []}', ["expected an nbformat 4 notebook", "got nbformat 1"]),
        ('{"nbformat": 4, "metadata": {}}', ["without a list of cells"]),
        ('{"nbformat": 4, "cells": [[1]]}', ["cell 1: expected a JSON object, got a JSON list"]),
        ('{"nbformat": 4, "cells": [{"cell_type": "code", "source": 3}]}',
         ["cell 1: expected its source as text", "got a number"]),
        ('{"nbformat": 4, "cells": [{"cell_type": 7, "source": ""}]}',
         ["cell 1: expected cell_type code, markdown or raw"]),
        ('{"nbformat": 4, "cells": []}', ["cannot tell which lesson", "pass --lesson"]),
    ],
)
def test_files_that_are_not_gradable_notebooks(tmp_path, capsys, content, expect):
    path = tmp_path / "x.ipynb"
    path.write_text(content)
    _one_line_exit_2(capsys, [path], *expect)


def test_binary_file(tmp_path, capsys):
    path = tmp_path / "x.ipynb"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    _one_line_exit_2(capsys, [path], "got binary data")


def test_missing_file_and_folders(tmp_path, capsys):
    _one_line_exit_2(capsys, [tmp_path / "nope.ipynb"], "no such file")
    _one_line_exit_2(capsys, [tmp_path], "expected a folder holding one .ipynb notebook, found 0")
    write_notebook(tmp_path / "a.ipynb", ["x = 1"])
    write_notebook(tmp_path / "b.ipynb", ["x = 1"])
    _one_line_exit_2(capsys, [tmp_path], "found 2")


@pytest.mark.parametrize(
    "option, value, expect",
    [
        ("--timeout", "nan", "expected a number of seconds > 0, got nan"),
        ("--timeout", "inf", "expected a number of seconds > 0, got inf"),
        ("--timeout", "-1", "expected a number of seconds > 0, got -1"),
        ("--timeout", "soon", "expected a number of seconds > 0, got 'soon'"),
        ("--memory", "lots", "expected a size such as 4G or 512M, got 'lots'"),
        ("--memory", "1M", "expected at least 256M"),
        ("--jobs", "0", "expected a whole number >= 1, got '0'"),
        ("--lesson", "99", "--lesson 99: expected one of 00, 01"),
    ],
)
def test_bad_options(tmp_path, capsys, option, value, expect):
    path = write_notebook(tmp_path / "x.ipynb", ['check("rf.theoretical", f)'])
    _one_line_exit_2(capsys, [path, option, value], expect)


def test_no_arguments(capsys):
    _one_line_exit_2(capsys, [], "the following arguments are required")


def test_a_bad_submission_in_a_batch_gets_its_own_rows(tmp_path, capsys):
    """Only the unreadable ones here (nothing runs): each gets rows saying why; exit 2."""
    bad = tmp_path / "bob.ipynb"
    bad.write_text("[]")
    worse = tmp_path / "carol.ipynb"
    worse.write_text(json.dumps({"nbformat": 4, "cells": [{"cell_type": "code", "source": 1}]}))
    out_csv = tmp_path / "grades.csv"
    assert main([str(bad), str(worse), "--lesson", "04", "--csv", str(out_csv), "--quiet"]) == 2
    header = "student,exercise,status,points,message,flag,trust"
    assert out_csv.read_text().splitlines()[0] == header
    with open(out_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    n_exercises = sum(e.notebook.startswith("04") for e in catalog())
    assert n_exercises >= 5 and len(rows) == 2 * n_exercises  # one row per student and exercise
    assert {(r["status"], r["points"]) for r in rows} == {("not attempted", "0")}
    assert all(r["message"].startswith("unreadable submission: ") for r in rows)
    data = json.loads(out_csv.with_suffix(".json").read_text())
    assert [d["student"] for d in data] == ["bob", "carol"]
    assert {d["outcome"] for d in data} == {"unreadable"}


def test_gradebook_fields_cannot_run_as_spreadsheet_formulas(tmp_path):
    from gclab.grading.gradebook import write_gradebook
    from gclab.grading.result import Grade
    from gclab.grading.trusted import SandboxRun

    row = {"id": "rf.theoretical", "title": "t", "status": "failed", "points": 0,
           "detail": "=HYPERLINK(\"http://x\")", "message": "", "diagnosis": None, "hint": ""}
    g = Grade("=cmd.ipynb", "00_receptive_fields", SandboxRun("completed"), [row], "=cmd")
    write_gradebook([g], tmp_path / "g.csv")
    with open(tmp_path / "g.csv", newline="") as fh:
        (rec,) = list(csv.DictReader(fh))
    assert rec["student"] == "'=cmd" and rec["message"].startswith("'=HYPERLINK")
