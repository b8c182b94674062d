"""``gclab grade NOTEBOOK.ipynb [--timeout S]``: run a learner notebook and grade its exercises.

The notebook runs in a child process (``gclab/exercises/_grade_child.py``) that executes it
with nbclient in a fresh kernel, cells in order, errors allowed. Every
``check(...)`` the notebook runs appends its verdict to a log (``GCLAB_GRADE_LOG``); the parent
reads the log and prints one row per exercise of the notebook's lesson:

* ``passed`` / ``failed`` (with the reason) / ``not implemented`` -- the LAST check of it counts;
* ``not attempted`` -- no check of it ran: the notebook has no such check, or never got there
  because the kernel died or the time ran out (the report says which).

The whole run has a wall-clock limit (``--timeout``, default 600 s); on expiry the child and
its kernel are killed. Exit status: 0 when every exercise of the lesson passed, 1 when any
failed, was not implemented or was not attempted, 2 when the notebook cannot be read or its
lesson is unknown.

Example::

    $ gclab grade notebooks/00_receptive_fields.ipynb
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence

__all__ = ["Grade", "RunReport", "grade", "main", "read_log", "run_notebook"]

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
            str(Path(__file__).with_name("_grade_child.py")),  # by path: no torch import
            str(path),
            str(status),
            str(executed) if keep_notebook else "",
            str(timeout),
        ]
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: the kernel dies with it
        )
        try:
            _, err = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            _, err = proc.communicate()
            timed_out = True
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


# --------------------------------------------------------------------------------------------
@dataclass
class Grade:
    """The graded result of one notebook: ``rows`` (id, title, status, detail), ``score``."""

    notebook: str
    lesson: str
    run: RunReport
    rows: List[Dict[str, str]]

    @property
    def passed(self) -> int:
        return sum(r["status"] == "passed" for r in self.rows)

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.passed == self.total

    def table(self) -> str:
        lines = [f"gclab grade: {self.notebook} (lesson {self.lesson})", self._run_line(), ""]
        w_id = max([len("exercise")] + [len(r["id"]) for r in self.rows])
        w_st = max(len("not implemented"), len("result"))
        lines.append(f"{'exercise':<{w_id}}  {'result':<{w_st}}  details")
        lines.append(f"{'-' * w_id}  {'-' * w_st}  {'-' * 40}")
        for r in self.rows:
            lines.append(f"{r['id']:<{w_id}}  {r['status']:<{w_st}}  {r['detail']}")
        lines.append("")
        lines.append(
            f"score: {self.passed}/{self.total} exercises passed their public checks"
            + ("" if self.ok else " (exit status 1: some failed, not implemented or not attempted)")
        )
        return "\n".join(lines)

    def _run_line(self) -> str:
        run = self.run
        where = f" at cell {run.cell}" if run.cell else ""
        if run.outcome == "completed":
            return f"the notebook ran to the end in {run.seconds:.1f} s"
        if run.outcome == "kernel died":
            return (
                f"the kernel died{where} after {run.seconds:.1f} s; exercises after that point "
                "are not attempted"
            )
        if run.outcome == "timed out":
            return (
                f"the notebook was stopped{where}: {run.detail}; exercises after that point are "
                "not attempted"
            )
        return f"the notebook could not be executed: {run.detail}"


def _lesson_of(path: Path) -> str | None:
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    lesson = nb.metadata.get("gclab", {}).get("lesson")
    return lesson or path.stem


def grade(path: Path, timeout: float = DEFAULT_TIMEOUT) -> Grade:
    """Execute the learner notebook at ``path`` and grade its lesson's exercises."""
    from gclab.exercises import catalog

    path = Path(path)
    lesson = _lesson_of(path)
    exercises = catalog(notebook=lesson)
    if not exercises:
        raise ValueError(
            f"{path}: lesson {lesson!r} has no exercises in gclab.exercises.catalog() "
            "(is this a gclab learner notebook?)"
        )
    run = run_notebook(path, timeout=timeout)
    last: Dict[str, dict] = {}
    for record in run.records:
        last[record.get("id")] = record
    stopped = {
        "kernel died": "not attempted: the kernel died before its check ran",
        "timed out": "not attempted: the time ran out before its check ran",
        "error": "not attempted: the notebook could not be executed",
    }.get(run.outcome, "not attempted: no check of it ran (is its check cell there?)")
    rows = []
    for entry in exercises:
        record = last.get(entry.id)
        if record is None:
            rows.append(
                {
                    "id": entry.id,
                    "title": entry.title,
                    "status": "not attempted",
                    "detail": stopped.split(": ", 1)[1],
                }
            )
            continue
        detail = record.get("message", "")
        if record.get("diagnosis"):
            detail += f" -- likely cause: {record['diagnosis']}"
        rows.append(
            {"id": entry.id, "title": entry.title, "status": record["status"], "detail": detail}
        )
    return Grade(str(path), lesson, run, rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gclab grade``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="gclab grade",
        description="run a learner notebook in a fresh kernel and grade its exercises "
        "(exit 0: all passed; 1: something failed, was not implemented or not attempted; "
        "2: unreadable notebook)",
    )
    parser.add_argument("notebook", type=Path, help="the learner notebook (.ipynb)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"wall-clock limit in seconds for the whole notebook (default {DEFAULT_TIMEOUT:g})",
    )
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout must be > 0, got {args.timeout}")
    if not args.notebook.is_file():
        print(f"gclab grade: no such notebook: {args.notebook}", file=sys.stderr)
        return 2
    try:
        result = grade(args.notebook, timeout=args.timeout)
    except Exception as exc:  # noqa: BLE001 - unreadable notebook or unknown lesson
        print(f"gclab grade: {exc}", file=sys.stderr)
        return 2
    print(result.table())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
