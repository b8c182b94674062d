"""Generic detectors: how does a wrong output differ from the reference's?

Most learners' mistakes are not the registered ones, so when no registered mistake matches, the
engine characterises the difference itself. :func:`detect` gives one case's findings: for a
tuple or dict item by item (results in the wrong order, a missing entry), for text the part
that differs, for None the case to leave out, for a list of indices the extra and missing
items, and for an array or a number the numeric detectors of :mod:`gclab.exercises.findings`
(a constant factor named from the case's quantities, a sign flip, an offset, permuted axes, a
missing residual, a softmax over the wrong axis, ...). :mod:`gclab.exercises.across` turns the
findings of all cases into one sentence.

Everything here is a pure function of (learner output, expected output, inputs, case
quantities), so the in-notebook :func:`~gclab.exercises.check` and the trusted grader can both
call it. Nothing runs learner code.
"""

from __future__ import annotations

import difflib
from typing import Any, List

import numpy as np

from gclab.exercises.findings import array_findings
from gclab.exercises.observe import Observation, as_array, close

__all__ = ["detect"]


def detect(obs: Observation) -> List[str]:
    """The findings (case-independent sentences) that describe ``obs.actual`` vs
    ``obs.expected``; empty when none applies. Ordered most specific first."""
    ea, aa = obs.expected, obs.actual
    if isinstance(ea, (tuple, list)) and isinstance(aa, (tuple, list)):
        return _container_findings(list(aa), list(ea), obs, [f"output[{i}]" for i in
                                                              range(len(ea))])
    if isinstance(ea, dict) and isinstance(aa, dict):
        missing = sorted(map(str, set(ea) - set(aa)))
        extra = sorted(map(str, set(aa) - set(ea)))
        if missing or extra:
            return [f"your dict has no entry for {', '.join(missing) or '-'}"
                    + (f" and an unexpected {', '.join(extra)}" if extra else "")
                    + ": a gradient (or parameter) forgotten or misnamed"]
        keys = list(ea)
        return _container_findings([aa[k] for k in keys], [ea[k] for k in keys], obs,
                                   [f"[{k!r}]" for k in keys])
    if isinstance(ea, str) or isinstance(aa, str) or ea is None or aa is None:
        return _text_findings(aa, ea)
    if isinstance(ea, (tuple, list)) and not isinstance(aa, (tuple, list)):
        return []
    return array_findings(aa, ea, obs)


def _text_findings(a: Any, e: Any) -> List[str]:
    if e is None and a is not None:
        return [f"you return {a!r:.40} where the reference returns None (a case your code "
                "should leave out)"]
    if a is None or not isinstance(a, str) or not isinstance(e, str):
        return []
    ta, te = a.split("."), e.split(".")
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=ta, b=te, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        where = ".".join(te[:j1])
        after = f" after {where!r}" if where else " at the start"
        got, want = ".".join(ta[i1:i2]), ".".join(te[j1:j2])
        if op == "delete":
            return [f"your text has an extra {got!r}{after} (the reference: {e!r})"]
        if op == "insert":
            return [f"your text lacks {want!r}{after} (the reference: {e!r})"]
        return [f"the text differs in one place: {got!r} where {want!r} belongs{after}"]
    return []


def _list_findings(a: list, e: list) -> List[str] | None:
    """Lists of plain numbers (indices): which items are extra or missing."""
    if not all(isinstance(v, (int, float, np.integer, np.floating)) for v in [*a, *e]):
        return None
    try:
        sa, se = set(a), set(e)
    except TypeError:
        return None
    extra, missing = sorted(sa - se), sorted(se - sa)
    if not extra and not missing:
        return None
    parts = []
    if extra:
        parts.append(f"has {extra[:4]} too many")
    if missing:
        parts.append(f"lacks {missing[:4]}")
    return ["your list " + " and ".join(parts) + ": a start, a step or a boundary of the "
            "range differs"]


def _container_findings(a_items, e_items, obs: Observation, names: List[str]) -> List[str]:
    listed = _list_findings(a_items, e_items)
    if listed:
        return listed
    if len(a_items) != len(e_items):
        return []
    arrs_a, arrs_e = [as_array(x) for x in a_items], [as_array(x) for x in e_items]
    same = [(a is not None and e is not None and close(a, e, 1e-7))
            or (a is None and e is None and _same_container(x, y))
            for a, e, x, y in zip(arrs_a, arrs_e, a_items, e_items)]
    if not all(same) and len(a_items) > 1:
        # the right items in the wrong order?
        perm = []
        for a in arrs_a:
            j = next((j for j, e in enumerate(arrs_e) if a is not None and e is not None
                      and a.shape == e.shape and close(a, e, 1e-7) and j not in perm), None)
            perm.append(j)
        if None not in perm and perm != list(range(len(perm))):
            return ["the right results in the wrong order: your "
                    + ", ".join(f"{names[i]} is the reference's {names[j]}"
                                for i, j in enumerate(perm) if i != j)]
    for i, ok in enumerate(same):
        if ok:
            continue
        found = detect(Observation(a_items[i], e_items[i], obs.inputs, obs.quantities))
        if found:
            return [f"{names[i]}: {f}" for f in found]
    return []


def _same_container(a: Any, e: Any) -> bool:
    """Two nested containers of arrays agree (for an item of a tuple that is itself a dict)."""
    if isinstance(e, dict):
        return isinstance(a, dict) and a.keys() == e.keys() and all(
            _same_container(a[k], e[k]) for k in e)
    if isinstance(e, (tuple, list)):
        return isinstance(a, (tuple, list)) and len(a) == len(e) and all(
            _same_container(x, y) for x, y in zip(a, e))
    x, y = as_array(a), as_array(e)
    return x is not None and y is not None and close(x, y, 1e-7)
