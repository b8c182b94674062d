"""Counts and sizes whose reference rounds (``//``, ``int()``, ``math.ceil``, ``round``) have a
case where every other rounding rule gives a different answer, and their hints name the rule."""

from __future__ import annotations

import builtins
import math
import re
import warnings

import numpy as np
import pytest
from _case_tools import WITH_CASES, all_cases  # tests/ is on sys.path

from gclab.exercises import get

# A count or size computed with a rounding rule (``//``, ``int()``, ``math.ceil``, ``round``)
# needs a case where every other rule gives a different answer: with C divisible by r,
# ``round(C / r)`` and ``math.ceil(C / r)`` pass an exercise whose reference truncates. The
# reference runs on traced numbers (int and float subclasses that record each rounding and can
# swap its rule), once as written and once per swapped rule; a swap that never changes any
# case's output is a gap. Divisions of array sizes (H // 2) are covered by the even/odd sizes
# of the map test in test_case_coverage.
_ROUNDING = {"mode": None, "seen": set()}
_RULES = {"floor": math.floor, "ceil": math.ceil, "round": round}


def _round(rule, q):
    """Round ``q`` by ``rule``, or by the swapped rule while ``_ROUNDING['mode']`` swaps it."""
    _ROUNDING["seen"].add(rule)
    mode = _ROUNDING["mode"]
    return _RULES[mode[1] if mode and mode[0] == rule else rule](q)


class _Traced:
    """Arithmetic that keeps the trace: every result of traced numbers is traced again."""

    def _op(self, other, fn):
        if isinstance(other, bool) or not isinstance(other, (int, float)):
            return NotImplemented
        return _trace(fn(self._plain(), other._plain() if isinstance(other, _Traced) else other))

    def __add__(self, o): return self._op(o, lambda a, b: a + b)  # noqa: E704
    def __radd__(self, o): return self._op(o, lambda a, b: b + a)  # noqa: E704
    def __sub__(self, o): return self._op(o, lambda a, b: a - b)  # noqa: E704
    def __rsub__(self, o): return self._op(o, lambda a, b: b - a)  # noqa: E704
    def __mul__(self, o): return self._op(o, lambda a, b: a * b)  # noqa: E704
    def __rmul__(self, o): return self._op(o, lambda a, b: b * a)  # noqa: E704
    def __truediv__(self, o): return self._op(o, lambda a, b: a / b)  # noqa: E704
    def __rtruediv__(self, o): return self._op(o, lambda a, b: b / a)  # noqa: E704
    def __floordiv__(self, o): return self._op(o, lambda a, b: _round("floor", a / b))  # noqa: E704
    def __rfloordiv__(self, o): return self._op(o, lambda a, b: _round("floor", b / a))  # noqa: E704


class _TInt(_Traced, int):
    __hash__ = int.__hash__

    def _plain(self):
        return int.__int__(self)


class _TFloat(_Traced, float):
    __hash__ = float.__hash__

    def _plain(self):
        return float.__float__(self)

    def __int__(self):
        q = self._plain()
        return int(_round("floor", q)) if q >= 0 else int(q)

    def __floor__(self):
        return int(_round("floor", self._plain()))

    def __ceil__(self):
        return int(_round("ceil", self._plain()))

    def __round__(self, n=None):
        return int(_round("round", self._plain())) if n is None else round(self._plain(), n)


class _IntMeta(type):
    def __instancecheck__(cls, obj):
        return isinstance(obj, builtins.int)


class _traced_int(builtins.int, metaclass=_IntMeta):
    """``int`` inside the reference's module: ``int(traced int)`` keeps the trace."""

    def __new__(cls, x=0, *rest):
        return x if isinstance(x, _TInt) and not rest else builtins.int(x, *rest)


