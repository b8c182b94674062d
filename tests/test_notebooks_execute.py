"""The one notebook executor (gclab.course.execute): both of its callers start the same kernel
set-up, the in-process run stores machine-independent metadata and stops on an undesigned error,
and the child-process run returns the logged verdicts, the running cell on a time-out, and what
ended a run."""

from __future__ import annotations

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

from gclab.course.execute import KERNELSPEC, execute_notebook, run_notebook

ENV_CELL = "import os\nprint(os.environ.get('OMP_NUM_THREADS'), os.path.basename(os.getcwd()))"
LOG_CELL = (
    "import json, os\n"
    "with open(os.environ['GCLAB_GRADE_LOG'], 'a') as f:\n"
    "    f.write(json.dumps({'id': 'x.one', 'status': 'passed'}) + '\\n')"
)


def _notebook(*sources: str, tags=None):
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = dict(KERNELSPEC)
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    for i, t in (tags or {}).items():
        nb.cells[i].metadata["tags"] = t
    return nb


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.mark.slow
def test_in_process_run_stores_outputs_with_fixed_metadata(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    (tmp_path / "here").mkdir()
    nb = _notebook(ENV_CELL, "raise ValueError('designed')", tags={1: ["raises-exception"]})
    execute_notebook(nb, tmp_path / "here", timeout=60)
    assert _stdout(nb.cells[0]) == "1 here\n"  # one thread, the notebook's folder
    assert nb.cells[1].outputs[0].ename == "ValueError"
    assert nb.metadata.language_info == {"name": "python"}  # no interpreter version
    assert nb.metadata.kernelspec == KERNELSPEC
    assert all("execution" not in c.metadata for c in nb.cells)  # no timings
    with pytest.raises(CellExecutionError, match="undesigned"):
        execute_notebook(_notebook("raise ValueError('undesigned')"), tmp_path, timeout=60)


@pytest.mark.slow
def test_child_run_collects_the_logged_verdicts(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    path = tmp_path / "nb.ipynb"
    nbformat.write(_notebook(ENV_CELL, "1 / 0", LOG_CELL), str(path))
    report = run_notebook(path, timeout=120, keep_notebook=True)
    assert report.outcome == "completed", report.detail
    assert report.records == [{"id": "x.one", "status": "passed"}]
    assert _stdout(report.notebook.cells[0]) == f"1 {tmp_path.name}\n"
    assert report.notebook.cells[1].outputs[0].ename == "ZeroDivisionError"  # every cell may raise
    assert report.notebook.metadata.language_info == {"name": "python"}
    assert nbformat.read(str(path), 4).cells[0].outputs == []  # the file is left as it was


@pytest.mark.slow
def test_child_run_stops_at_the_time_limit_and_names_the_cell(tmp_path):
    path = tmp_path / "nb.ipynb"
    nbformat.write(_notebook("x = 1", "import time\ntime.sleep(600)", "y = 2"), str(path))
    report = run_notebook(path, timeout=20)
    assert report.outcome == "timed out"
    assert report.cell == 2
    assert report.seconds < 60
    assert report.notebook is None


def test_child_run_reports_a_notebook_it_cannot_read(tmp_path):
    path = tmp_path / "broken.ipynb"
    path.write_text("{not json")
    report = run_notebook(path, timeout=60)
    assert report.outcome == "error"
    assert report.records == []


def test_a_kernel_that_dies_before_it_answers_is_started_again_and_nothing_else_is():
    from gclab.course.execute import KERNEL_START_RACE, execute_client

    class Client:
        def __init__(self, errors):
            self.errors = errors

        def execute(self):
            if self.errors:
                raise self.errors.pop(0)
            return "ran"

    started = []

    def make(errors):
        def factory():
            started.append(1)
            return Client(errors)
        return factory

    race = [RuntimeError(KERNEL_START_RACE), RuntimeError(KERNEL_START_RACE)]
    assert execute_client(make(race)) == "ran" and len(started) == 3
    started.clear()
    with pytest.raises(RuntimeError, match="kernel_info"):  # three times: the error stands
        execute_client(make([RuntimeError(KERNEL_START_RACE)] * 3))
    assert len(started) == 3
    started.clear()
    with pytest.raises(RuntimeError, match="something else"):
        execute_client(make([RuntimeError("something else")]))
    assert len(started) == 1
