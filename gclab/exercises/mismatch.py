"""What a wrong type, container or dtype means: the diagnosis when the headline of a verdict is
"output is a torch.Tensor, expected a numpy.ndarray" (or a list for a tuple, float32 for
float64, a float for an int). The type is the cause named; no numeric guess follows it, since
the values of a wrong type were never compared.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

__all__ = ["explain_mismatch"]

_CONVERT = {
    ("torch.Tensor", "numpy.ndarray"): "convert with .detach().numpy(), or stay in NumPy",
    ("numpy.ndarray", "torch.Tensor"): "convert with torch.from_numpy(...), or stay in torch",
}


def _typename(x: Any) -> str:
    t = sys.modules.get("torch")
    if t is not None and isinstance(x, t.Tensor):
        return "torch.Tensor"
    if isinstance(x, np.ndarray):
        return "numpy.ndarray"
    return type(x).__name__


def _values(x: Any) -> Any:
    """``x`` as nested lists/dicts of float64 arrays (for comparing values across types)."""
    t = sys.modules.get("torch")
    if t is not None and isinstance(x, t.Tensor):
        return x.detach().cpu().double().numpy()
    if isinstance(x, dict):
        return {k: _values(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_values(v) for v in x]
    try:
        a = np.asarray(x)
    except Exception:  # noqa: BLE001
        return x
    return a.astype(np.float64) if a.dtype.kind in "biuf" else x


def _same_values(a: Any, e: Any, rtol: float) -> bool:
    a, e = _values(a), _values(e)
    if isinstance(e, dict):
        return isinstance(a, dict) and a.keys() == e.keys() and all(
            _same_values(a[k], e[k], rtol) for k in e)
    if isinstance(e, list):
        return isinstance(a, list) and len(a) == len(e) and all(
            _same_values(x, y, rtol) for x, y in zip(a, e))
    if isinstance(e, np.ndarray) and isinstance(a, np.ndarray):
        return a.shape == e.shape and bool(np.allclose(a, e, rtol=rtol, atol=1e-12))
    try:
        return bool(a == e)
    except Exception:  # noqa: BLE001
        return False


def _is_number(x: Any) -> bool:
    import numbers

    return isinstance(x, (numbers.Number, np.number)) and not isinstance(x, (bool, np.bool_))


def _wrong_order(actual: Any, expected: Any) -> str | None:
    """Items of a tuple or list whose types (and values) match the reference's in another
    order."""
    if not isinstance(expected, (tuple, list)) or not isinstance(actual, (tuple, list)) or \
            len(actual) != len(expected) or len(expected) < 2:
        return None
    got = [_typename(x) for x in actual]
    want = [_typename(x) for x in expected]
    if got == want or sorted(got) != sorted(want):
        return None
    return (f"the right kinds of result in the wrong order: yours are ({', '.join(got)}), the "
            f"reference returns ({', '.join(want)}); return them in the order the exercise "
            "asks for")


def _find(actual: Any, expected: Any, where: str) -> tuple:
    """The (actual, expected) pair that ``where`` ("output[1]['dw']") names."""
    import ast
    import re

    for part in re.findall(r"\[([^\]]+)\]", where):
        try:
            key = ast.literal_eval(part)
            actual, expected = actual[key], expected[key]
        except Exception:  # noqa: BLE001
            break
    return actual, expected


def explain_mismatch(actual: Any, expected: Any, kind: str, message: str,
                     rtol: float = 1e-6) -> str | None:
    """The cause for a mismatch of ``kind`` "type", "container" or "dtype" (None for others).
    ``message`` is the comparison's ("output[1] is a list, expected a tuple")."""
    where = message.split(" ", 1)[0]
    a, e = _find(actual, expected, where)
    if kind == "type":
        if a is None:
            return None  # "did you forget `return`?" already says it
        order = _wrong_order(actual, expected)
        if order:
            return order
        got, want = _typename(a), _typename(e)
        if got in ("numpy.ndarray", "torch.Tensor") and _is_number(e):
            return (f"{where} is an array of shape {tuple(a.shape)} where one number belongs: "
                    "a sum (or a mean) over its elements is missing, or return float(...)")
        how = _CONVERT.get((got, want), f"return a {want}")
        if _same_values(a, e, 1e-3):
            return (f"the right numbers in the wrong type: {where} is a {got} where a {want} "
                    f"belongs ({how})")
        return (f"{where} is a {got} where a {want} belongs ({how}); fix the type first: the "
                "values of a wrong type are not compared")
    if kind == "container" and isinstance(e, dict) and isinstance(a, dict):
        missing = sorted(map(str, set(e) - set(a)))
        extra = sorted(map(str, set(a) - set(e)))
        return (f"your dict has no entry for {', '.join(missing) or '-'}"
                + (f" and an unexpected {', '.join(extra)}" if extra else "")
                + ": a gradient (or parameter) forgotten or misnamed")
    if kind == "container":
        return (f"{message}: the result is packed differently from what the exercise asks "
                "(the items, their number or the dict's keys); the values were not compared")
    if kind == "dtype":
        da = getattr(a, "dtype", None)
        de = getattr(e, "dtype", None)
        ka, ke = getattr(da, "kind", None), getattr(de, "is_floating_point", None)
        a_float = ka == "f" if ka else bool(getattr(da, "is_floating_point", False))
        e_float = (getattr(de, "kind", None) == "f") if getattr(de, "kind", None) else bool(ke)
        if a_float and not e_float:
            return (f"a float where an int is expected: {where} has dtype {da}, the reference "
                    f"{de} (a / where // belongs, or a float constant)")
        if e_float and not a_float:
            return (f"an int where a float is expected: {where} has dtype {da}, the reference "
                    f"{de} (an integer array or an integer literal where a float belongs)")
        return (f"the dtype differs: {where} is {da} where {de} belongs (a step runs in "
                f"another precision: np.float32, torch's default dtype, an uncast tensor)")
    return None
