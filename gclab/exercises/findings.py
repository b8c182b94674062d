"""Detectors for a wrong array or number: how the learner's output differs from the reference's.

:func:`array_findings` gives one case's findings for an output that is an array or a number: a
count off by a bias, a fraction where an int belongs, inf/NaN, an input returned unchanged, a
constant factor named from the case's quantities, a sign flip, an offset, a ReLU or sigmoid too
many or missing, a missing residual, a bias, logits where weights belong, a softmax over the
wrong axis, permuted axes, a reduction over too few or too many axes. Each detector is a pure
function of (learner output, expected output, the case's inputs and quantities).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, List

import numpy as np

from gclab.exercises.observe import Observation, as_array, close, factor_names

__all__ = ["array_findings"]


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


def array_findings(actual: Any, expected: Any, obs: Observation) -> List[str]:
    a, e = as_array(actual), as_array(expected)
    if a is None or e is None:
        return []
    out: List[str] = []
    counted = _count_findings(a, e, obs)
    if counted is not None:
        return counted
    finite_e = bool(np.all(np.isfinite(e)))
    if finite_e and not np.all(np.isfinite(a)):
        big = max((float(np.max(np.abs(x))) for x in map(as_array, obs.inputs)
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
        for x in map(as_array, obs.inputs):
            if x is not None and x.shape == e.shape and close(np.broadcast_to(a, e.shape) + x, e):
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
    for x in map(as_array, obs.inputs):
        if x is not None and x.shape == a.shape and np.array_equal(x, a) and not (
                x.shape == e.shape and close(x, e)):
            return ["your output is one of the inputs, unchanged: what should be applied to it "
                    "(a factor, a sum over axes, a term) is missing"]
    return []


def _reduced_too_little(a: np.ndarray, e: np.ndarray) -> List[str]:
    """``a`` keeps axes of size > 1 where ``e`` has size 1: a sum or a mean over them missing."""
    axes = tuple(i for i, (x, y) in enumerate(zip(a.shape, e.shape)) if x > 1 and y == 1)
    for how, fn in (("sum", np.sum), ("mean", np.mean)):
        if close(fn(a, axis=axes, keepdims=True), e):
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
            if close(np.broadcast_to(fn(e, axis=ax, keepdims=True), e.shape), a):
                return [f"{how} over axis {ax} too: your output is the same along axis {ax} "
                        f"(size {e.shape[ax]}, e.g. the channels or the batch), the reference "
                        "varies along it"]
    return []


def _ddof_findings(k: float, obs: Observation) -> List[str]:
    """``k`` = n/(n-1) or its square root for a size n of an input: ddof=1 vs ddof=0."""
    sizes = sorted({int(d) for x in map(as_array, obs.inputs) if x is not None
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
    """The first of :data:`_VALUE_DETECTORS` that fits (same shape, both finite); else what the
    weights and the batch items say."""
    for detector in _VALUE_DETECTORS:
        found = detector(a, e, obs)
        if found:
            return found
    return _weights_and_batch(a, e, obs)


def _scale(e: np.ndarray) -> float:
    return max(1.0, float(np.max(np.abs(e))))


def _small_count(a: np.ndarray, e: np.ndarray, obs: Observation) -> List[str] | None:
    integral = bool(np.all(e == np.round(e)) and np.all(a == np.round(a)))
    if integral and e.size == 1:
        d = int(round(float(a) - float(e)))
        if abs(d) < 0.05 * abs(float(e)):
            return [f"your count is {abs(d)} too {'high' if d > 0 else 'low'} (a small "
                    "difference): a term (a bias, a LayerNorm's parameters, one layer) is "
                    + ("counted extra" if d > 0 else "missing")
                    + ", or a size such as planes is rounded differently"]
    return None


def _precision(a: np.ndarray, e: np.ndarray, obs: Observation) -> List[str] | None:
    # float32 precision: right to about 1e-7 relative, not to float64's 1e-16
    err = float(np.max(np.abs(a - e) / np.maximum(1e-8, np.abs(a) + np.abs(e))))
    if 1e-10 < err and close(a, e, 3e-6):
        return [f"right to float32 precision only (relative error {err:.1g}): a step runs in "
                "float32 (np.float32, torch's default dtype, an uncast tensor); keep float64"]
    if err <= 1e-3 and close(a, e, 1e-3):
        return [f"close but not equal (relative error {err:.1g}): a small constant such as an "
                "eps differs, or a step runs in lower precision"]
    return None


def _scaled(a: np.ndarray, e: np.ndarray, obs: Observation) -> List[str] | None:
    """The reference times a constant: a sign flip, ddof, a named factor, or a bare factor."""
    ee = float(np.sum(e * e))
    if not (e.size and ee > 0):
        return None
    k = float(np.sum(a * e)) / ee
    if not close(a, k * e) or close(a, e):
        return None
    if abs(k + 1) <= 1e-6:
        return ["the sign is flipped (your output is minus the reference)"]
    ddof = _ddof_findings(k, obs)
    if ddof:
        return ddof
    names = factor_names(k, obs.quantities)
    if names:
        return [f"a factor {name} too small: your output is the reference divided by "
                f"{name[2:]} (an extra division by {name[2:]}, or a missing "
                "multiplication)" if name.startswith("1/") else
                f"a factor {name} too {'large' if k > 1 else 'small'}: your output is "
                f"the reference times {name} (a division or multiplication by {name} "
                "too many, or one missing)"
                for name in names]
    if e.size >= 4:
        return [f"off by a constant factor (your output is {_fmt(k)} x the "
                "reference): a scaling or a normalisation differs"]
    return None


def _offset(a: np.ndarray, e: np.ndarray, obs: Observation) -> List[str] | None:
    d, scale_e = a - e, _scale(e)
    if e.size > 1 and np.ptp(d) <= 1e-7 * scale_e and abs(float(d.flat[0])) > 1e-6 * scale_e:
        c = float(d.flat[0])
        return [f"off by a constant offset ({_fmt(c)} everywhere): a term added or left out"]
    if e.size > 1 and close(a, 1.0 - e) or (e.size == 1 and abs(a.item() - 1 + e.item()) < 1e-9):
        return ["your output is 1 minus the reference (a similarity where a distance belongs, "
                "sigmoid(-s) where sigmoid(s) belongs, or the other way round)"]
    if e.size > 2 and np.ptp(a + e) <= 1e-7 * scale_e:
        c = float((a + e).flat[0])
        return [f"your output is {_fmt(c)} minus the reference (a sign flipped, and an offset)"]
    return None


def _elementwise(a: np.ndarray, e: np.ndarray, obs: Observation) -> List[str] | None:
    """A square, a square root, a ReLU or a sigmoid too many or missing."""
    if np.all(e >= 0) and np.any(np.abs(e - 1) > 1e-6) and np.any(e > 0):
        if close(a, e ** 2):
            return ["your output is the reference squared (a variance where a standard "
                    "deviation belongs, or a square root forgotten)"]
        if close(a, np.sqrt(e)):
            return ["your output is the square root of the reference (a square root too many, "
                    "e.g. a norm where its square belongs)"]
    if e.size > 2 and np.any(e < 0) and close(a, np.maximum(e, 0)):
        return ["an extra ReLU (or a clip at 0): your output is max(reference, 0)"]
    if e.size > 2 and np.any(a < 0) and close(np.maximum(a, 0), e):
        return ["a ReLU is missing: max(your output, 0) equals the reference"]
    if e.size > 2 and np.all((e > 0) & (e < 1)):
        with np.errstate(all="ignore"):
            if close(1.0 / (1.0 + np.exp(-a)), e):
                return ["the sigmoid is missing: sigmoid(your output) equals the reference"]
    if e.size > 2 and close(a, 1.0 / (1.0 + np.exp(-np.clip(e, -700, 700)))):
        return ["an extra sigmoid: your output is sigmoid(reference)"]
    return None


def _constant_or_mean(a: np.ndarray, e: np.ndarray, obs: Observation) -> List[str] | None:
    """A constant output where the reference varies; 1 - output scaled (a mean's count)."""
    if e.size > 2 and np.ptp(a) == 0 and np.ptp(e) > 1e-6 * _scale(e):
        return [f"your output is {_fmt(float(a.flat[0]))} everywhere where the reference varies: "
                "a term that depends on the inputs (the upstream gradient, the input) is "
                "missing"]
    if e.size > 2 and np.all(np.abs(1 - e) > 1e-9):
        ca, ce = 1.0 - a, 1.0 - e
        k = float(np.sum(ca * ce)) / float(np.sum(ce * ce))
        if abs(k - 1) > 1e-6 and abs(k) > 1e-6 and close(ca, k * ce):
            names = factor_names(k, obs.quantities) or [_fmt(k)]
            return [f"1 - your output is (1 - reference) times {name}: the normalisation of a "
                    "mean (a count such as N (N - 1), or N^2) differs" for name in names]
    return None


def _residual(a: np.ndarray, e: np.ndarray, obs: Observation) -> List[str] | None:
    """a = e - x or a = e + x for an input x of the output's shape."""
    for x in map(as_array, obs.inputs):
        if x is not None and x.shape == e.shape and np.any(x):
            if close(a, e - x):
                return ["the residual is missing: your output + x equals the reference "
                        "(return x + ..., not only the block's term)"]
            if close(a, e + x):
                return ["x is added twice: your output - x equals the reference (one residual "
                        "too many)"]
    return None


def _bias(a: np.ndarray, e: np.ndarray, obs: Observation) -> List[str] | None:
    """On a map (B, C, H, W) the difference is the same at every position (it varies with the
    channel, or the image); on (B, F) the same for every item."""
    d, scale_e = a - e, _scale(e)
    keeps = {4: [(1,), (0, 1)], 2: [(1,)]}.get(e.ndim, [])
    if not ((e.ndim == 4 and (e.shape[2] * e.shape[3] > 1 or e.shape[0] > 1)) or (
            e.ndim == 2 and e.shape[0] > 1)):
        return None
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
    return None


def _softmax_weights(a: np.ndarray, e: np.ndarray, obs: Observation) -> List[str] | None:
    """Logits where weights belong, logits scaled differently, a softmax over the wrong axis."""
    sums_e = _sums_to_one_axes(e)
    if not sums_e:
        return None
    for ax in sums_e:
        if close(_softmax(a, ax), e, 1e-6):
            return ["your output gives softmax(output) = the reference: you returned the "
                    "logits; apply the softmax"]
    found = _logit_factor(a, e, sums_e[0], obs.quantities)
    if found:
        return found
    sums_a = _sums_to_one_axes(a)
    if sums_a and not set(sums_a) & set(sums_e):
        return [f"your weights sum to 1 along axis {sums_a[0]}, the reference's along axis "
                f"{sums_e[0]}: a softmax (or normalisation) over the wrong axis"]
    return None


#: The detectors for an output of the right shape, most specific first: the first that fits
#: is the finding.
_VALUE_DETECTORS = (_small_count, _precision, _scaled, _offset, _elementwise, _constant_or_mean,
                    _residual, _bias, _softmax_weights)


def _weights_and_batch(a: np.ndarray, e: np.ndarray, obs: Observation) -> List[str]:
    """Weights that no longer sum to 1; right on the first image only (both may be said)."""
    out: List[str] = []
    sums_e = _sums_to_one_axes(e)
    if sums_e and not _sums_to_one_axes(a):
        out.append(f"your weights no longer sum to 1 along axis {sums_e[0]} (the reference's"
                   " do): something after the softmax, or a normalisation that changed")
    if e.ndim >= 3 and e.shape[0] > 1:
        good = [i for i in range(e.shape[0]) if close(a[i], e[i], 1e-9)]
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
    if not close(la, k * le, 1e-6) or abs(k - 1) < 1e-6:
        return None
    names = factor_names(k, quantities) or [_fmt(k)]
    return [f"the weights come from logits scaled differently: your logits are the reference's "
            f"times {name} (the 1/sqrt(C_i) scale, or another factor, applied wrongly)"
            for name in names]


def _layout_findings(a: np.ndarray, e: np.ndarray) -> List[str]:
    if a.size != e.size or a.size < 2 or close(a.reshape(e.shape), e) and a.shape == e.shape:
        return []
    if e.ndim <= 6:
        for perm in itertools.permutations(range(e.ndim)):
            if perm == tuple(range(e.ndim)):
                continue
            t = e.transpose(perm)
            if t.shape == a.shape and close(a, t):
                return [f"axes permuted: your output is the reference transposed with axes "
                        f"{perm} (a transpose missing, or one too many)"]
    if a.shape != e.shape and close(a.ravel(), e.ravel()):
        return [f"the right values in the wrong shape: your {a.shape} is the reference's "
                f"{e.shape} reshaped (keep the shape the exercise asks for)"]
    if np.allclose(np.sort(a.ravel()), np.sort(e.ravel()), rtol=1e-9, atol=1e-12):
        return ["the right numbers in the wrong places: a reshape where a transpose belongs "
                "(or axes flattened in the wrong order)"]
    return []
