"""Copying inputs and comparing outputs: the CS231n relative error, shapes, dtypes, containers,
NaN and mutation, each with its own message."""


import copy
import numbers
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Mismatch", "clone", "compare_outputs", "mutation", "rel_error", "torch_module",
           "typename"]


# --------------------------------------------------------------------------------------------
# Copying and comparing
# --------------------------------------------------------------------------------------------
def torch_module():
    """torch when something has imported it already, else None (the engine never imports it)."""
    import sys

    return sys.modules.get("torch")


def _is_tensor(x: Any) -> bool:
    t = torch_module()
    return t is not None and isinstance(x, t.Tensor)


def clone(x: Any) -> Any:
    """An independent copy of a case's inputs (arrays, tensors, containers, anything else)."""
    if isinstance(x, np.ndarray):
        return x.copy()
    if _is_tensor(x):
        y = x.detach().clone()
        return y.requires_grad_(x.requires_grad) if y.is_floating_point() else y
    if isinstance(x, tuple):
        return tuple(clone(v) for v in x)
    if isinstance(x, list):
        return [clone(v) for v in x]
    if isinstance(x, dict):
        return {k: clone(v) for k, v in x.items()}
    try:
        return copy.deepcopy(x)
    except Exception:  # noqa: BLE001 - uncopyable objects are passed as they are
        return x


def _array_change(kind: str, a: Any, b: Any) -> str | None:
    """What differs between the kept copy ``a`` and the input as the learner left it ``b``."""
    if _is_tensor(a):
        if not _is_tensor(b):
            return f"replaced the {kind} by a {typename(b)}"
        for flag in ("shape", "dtype", "device", "requires_grad"):
            fa, fb = getattr(a, flag), getattr(b, flag)
            if fa != fb:
                if flag == "shape":
                    fa, fb = tuple(fa), tuple(fb)
                return f"changed the {kind}'s {flag} from {fa} to {fb}"
        if a.layout == b.layout and a.is_contiguous() and b.stride() != a.stride():
            return f"changed the {kind}'s strides from {a.stride()} to {b.stride()}"
        ea, eb = _to_numpy(a), _to_numpy(b)
    else:
        if not isinstance(b, np.ndarray):
            return f"replaced the {kind} by a {typename(b)}"
        if a.shape != b.shape:
            return f"changed the {kind}'s shape from {a.shape} to {b.shape}"
        if a.dtype != b.dtype:
            return f"changed the {kind}'s dtype from {a.dtype} to {b.dtype}"
        ea, eb = a, b
    if np.array_equal(ea, eb, equal_nan=ea.dtype.kind in "fc"):
        return None
    n = int(np.sum(~((ea == eb) | (np.isnan(ea) & np.isnan(eb)) if ea.dtype.kind in "fc"
                     else ea == eb)))
    if ea.dtype.kind in "fc" and np.all(np.isfinite(ea)) and np.all(np.isfinite(eb)):
        diff = float(np.max(np.abs(ea - eb)))
        scale = float(np.max(np.abs(ea))) or 1.0
        if diff <= 1e-9 * scale:
            return (
                f"changed {n} value(s) of the {kind} by a rounding error (at most {diff:.1g}): "
                "it modified the input in place and undid the change arithmetically "
                "(x += h ... x -= h); save the old value and put it back instead "
                "(old = x[i]; ...; x[i] = old), or work on a copy"
            )
    return f"modified {n} value(s) of the {kind} in place"


def mutation(a: Any, b: Any, kind: str = "input array") -> str | None:
    """None when ``b`` is still identical to the kept copy ``a``; else what the code changed."""
    if isinstance(a, np.ndarray) or _is_tensor(a):
        return _array_change("input tensor" if _is_tensor(a) else kind, a, b)
    if isinstance(a, (tuple, list)):
        if not isinstance(b, (tuple, list)) or len(a) != len(b):
            return f"changed the length of an input {type(a).__name__}"
        for x, y in zip(a, b):
            m = mutation(x, y, kind)
            if m:
                return m
        return None
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            return "added or removed keys of an input dict"
        for k in a:
            m = mutation(a[k], b[k], f"input {k!r}")
            if m:
                return m
        return None
    t = torch_module()
    if t is not None and isinstance(a, t.nn.Module):
        if not isinstance(b, t.nn.Module):
            return "replaced an input module"
        return mutation(dict(a.state_dict()), dict(b.state_dict()), "module parameter")
    if type(a).__eq__ is object.__eq__:  # identity equality says nothing about a copy
        return None
    try:
        return None if bool(a == b) else f"changed an input ({a!r:.40} -> {b!r:.40})"
    except Exception:  # noqa: BLE001
        return None


