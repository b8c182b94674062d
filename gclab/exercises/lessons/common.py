"""What several lessons' exercise modules share: small maths helpers, property checks, cases."""

from __future__ import annotations

import numpy as np
import torch

from gclab.exercises.registry import Case


# --------------------------------------------------------------------------- maths helpers
def tensor64(a) -> torch.Tensor:
    """``a`` (array-like) as a float64 torch tensor: references run torch in double."""
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, ``1 / (1 + exp(-z))``."""
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis``, the maximum subtracted first (no overflow)."""
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def positions(x: np.ndarray) -> np.ndarray:
    """(B, C, H, W) -> (B, N, C), position i = h * W + w."""
    return x.reshape(x.shape[0], x.shape[1], -1).transpose(0, 2, 1)


def to_map(t: np.ndarray, h: int, w: int) -> np.ndarray:
    """(B, N, C) -> (B, C, H, W): undoes :func:`positions`."""
    return t.transpose(0, 2, 1).reshape(t.shape[0], t.shape[2], h, w)


def to_map_hw_swapped(t: np.ndarray, h: int, w: int) -> np.ndarray:
    """Mistake: read the positions as (W, H) and transpose back: right shape, wrong picture."""
    return t.transpose(0, 2, 1).reshape(t.shape[0], t.shape[2], w, h).transpose(0, 1, 3, 2)


def conv1x1_vector(w: np.ndarray, b: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A 1x1 convolution (weight ``w``, bias ``b``) of a (B, Cin, 1, 1) context vector."""
    return (v[:, :, 0, 0] @ w[:, :, 0, 0].T + b)[:, :, None, None]


# --------------------------------------------------------------------------- properties
def shape_is(fn):
    """A property: the output's shape (a tuple of shapes for a tuple of outputs) is
    ``fn(*args, **kwargs)``."""

    def prop(out, *args, **kwargs):
        want = fn(*args, **kwargs)
        if isinstance(out, tuple):
            got = tuple(getattr(o, "shape", None) for o in out)
        else:
            got = getattr(out, "shape", None)
        return got == want, f"shape {got}, expected {want}"

    return prop


def same_shape(out, first, *args, **kw) -> bool:
    """The output has the shape of the first input."""
    return np.shape(out) == np.shape(first)


def module_same_shape(out, x) -> bool:
    """A module's output has the shape of its input."""
    return tuple(out.shape) == tuple(x.shape)


def is_int(value):
    """(ok, why): a count is an int; a float such as 2 * C**2 / r is refused with a tip."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return True, ""
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "iu":
        return True, ""  # a 0-d integer array is an integer too
    return False, f"got {value!r} ({type(value).__name__}); use // or int(...) for a count"


def count_is_int(out, *args, **kw):
    """A function's count is an int (property ``fn(out, *args)``); the tip says use //."""
    return is_int(out)


def counts_are_ints(out, *args, **kw):
    """Every item of a list of counts (indices) is an int."""
    for v in out:
        ok, why = is_int(v)
        if not ok:
            return False, why
    return True, ""


COUNT = "a count is an int"


def rows_sum_to_one(out, *args, **kw) -> bool:
    """Every row (the last axis) of the output sums to 1."""
    return bool(np.allclose(np.asarray(out).sum(axis=-1), 1.0))


def context_shape(out, x, *args, **kw) -> bool:
    """The output is a context vector of x (B, C, H, W): shape (B, C, 1, 1)."""
    return np.shape(out) == (x.shape[0], x.shape[1], 1, 1)


# --------------------------------------------------------------------------- cases
def module_cases(rng):
    """Cases for "build the block as an nn.Module" exercises: (C, ratio) and an input x."""
    out = []
    # B = 1 too; C * ratio = 3.5 (int() gives 3, round() and ceil() give 4, so the planes of
    # the bottleneck tell the rounding rules apart); and a case with large inputs (attention
    # logits ~1e2: a float32 exp without max-subtraction overflows there)
    for shape, ratio, s in (((2, 16, 3, 5), 1 / 4, 1.0), ((3, 32, 5, 4), 1 / 16, 1.0),
                            ((2, 8, 6, 2), 1 / 2, 1.0), ((1, 16, 4, 6), 1 / 4, 1.0),
                            ((2, 14, 3, 4), 1 / 4, 1.0), ((2, 16, 5, 4), 1 / 4, 100.0)):
        x = torch.as_tensor(rng.standard_normal(shape) * s, dtype=torch.float32)
        label = f"C={shape[1]}, ratio={ratio:g}, x{shape}" + (", large x" if s > 1 else "")
        out.append(Case(args=(shape[1], ratio), inputs=(x,), label=label))
    return out
