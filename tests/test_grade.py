"""``gclab grade`` on a finished, a partial, a crashing and a hanging notebook.

The notebooks are built from lesson 0's committed copies, cut down to the cells that matter
(imports, exercise cells, check calls) so that each run takes a few seconds.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from gclab.exercises import catalog
from gclab.grading.grade import grade, main

ROOT = Path(__file__).resolve().parent.parent
LESSON = "00_receptive_fields"
LEARNER = ROOT / "notebooks" / f"{LESSON}.ipynb"
SOLUTION = ROOT / "notebooks" / "solutions" / f"{LESSON}.ipynb"
IDS = [e.id for e in catalog(notebook=LESSON)]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (LEARNER.exists() and SOLUTION.exists()),
        reason="lesson 0's copies are not built (python -m gclab notebooks)",
    ),
]


def _exercise_cells(path: Path) -> nbformat.NotebookNode:
    """The notebook's first code cell (imports) and every cell that calls check(...)."""
    nb = nbformat.read(str(path), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    nb.cells = [code[0]] + [c for c in code[1:] if "check(" in c.source]
    for c in nb.cells:
        c.outputs, c.execution_count = [], None
    return nb


def _write(nb: nbformat.NotebookNode, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    nbformat.write(nb, str(path))
    return path


def _ids_in(cell) -> list:
    return re.findall(r"""check\("([\w.]+)\"""", cell.source)


def test_finished_notebook_passes_with_exit_0(tmp_path, capsys):
    path = _write(_exercise_cells(SOLUTION), tmp_path, "finished.ipynb")
    assert main([str(path), "--timeout", "300"]) == 0
    out = capsys.readouterr().out
    assert f"score: {len(IDS)}/{len(IDS)}" in out
    for ex_id in IDS:
        assert re.search(rf"^{re.escape(ex_id)}\s+passed\s", out, re.M), out


def test_partial_notebook_reports_each_exercise(tmp_path):
    learner = _exercise_cells(LEARNER)
    solved = _exercise_cells(SOLUTION)
    # solve exactly one exercise: take the solution's cell for the first one
    first = next(i for i, c in enumerate(learner.cells) if _ids_in(c))
    solved_id = _ids_in(learner.cells[first])[0]
    learner.cells[first] = solved.cells[first]
    # ... and get another one wrong: a learner answer that is off by one
    wrong = "lambda size, kernel=3: (size - 1) // (kernel - 1)"  # rounds down
    learner.cells.append(nbformat.v4.new_code_cell(f'check("{IDS[1]}", {wrong})'))
    path = _write(learner, tmp_path, "partial.ipynb")
    result = grade(path, timeout=300)
    assert result.run.outcome == "completed"
    status = {r["id"]: r for r in result.rows}
    assert status[solved_id]["status"] == "passed"
    assert status[IDS[1]]["status"] == "failed"
    assert "likely cause" in status[IDS[1]]["detail"]
    others = [i for i in IDS if i not in (solved_id, IDS[1])]
    assert all(status[i]["status"] == "not implemented" for i in others)
    assert (result.passed, result.total, result.ok) == (1, len(IDS), False)
    assert f"score: 1/{len(IDS)}" in result.table()


def test_crashing_notebook_reports_not_attempted(tmp_path):
    nb = _exercise_cells(SOLUTION)
    nb.cells.insert(2, nbformat.v4.new_code_cell("import os\nos._exit(1)  # the kernel dies"))
    path = _write(nb, tmp_path, "crash.ipynb")
    result = grade(path, timeout=300)
    assert result.run.outcome == "kernel died"
    ran = set(_ids_in(nb.cells[1]))
    for row in result.rows:
        expected = "passed" if row["id"] in ran else "not attempted"
        assert row["status"] == expected, row
    assert "kernel died" in result.table() and not result.ok


def test_hanging_notebook_is_stopped_at_the_time_limit(tmp_path):
    nb = _exercise_cells(SOLUTION)
    # no heavy imports before the hang, so the kernel surely reaches it within the limit
    nb.cells = [
        nbformat.v4.new_code_cell("started = True"),
        nbformat.v4.new_code_cell("import time\nwhile True:\n    time.sleep(0.1)"),
    ] + nb.cells
    path = _write(nb, tmp_path, "hang.ipynb")
    result = grade(path, timeout=15)
    assert result.run.outcome == "timed out"
    assert result.run.seconds < 45, "the time limit did not stop the run"
    assert result.run.cell == 2  # the hanging cell
    assert {r["status"] for r in result.rows} == {"not attempted"}
    assert "time limit of 15 s" in result.table()


def test_unreadable_or_unknown_notebooks_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    assert main([str(bad)]) == 2
    unknown = _write(nbformat.v4.new_notebook(), tmp_path, "99_nothing.ipynb")
    assert main([str(unknown)]) == 2
    assert main([str(tmp_path / "missing.ipynb")]) == 2
    assert "cannot tell which lesson" in capsys.readouterr().err
