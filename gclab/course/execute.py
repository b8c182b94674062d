"""Execute a notebook in a fresh kernel and collect the verdicts its ``check`` calls log.

For the course's OWN notebooks (CI: ``tests/test_notebooks.py`` runs every learner copy and
reads the ``GCLAB_GRADE_LOG`` records its stubs' checks write). It trusts what the notebook
writes, so it is not a grader: ``gclab grade`` runs submissions in a sandbox and computes the
verdicts itself (:mod:`gclab.grading.trusted`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

__all__ = ["RunReport", "read_log", "run_notebook"]

DEFAULT_TIMEOUT = 600.0


@dataclass
class RunReport:
    """How the execution of a notebook ended.

    ``outcome``: "completed" (every cell ran; some may have raised), "kernel died",
    "timed out", or "error" (the notebook could not be executed at all); ``cell``: the 1-based
    index of the cell that was running when it stopped (or None); ``seconds``: wall time;
    ``records``: the check verdicts logged, in order; ``notebook``: the executed notebook
    (when the run completed or the child could save it), else None.
    """

    outcome: str
    detail: str = ""
    cell: int | None = None
    seconds: float = 0.0
    records: List[dict] = field(default_factory=list)
    notebook: object | None = None


def read_log(path: Path) -> List[dict]:
    """The JSON-lines verdicts in ``path`` (a partly written last line is skipped)."""
    records = []
    if not Path(path).exists():
        return records
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def run_notebook(
    path: Path, timeout: float = DEFAULT_TIMEOUT, keep_notebook: bool = False
) -> RunReport:
    """Execute the notebook at ``path`` in a child process with a wall-clock limit.

    The kernel runs in the notebook's folder with ``GCLAB_GRADE_LOG`` set; the child and its
    kernel form one process group, killed as a whole on time-out.
    """
    path = Path(path).resolve()
    with tempfile.TemporaryDirectory(prefix="gclab-grade-") as tmp:
        log = Path(tmp) / "checks.jsonl"
        status = Path(tmp) / "status.json"
        executed = Path(tmp) / "executed.ipynb"
        env = dict(os.environ)
        env["GCLAB_GRADE_LOG"] = str(log)
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("MKL_NUM_THREADS", "1")
        cmd = [
            sys.executable,
            str(Path(__file__).with_name("execute_child.py")),  # by path: no torch import
            str(path),
            str(status),
            str(executed) if keep_notebook else "",
            str(timeout),
        ]
        start = time.monotonic()
        errors = open(Path(tmp) / "stderr.txt", "w+b")  # a file: no pipe a kernel can hold
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,  # its own process group: the kernel dies with it
        )
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
            timed_out = True
        errors.seek(0)
        err = errors.read()
        errors.close()
        seconds = time.monotonic() - start
        records = read_log(log)
        info = json.loads(status.read_text()) if status.exists() else {}
        nb = None
        if keep_notebook and executed.exists():
            import nbformat

            nb = nbformat.read(str(executed), as_version=4)
    if timed_out:
        cell = info.get("cell")
        return RunReport(
            "timed out",
            f"stopped after the time limit of {timeout:g} s",
            cell,
            seconds,
            records,
            nb,
        )
    if not info:
        tail = (err or b"").decode(errors="replace").strip().splitlines()[-3:]
        return RunReport(
            "error", " ".join(tail) or f"exit status {proc.returncode}", None, seconds, records, nb
        )
    return RunReport(
        info.get("outcome", "error"),
        info.get("detail", "the runner stopped unexpectedly"),
        info.get("cell"),
        seconds,
        records,
        nb,
    )


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
