"""Copying inputs and comparing outputs: the CS231n relative error, shapes, dtypes, containers,
NaN and mutation, each with its own message."""


import copy
import numbers
from typing import Any, NamedTuple

import numpy as np


# --------------------------------------------------------------------------------------------
# Copying and comparing
# --------------------------------------------------------------------------------------------
def _torch():
    import sys

    return sys.modules.get("torch")


def _is_tensor(x: Any) -> bool:
    t = _torch()
    return t is not None and isinstance(x, t.Tensor)


def _clone(x: Any) -> Any:
    """An independent copy of a case's inputs (arrays, tensors, containers, anything else)."""
    if isinstance(x, np.ndarray):
        return x.copy()
    if _is_tensor(x):
        y = x.detach().clone()
        return y.requires_grad_(x.requires_grad) if y.is_floating_point() else y
    if isinstance(x, tuple):
        return tuple(_clone(v) for v in x)
    if isinstance(x, list):
        return [_clone(v) for v in x]
    if isinstance(x, dict):
        return {k: _clone(v) for k, v in x.items()}
    try:
        return copy.deepcopy(x)
    except Exception:  # noqa: BLE001 - uncopyable objects are passed as they are
        return x


def _identical(a: Any, b: Any) -> bool:
    """Exact equality (NaN equal to NaN) of two inputs, for the mutation check."""
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
        )
    if _is_tensor(a):
        t = _torch()
        return (
            _is_tensor(b)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool(t.equal(a.detach().nan_to_num(), b.detach().nan_to_num()))
        )
    if isinstance(a, (tuple, list)):
        return (
            isinstance(b, (tuple, list))
            and len(a) == len(b)
            and all(_identical(x, y) for x, y in zip(a, b))
        )
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(_identical(a[k], b[k]) for k in a)
        )
    t = _torch()
    if t is not None and isinstance(a, t.nn.Module):
        return isinstance(b, t.nn.Module) and _identical(dict(a.state_dict()), dict(b.state_dict()))
    if type(a).__eq__ is object.__eq__:  # identity equality says nothing about a copy
        return True
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001
        return True


def _to_numpy(x: Any) -> np.ndarray:
    if _is_tensor(x):
        x = x.detach().cpu()
        if x.dtype.is_complex:
            return x.resolve_conj().numpy()
        return x.numpy()
    return np.asarray(x)


def _rel_error(expected: np.ndarray, actual: np.ndarray, atol: float) -> float:
    """CS231n relative error, max over elements, ignoring differences <= atol."""
    e = expected.astype(np.float64) if expected.dtype.kind in "biu" else expected
    a = actual.astype(np.float64) if actual.dtype.kind in "biu" else actual
    if e.size == 0:
        return 0.0
    diff = np.abs(e - a)
    denom = np.maximum(1e-8, np.abs(e) + np.abs(a))
    err = np.where(diff <= atol, 0.0, diff / denom)
    return float(np.max(err))


def _typename(x: Any) -> str:
    if _is_tensor(x):
        return "torch.Tensor"
    if isinstance(x, np.ndarray):
        return "numpy.ndarray"
    return type(x).__name__


class _Mismatch(NamedTuple):
    ok: bool
    message: str
    error: float = 0.0
    value_only: bool = False  # False when the structure/shape/dtype/finiteness was wrong


