"""Generic detectors: how does a wrong output differ from the reference's?

Most learners' mistakes are not the registered ones, so when no registered mistake matches, the
engine characterises the difference itself: a constant factor (named when it is a quantity of
the case such as sqrt(C_i) or N), a sign flip, a constant offset, permuted axes, the right
numbers in the wrong places, a missing residual, logits where softmax weights belong, a softmax
over the wrong axis, weights that no longer sum to 1, a missing bias, float32 precision, an
overflow, or an answer right only on some batch items / square maps / odd sizes / B = 1.

Everything here is a pure function of (learner output, expected output, inputs, case
quantities), so the in-notebook :func:`~gclab.exercises.check` and the trusted grader can both
call :func:`explain`. Nothing runs learner code. Module structure (:func:`describe_structure`)
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
    "explain",
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
    ``N'``), plus what the first 4-d input (B, C, H, W) or 3-d input (B, N, D) tells."""
    q: Dict[str, float] = {}
    for x in inputs:
        a = np.shape(x) if hasattr(x, "shape") else None
        if a is None:
            continue
        if len(a) == 4:
            b, c, h, w = a
            q.update({"B": b, "C": c, "H": h, "W": w, "N": h * w})
            break
        if len(a) == 3:
            b, n, d = a
            q.update({"B": b, "N": n, "D": d})
            break
    for k, v in (meta or {}).items():
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            q[str(k)] = float(v)
    return q


def _named_factor(k: float, quantities: Mapping[str, float]) -> str | None:
    """A name for ``k`` among the case's quantities, their square roots, 2 and 1/2."""
    cands: List[Tuple[str, float]] = [("2", 2.0)]
    for name, v in quantities.items():
        if v and v > 0 and v != 1:
            cands.append((name, float(v)))
            cands.append((f"sqrt({name})", math.sqrt(v)))
    for name, v in cands:
        for val, label in ((v, f"{name}"), (1.0 / v, f"1/{name}")):
            if abs(k - val) <= 1e-6 * abs(val):
                return label
    return None


# --------------------------------------------------------------------------- per-case detectors
def detect(obs: Observation) -> List[str]:
    """The findings (case-independent sentences) that describe ``obs.actual`` vs
    ``obs.expected``; empty when none applies. Ordered most specific first."""
    a, e = _np(obs.actual), _np(obs.expected)
    if a is None or e is None:
        return []
    out: List[str] = []
    finite_e = bool(np.all(np.isfinite(e)))
    if finite_e and not np.all(np.isfinite(a)):
        big = max((float(np.max(np.abs(x))) for x in map(_np, obs.inputs)
                   if x is not None and x.size), default=0.0)
        out.append(
            "inf/NaN where the reference is finite: an overflow, e.g. exp() of large logits "
            "without subtracting the max first" + (" (this case has large inputs)" if big > 50
                                                    else "")
        )
        return out
    if not finite_e or not np.all(np.isfinite(a)):
        return out
    if a.shape == e.shape:
        out += _value_findings(a, e, obs)
    out += _layout_findings(a, e)
    return out


