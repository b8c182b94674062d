"""Shared helpers of the case tests (test_case_coverage, test_case_rounding, test_case_labels):
every case of an exercise, the arrays inside a value, a case's arguments by name."""

from __future__ import annotations

import inspect

import numpy as np

from gclab.exercises import catalog, get


def all_cases(ex):
    """Every case the check runs: ``cases(rng)`` drawn once per seed."""
    return [c for seed in ex.seeds for c in ex.cases(np.random.default_rng(seed))]


def arrays(value, where):
    """(where, shape) of every array in ``value`` (nested lists, tuples and dicts)."""
    if hasattr(value, "shape") and not isinstance(value, (int, float)):
        yield where, tuple(value.shape)
    elif isinstance(value, (list, tuple)):
        for i, x in enumerate(value):
            yield from arrays(x, f"{where}[{i}]")
    elif isinstance(value, dict):
        for k, x in value.items():
            yield from arrays(x, f"{where}[{k!r}]")


def bound_arguments(ex, case):
    """The case's arguments by parameter name, defaults filled in (an omitted kernel is 3)."""
    try:
        sig = inspect.signature(ex.reference)
        bound = sig.bind(*case.args, **case.kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)
    except (TypeError, ValueError):
        return {**{i: a for i, a in enumerate(case.args)}, **case.kwargs}


WITH_CASES = [e.id for e in catalog() if get(e.id).cases is not None]
