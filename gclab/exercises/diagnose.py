"""Generic detectors: how does a wrong output differ from the reference's?

Most learners' mistakes are not the registered ones, so when no registered mistake matches, the
engine characterises the difference itself: a constant factor (named when it is a quantity of
the case such as sqrt(C_i) or N), a sign flip, a constant offset, permuted axes, the right
numbers in the wrong places, a missing residual, logits where softmax weights belong, a softmax
over the wrong axis, weights that no longer sum to 1, a missing bias, float32 precision, an
overflow, a count off by a bias or a fraction where an int belongs, ddof, an input returned
unchanged, a reduction over too few or too many axes. :func:`detect` gives one case's findings;
:mod:`gclab.exercises.across` turns the findings of all cases into one sentence.

Everything here is a pure function of (learner output, expected output, inputs, case
quantities), so the in-notebook :func:`~gclab.exercises.check` and the trusted grader can both
call it. Nothing runs learner code. Module structure (:func:`describe_structure`)
only reads the two modules' layer lists.
"""

from __future__ import annotations

import difflib
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

__all__ = [
    "Observation",
    "case_quantities",
    "describe_structure",
    "detect",
    "layer_types",
]


@dataclass
class Observation:
    """One case of a check as the detectors see it.

    ``inputs``: the case's arguments (function) or forward inputs (module); ``quantities``: named
    numbers of the case (``{"C_i": 4, "N": 15, ...}``), see :func:`case_quantities`.
    """

    actual: Any
    expected: Any
    inputs: Sequence[Any] = ()
    quantities: Mapping[str, float] = field(default_factory=dict)
    passed: bool = False
    label: str = ""
    error: float = 0.0
    settings: Mapping[str, Any] = field(default_factory=dict)  # the case's str/bool arguments


# --------------------------------------------------------------------------- helpers
def _np(x: Any) -> np.ndarray | None:
    """A float64 NumPy copy of an array-like output, or None when it is not numeric."""
    try:
        import sys

        t = sys.modules.get("torch")
        if t is not None and isinstance(x, t.Tensor):
            x = x.detach().cpu().double().numpy()
        a = np.asarray(x)
    except Exception:  # noqa: BLE001
        return None
    if a.dtype == object or a.dtype.kind not in "biuf":
        return None
    return a.astype(np.float64)


def _close(a: np.ndarray, b: np.ndarray, tol: float = 1e-6) -> bool:
    """Relative agreement of two arrays (scaled by the larger magnitude, so zeros are fine)."""
    if a.shape != b.shape or a.size == 0:
        return False
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return False
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), 1e-12)
    return float(np.max(np.abs(a - b))) <= tol * scale


def _softmax(z: np.ndarray, axis: int) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _sums_to_one_axes(a: np.ndarray) -> List[int]:
    if a.ndim == 0 or np.any(a < -1e-12) or not np.all(np.isfinite(a)):
        return []
    return [ax for ax in range(a.ndim) if a.shape[ax] > 1 and np.allclose(a.sum(axis=ax), 1.0)]


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def case_quantities(inputs: Sequence[Any], meta: Mapping[str, Any] | None = None
                    ) -> Dict[str, float]:
    """Named numbers of a case a wrong factor may be: the case's own ``meta`` (e.g. ``C_i``,
    ``N'``), plus what the first 4-d input (B, C, H, W) or 3-d input (B, N, .) tells."""
    q: Dict[str, float] = {}
    for x in inputs:
        a = np.shape(x) if hasattr(x, "shape") else None
        if a is None:
            continue
        if len(a) == 4:
            b, c, h, w = a
            q.update({"B": b, "C": c, "H": h, "W": w, "N": h * w})
            break
        if len(a) == 3:  # (B, N, .): the last size has no name the learner knows
            b, n, _ = a
            q.update({"B": b, "N": n})
            break
        if len(a) == 2 and min(a) > 1:
            h, w = a
            q.update({"H": h, "W": w, "N": h * w})
            break
    named: Dict[str, float] = {}
    for k, v in (meta or {}).items():  # the case's own names come first
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            named[str(k)] = float(v)
    for k, v in q.items():
        named.setdefault(k, float(v))
    return named


def _named_factor(k: float, quantities: Mapping[str, float]) -> str | None:
    """A name for ``k`` among the case's quantities, their square roots, 2 and 1/2."""
    names = _factor_names(k, quantities)
    return names[0] if names else None