def _value_findings(a: np.ndarray, e: np.ndarray, obs: Observation) -> List[str]:
    out: List[str] = []
    ee = float(np.sum(e * e))
    if e.size and ee > 0:
        k = float(np.sum(a * e)) / ee
        if _close(a, k * e) and not _close(a, e):
            if abs(k + 1) <= 1e-6:
                return ["the sign is flipped (your output is minus the reference)"]
            name = _named_factor(k, obs.quantities)
            if name is not None:
                if name.startswith("1/"):
                    return [f"a factor {name} too small: your output is the reference divided by "
                            f"{name[2:]} (an extra division by {name[2:]}, or a missing "
                            "multiplication)"]
                return [f"a factor {name} too large: your output is the reference times {name} "
                        f"(a missing division by {name}, or an extra multiplication)"]
            if e.size >= 4:
                out.append(f"off by a constant factor (your output is {_fmt(k)} x the "
                           "reference): a scaling or a normalisation differs")
                return out
    d = a - e
    if e.size > 1 and np.ptp(d) <= 1e-7 * max(1.0, float(np.max(np.abs(e)))):
        c = float(d.flat[0])
        return [f"off by a constant offset ({_fmt(c)} everywhere): a term added or left out"]
    if e.size > 1 and _close(a, 1.0 - e) or (e.size == 1 and abs(a.item() - 1 + e.item()) < 1e-9):
        return ["your output is 1 minus the reference (a similarity where a distance belongs, "
                "or the other way round)"]
    # residual: a = e - x or a = e + x for an input x of the output's shape
    for x in map(_np, obs.inputs):
        if x is not None and x.shape == e.shape and np.any(x):
            if _close(a, e - x):
                return ["the residual is missing: your output + x equals the reference "
                        "(return x + ..., not only the block's term)"]
            if _close(a, e + x):
                return ["x is added twice: your output - x equals the reference (one residual "
                        "too many)"]
    # a bias: the difference is constant along all axes but one or two (per channel / per item)
    if e.ndim >= 2 and e.size > e.shape[0]:
        for keep in _bias_axes(e.ndim):
            other = tuple(ax for ax in range(e.ndim) if ax not in keep)
            if not other:
                continue
            spread = np.ptp(d, axis=other)
            if np.all(spread <= 1e-7 * max(1.0, float(np.max(np.abs(e))))):
                axes = ", ".join(str(x) for x in keep)
                return [f"off by an offset that varies only along axis {axes} (a bias forgotten "
                        "or added twice, a term broadcast along the wrong axes)"]
    # softmax: logits where weights belong, a softmax over the wrong axis, rows not summing to 1
    sums_e = _sums_to_one_axes(e)
    if sums_e:
        for ax in sums_e:
            if _close(_softmax(a, ax), e, 1e-6):
                return ["your output gives softmax(output) = the reference: you returned the "
                        "logits; apply the softmax"]
        sums_a = _sums_to_one_axes(a)
        if sums_a and not set(sums_a) & set(sums_e):
            return [f"your weights sum to 1 along axis {sums_a[0]}, the reference's along axis "
                    f"{sums_e[0]}: a softmax (or normalisation) over the wrong axis"]
        if not sums_a:
            out.append(f"your weights no longer sum to 1 along axis {sums_e[0]} (the reference's"
                       " do): something after the softmax, or a normalisation that changed")
    # float32 precision
    err = float(np.max(np.abs(a - e) / np.maximum(1e-8, np.abs(a) + np.abs(e))))
    if err <= 2e-6 and not out:
        out.append(f"right to float32 precision only (relative error {err:.1g}): a step runs in "
                   "float32 (np.float32, torch's default dtype, an uncast tensor); keep float64")
    # batch items
    if e.ndim >= 2 and e.shape[0] > 1:
        good = [i for i in range(e.shape[0]) if _close(a[i], e[i], 1e-9)]
        if good and len(good) < e.shape[0]:
            out.append(f"right on batch item(s) {', '.join(map(str, good))} only: the batch "
                       "axis is mixed into the computation (a reshape, a sum or a mean over "
                       "axis 0, an index fixed at 0)")
    return out


def _bias_axes(ndim: int) -> List[Tuple[int, ...]]:
    singles = [(ax,) for ax in range(ndim)]
    pairs = [p for p in itertools.combinations(range(ndim), 2)]
    return singles + pairs


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
    if np.allclose(np.sort(a.ravel()), np.sort(e.ravel()), rtol=1e-9, atol=1e-12):
        return ["the right numbers in the wrong places: a reshape where a transpose belongs "
                "(or axes flattened in the wrong order)"]
    return []


# --------------------------------------------------------------------------- across cases
_PATTERNS: Tuple[Tuple[str, Any], ...] = (
    ("right only where B = 1: the batch axis is mixed into the computation",
     lambda q: q.get("B") == 1),
    ("right only on square maps (H = W): H and W swapped somewhere (a reshape to (W, H), "
     "a transpose of the map)", lambda q: "H" in q and q.get("H") == q.get("W")),
    ("right only on maps with odd H and W: a centre or a midpoint off by half a pixel on even "
     "sizes", lambda q: "H" in q and q["H"] % 2 == 1 and q["W"] % 2 == 1),
    ("right only where C = 1: the channel axis is mixed up", lambda q: q.get("C") == 1),
    ("right only where N' = N (no sub-sampling): the keys' count N' and the queries' count N "
     "are mixed up", lambda q: "N'" in q and q.get("N'") == q.get("N")),
)


def _pattern(obs: Sequence[Observation]) -> str | None:
    good = [o for o in obs if o.passed]
    bad = [o for o in obs if not o.passed]
    if not good or not bad:
        return None
    for text, pred in _PATTERNS:
        try:
            if all(pred(o.quantities) for o in good) and not any(pred(o.quantities) for o in bad):
                return text
        except Exception:  # noqa: BLE001
            continue
    return None


def explain(observations: Sequence[Observation]) -> str | None:
    """One sentence on how the learner's outputs differ from the reference's over all cases, or
    None. A finding shared by every failing case wins; else a pass/fail pattern over the cases
    (right only for B = 1, on square maps, ...); else the worst case's own finding."""
    bad = [o for o in observations if not o.passed]
    if not bad:
        return None
    per_case = [detect(o) for o in bad]
    common = [f for f in per_case[0] if all(f in fs for fs in per_case[1:])]
    pattern = _pattern(observations)
    if common:
        return common[0]
    if pattern:
        return pattern
    worst = max(range(len(bad)), key=lambda i: (bool(per_case[i]), bad[i].error))
    if per_case[worst]:
        where = f" on {bad[worst].label}" if bad[worst].label else ""
        return f"{per_case[worst][0]}{where} (other cases differ otherwise)"
    return None


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
