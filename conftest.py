"""Root pytest configuration: the runtime budget of the course notebooks.

``pytest --nbval-lax notebooks/solutions`` runs every solution notebook cell by cell. This
plugin adds up the time of every nbval item (set-up, including the kernel start, call and
tear-down) per notebook, prints a table at the end of the session and fails the session when a
notebook takes more than ``NOTEBOOK_BUDGET_S`` or the course more than ``COURSE_BUDGET_S``.

Under pytest-xdist the reports of every worker reach the controller through
``pytest_runtest_logreport``, so the table and the verdict are computed there, over all workers
(run with ``--dist loadfile`` so a notebook's cells stay on one worker, in order).

It also runs every process single-threaded (``OMP_NUM_THREADS=1`` unless already set): CI has
two cores for two xdist workers, and torch's thread pool in each kernel otherwise spins against
the other worker (measured: lesson 0's ERF cell 17 s with 2 threads vs 1.3 s with 1, under load).
"""

from __future__ import annotations

import os
from collections import defaultdict

import pytest

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# the budget; the environment variables exist for the test of this plugin
NOTEBOOK_BUDGET_S = float(os.environ.get("GCLAB_NOTEBOOK_BUDGET_S", 90))
COURSE_BUDGET_S = float(os.environ.get("GCLAB_COURSE_BUDGET_S", 600))

pytest_plugins = ["pytester"]  # tests/test_notebooks.py runs this plugin on a tiny notebook

_durations: dict = defaultdict(float)


def _notebook_of(nodeid: str):
    path = nodeid.split("::", 1)[0]
    return path if path.endswith(".ipynb") and "::" in nodeid else None


def pytest_runtest_logreport(report):
    notebook = _notebook_of(report.nodeid)
    if notebook is not None:
        _durations[notebook] += report.duration


def _over_budget():
    slow = {nb: s for nb, s in _durations.items() if s > NOTEBOOK_BUDGET_S}
    total = sum(_durations.values())
    return slow, total, total > COURSE_BUDGET_S


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput") or not _durations:
        return  # an xdist worker: the controller judges the whole run
    slow, _, total_over = _over_budget()
    if (slow or total_over) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if hasattr(config, "workerinput") or not _durations:
        return
    tr = terminalreporter
    tr.section(
        f"gclab notebook durations (budget: {NOTEBOOK_BUDGET_S:g} s each, "
        f"{COURSE_BUDGET_S:g} s in all)"
    )
    for notebook, seconds in sorted(_durations.items()):
        flag = "  OVER BUDGET" if seconds > NOTEBOOK_BUDGET_S else ""
        tr.write_line(f"{seconds:7.1f} s  {notebook}{flag}")
    slow, total, total_over = _over_budget()
    tr.write_line(
        f"{total:7.1f} s  total over {len(_durations)} notebook(s)"
        + ("  OVER BUDGET" if total_over else "")
    )
    if slow or total_over:
        tr.write_line(
            "FAILED: the notebook runtime budget is exceeded "
            f"({', '.join(sorted(slow)) or 'total'}); make the slow cells cheaper",
            red=True,
            bold=True,
        )
