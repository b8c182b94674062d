"""The two copies of a lesson: what ``gclab notebooks`` makes from one source.

One source per lesson, ``notebooks/src/NN_slug.py`` (jupytext ``py:percent``), gives

* ``notebooks/NN_slug.ipynb`` -- the learner copy: every solution region becomes a stub
  (:func:`gclab.course.solutions.stub_regions`); no outputs;
* ``notebooks/solutions/NN_slug.ipynb`` -- the solution copy: markers removed, code kept,
  ``<details>`` blocks (worked derivations) open; executed by ``gclab notebooks --execute``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Sequence

from gclab import paths
from gclab.course.execute import KERNELSPEC
from gclab.course.solutions import strip_markers, stub_regions

__all__ = [
    "Lesson",
    "dumps",
    "learner_notebook",
    "lessons",
    "nbformat",
    "new_cell",
    "notebook_for",
    "open_details",
    "read_notebook",
    "read_source",
    "selected",
    "solution_notebook",
    "write",
]


class _LazyNbformat:
    """``nbformat``, imported on first use, so that ``gclab notebooks --help`` works on a bare
    install (a missing package gives one line naming the extra that brings it)."""

    def __getattr__(self, name: str):
        from gclab._extras import require

        return getattr(require("nbformat", extra="course", why="gclab notebooks"), name)


nbformat = _LazyNbformat()

_SOURCE_NAME = re.compile(r"^\d\d_[\w-]+\.py$")


class Lesson:
    """One lesson: its source and the paths of its two copies, under ``root``."""

    def __init__(self, source: Path, root: Path = paths.ROOT) -> None:
        self.source = Path(source)
        self.name = self.source.stem  # e.g. "00_receptive_fields"
        self.learner = root / "notebooks" / f"{self.name}.ipynb"
        self.solution = root / "notebooks" / "solutions" / f"{self.name}.ipynb"

    def __repr__(self) -> str:
        return f"Lesson({self.name!r})"


def lessons(root: Path = paths.ROOT) -> List[Lesson]:
    """Every lesson under ``root/notebooks/src`` (files ``NN_slug.py``), sorted."""
    src = Path(root) / "notebooks" / "src"
    if not src.is_dir():
        return []
    return [Lesson(p, Path(root)) for p in sorted(src.iterdir()) if _SOURCE_NAME.match(p.name)]


def selected(name: str, wanted: Sequence[str]) -> bool:
    """Whether lesson ``name`` is one of ``wanted`` (names, numbers such as 0 or 00, or name
    prefixes)."""
    return any(
        name == w or name[:2] == w.zfill(2) or (len(w) > 2 and name.startswith(w)) for w in wanted
    )


def write(path: Path, text: str, written: List[Path]) -> None:
    """Write ``text`` to ``path`` when it differs (appending ``path`` to ``written``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
        written.append(path)


def read_source(text: str):
    """Parse a jupytext ``py:percent`` lesson into a notebook (cells and their tags)."""
    import jupytext

    return jupytext.reads(text, fmt="py:percent")


def notebook_for(lesson: str, role: str):
    """An empty notebook with the metadata every copy of ``lesson`` carries (``role``:
    learner, solution, nbgrader-source)."""
    out = nbformat.v4.new_notebook()
    out.metadata = nbformat.from_dict(
        {
            "kernelspec": dict(KERNELSPEC),
            "language_info": {"name": "python"},
            "gclab": {
                "lesson": lesson,
                "copy": role,
                "source": f"notebooks/src/{lesson}.py",
                "generated_by": "python -m gclab notebooks (do not edit; edit the source)",
            },
        }
    )
    return out


def new_cell(cell, source: str, index: int):
    """A copy of ``cell`` with ``source``, the metadata a copy keeps and the id ``cNNN``."""
    meta = {k: v for k, v in cell.metadata.items() if k in ("tags", "jupyter", "editable")}
    if cell.cell_type == "code":
        new = nbformat.v4.new_code_cell(source=source, metadata=meta)
    elif cell.cell_type == "markdown":
        new = nbformat.v4.new_markdown_cell(source=source, metadata=meta)
    else:
        new = nbformat.v4.new_raw_cell(source=source, metadata=meta)
    new.id = f"c{index:03d}"
    return new


def learner_notebook(text: str, lesson: str):
    """The learner copy of a lesson source (stubs instead of solutions, no outputs)."""
    nb = read_source(text)
    codes = [c.source for c in nb.cells if c.cell_type == "code"]
    out = notebook_for(lesson, "learner")
    k = 0
    for i, cell in enumerate(nb.cells):
        source = cell.source
        if cell.cell_type == "code":
            source = stub_regions(codes, k, where=f"{lesson} code cell {k + 1}")
            k += 1
        out.cells.append(new_cell(cell, source, i))
    return out


def solution_notebook(text: str, lesson: str):
    """The solution copy of a lesson source (markers removed, not executed)."""
    nb = read_source(text)
    out = notebook_for(lesson, "solution")
    for i, cell in enumerate(nb.cells):
        source = cell.source
        if cell.cell_type == "code":
            source = strip_markers(source, where=f"{lesson} cell {i + 1}")
        elif cell.cell_type == "markdown":
            source = open_details(source)
        out.cells.append(new_cell(cell, source, i))
    return out


def open_details(markdown: str) -> str:
    """The markdown with every collapsed ``<details>`` block opened (``<details open>``): the
    solution copy shows the worked derivations that the learner copy keeps folded."""
    return re.sub(r"<details>", "<details open>", markdown)


def dumps(nb) -> str:
    """Stable JSON (nbformat's: indent 1, sorted keys) with a final newline."""
    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def read_notebook(path: Path):
    """The notebook at ``path`` (nbformat 4), or None when there is none."""
    if not path.exists():
        return None
    return nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
