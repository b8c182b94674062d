"""Small property checks shared by several lessons' exercise modules."""

from __future__ import annotations

import numpy as np


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
    return False, f"got {value!r} ({type(value).__name__}); use // or int(...) for a count"
