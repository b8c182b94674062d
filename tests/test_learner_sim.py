"""The learner simulation (issue 10): realistic wrong implementations of every lesson's
exercises, and correct alternatives, run through ``check``.

Asserts: no wrong implementation passes, no correct alternative is rejected, and the share of
wrong ones whose verdict names a cause (``CheckResult.diagnosis`` is set, from a registered
mistake or a generic detector of ``gclab.exercises.diagnose``) is at least 60 %. The measured
share is in docs/exercises.md ("Feedback that teaches").
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from learner_sim import RIGHT, WRONG, load  # tests/learner_sim (tests/ is on sys.path)

from gclab.exercises import catalog, check, get

load()
MIN_WRONG = 150
MIN_NAMED_SHARE = 0.60


def _run(impl):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return check(impl.exercise, impl.obj)


@pytest.fixture(scope="module")
def verdicts():
    return [(impl, _run(impl)) for impl in WRONG]


def test_the_simulation_covers_every_lesson_and_kind():
    assert len(WRONG) >= MIN_WRONG, f"{len(WRONG)} wrong implementations, want {MIN_WRONG}"
    lessons = {get(i.exercise).notebook[:2] for i in WRONG}
    assert lessons == {e.notebook[:2] for e in catalog()}, lessons
    assert {get(i.exercise).kind for i in WRONG} == {"function", "value", "module"}
    assert {get(i.exercise).kind for i in RIGHT} == {"function", "value", "module"}
    for impl in WRONG + RIGHT:
        get(impl.exercise)  # every id exists


def test_no_wrong_implementation_passes(verdicts):
    passed = [f"{i.exercise}: {i.what}" for i, r in verdicts if r.passed]
    assert not passed, "false passes:\n" + "\n".join(passed)


@pytest.mark.parametrize("impl", RIGHT, ids=[f"{i.exercise}:{i.what}" for i in RIGHT])
def test_correct_alternative_passes(impl):
    result = _run(impl)
    assert result.passed, str(result)


def test_most_wrong_answers_get_a_named_cause(verdicts):
    named = [r.diagnosis is not None for _, r in verdicts]
    share = sum(named) / len(named)
    print(f"\nlearner simulation: {len(named)} wrong implementations, named cause "
          f"{sum(named)} ({share:.0%})")
    assert share >= MIN_NAMED_SHARE, f"named-cause share {share:.0%} < {MIN_NAMED_SHARE:.0%}"