def _to_numpy(x: Any) -> np.ndarray:
    if _is_tensor(x):
        x = x.detach().cpu()
        if x.dtype.is_complex:
            return x.resolve_conj().numpy()
        return x.numpy()
    return np.asarray(x)


def rel_error(expected: np.ndarray, actual: np.ndarray, atol: float) -> float:
    """CS231n relative error, max over elements, ignoring differences <= atol."""
    e = expected.astype(np.float64) if expected.dtype.kind in "biu" else expected
    a = actual.astype(np.float64) if actual.dtype.kind in "biu" else actual
    if e.size == 0:
        return 0.0
    diff = np.abs(e - a)
    denom = np.maximum(1e-8, np.abs(e) + np.abs(a))
    err = np.where(diff <= atol, 0.0, diff / denom)
    return float(np.max(err))


def typename(x: Any) -> str:
    if _is_tensor(x):
        return "torch.Tensor"
    if isinstance(x, np.ndarray):
        return "numpy.ndarray"
    return type(x).__name__


def _is_number_like(x: Any) -> bool:
    """A NumPy-side number: a Python/NumPy scalar (not a bool) or a 0-d NumPy array of numbers.

    Where the value is one number, each of these forms is a correct answer (``np.sum`` gives a
    NumPy scalar, ``float()`` a Python float, ``arr[...]`` or ``.numpy()`` a 0-d array). Tensors
    are left to the array comparison: NumPy vs torch is part of what a lesson asks for.
    """
    if isinstance(x, (bool, np.bool_)):
        return False
    if isinstance(x, np.ndarray):
        return x.shape == () and x.dtype.kind in "iufc"
    return isinstance(x, (numbers.Number, np.number))


class Mismatch(NamedTuple):
    ok: bool
    message: str
    error: float = 0.0
    value_only: bool = False  # False when the structure/shape/dtype/finiteness was wrong
    # what was wrong: "type" (a torch tensor for a NumPy array, a list for a tuple, None, ...),
    # "container" (items or keys), "shape", "dtype", "nonfinite", "value", or "" when ok
    kind: str = ""


def compare_outputs(
    expected: Any,
    actual: Any,
    rtol: float,
    atol: float,
    where: str = "output",
    equal_nan: bool = False,
) -> Mismatch:
    """Compare the learner's ``actual`` with ``expected`` and say what differs."""
    if actual is None and expected is not None:
        return Mismatch(False, f"{where} is None (did you forget `return`?)", kind="type")
    if _is_number_like(expected) and _is_number_like(actual):
        # a number in any correct form: a Python float, a NumPy scalar, a 0-d array
        expected = np.asarray(expected)[()]
        actual = np.asarray(actual)[()]
    if isinstance(expected, np.ndarray) or _is_tensor(expected):
        return _compare_arrays(expected, actual, rtol, atol, where, equal_nan)
    if isinstance(expected, (bool, np.bool_)):
        return _compare_bools(expected, actual, where)
    if isinstance(expected, (numbers.Number, np.number)):
        return _compare_numbers(expected, actual, rtol, atol, where, equal_nan)
    if isinstance(expected, (tuple, list)):
        return _compare_sequences(expected, actual, rtol, atol, where, equal_nan)
    if isinstance(expected, dict):
        return _compare_dicts(expected, actual, rtol, atol, where, equal_nan)
    try:
        same = bool(expected == actual)
    except Exception:  # noqa: BLE001
        same = False
    if not same:
        return Mismatch(False, f"{where} is {actual!r:.80}, expected {expected!r:.80}", 1.0, True,
                        "value")
    return Mismatch(True, f"{where} equals the reference")


def _compare_arrays(expected: Any, actual: Any, rtol: float, atol: float, where: str,
                    equal_nan: bool) -> Mismatch:
    if _is_tensor(expected) != _is_tensor(actual) or not (
        isinstance(actual, np.ndarray) or _is_tensor(actual)
    ):
        return Mismatch(
            False, f"{where} is a {typename(actual)}, expected a {typename(expected)}",
            kind="type",
        )
    e, a = _to_numpy(expected), _to_numpy(actual)
    if e.shape != a.shape:
        return Mismatch(
            False, f"{where} has shape {tuple(a.shape)}, expected {tuple(e.shape)}",
            kind="shape",
        )
    if e.dtype != a.dtype:
        return Mismatch(False, f"{where} has dtype {a.dtype}, expected {e.dtype}",
                        kind="dtype")
    return _compare_values(e, a, rtol, atol, where, equal_nan)


