"""Helpers for the ``gclab grade`` tests: small notebooks built from the committed copies."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable, List

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "notebooks" / "solutions"
LEARNERS = ROOT / "notebooks"


def code_cells(path: Path) -> List[str]:
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in nb["cells"] if c["cell_type"] == "code"]


def exercise_cells(path: Path) -> List[str]:
    """The first code cell (imports) and every cell that calls check(...)."""
    cells = code_cells(path)
    return [cells[0]] + [c for c in cells[1:] if "check(" in c]


def write_notebook(path: Path, cells: Iterable[str], lesson: str | None = None) -> Path:
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    if lesson:
        meta["gclab"] = {"lesson": lesson}
    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": meta,
        "cells": [
            {"cell_type": "code", "id": f"c{i:03d}", "metadata": {}, "source": src,
             "outputs": [], "execution_count": None}
            for i, src in enumerate(cells)
        ],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path


def ids_in(source: str) -> List[str]:
    return re.findall(r"""check\("([\w.]+)\"""", source)


def processes_with(marker: str) -> List[str]:
    """Processes whose command line or name contains ``marker`` (Linux /proc)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/comm", "rb") as fh:
                comm = fh.read().decode(errors="replace")
            with open(f"/proc/{pid}/stat", "rb") as fh:
                state = fh.read().decode(errors="replace").rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (marker in cmd or marker in comm):
            found.append(f"{pid}: {cmd.strip() or comm.strip()}")
    return found
