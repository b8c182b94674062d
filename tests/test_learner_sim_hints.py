"""Every level-3 hint, followed literally, leads to a passing answer.

``tests/learner_sim/from_hints.py`` holds, for every exercise, the answer its level-3 hint
describes, written as a careful learner who reads only the hints would write it. Each must pass
``check``; an exercise without one fails the coverage test, so a new exercise needs its
hint-following answer too.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from learner_sim.from_hints import FROM_HINTS  # tests/ is on sys.path

from gclab.exercises import catalog, check


def test_every_exercise_has_its_hint_following_answer():
    have = {f.exercise for f in FROM_HINTS}
    missing = [e.id for e in catalog() if e.id not in have]
    assert not missing, f"no hint-following answer in tests/learner_sim/from_hints.py: {missing}"
    extra = have - {e.id for e in catalog()}
    assert not extra, f"answers for unknown exercises: {extra}"


@pytest.mark.parametrize("followed", FROM_HINTS, ids=[f.exercise for f in FROM_HINTS])
def test_the_level_3_hint_leads_to_a_passing_answer(followed):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        result = check(followed.exercise, followed.obj)
    assert result.passed, f"following the level-3 hint of {followed.exercise} fails:\n{result}"
