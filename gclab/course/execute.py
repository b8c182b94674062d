"""Executing the course's own notebooks: the one place that starts their kernels.

Two callers, one kernel set-up (:func:`notebook_client`: kernel ``python3``, the notebook's
folder as working directory, one thread per kernel, a per-cell timeout, a progress hook):

* :func:`execute_notebook` runs a notebook in this process and stores its outputs with fixed
  metadata, so an executed copy is the same on every machine (``gclab notebooks --execute``);
  an error outside a ``raises-exception`` cell stops it with nbclient's ``CellExecutionError``.
* :func:`run_notebook` runs a notebook file in a child process (``python -m
  gclab.course.execute``) under a wall-clock limit, lets every cell raise, and returns how the
  run ended with the verdicts that the notebook's ``check`` calls logged to
  ``GCLAB_GRADE_LOG`` (``tests/test_notebooks.py`` runs every learner copy so). It trusts what
  the notebook writes, so it is not a grader: ``gclab grade`` runs submissions in a sandbox and
  computes the verdicts itself (:mod:`gclab.grading.trusted`).
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
from typing import Callable, List, MutableMapping

from gclab import paths

__all__ = [
    "DEFAULT_TIMEOUT",
    "KERNELSPEC",
    "KERNEL_START_RACE",
    "RunReport",
    "execute_client",
    "execute_notebook",
    "notebook_client",
    "read_log",
    "run_notebook",
    "single_threaded",
]

DEFAULT_TIMEOUT = 600.0
#: the kernel every copy names and runs on
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def single_threaded(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """``env`` with one thread per kernel unless set: on a small shared CPU, torch's thread
    pool otherwise spins against other processes (10x slower under load)."""
    for var in _THREAD_VARS:
        env.setdefault(var, "1")
    return env


def notebook_client(
    nb, cwd: Path, timeout: float, allow_errors: bool = False,
    on_cell: Callable[..., object] | None = None,
):
    """An nbclient ``NotebookClient`` for ``nb``: kernel python3 in ``cwd``, ``timeout``
    seconds a cell, no timing metadata; ``on_cell(cell=, cell_index=)`` before each cell."""
    from nbclient import NotebookClient

    single_threaded(os.environ)  # the kernel inherits this process's environment
    return NotebookClient(
        nb,
        timeout=int(timeout),
        kernel_name=KERNELSPEC["name"],
        allow_errors=allow_errors,
        record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
        on_cell_execute=on_cell,
    )


#: what jupyter_client raises when a kernel exits before it answers: the usual cause is two
#: kernels started at once that picked the same free TCP port (one of them loses the bind)
KERNEL_START_RACE = "Kernel died before replying to kernel_info"


def execute_client(make_client: Callable[[], object], attempts: int = 3):
    """``make_client().execute()``, with a fresh client and kernel when the kernel died before
    it answered (:data:`KERNEL_START_RACE`: no cell has run then); any other error, or the
    same one ``attempts`` times, is raised."""
    for attempt in range(attempts):
        try:
            return make_client().execute()
        except RuntimeError as exc:
            if KERNEL_START_RACE not in str(exc) or attempt == attempts - 1:
                raise


def _fixed_metadata(nb):
    """``nb`` without what changes from machine to machine (interpreter version, timings)."""
    nb.metadata.language_info = {"name": "python"}
    nb.metadata.kernelspec = dict(KERNELSPEC)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    return nb


def execute_notebook(nb, cwd: Path, timeout: float = DEFAULT_TIMEOUT, on_cell=None):
    """Run every cell of ``nb`` in this process (see :func:`notebook_client`), storing its
    outputs; returns it. Cells tagged ``raises-exception`` may raise; any other error stops
    with nbclient's ``CellExecutionError``."""
    execute_client(lambda: notebook_client(nb, cwd, timeout, on_cell=on_cell))
    return _fixed_metadata(nb)


