"""Controlled contrasts: re-run a failing case with one property changed and nothing else.

A pass/fail split over the drawn cases ("right only where B = 1") may be a coincidence of how
the cases were drawn. Here the engine makes the contrast itself: it cuts a failing case with a
batch of B > 1 into its B single-image cases (every input whose first axis is the batch is
sliced, nothing else changes) and runs the learner and the reference on each. Right on every
image alone but wrong on the batch, on at least two failing cases: the batch axis is mixed into
the computation.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, List, Sequence

import numpy as np

from gclab.exercises.registry import Case

__all__ = ["BATCH_MIXED", "batch_contrast"]

BATCH_MIXED = ("right on each image alone, wrong on the batch: the batch axis is mixed into the "
               "computation (a sum, a mean or a max over axis 0, an index fixed at 0, or a "
               "reshape that merges the batch with another axis)")


def _is_array(x: Any) -> bool:
    t = sys.modules.get("torch")
    return isinstance(x, np.ndarray) or (t is not None and isinstance(x, t.Tensor))


def _slice(x: Any, b: int, i: int) -> Any:
    if _is_array(x) and x.ndim >= 2 and x.shape[0] == b:
        return x[i: i + 1].copy() if isinstance(x, np.ndarray) else x[i: i + 1].clone()
    return x


def _single_images(case: Case, kind: str, b: int) -> List[Case]:
    out = []
    for i in range(b):
        if kind == "module":
            out.append(Case(args=case.args, kwargs=case.kwargs, label=f"image {i}",
                            inputs=tuple(_slice(x, b, i) for x in case.inputs), meta=case.meta))
        else:
            out.append(Case(args=tuple(_slice(x, b, i) for x in case.args),
                            kwargs={k: _slice(v, b, i) for k, v in case.kwargs.items()},
                            label=f"image {i}", meta=case.meta))
    return out


def _batch(case: Case, kind: str) -> int:
    first = next((x for x in (case.inputs if kind == "module" else
                              (*case.args, *case.kwargs.values())) if _is_array(x)), None)
    return int(first.shape[0]) if first is not None and first.ndim >= 3 else 0


def batch_contrast(kind: str, failing: Sequence[Case], reference: Callable[[Case], Any],
                   learner: Callable[[Case], Any], same: Callable[[Any, Any], bool]
                   ) -> str | None:
    """:data:`BATCH_MIXED` when the learner is right on every single image of at least two
    failing batched cases (and of every one tried); else None. ``reference(case)`` and
    ``learner(case)`` give the outputs (``learner`` raises when the learner's code fails),
    ``same(expected, actual)`` compares them."""
    batched = [c for c in failing if _batch(c, kind) > 1][:3]
    if kind not in ("function", "module") or len(batched) < 2:
        return None
    for case in batched:
        for single in _single_images(case, kind, _batch(case, kind)):
            try:
                expected = reference(single)
                if not same(expected, learner(single)):
                    return None
            except Exception:  # noqa: BLE001 - an input that cannot be cut: no contrast
                return None
    return BATCH_MIXED
