"""Let demonstration cells run before the learner's exercise is done.

A learner copy stops at the first unfinished exercise when it is run top to bottom (its stub
raises ``NotImplementedError``). Cells that only *demonstrate* (a figure, a table, an explorer)
need not stop there: wrap the learner's function with :func:`use_or_fallback` and they run on
gclab's implementation until the learner's is written, and say so::

    attention_of = use_or_fallback(embedded_gaussian, gnp.non_local.embedded_gaussian,
                                   "embedded_gaussian")
    attention_of(theta_x, phi_x)   # yours when it is done, gclab's (with a note) before
"""

from __future__ import annotations

import functools
from typing import Any, Callable

__all__ = ["use_or_fallback"]


def use_or_fallback(learner_fn: Callable[..., Any], gclab_fn: Callable[..., Any],
                    name: str | None = None) -> Callable[..., Any]:
    """A function that calls ``learner_fn`` and, when it raises ``NotImplementedError`` (an
    exercise stub), prints ``(your <name> is not done yet: using gclab's)`` once and returns
    ``gclab_fn`` of the same arguments instead. Any other error is the learner's to see."""
    label = name or getattr(learner_fn, "__name__", "function")
    told = []

    @functools.wraps(learner_fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return learner_fn(*args, **kwargs)
        except NotImplementedError:
            if not told:
                print(f"(your {label} is not done yet: using gclab's)")
                told.append(True)
            return gclab_fn(*args, **kwargs)

    return call