def _compare(
    expected: Any,
    actual: Any,
    rtol: float,
    atol: float,
    where: str = "output",
    equal_nan: bool = False,
) -> _Mismatch:
    """Compare the learner's ``actual`` with ``expected`` and say what differs."""
    if actual is None and expected is not None:
        return _Mismatch(False, f"{where} is None (did you forget `return`?)")
    exp_arr = isinstance(expected, np.ndarray) or _is_tensor(expected)
    if exp_arr:
        if _is_tensor(expected) != _is_tensor(actual) or not (
            isinstance(actual, np.ndarray) or _is_tensor(actual)
        ):
            return _Mismatch(
                False, f"{where} is a {_typename(actual)}, expected a {_typename(expected)}"
            )
        e, a = _to_numpy(expected), _to_numpy(actual)
        if e.shape != a.shape:
            return _Mismatch(
                False, f"{where} has shape {tuple(a.shape)}, expected {tuple(e.shape)}"
            )
        if e.dtype != a.dtype:
            return _Mismatch(False, f"{where} has dtype {a.dtype}, expected {e.dtype}")
        return _compare_values(e, a, rtol, atol, where, equal_nan)
    if isinstance(expected, (bool, np.bool_)):
        if not isinstance(actual, (bool, np.bool_)):
            return _Mismatch(False, f"{where} is a {_typename(actual)}, expected a bool")
        if bool(actual) != bool(expected):
            return _Mismatch(
                False, f"{where} is {bool(actual)}, expected {bool(expected)}", 1.0, True
            )
        return _Mismatch(True, f"{where} is {bool(actual)}")
    if isinstance(expected, (numbers.Number, np.number)):
        if (
            isinstance(actual, (np.ndarray,))
            and actual.shape == ()
            or (_is_tensor(actual) and actual.numel() == 1 and actual.dim() == 0)
        ):
            actual = _to_numpy(actual)[()]
        if isinstance(actual, (bool, np.bool_)) or not isinstance(
            actual, (numbers.Number, np.number)
        ):
            return _Mismatch(False, f"{where} is a {_typename(actual)}, expected a number")
        return _compare_values(
            np.asarray(expected), np.asarray(actual), rtol, atol, where, equal_nan, scalar=True
        )
    if isinstance(expected, (tuple, list)):
        if not isinstance(actual, (tuple, list)):
            return _Mismatch(
                False, f"{where} is a {_typename(actual)}, expected a {_typename(expected)}"
            )
        if len(actual) != len(expected):
            return _Mismatch(False, f"{where} has {len(actual)} items, expected {len(expected)}")
        worst = _Mismatch(True, f"{where} matches", 0.0)
        for i, (e, a) in enumerate(zip(expected, actual)):
            r = _compare(e, a, rtol, atol, f"{where}[{i}]", equal_nan)
            if not r.ok:
                return r
            if r.error >= worst.error:
                worst = r
        return worst
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return _Mismatch(False, f"{where} is a {_typename(actual)}, expected a dict")
        if set(actual) != set(expected):
            missing = sorted(map(str, set(expected) - set(actual)))
            extra = sorted(map(str, set(actual) - set(expected)))
            return _Mismatch(False, f"{where} has keys missing {missing} / unexpected {extra}")
        worst = _Mismatch(True, f"{where} matches", 0.0)
        for k in expected:
            r = _compare(expected[k], actual[k], rtol, atol, f"{where}[{k!r}]", equal_nan)
            if not r.ok:
                return r
            if r.error >= worst.error:
                worst = r
        return worst
    try:
        same = bool(expected == actual)
    except Exception:  # noqa: BLE001
        same = False
    if not same:
        return _Mismatch(False, f"{where} is {actual!r:.80}, expected {expected!r:.80}", 1.0, True)
    return _Mismatch(True, f"{where} equals the reference")


def _compare_values(
    e: np.ndarray,
    a: np.ndarray,
    rtol: float,
    atol: float,
    where: str,
    equal_nan: bool,
    scalar: bool = False,
) -> _Mismatch:
    if e.dtype.kind in "fc" or a.dtype.kind in "fc":
        e_bad, a_bad = ~np.isfinite(e), ~np.isfinite(np.asarray(a, dtype=np.complex128))
        if a_bad.any() or e_bad.any():
            if not np.array_equal(e_bad, a_bad) or not np.array_equal(
                e[e_bad], a[a_bad], equal_nan=True
            ):
                if equal_nan and np.array_equal(e_bad, a_bad):
                    pass  # NaN where the other has NaN (or inf): same failure, compare the rest
                else:
                    n = int(a_bad.sum())
                    if n:
                        return _Mismatch(False, f"{where} contains {n} NaN/inf value(s)")
                    return _Mismatch(False, f"{where} is finite where the reference is NaN/inf")
            keep = ~(e_bad | a_bad)
            e, a = e[keep], a[keep]
    err = _rel_error(e, a, atol)
    if err > rtol:
        if scalar:
            return _Mismatch(
                False,
                f"{where} is {a[()].item()!r}, expected {e[()].item()!r} "
                f"(relative error {err:.2g})",
                err,
                True,
            )
        return _Mismatch(
            False, f"{where}: relative error {err:.2g} > tolerance {rtol:g}", err, True
        )
    return _Mismatch(True, f"relative error {err:.1g} <= {rtol:g}", err, True)