# --------------------------------------------------------------------------------------------
# A run in a child process, with the verdicts its checks log
# --------------------------------------------------------------------------------------------
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


def _child_env(log: Path) -> dict:
    """The child's environment: this one, the log's path, one thread, and this gclab first on
    the path (the child and its kernel import the gclab that started them)."""
    env = single_threaded(dict(os.environ))
    env["GCLAB_GRADE_LOG"] = str(log)
    parent = str(paths.PACKAGE.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (parent, env.get("PYTHONPATH")) if p)
    return env


def _wait(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait for ``proc``; on time-out kill its process group. True when it timed out."""
    try:
        proc.wait(timeout=timeout)
        return False
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait()
        return True


def run_notebook(
    path: Path, timeout: float = DEFAULT_TIMEOUT, keep_notebook: bool = False
) -> RunReport:
    """Execute the notebook at ``path`` in a child process with a wall-clock limit.

    The kernel runs in the notebook's folder with ``GCLAB_GRADE_LOG`` set; the child and its
    kernel form one process group, killed as a whole on time-out.
    """
    path = Path(path).resolve()
    with tempfile.TemporaryDirectory(prefix="gclab-run-") as tmp:
        log, status = Path(tmp) / "checks.jsonl", Path(tmp) / "status.json"
        executed = Path(tmp) / "executed.ipynb"
        cmd = [sys.executable, "-m", __name__, str(path), str(status),
               str(executed) if keep_notebook else "", str(timeout)]
        start = time.monotonic()
        with open(Path(tmp) / "stderr.txt", "w+b") as errors:  # a file: no pipe a kernel holds
            proc = subprocess.Popen(cmd, env=_child_env(log), stdout=subprocess.DEVNULL,
                                    stderr=errors, start_new_session=True)
            timed_out = _wait(proc, timeout)
            errors.seek(0)
            err = errors.read()
        seconds = time.monotonic() - start
        records = read_log(log)
        info = json.loads(status.read_text()) if status.exists() else {}
        nb = None
        if keep_notebook and executed.exists():
            import nbformat

            nb = nbformat.read(str(executed), as_version=4)
    if timed_out:
        detail = f"stopped after the time limit of {timeout:g} s"
        return RunReport("timed out", detail, info.get("cell"), seconds, records, nb)
    if not info:
        tail = (err or b"").decode(errors="replace").strip().splitlines()[-3:]
        detail = " ".join(tail) or f"exit status {proc.returncode}"
        return RunReport("error", detail, None, seconds, records, nb)
    return RunReport(info.get("outcome", "error"),
                     info.get("detail", "the runner stopped unexpectedly"),
                     info.get("cell"), seconds, records, nb)


def _child(path: str, status: str, executed: str, timeout: str) -> int:
    """The child of :func:`run_notebook`: execute one notebook, every cell allowed to raise.
    Writes ``status`` (JSON: outcome, detail, cell) as it goes, so the parent knows which cell
    was running if it has to kill this process; writes the executed notebook to ``executed``
    unless that is an empty string."""
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nb_path = Path(path)
    nb = nbformat.read(str(nb_path), as_version=4)
    state = {"cell": None}

    def write(**info):
        Path(status).write_text(json.dumps({"cell": state["cell"], **info}))

    def progress(cell=None, cell_index=0, **_):
        state["cell"] = cell_index + 1
        write()

    def client():
        return notebook_client(nb, nb_path.parent, float(timeout) + 1, allow_errors=True,
                               on_cell=progress)

    try:
        execute_client(client)
        write(outcome="completed", detail="")
    except DeadKernelError as exc:
        write(outcome="kernel died", detail=(str(exc).splitlines() or ["the kernel died"])[0])
    except CellTimeoutError:
        write(outcome="timed out", detail=f"a cell ran longer than {timeout} s")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        write(outcome="error", detail=f"{type(exc).__name__}: {exc}")
    if executed:
        nbformat.write(_fixed_metadata(nb), executed)
    return 0


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:5]))