def _factor_names(k: float, quantities: Mapping[str, float]) -> List[str]:
    """Every name that fits ``k`` (two quantities may be equal on one case: N = N')."""
    found: List[str] = []
    cands: List[Tuple[str, float]] = []
    # B sizes the batch, not a formula: never a factor; N - 1 is (the pairs i != j)
    usable = [(n, float(v)) for n, v in quantities.items() if n != "B" and v and v > 0
              and v != 1]
    if "N" in quantities and quantities["N"] > 2:
        usable.append(("N-1", float(quantities["N"]) - 1))
    for name, v in usable:
        cands.append((name, v))
        cands.append((f"sqrt({name})", math.sqrt(v)))
    for (n1, v1), (n2, v2) in itertools.permutations(usable, 2):
        if v1 != v2:
            cands.append((f"{n1}/{n2}", v1 / v2))
            cands.append((f"sqrt({n1}/{n2})", math.sqrt(v1 / v2)))
    cands += [("2", 2.0), ("ln(10)", math.log(10.0))]  # the case's own quantities first
    for name, v in cands:
        inv = f"1/({name})" if "/" in name and not name.startswith("sqrt") else f"1/{name}"
        for val, label in ((v, f"{name}"), (1.0 / v, inv)):
            if abs(k - val) <= 1e-6 * abs(val) and label not in found:
                found.append(label)
    plain = [f for f in found if not f.startswith("1/(")]  # N'/C_i, not 1/(C_i/N')
    return plain or found


# --------------------------------------------------------------------------- per-case detectors
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
    return _array_findings(aa, ea, obs)


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
    arrs_a, arrs_e = [_np(x) for x in a_items], [_np(x) for x in e_items]
    same = [(a is not None and e is not None and _close(a, e, 1e-7))
            or (a is None and e is None and _same_container(x, y))
            for a, e, x, y in zip(arrs_a, arrs_e, a_items, e_items)]
    if not all(same) and len(a_items) > 1:
        # the right items in the wrong order?
        perm = []
        for a in arrs_a:
            j = next((j for j, e in enumerate(arrs_e) if a is not None and e is not None
                      and a.shape == e.shape and _close(a, e, 1e-7) and j not in perm), None)
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
    x, y = _np(a), _np(e)
    return x is not None and y is not None and _close(x, y, 1e-7)


def _array_findings(actual: Any, expected: Any, obs: Observation) -> List[str]:
    a, e = _np(actual), _np(expected)
    if a is None or e is None:
        return []
    out: List[str] = []
    counted = _count_findings(a, e, obs)
    if counted is not None:
        return counted
    finite_e = bool(np.all(np.isfinite(e)))
    if finite_e and not np.all(np.isfinite(a)):
        big = max((float(np.max(np.abs(x))) for x in map(_np, obs.inputs)
                   if x is not None and x.size), default=0.0)
        if big > 50:
            out.append("inf/NaN where the reference is finite, on a case with large inputs: an "
                       "overflow, e.g. exp() of large logits without subtracting the max first")
        else:
            out.append("inf/NaN where the reference is finite: a division by zero (0 / 0, "
                       "e.g. a denominator without its floor) or a log of 0")
        return out
    if not finite_e or not np.all(np.isfinite(a)):
        return out
    unchanged = _input_returned(a, e, obs)
    if unchanged:
        return unchanged
    if a.shape == e.shape:
        out += _value_findings(a, e, obs)
        out += _reduced_too_much(a, e)
    elif a.ndim == e.ndim and all(y == 1 or x == y for x, y in zip(a.shape, e.shape)) and \
            any(x > 1 and y == 1 for x, y in zip(a.shape, e.shape)):
        return _reduced_too_little(a, e)
    elif a.ndim == e.ndim and all(x in (1, y) for x, y in zip(a.shape, e.shape)):
        for x in map(_np, obs.inputs):
            if x is not None and x.shape == e.shape and _close(np.broadcast_to(a, e.shape) + x, e):
                return [f"the residual is missing: you return the block's term {a.shape}; the "
                        f"fusion adds it to x {e.shape} (x + term)"]
    out += _layout_findings(a, e)
    return out


#: Quantities that are a layer's output channels: a bias of such a layer has that many numbers.
_CHANNELS = ("C", "C_i", "P")


