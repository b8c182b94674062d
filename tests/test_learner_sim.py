"""The learner simulation: realistic wrong implementations of every lesson's
exercises, and correct alternatives, run through ``check``.

Asserts: no wrong implementation passes, no correct alternative is rejected, no check raises
(the checker's own exceptions would stop the simulation), the share of wrong ones whose verdict
names a cause (``CheckResult.diagnosis`` is set, from a registered mistake or a generic detector
of ``gclab.exercises.diagnose``) is at least 70 %, and among the wrong ones whose real cause is
known (``learner_sim.causes``) no verdict names another cause (the misnamed share is 0). Both
shares are in docs/exercises.md ("Feedback that teaches").
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from learner_sim import RIGHT, WRONG, causes, load  # tests/learner_sim (tests/ is on sys.path)

from gclab.exercises import catalog, check, get

load()
MIN_WRONG = 150
MIN_NAMED_SHARE = 0.70
MAX_MISNAMED_SHARE = 0.0


def _run(impl):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return check(impl.exercise, impl.obj)


@pytest.fixture(scope="module")
def verdicts():
    out, crashed = [], []
    for impl in WRONG:
        try:
            out.append((impl, _run(impl)))
        except Exception as exc:  # noqa: BLE001 - check() itself must never raise
            crashed.append(f"{impl.exercise}: {impl.what}: {type(exc).__name__}: {exc}")
    assert not crashed, "check() raised:\n" + "\n".join(crashed)
    return out


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


def _misnamed(verdicts):
    """(labelled, misnamed): wrong answers whose real cause is known, and those among them whose
    verdict names a cause that is not it."""
    labelled = [(i, r) for i, r in verdicts if (i.exercise, i.what) in causes.CAUSES]
    bad = [f"{i.exercise}: {i.what}\n    named: {r.diagnosis}" for i, r in labelled
           if r.diagnosis is not None and not re.search(causes.CAUSES[(i.exercise, i.what)],
                                                        r.diagnosis)]
    return labelled, bad


def test_most_wrong_answers_get_a_named_cause(verdicts):
    named = [r.diagnosis is not None for _, r in verdicts]
    share = sum(named) / len(named)
    labelled, misnamed = _misnamed(verdicts)
    print(f"\nlearner simulation: {len(named)} wrong implementations, named cause "
          f"{sum(named)} ({share:.0%}); misnamed {len(misnamed)} of the {len(labelled)} whose "
          f"cause is known ({len(misnamed) / max(1, len(labelled)):.0%})")
    assert share >= MIN_NAMED_SHARE, f"named-cause share {share:.0%} < {MIN_NAMED_SHARE:.0%}"


def test_no_verdict_names_the_wrong_cause(verdicts):
    labelled, misnamed = _misnamed(verdicts)
    assert len(labelled) >= 50
    assert len(misnamed) <= MAX_MISNAMED_SHARE * len(labelled), (
        "verdicts that name the wrong cause:\n" + "\n".join(misnamed))
