"""A learner simulation: realistic wrong implementations and correct alternatives of the
course's exercises, written the way learners write them (not copies of the registered mistake
variants). ``tests/test_learner_sim.py`` runs every one through ``check`` and asserts no wrong
one passes, no correct one is rejected, and that most wrong ones get a named cause.

Each lesson module appends to :data:`WRONG` and :data:`RIGHT` with :func:`wrong` / :func:`right`.
"""

from __future__ import annotations

from typing import Any, Callable, List, NamedTuple


class Impl(NamedTuple):
    exercise: str
    what: str
    obj: Any


WRONG: List[Impl] = []
RIGHT: List[Impl] = []


def wrong(exercise: str, what: str) -> Callable[[Any], Any]:
    """Decorator: a wrong implementation of ``exercise`` (``what`` says which slip)."""

    def deco(obj):
        WRONG.append(Impl(exercise, what, obj))
        return obj

    return deco


def right(exercise: str, what: str) -> Callable[[Any], Any]:
    """Decorator: a correct alternative formulation of ``exercise``."""

    def deco(obj):
        RIGHT.append(Impl(exercise, what, obj))
        return obj

    return deco


def load() -> None:
    """Import every lesson's implementations (idempotent)."""
    from . import lessons_0_2, lessons_3_5, lessons_6_8  # noqa: F401