def _count_findings(a: np.ndarray, e: np.ndarray, obs: Observation) -> List[str] | None:
    """A whole-number answer (a count, a size): a fraction where an int belongs, a bias missing
    or counted twice (off by exactly C, or by 1 where the count is of parameters), a boundary."""
    exp = obs.expected
    is_int = isinstance(exp, (int, np.integer)) and not isinstance(exp, (bool, np.bool_)) or (
        isinstance(exp, np.ndarray) and exp.dtype.kind in "iu")
    if not is_int or e.size != 1 or a.size != 1 or not np.isfinite(a).all():
        return None
    if not float(a).is_integer():
        return [f"a float where an int is expected: your result {float(a):.6g} is not a whole "
                "number (a / where // belongs, so a size such as C / r stays a fraction; "
                "int(...) or // keeps it whole)"]
    d = int(round(float(a) - float(e)))
    channels = [(n, int(v)) for n, v in obs.quantities.items() if n in _CHANNELS and v > 1]
    for name, v in channels:
        if abs(d) == v:
            return [f"your count is {name} = {v} too {'high' if d > 0 else 'low'}: a bias "
                    f"{'counted twice, or given to a layer that has none' if d > 0 else 'missing'}"
                    f" (a layer with {name} outputs has {name} biases)"]
    if abs(d) == 1 and channels:
        return [f"one parameter too {'many' if d > 0 else 'few'}: a bias "
                f"{'counted for a layer that has none' if d > 0 else 'missing'}, that of a "
                "layer with a single output (a 1-channel conv such as W_k)"]
    if abs(d) == 1:
        return [f"off by one ({'one too many' if d > 0 else 'one too few'}): a boundary "
                "(< vs <=, a floor vs a ceiling, a +1) differs"]
    return None


def _input_returned(a: np.ndarray, e: np.ndarray, obs: Observation) -> List[str]:
    """The learner's output is one of the inputs, unchanged (and the reference's is not)."""
    if a.size < 2:
        return []
    for x in map(_np, obs.inputs):
        if x is not None and x.shape == a.shape and np.array_equal(x, a) and not (
                x.shape == e.shape and _close(x, e)):
            return ["your output is one of the inputs, unchanged: what should be applied to it "
                    "(a factor, a sum over axes, a term) is missing"]
    return []


def _reduced_too_little(a: np.ndarray, e: np.ndarray) -> List[str]:
    """``a`` keeps axes of size > 1 where ``e`` has size 1: a sum or a mean over them missing."""
    axes = tuple(i for i, (x, y) in enumerate(zip(a.shape, e.shape)) if x > 1 and y == 1)
    for how, fn in (("sum", np.sum), ("mean", np.mean)):
        if _close(fn(a, axis=axes, keepdims=True), e):
            return [f"your output keeps axis {', '.join(map(str, axes))} (size "
                    f"{', '.join(str(a.shape[i]) for i in axes)}) that the reference reduces: "
                    f"the {how} over {'that axis' if len(axes) == 1 else 'those axes'} is "
                    "missing"]
    return [f"your output has shape {a.shape} where {e.shape} belongs: a sum (or mean) over axis "
            f"{', '.join(map(str, axes))} is missing"]


def _reduced_too_much(a: np.ndarray, e: np.ndarray) -> List[str]:
    """``a`` is constant along an axis where ``e`` varies, and equals ``e`` averaged (or
    summed) over that axis: the learner reduced over that axis too."""
    scale = max(1e-12, float(np.max(np.abs(e))))
    for ax in range(e.ndim):
        if e.shape[ax] < 2 or np.ptp(a, axis=ax).max() > 1e-9 * scale or \
                np.ptp(e, axis=ax).max() <= 1e-6 * scale:
            continue
        for how, fn in (("averaged", np.mean), ("summed", np.sum)):
            if _close(np.broadcast_to(fn(e, axis=ax, keepdims=True), e.shape), a):
                return [f"{how} over axis {ax} too: your output is the same along axis {ax} "
                        f"(size {e.shape[ax]}, e.g. the channels or the batch), the reference "
                        "varies along it"]
    return []


def _ddof_findings(k: float, obs: Observation) -> List[str]:
    """``k`` = n/(n-1) or its square root for a size n of an input: ddof=1 vs ddof=0."""
    sizes = sorted({int(d) for x in map(_np, obs.inputs) if x is not None
                    for d in (*x.shape, x.size) if d > 2})
    for n in sizes:
        r = n / (n - 1)
        for val, what in ((r, "variance"), (math.sqrt(r), "standard deviation")):
            if abs(k - val) <= 1e-9 * val:
                return [f"ddof differs: your {what} is the sample one (ddof=1, divided by "
                        f"n - 1 = {n - 1}) where the population one (ddof=0, divided by n = {n}) "
                        "belongs"]
            if abs(k - 1 / val) <= 1e-9 / val:
                return [f"ddof differs: your {what} is the population one (ddof=0, divided by "
                        f"n = {n}) where the sample one (ddof=1, divided by n - 1 = {n - 1}) "
                        "belongs"]
    return []


