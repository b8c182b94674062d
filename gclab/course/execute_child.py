"""Child process of :func:`gclab.course.execute.run_notebook`: execute one notebook, report
how it ended (for the course's own notebooks in CI; grading uses the sandbox).

Run by path (``python execute_child.py NOTEBOOK STATUS EXECUTED TIMEOUT``), so it imports only
nbformat/nbclient, not gclab (and torch). Writes ``STATUS`` (JSON: outcome, detail, cell) as it
goes, so the parent knows which cell was running if it has to kill this process; writes the
executed notebook to ``EXECUTED`` unless that is an empty string.
"""

import json
import sys
from pathlib import Path


def main(path: str, status: str, executed: str, timeout: str) -> int:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nb_path = Path(path)
    nb = nbformat.read(str(nb_path), as_version=4)
    state = {"cell": None}

    def write(**info):
        Path(status).write_text(json.dumps({"cell": state["cell"], **info}))

    def progress(cell=None, cell_index=0, **_):
        state["cell"] = cell_index + 1
        write()

    client = NotebookClient(
        nb,
        timeout=int(float(timeout)) + 1,
        kernel_name="python3",
        allow_errors=True,
        record_timing=False,
        resources={"metadata": {"path": str(nb_path.parent)}},
        on_cell_execute=progress,
    )
    try:
        client.execute()
        write(outcome="completed", detail="")
    except DeadKernelError as exc:
        write(outcome="kernel died", detail=(str(exc).splitlines() or ["the kernel died"])[0])
    except CellTimeoutError:
        write(outcome="timed out", detail=f"a cell ran longer than {timeout} s")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        write(outcome="error", detail=f"{type(exc).__name__}: {exc}")
    if executed:
        nbformat.write(nb, executed)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
