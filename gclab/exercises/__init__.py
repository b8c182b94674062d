"""Auto-checked exercises of the gclab course.

Learner side::

    from gclab.exercises import check, hint, catalog
    check("rf.theoretical", theoretical_rf)   # a verdict (HTML in Jupyter, text elsewhere)
    hint("rf.theoretical", level=1)           # 1 concept, 2 shapes, 3 pseudo-code
    catalog()                                 # every exercise: id, notebook, title

The engine is :mod:`gclab.exercises.core` (``check`` and ``judge``), with the runners of
:mod:`gclab.exercises.runner`; the exercises live in one content module per notebook,
``gclab/exercises/lessons/nbNN_slug.py``, which :mod:`gclab.exercises.registry` imports on the
first lookup. A content module that fails to import makes that lookup fail loudly (on purpose:
a silently missing lesson would make its checks disappear).
"""

from __future__ import annotations

from gclab.exercises.core import check
from gclab.exercises.registry import (
    Case,
    Exercise,
    Property,
    catalog,
    content_modules,
    exercises,
    get,
    hint,
    register,
)
from gclab.exercises.verdict import CheckItem, CheckResult

__all__ = [
    "Case",
    "CheckItem",
    "CheckResult",
    "Exercise",
    "Property",
    "catalog",
    "check",
    "content_modules",
    "exercises",
    "get",
    "hint",
    "register",
]