def _value_findings(a: np.ndarray, e: np.ndarray, obs: Observation) -> List[str]:
    out: List[str] = []
    # float32 precision: right to about 1e-7 relative, not to float64's 1e-16
    err = float(np.max(np.abs(a - e) / np.maximum(1e-8, np.abs(a) + np.abs(e))))
    integral = bool(np.all(e == np.round(e)) and np.all(a == np.round(a)))
    if integral and e.size == 1:
        d = int(round(float(a) - float(e)))
        if abs(d) < 0.05 * abs(float(e)):
            return [f"your count is {abs(d)} too {'high' if d > 0 else 'low'} (a small "
                    "difference): a term (a bias, a LayerNorm's parameters, one layer) is "
                    + ("counted extra" if d > 0 else "missing")
                    + ", or a size such as planes is rounded differently"]
    if 1e-10 < err and _close(a, e, 3e-6):
        return [f"right to float32 precision only (relative error {err:.1g}): a step runs in "
                "float32 (np.float32, torch's default dtype, an uncast tensor); keep float64"]
    if err <= 1e-3 and _close(a, e, 1e-3):
        return [f"close but not equal (relative error {err:.1g}): a small constant such as an "
                "eps differs, or a step runs in lower precision"]
    ee = float(np.sum(e * e))
    if e.size and ee > 0:
        k = float(np.sum(a * e)) / ee
        if _close(a, k * e) and not _close(a, e):
            if abs(k + 1) <= 1e-6:
                return ["the sign is flipped (your output is minus the reference)"]
            ddof = _ddof_findings(k, obs)
            if ddof:
                return ddof
            names = _factor_names(k, obs.quantities)
            if names:
                return [f"a factor {name} too small: your output is the reference divided by "
                        f"{name[2:]} (an extra division by {name[2:]}, or a missing "
                        "multiplication)" if name.startswith("1/") else
                        f"a factor {name} too {'large' if k > 1 else 'small'}: your output is "
                        f"the reference times {name} (a division or multiplication by {name} "
                        "too many, or one missing)"
                        for name in names]
            if e.size >= 4:
                out.append(f"off by a constant factor (your output is {_fmt(k)} x the "
                           "reference): a scaling or a normalisation differs")
                return out
    d = a - e
    scale_e = max(1.0, float(np.max(np.abs(e))))
    if e.size > 1 and np.ptp(d) <= 1e-7 * scale_e and abs(float(d.flat[0])) > 1e-6 * scale_e:
        c = float(d.flat[0])
        return [f"off by a constant offset ({_fmt(c)} everywhere): a term added or left out"]
    if e.size > 1 and _close(a, 1.0 - e) or (e.size == 1 and abs(a.item() - 1 + e.item()) < 1e-9):
        return ["your output is 1 minus the reference (a similarity where a distance belongs, "
                "sigmoid(-s) where sigmoid(s) belongs, or the other way round)"]
    if e.size > 2 and np.ptp(a + e) <= 1e-7 * scale_e:
        c = float((a + e).flat[0])
        return [f"your output is {_fmt(c)} minus the reference (a sign flipped, and an offset)"]
    if np.all(e >= 0) and np.any(np.abs(e - 1) > 1e-6) and np.any(e > 0):
        if _close(a, e ** 2):
            return ["your output is the reference squared (a variance where a standard "
                    "deviation belongs, or a square root forgotten)"]
        if _close(a, np.sqrt(e)):
            return ["your output is the square root of the reference (a square root too many, "
                    "e.g. a norm where its square belongs)"]
    if e.size > 2 and np.any(e < 0) and _close(a, np.maximum(e, 0)):
        return ["an extra ReLU (or a clip at 0): your output is max(reference, 0)"]
    if e.size > 2 and np.any(a < 0) and _close(np.maximum(a, 0), e):
        return ["a ReLU is missing: max(your output, 0) equals the reference"]
    if e.size > 2 and np.all((e > 0) & (e < 1)):
        with np.errstate(all="ignore"):
            if _close(1.0 / (1.0 + np.exp(-a)), e):
                return ["the sigmoid is missing: sigmoid(your output) equals the reference"]
    if e.size > 2 and _close(a, 1.0 / (1.0 + np.exp(-np.clip(e, -700, 700)))):
        return ["an extra sigmoid: your output is sigmoid(reference)"]
    if e.size > 2 and np.ptp(a) == 0 and np.ptp(e) > 1e-6 * scale_e:
        return [f"your output is {_fmt(float(a.flat[0]))} everywhere where the reference varies: "
                "a term that depends on the inputs (the upstream gradient, the input) is "
                "missing"]
    if e.size > 2 and np.all(np.abs(1 - e) > 1e-9):
        ca, ce = 1.0 - a, 1.0 - e
        k = float(np.sum(ca * ce)) / float(np.sum(ce * ce))
        if abs(k - 1) > 1e-6 and abs(k) > 1e-6 and _close(ca, k * ce):
            names = _factor_names(k, obs.quantities) or [_fmt(k)]
            return [f"1 - your output is (1 - reference) times {name}: the normalisation of a "
                    "mean (a count such as N (N - 1), or N^2) differs" for name in names]
    # residual: a = e - x or a = e + x for an input x of the output's shape
    for x in map(_np, obs.inputs):
        if x is not None and x.shape == e.shape and np.any(x):
            if _close(a, e - x):
                return ["the residual is missing: your output + x equals the reference "
                        "(return x + ..., not only the block's term)"]
            if _close(a, e + x):
                return ["x is added twice: your output - x equals the reference (one residual "
                        "too many)"]
    # a bias: on a map (B, C, H, W) the difference is the same at every position (it varies
    # with the channel, or the image); on (B, F) the same for every item
    keeps = {4: [(1,), (0, 1)], 2: [(1,)]}.get(e.ndim, [])
    if (e.ndim == 4 and (e.shape[2] * e.shape[3] > 1 or e.shape[0] > 1)) or (
            e.ndim == 2 and e.shape[0] > 1):
        if e.ndim == 4 and e.shape[2] * e.shape[3] == 1:
            keeps = [(1,)]  # (B, C, 1, 1): the same for every image, per channel
        elif e.ndim == 4 and e.shape[0] == 1:
            keeps = [(0, 1)]  # one image: "the same for every image" would say nothing
        for keep in keeps:
            other = tuple(ax for ax in range(e.ndim) if ax not in keep)
            spread = np.ptp(d, axis=other)
            if np.all(spread <= 1e-7 * scale_e) and np.max(np.abs(d)) > 1e-6 * scale_e:
                if keep == (1,):
                    return ["off by a per-channel constant, the same for every image and "
                            "position: a bias forgotten, added twice, or from the wrong layer"]
                return ["the difference is the same at every position (it varies with the "
                        "channel and the image): the slip is in the global term (the context, "
                        "its transform or the fusion), not in the per-position part"]
    # softmax: logits where weights belong, a softmax over the wrong axis, rows not summing to 1
    sums_e = _sums_to_one_axes(e)
    if sums_e:
        for ax in sums_e:
            if _close(_softmax(a, ax), e, 1e-6):
                return ["your output gives softmax(output) = the reference: you returned the "
                        "logits; apply the softmax"]
        found = _logit_factor(a, e, sums_e[0], obs.quantities)
        if found:
            return found
        sums_a = _sums_to_one_axes(a)
        if sums_a and not set(sums_a) & set(sums_e):
            return [f"your weights sum to 1 along axis {sums_a[0]}, the reference's along axis "
                    f"{sums_e[0]}: a softmax (or normalisation) over the wrong axis"]
        if not sums_a:
            out.append(f"your weights no longer sum to 1 along axis {sums_e[0]} (the reference's"
                       " do): something after the softmax, or a normalisation that changed")
    # batch items
    if e.ndim >= 3 and e.shape[0] > 1:
        good = [i for i in range(e.shape[0]) if _close(a[i], e[i], 1e-9)]
        if good == [0]:
            out.append("right on the first image only: the batch axis is mixed into the "
                       "computation (an index fixed at 0, a reshape or a sum over axis 0)")
    return out


