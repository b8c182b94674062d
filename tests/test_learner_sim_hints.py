"""Every level-3 hint, followed literally, leads to a passing answer.

``tests/learner_sim/from_hints.py`` holds, for every exercise, the answer its level-3 hint
describes, written as a careful learner who reads only the hints would write it. Each must pass
``check``; an exercise without one fails the coverage test, so a new exercise needs its
hint-following answer too. Each answer records a digest of the hint it follows: when a hint
changes, the answer has to be followed again (the test names the exercise).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from learner_sim.from_hints import FROM_HINTS, hint_digest  # tests/ is on sys.path

from gclab.exercises import catalog, check, get


def test_every_exercise_has_its_hint_following_answer():
    have = {f.exercise for f in FROM_HINTS}
    missing = [e.id for e in catalog() if e.id not in have]
    assert not missing, f"no hint-following answer in tests/learner_sim/from_hints.py: {missing}"
    extra = have - {e.id for e in catalog()}
    assert not extra, f"answers for unknown exercises: {extra}"


@pytest.mark.parametrize("followed", FROM_HINTS, ids=[f.exercise for f in FROM_HINTS])
def test_the_level_3_hint_leads_to_a_passing_answer(followed):
    now = hint_digest(get(followed.exercise).hints[2])
    assert now == followed.hint, (
        f"the level-3 hint of {followed.exercise} changed since its answer in "
        f"tests/learner_sim/from_hints.py was written: follow the new hint literally, rewrite "
        f"the answer, and record the new digest {now!r}")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        result = check(followed.exercise, followed.obj)
    assert result.passed, f"following the level-3 hint of {followed.exercise} fails:\n{result}"
