"""Lessons read well: short code cells, a Run-All note, derivations folded after their check.

* No code cell of a learner copy (what the learner sees, stubs included) is longer than
  ``MAX_LINES`` lines: figures and bookkeeping live in ``gclab.course.figures`` and
  ``gclab.course.diagrams``, called in one line.
* Every lesson says at the top how far Run All goes in a learner copy.
* ``<details>`` blocks are folded in the learner copy and open in the solution copy.
"""

from __future__ import annotations

import pytest

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
