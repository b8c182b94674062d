"""Lessons read well: short code cells, a Run-All note, derivations folded after their check.

* No code cell of a learner copy (what the learner sees, stubs included) is longer than
  ``MAX_LINES`` lines: figures and bookkeeping live in ``gclab.course.figures`` and
  ``gclab.course.diagrams``, called in one line.
* Every lesson says at the top how far Run All goes in a learner copy.
* ``<details>`` blocks are folded in the learner copy and open in the solution copy.
* The lessons' exercise modules define a helper once (``gclab/exercises/lessons/common.py``
  holds what several share), import only public names, and keep functions short.
"""

from __future__ import annotations

import ast
from collections import defaultdict

import pytest

from gclab import paths
from gclab.course import copies as course

MAX_LINES = 15
# lessons whose cells are not held to MAX_LINES; none today
EXEMPT: set = set()
LESSONS = [lesson for lesson in course.lessons() if lesson.name not in EXEMPT]


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda lesson: lesson.name)
def test_no_code_cell_is_longer_than_fifteen_lines(lesson):
    nb = course.learner_notebook(lesson.source.read_text(encoding="utf-8"), lesson.name)
    long = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            n = len(cell.source.rstrip("\n").split("\n"))
            if n > MAX_LINES:
                long.append(f"cell {i} ({n} lines): {cell.source.splitlines()[0][:60]!r}")
    assert not long, f"{lesson.name}: move these into a gclab helper:\n  " + "\n  ".join(long)


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda lesson: lesson.name)
def test_the_lesson_says_how_far_run_all_goes(lesson):
    nb = course.read_source(lesson.source.read_text(encoding="utf-8"))
    intro = next(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "Run All" in intro and "NotImplementedError" in intro


@pytest.mark.parametrize("lesson", course.lessons(), ids=lambda lesson: lesson.name)
def test_worked_derivations_are_folded_for_the_learner_and_open_in_the_solution(lesson):
    text = lesson.source.read_text(encoding="utf-8")
    learner = course.learner_notebook(text, lesson.name)
    solution = course.solution_notebook(text, lesson.name)
    md_l = "\n".join(c.source for c in learner.cells if c.cell_type == "markdown")
    md_s = "\n".join(c.source for c in solution.cells if c.cell_type == "markdown")
    assert "<details open>" not in md_l
    assert md_s.count("<details open>") == md_l.count("<details>")


def test_the_derivation_lessons_have_worked_derivations():
    for number in ("00", "02", "04", "05", "06", "08"):
        lesson = next(x for x in course.lessons() if x.name.startswith(number))
        assert "<details><summary>Worked" in lesson.source.read_text(encoding="utf-8"), number


def test_use_or_fallback_uses_gclab_only_while_the_stub_raises(capsys):
    from gclab.exercises.fallback import use_or_fallback

    def stub(x):
        raise NotImplementedError("exercise x.y: your code here")

    f = use_or_fallback(stub, lambda x: 2 * x, "double")
    assert f(3) == 6 and f(4) == 8
    assert capsys.readouterr().out.count("(your double is not done yet: using gclab's)") == 1
    assert use_or_fallback(lambda x: x + 1, lambda x: 2 * x, "inc")(3) == 4
    with pytest.raises(ZeroDivisionError):  # a real bug in the learner's code stays visible
        use_or_fallback(lambda x: x / 0, lambda x: x, "div")(1)


LESSON_MODULES = sorted((paths.PACKAGE / "exercises" / "lessons").glob("*.py"))
MAX_FUNCTION_LINES = 80


def _functions(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n for n in tree.body if isinstance(n, ast.FunctionDef)]


def _body_key(fn: ast.FunctionDef) -> str:
    """The function's argument names and body (docstring, annotations and name left out)."""
    body = fn.body[1:] if (isinstance(fn.body[0], ast.Expr)
                           and isinstance(fn.body[0].value, ast.Constant)) else fn.body
    names = [a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs]
    return repr(names) + "".join(ast.dump(b) for b in body)


def test_a_helper_is_defined_in_one_lesson_module():
    where = defaultdict(list)
    for path in LESSON_MODULES:
        for fn in _functions(path):
            where[_body_key(fn)].append(f"{path.name}:{fn.name}")
    copies = [names for names in where.values() if len({n.split(":")[0] for n in names}) > 1]
    assert not copies, f"the same function in several lesson modules (use common.py): {copies}"


def test_lesson_modules_import_only_public_names():
    private = []
    for path in LESSON_MODULES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gclab"):
                private += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                            if a.name.startswith("_") or (a.asname or "").startswith("_")]
    assert not private, f"private names imported: {private}"


def test_lesson_module_functions_are_short():
    long = [f"{path.name}:{n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for path in LESSON_MODULES
            for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(n, ast.FunctionDef) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
