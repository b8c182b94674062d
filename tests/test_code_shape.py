"""The package's shape, as docs/architecture.md promises it: a module past ~500 lines holds two
ideas (lesson content modules excepted: each is one lesson's exercises), a function past ~80
lines holds several steps, and the code (tests and scripts too) says what it does now, never
which issue asked for it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import List

from gclab import paths

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
LESSONS = paths.PACKAGE / "exercises" / "lessons"
HISTORY = re.compile(r"\bissues? #?\d+\b|\(issue\b|\bunder (?:their|its) old names?\b"
                     r"|\bas before\b", re.I)


def _modules() -> List[Path]:
    return [p for p in sorted(paths.PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts]


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> List[str]:
    return [f"{n.name}: {n.end_lineno - n.lineno + 1} lines"
            for n in ast.walk(ast.parse(source))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > limit]


def history_lines(source: str) -> List[str]:
    return [f"{i}: {line.strip()}" for i, line in enumerate(source.splitlines(), 1)
            if HISTORY.search(line)]


def test_the_checks_see_a_long_function_and_history():
    body = "\n".join(f"    x{i} = {i}" for i in range(81))
    assert long_functions(f"def f():\n{body}\n") == ["f: 82 lines"]
    assert long_functions("def f():\n    return 1\n") == []
    assert history_lines('"""Added for issue 12."""\nx = 1  # as before\ny = 2\n') == [
        '1: """Added for issue 12."""', "2: x = 1  # as before"]


def test_no_module_holds_two_ideas():
    too_long = [f"{p.relative_to(paths.ROOT)}: {p.read_text().count(chr(10))} lines"
                for p in _modules()
                if LESSONS not in p.parents and p.read_text().count("\n") > MAX_MODULE_LINES]
    assert not too_long, too_long


def test_no_function_over_80_lines():
    found = [f"{p.relative_to(paths.ROOT)}:{f}" for p in _modules()
             for f in long_functions(p.read_text(encoding="utf-8"))]
    assert not found, found


def test_the_code_tells_no_history():
    """gclab, its tests and scripts (this file's own examples left out)."""
    files = _modules() + sorted((paths.ROOT / "tests").rglob("*.py")) + sorted(
        (paths.ROOT / "scripts").rglob("*.py"))
    found = [f"{p.relative_to(paths.ROOT)}:{line}" for p in files
             if p.resolve() != Path(__file__).resolve() and "__pycache__" not in p.parts
             for line in history_lines(p.read_text(encoding="utf-8"))]
    assert not found, found
