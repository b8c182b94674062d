"""The solution regions of a lesson source, and the exercises they answer.

A lesson source marks each answer between ``### BEGIN SOLUTION`` and ``### END SOLUTION``
(nbgrader's markers) and checks it with ``check("<id>", <name>)``. This module is the one
reader of both: the notebook builder (:mod:`gclab.course.copies`,
:mod:`gclab.course.nbgrader_export`) turns regions into stubs or strips their markers, and the
grader (:mod:`gclab.grading.reference_code`) reads the code of the regions and which name each
check names. It imports nothing but ``re``, so the grader pays nothing for it.

Which exercise a region belongs to: an ``# exercise <id>: <task>`` comment in the same cell
before the region; otherwise the nearest ``check("<id>", ...)`` call after the region (same
cell first, then the following cells), then before it.
"""

from __future__ import annotations

import re
from typing import Dict, List, Sequence, Tuple

__all__ = [
    "BEGIN",
    "END",
    "BuildError",
    "CHECK_CALL",
    "CHECK_LINE",
    "CHECK_NAME",
    "checked_ids",
    "checked_names",
    "exercise_for",
    "is_marker",
    "region_code",
    "regions",
    "strip_markers",
    "stub_regions",
]

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"

_ID = r"[A-Za-z_]\w*\.[\w.]+"
#: ``check("<id>", ...)`` anywhere in a text: group 1 is the id
CHECK_CALL = re.compile(rf"""\bcheck\(\s*["']({_ID})["']""")
#: ``check("<id>", name)`` with a plain name as the checked object: groups id, name
CHECK_NAME = re.compile(rf"""\bcheck\(\s*["']({_ID})["']\s*,\s*([A-Za-z_]\w*)\s*\)""")
#: a line that is only ``check("<id>", <expression>)``: groups id, expression
CHECK_LINE = re.compile(rf"""^check\(\s*["']({_ID})["']\s*,\s*(.+)\)\s*$""")
_EXERCISE_COMMENT = re.compile(rf"^\s*#\s*exercise\s+({_ID})\s*:?\s*(.*)$")


class BuildError(ValueError):
    """A lesson source that cannot be turned into copies (unbalanced markers, unknown id...)."""


def is_marker(line: str) -> bool:
    """True for a ``BEGIN``/``END`` marker line (any indentation)."""
    return line.strip().startswith((BEGIN, END))


def regions(lines: Sequence[str], where: str) -> List[Tuple[int, int]]:
    """(begin, end) line indices of every solution region in ``lines``; a nested, unclosed or
    unopened marker is a :class:`BuildError` naming ``where`` and the line."""
    found, start = [], None
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith(BEGIN):
            if start is not None:
                raise BuildError(f"{where}: nested {BEGIN} at line {i + 1}")
            start = i
        elif s.startswith(END):
            if start is None:
                raise BuildError(f"{where}: {END} without {BEGIN} at line {i + 1}")
            found.append((start, i))
            start = None
    if start is not None:
        raise BuildError(f"{where}: {BEGIN} at line {start + 1} has no {END}")
    return found


def region_code(source: str) -> List[str]:
    """The code inside every solution region of a whole lesson source, in order (empty when
    its markers do not pair up: such a source does not build either)."""
    lines = source.split("\n")
    try:
        spans = regions(lines, "lesson source")
    except BuildError:
        return []
    return ["\n".join(lines[begin + 1:end]) for begin, end in spans]


def checked_ids(text: str) -> List[str]:
    """Every exercise id that a ``check("<id>", ...)`` call in ``text`` names, in order."""
    return CHECK_CALL.findall(text)


def checked_names(text: str) -> Dict[str, str]:
    """exercise id -> the name that ``check(id, name)`` checks in ``text``."""
    return {m.group(1): m.group(2) for m in CHECK_NAME.finditer(text)}


def exercise_for(
    cells: Sequence[str], k: int, begin: int, end: int, where: str
) -> Tuple[str, str]:
    """(id, task) of the region ``begin..end`` of code cell ``k`` (see the module docstring);
    ``cells`` are the sources of all code cells of the lesson."""
    lines = cells[k].split("\n")
    for line in reversed(lines[:begin]):
        m = _EXERCISE_COMMENT.match(line)
        if m:
            return m.group(1), m.group(2).strip()
    after = ["\n".join(lines[end + 1:]), *cells[k + 1:]]
    for text in after:
        found = checked_ids(text)
        if found:
            return found[0], ""
    before = ["\n".join(lines[:begin]), *reversed(cells[:k])]
    for text in before:
        found = checked_ids(text)
        if found:
            return found[-1], ""
    raise BuildError(
        f"{where}: cannot tell which exercise the solution region at line {begin + 1} belongs "
        "to; add a comment '# exercise <id>: <task>' above it"
    )


def stub_regions(cells: Sequence[str], k: int, where: str = "cell") -> str:
    """Code cell ``k``'s source with every solution region replaced by a stub that raises
    ``NotImplementedError("exercise <id>: <task>")`` at the indentation of its ``BEGIN`` line.

    ``cells`` are the sources of all code cells (to find the nearest ``check`` call).
    """
    lines = cells[k].split("\n")
    spans = regions(lines, where)
    if not spans:
        return cells[k]
    out: List[str] = []
    last = 0
    for begin, end in spans:
        out.extend(lines[last:begin])
        indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
        ex_id, task = exercise_for(cells, k, begin, end, where)
        message = f"exercise {ex_id}: {task or 'your code here'}"
        out.append(f'{indent}# YOUR CODE HERE (stuck? hint("{ex_id}", level=1))')
        quoted = f'"{message}"' if '"' not in message and "\\" not in message else repr(message)
        out.append(f"{indent}raise NotImplementedError({quoted})")
        last = end + 1
    out.extend(lines[last:])
    return "\n".join(out)


def strip_markers(source: str, where: str = "cell") -> str:
    """The source with the marker lines removed (the solution copy); the markers are
    validated first."""
    lines = source.split("\n")
    regions(lines, where)
    return "\n".join(ln for ln in lines if not is_marker(ln))
