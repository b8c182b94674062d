"""The learner copies run top to bottom with only the designed errors; the runtime budget plugin.

* Every learner copy ``notebooks/NN_slug.ipynb`` is executed in a fresh kernel (errors allowed,
  through ``gclab.course.execute.run_notebook``). The only errors allowed are the stubs'
  ``NotImplementedError("exercise ...")``, and every ``check`` the notebook ran (read from
  ``GCLAB_GRADE_LOG``) reported "not implemented" -- a check that passes or fails in a learner
  copy means a solution leaked or a check crashed on a stub. Demonstration cells that wrap the
  learner's function in ``use_or_fallback`` must say that they ran on gclab's answer.
* The root ``conftest.py`` budget plugin: on two tiny notebooks under xdist, it lists both
  durations and fails the session when one exceeds the budget.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import nbformat
import pytest

from gclab.course.copies import lessons
from gclab.course.execute import KERNEL_START_RACE, run_notebook
from gclab.exercises import catalog

ROOT = Path(__file__).resolve().parent.parent
LESSONS = lessons(ROOT)


def _errors(nb):
    """(cell number, exception name, message) of every error, except in cells tagged
    ``raises-exception`` (errors the lesson demonstrates on purpose, as in the solution)."""
    for i, cell in enumerate(nb.cells):
        if "raises-exception" in cell.get("metadata", {}).get("tags", []):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                yield i + 1, out.get("ename", ""), out.get("evalue", "")


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS, ids=lambda le: le.name)
def test_learner_copy_runs_with_only_the_designed_errors(lesson, tmp_path):
    if not lesson.learner.exists():
        pytest.fail(f"{lesson.learner.relative_to(ROOT)} is missing: python -m gclab notebooks")
    # run a copy beside the original (same folder depth) so nothing is written into the repo
    work = tmp_path / "notebooks"
    work.mkdir()
    copy = work / lesson.learner.name
    shutil.copy(lesson.learner, copy)
    report = run_notebook(copy, timeout=150, keep_notebook=True)
    if report.outcome == "timed out":
        # an intermittent kernel stall, seen once in five clean-clone CI runs (lesson 3's widget
        # cell, 300 s; the copy runs in ~7 s): a second run must complete, and a stall that
        # repeats fails the test. Said loudly so the stall is not forgotten.
        warnings.warn(f"{lesson.name}: learner copy stalled at cell {report.cell}; rerun once",
                      stacklevel=1)
        shutil.copy(lesson.learner, copy)
        report = run_notebook(copy, timeout=150, keep_notebook=True)
    assert report.outcome == "completed", f"{report.outcome} at cell {report.cell}: {report.detail}"
    bad = [
        f"cell {i}: {name}: {value[:200]}"
        for i, name, value in _errors(report.notebook)
        if not (name == "NotImplementedError" and value.startswith("exercise "))
    ]
    assert not bad, "errors other than the designed stubs:\n" + "\n".join(bad)
    stubs = [e for e in _errors(report.notebook) if e[1] == "NotImplementedError"]
    # demonstration cells fall back to gclab's answers (use_or_fallback), so a lesson whose
    # exercises are all functions may raise no stub at all; its checks must still have run
    assert stubs or report.records, "a learner copy where no stub raised and no check ran"
    if "use_or_fallback(" in lesson.source.read_text(encoding="utf-8"):
        printed = "".join(
            out.get("text", "") for cell in report.notebook.cells
            for out in cell.get("outputs", []) if out.get("output_type") == "stream"
        )
        assert "is not done yet: using gclab's" in printed, "no demonstration fell back"
    leaked = [r for r in report.records if r["status"] != "not implemented"]
    assert not leaked, f"checks on stubs must say 'not yet implemented', got {leaked}"
    assert all(r["message"] == "not yet implemented" for r in report.records)
    ids = {e.id for e in catalog(notebook=lesson.name)}
    assert {r["id"] for r in report.records} <= ids, "a check of another lesson's exercise"


def _tiny_notebook(path: Path, seconds: float) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(f"import time\ntime.sleep({seconds})"),
        nbformat.v4.new_code_cell(
            "# NBVAL_CHECK_OUTPUT\nprint(6 * 7)",
            outputs=[nbformat.v4.new_output("stream", name="stdout", text="42\n")],
            execution_count=2,
        ),
    ]
    nb.cells[0].execution_count = 1
    nbformat.write(nb, str(path))


@pytest.mark.slow
def test_budget_plugin_reports_every_notebook_and_fails_over_budget(pytester, monkeypatch):
    pytester.makeconftest((ROOT / "conftest.py").read_text())
    # the budget counts the kernel start too (2.7 s once on the loaded 2-core CI machine), so
    # the fast notebook gets a budget no kernel start comes near, and the slow one sleeps past it
    _tiny_notebook(pytester.path / "slow_nb.ipynb", 12.0)
    _tiny_notebook(pytester.path / "fast_nb.ipynb", 0.0)
    monkeypatch.setenv("GCLAB_NOTEBOOK_BUDGET_S", "10")
    args = ("--nbval-lax", "-n", "2", "--dist", "loadfile", "-p", "no:cacheprovider",
            "slow_nb.ipynb", "fast_nb.ipynb")
    result = pytester.runpytest_subprocess(*args)
    if KERNEL_START_RACE in result.stdout.str():  # nbval's kernels do not retry a lost port
        result = pytester.runpytest_subprocess(*args)
    out = result.stdout.str()
    assert "gclab notebook durations" in out
    slow_line = next(
        line for line in out.splitlines() if line.endswith("slow_nb.ipynb  OVER BUDGET")
    )
    assert float(slow_line.split()[0]) >= 12.0
    assert any(line.strip().endswith("fast_nb.ipynb") for line in out.splitlines())
    assert "total over 2 notebook(s)" in out
    result.assert_outcomes(passed=4)  # every cell passed, yet the session fails on the budget
    assert result.ret == pytest.ExitCode.TESTS_FAILED
