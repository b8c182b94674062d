"""Auto-checked exercises of the gclab course.

Learner side::

    from gclab.exercises import check, hint, catalog
    check("rf.theoretical", theoretical_rf)   # a verdict (HTML in Jupyter, text elsewhere)
    hint("rf.theoretical", level=1)           # 1 concept, 2 shapes, 3 pseudo-code
    catalog()                                 # every exercise: id, notebook, title

The engine is :mod:`gclab.exercises.core`; the exercises live in one content module per
notebook, ``gclab/exercises/lessons/nbNN_slug.py``, all imported here. A content module that
fails to import makes ``import gclab.exercises`` fail loudly (on purpose: a silently missing
lesson would make its checks disappear).
"""

from __future__ import annotations

import importlib
import pkgutil
import re

from gclab.exercises.core import check
from gclab.exercises.registry import Case, Exercise, Property, catalog, get, hint, register
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
    "get",
    "hint",
    "register",
]

_CONTENT = re.compile(r"^nb\d\d_\w+$")


def content_modules() -> list:
    """Names of the content modules (``gclab.exercises.lessons.nbNN_slug``), sorted."""
    from gclab.exercises import lessons

    return sorted(
        f"{lessons.__name__}.{m.name}"
        for m in pkgutil.iter_modules(lessons.__path__) if _CONTENT.match(m.name)
    )


for _name in content_modules():
    importlib.import_module(_name)
del _name