def _compare_bools(expected: Any, actual: Any, where: str) -> Mismatch:
    if not isinstance(actual, (bool, np.bool_)):
        return Mismatch(False, f"{where} is a {typename(actual)}, expected a bool",
                        kind="type")
    if bool(actual) != bool(expected):
        return Mismatch(
            False, f"{where} is {bool(actual)}, expected {bool(expected)}", 1.0, True, "value"
        )
    return Mismatch(True, f"{where} is {bool(actual)}")


def _compare_numbers(expected: Any, actual: Any, rtol: float, atol: float, where: str,
                     equal_nan: bool) -> Mismatch:
    if (
        isinstance(actual, (np.ndarray,))
        and actual.shape == ()
        or (_is_tensor(actual) and actual.numel() == 1 and actual.dim() == 0)
    ):
        actual = _to_numpy(actual)[()]
    if isinstance(actual, (bool, np.bool_)) or not isinstance(
        actual, (numbers.Number, np.number)
    ):
        return Mismatch(False, f"{where} is a {typename(actual)}, expected a number",
                        kind="type")
    return _compare_values(
        np.asarray(expected), np.asarray(actual), rtol, atol, where, equal_nan, scalar=True
    )


def _compare_sequences(expected: Any, actual: Any, rtol: float, atol: float, where: str,
                       equal_nan: bool) -> Mismatch:
    if not isinstance(actual, (tuple, list)):
        return Mismatch(
            False, f"{where} is a {typename(actual)}, expected a {typename(expected)}",
            kind="type",
        )
    if len(actual) != len(expected):
        # a tuple's arity is its packing; a list's length is part of its value (indices)
        return Mismatch(False, f"{where} has {len(actual)} items, expected {len(expected)}",
                        kind="container" if isinstance(expected, tuple) else "length")
    worst = Mismatch(True, f"{where} matches", 0.0)
    for i, (e, a) in enumerate(zip(expected, actual)):
        r = compare_outputs(e, a, rtol, atol, f"{where}[{i}]", equal_nan)
        if not r.ok:
            return r
        if r.error >= worst.error:
            worst = r
    return worst


def _compare_dicts(expected: Any, actual: Any, rtol: float, atol: float, where: str,
                   equal_nan: bool) -> Mismatch:
    if not isinstance(actual, dict):
        return Mismatch(False, f"{where} is a {typename(actual)}, expected a dict",
                        kind="type")
    if set(actual) != set(expected):
        missing = sorted(map(str, set(expected) - set(actual)))
        extra = sorted(map(str, set(actual) - set(expected)))
        return Mismatch(False, f"{where} has keys missing {missing} / unexpected {extra}",
                        kind="container")
    worst = Mismatch(True, f"{where} matches", 0.0)
    for k in expected:
        r = compare_outputs(expected[k], actual[k], rtol, atol, f"{where}[{k!r}]", equal_nan)
        if not r.ok:
            return r
        if r.error >= worst.error:
            worst = r
    return worst


def _scalar(x: np.ndarray) -> Any:
    """The one number a 0-d array holds (a Python int past int64 sits in an object array)."""
    v = x[()]
    return v.item() if isinstance(v, np.generic) else v


def _compare_values(
    e: np.ndarray,
    a: np.ndarray,
    rtol: float,
    atol: float,
    where: str,
    equal_nan: bool,
    scalar: bool = False,
) -> Mismatch:
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
                        return Mismatch(False, f"{where} contains {n} NaN/inf value(s)",
                                         kind="nonfinite")
                    return Mismatch(False, f"{where} is finite where the reference is NaN/inf",
                                     kind="nonfinite")
            keep = ~(e_bad | a_bad)
            e, a = e[keep], a[keep]
    err = rel_error(e, a, atol)
    if err > rtol:
        if scalar:
            return Mismatch(
                False,
                f"{where} is {_scalar(a)!r}, expected {_scalar(e)!r} "
                f"(relative error {err:.2g})",
                err,
                True,
                "value",
            )
        return Mismatch(
            False, f"{where}: relative error {err:.2g} > tolerance {rtol:g}", err, True, "value"
        )
    return Mismatch(True, f"relative error {err:.1g} <= {rtol:g}", err, True)