def _trace(v):
    if isinstance(v, bool) or isinstance(v, _Traced):
        return v
    if isinstance(v, int):
        return _TInt(v)
    if isinstance(v, float):
        return _TFloat(v)
    if isinstance(v, (list, tuple)):
        return type(v)(_trace(x) for x in v)
    if isinstance(v, dict):
        return {k: _trace(x) for k, x in v.items()}
    return v


def _traced_outputs(ex, cases):
    """The reference's outputs (modules: their parameter shapes) on traced arguments."""
    g = getattr(ex.reference, "__globals__", {})
    had = "int" in g
    g["int"] = _traced_int
    try:
        outs = []
        for c in cases:
            out = ex.reference(*_trace(c.args), **_trace(c.kwargs))
            outs.append([tuple(p.shape) for p in out.parameters()] if ex.kind == "module"
                        else out)
        return outs
    finally:
        if not had:
            del g["int"]


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    a, b = (x.detach().numpy() if hasattr(x, "detach") else x for x in (a, b))
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def _rounding_gaps(ex) -> list:
    """'floor -> ceil' for each swap of a rounding rule that no case's output notices."""
    cases = all_cases(ex)
    _ROUNDING["mode"], _ROUNDING["seen"] = None, set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = _traced_outputs(ex, cases)
        gaps = []
        for rule in sorted(_ROUNDING["seen"]):
            for other in sorted(set(_RULES) - {rule}):
                _ROUNDING["mode"] = (rule, other)
                try:
                    if _same(base, _traced_outputs(ex, cases)):
                        gaps.append(f"{rule} -> {other}")
                except Exception:  # noqa: BLE001 - a swap that breaks the reference is noticed
                    pass
                finally:
                    _ROUNDING["mode"] = None
    return gaps


@pytest.mark.parametrize("exercise_id", WITH_CASES)
def test_every_rounding_rule_is_told_apart(exercise_id):
    gaps = _rounding_gaps(get(exercise_id))
    assert not gaps, (f"{exercise_id}: a learner who rounds differently passes ({', '.join(gaps)}"
                      " changes no case): add a case whose quotient is not an integer, with a "
                      "fraction above 1/2 (and one below, where the reference rounds)")


def test_the_rounding_tracer_finds_a_divisible_only_case():
    """The tracer sees a floor hidden in ``int(C * ratio)`` and ``C // r``, and a gap when
    every case divides evenly."""
    from gclab.exercises.registry import Case, Exercise

    def count(c, ratio):
        return c * int(c * ratio) + c // 4

    def ex(pairs):
        return Exercise(id="t.count", notebook="t", title="t", reference=count,
                        cases=lambda rng: [Case(args=p) for p in pairs])

    assert _rounding_gaps(ex([(16, 0.25), (32, 0.5)])) == ["floor -> ceil", "floor -> round"]
    assert _rounding_gaps(ex([(16, 0.25), (14, 0.25)])) == []  # 3.5: ceil and round give 4


_RULE_WORDS = {"floor": re.compile(r"rounded down|round(?:ing)? down|//|floor|int\(\)"),
               "ceil": re.compile(r"round(?:ed)? up|ceil", re.I),
               "round": re.compile(r"rounded to the nearest|round\(\)")}


def _rounding_rules(ex) -> set:
    _ROUNDING["mode"], _ROUNDING["seen"] = None, set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _traced_outputs(ex, all_cases(ex))
    return set(_ROUNDING["seen"])


@pytest.mark.parametrize("exercise_id", WITH_CASES)
def test_the_hints_name_every_rounding_rule_the_cases_tell_apart(exercise_id):
    """Once the cases tell floor, ceil and round apart, "as an int" is ambiguous: a learner who
    reads it as round() fails. Some hint names the rule the reference uses."""
    ex = get(exercise_id)
    text = "\n".join(ex.hints)
    for rule in _rounding_rules(ex):
        assert _RULE_WORDS[rule].search(text), (
            f"{exercise_id}: the reference rounds by {rule}, and no hint says so")
