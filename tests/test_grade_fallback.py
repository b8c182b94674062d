"""Without bubblewrap a notebook is not isolated: it can read the real gclab with its answers.
``gclab grade`` says so, and marks every such result untrusted in each output."""

from __future__ import annotations

import csv
import json

import pytest
from gradekit import ROOT, write_notebook

from gclab.grading.grade import main
from gclab.grading.result import NOT_ISOLATED

pytestmark = pytest.mark.slow

LESSON0 = ROOT / "gclab" / "exercises" / "lessons" / "nb00_receptive_fields.py"
PROBE = f"""
import os
from gclab.exercises import check
seen = os.path.exists({str(LESSON0)!r})
def theoretical_rf(kernels, strides):
    raise ValueError(f'REAL GCLAB READABLE {{seen}}')
check('rf.theoretical', theoretical_rf)
"""


def _run(tmp_path, monkeypatch, capsys, sandbox: str):
    if sandbox == "none":
        monkeypatch.setenv("GCLAB_SANDBOX", "none")
    path = write_notebook(tmp_path / "probe.ipynb", [PROBE], "00_receptive_fields")
    out = tmp_path / "grades.csv"
    main([str(path), "--lesson", "00", "--timeout", "120", "--csv", str(out), "--quiet"])
    captured = capsys.readouterr()
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    data = json.loads(out.with_suffix(".json").read_text())
    return captured, rows, data


def test_without_bubblewrap_every_output_says_untrusted(tmp_path, monkeypatch, capsys):
    captured, rows, data = _run(tmp_path, monkeypatch, capsys, "none")
    probe = next(r for r in rows if r["exercise"] == "rf.theoretical")
    assert "REAL GCLAB READABLE True" in probe["message"]  # what the warning says is true
    assert "NOT ISOLATED" in captured.err and "answers" in captured.err, captured.err
    assert "UNTRUSTED: not isolated" in captured.out, captured.out  # the summary
    assert {r["trust"] for r in rows} == {NOT_ISOLATED}
    assert data[0]["isolated"] is False


def test_with_bubblewrap_results_are_not_marked(tmp_path, monkeypatch, capsys):
    from gclab.grading.bwrap import bwrap_available

    if not bwrap_available():
        pytest.skip("bubblewrap not usable here")
    captured, rows, data = _run(tmp_path, monkeypatch, capsys, "bwrap")
    probe = next(r for r in rows if r["exercise"] == "rf.theoretical")
    assert "REAL GCLAB READABLE False" in probe["message"]
    assert "NOT ISOLATED" not in captured.err and "UNTRUSTED" not in captured.out
    assert {r["trust"] for r in rows} == {"isolated"} and data[0]["isolated"] is True