def _logit_factor(a: np.ndarray, e: np.ndarray, axis: int, quantities) -> List[str] | None:
    """Both are softmax weights along ``axis``: are the learner's logits the reference's times
    a constant (a scale such as 1/sqrt(C_i) applied differently)?"""
    if np.any(a <= 0) or np.any(e <= 0) or not np.allclose(a.sum(axis=axis), 1.0):
        return None
    la, le = np.log(a), np.log(e)
    la = la - la.mean(axis=axis, keepdims=True)
    le = le - le.mean(axis=axis, keepdims=True)
    den = float(np.sum(le * le))
    if den <= 1e-12:
        return None
    k = float(np.sum(la * le)) / den
    if not _close(la, k * le, 1e-6) or abs(k - 1) < 1e-6:
        return None
    names = _factor_names(k, quantities) or [_fmt(k)]
    return [f"the weights come from logits scaled differently: your logits are the reference's "
            f"times {name} (the 1/sqrt(C_i) scale, or another factor, applied wrongly)"
            for name in names]


def _layout_findings(a: np.ndarray, e: np.ndarray) -> List[str]:
    if a.size != e.size or a.size < 2 or _close(a.reshape(e.shape), e) and a.shape == e.shape:
        return []
    if e.ndim <= 6:
        for perm in itertools.permutations(range(e.ndim)):
            if perm == tuple(range(e.ndim)):
                continue
            t = e.transpose(perm)
            if t.shape == a.shape and _close(a, t):
                return [f"axes permuted: your output is the reference transposed with axes "
                        f"{perm} (a transpose missing, or one too many)"]
    if a.shape != e.shape and _close(a.ravel(), e.ravel()):
        return [f"the right values in the wrong shape: your {a.shape} is the reference's "
                f"{e.shape} reshaped (keep the shape the exercise asks for)"]
    if np.allclose(np.sort(a.ravel()), np.sort(e.ravel()), rtol=1e-9, atol=1e-12):
        return ["the right numbers in the wrong places: a reshape where a transpose belongs "
                "(or axes flattened in the wrong order)"]
    return []


# --------------------------------------------------------------------------- module structure
def layer_types(module: Any) -> List[Tuple[str, str]]:
    """(qualified name, type name) of every leaf layer of ``module``, in registration order."""
    out = []
    for name, m in module.named_modules():
        if name and not any(True for _ in m.children()):
            out.append((name, type(m).__name__))
    return out


def describe_structure(learner: Any, reference: Any) -> str | None:
    """What is wrong with the learner's layers, compared with the reference module's: a layer
    missing, one too many, a different type, or the same layers in another order; None when the
    types in order agree (then the difference is in names or shapes)."""
    mine, ref = layer_types(learner), layer_types(reference)
    a, b = [t for _, t in mine], [t for _, t in ref]
    if a == b:
        shapes = _shape_difference(learner, reference)
        return shapes
    if sorted(a) == sorted(b):
        return (f"your module has the right layers in a different order: yours "
                f"{', '.join(a)}; expected {', '.join(b)}")
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "delete":
            parts.append("an extra " + ", ".join(f"{t} ({n})" for n, t in mine[i1:i2]))
        elif op == "insert":
            parts.append("no " + ", ".join(b[j1:j2]) + f" where the reference has one "
                         f"({', '.join(n for n, _ in ref[j1:j2])})")
        elif op == "replace":
            parts.append(f"{', '.join(a[i1:i2])} where the reference has {', '.join(b[j1:j2])}"
                         f" ({', '.join(n for n, _ in mine[i1:i2])})")
    return ("your module's layers differ from the reference's: " + "; ".join(parts)
            + f" (yours: {', '.join(a) or 'none'}; expected: {', '.join(b)})")


def _shape_difference(learner: Any, reference: Any) -> str | None:
    mine, ref = learner.state_dict(), reference.state_dict()
    for (k1, v1), (k2, v2) in zip(mine.items(), ref.items()):
        if tuple(v1.shape) != tuple(v2.shape):
            return (f"your parameter {k1} has shape {tuple(v1.shape)} where the reference's "
                    f"{k2} has {tuple(v2.shape)} (a channel count, e.g. planes = "
                    "int(C * ratio), differs)")
    if len(mine) != len(ref):
        return (f"your module has {len(mine)} parameters/buffers, the reference {len(ref)} "
                "(a bias=False, or an extra parameter)")
    names = [(k1, k2) for k1, k2 in zip(mine, ref) if k1 != k2]
    if names:
        k1, k2 = names[0]
        return (f"the layers are right, but named differently: yours {k1}, expected {k2} "
                "(use the attribute names and nesting the exercise asks for)")
    return None
