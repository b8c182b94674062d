"""The words both of gclab's worlds share: the block options and the checks of scalar arguments.

``gclab.nn`` (PyTorch) and ``gclab.numpy`` (NumPy) build the same blocks from the same options;
this module names the options once and checks them once, without torch:

- the Non-local pairwise functions (:data:`NON_LOCAL_MODES`), the context-modelling poolings
  (:data:`POOLINGS`), the fusions (:data:`FUSIONS`, in the order fusion applies them) and mmcv's
  names for them (:data:`FUSION_ALIASES`, read by :func:`parse_fusions`);
- :func:`bottleneck_width`: the transform's width P from ``ratio`` or ``planes``;
- the scalar checks :func:`check_int`, :func:`check_bool`, :func:`check_choice`,
  :func:`check_eps`: each returns the value or raises an error that says what was expected and
  what came in.

The tensor and array checks (shapes, dtypes, a backward's cache) live beside each world:
``gclab/nn/_checks.py`` and ``gclab/numpy/_checks.py``.
"""

from __future__ import annotations

import math
import numbers
from typing import Iterable, Sequence, Tuple, Union

import numpy as np

NON_LOCAL_MODES = ("gaussian", "embedded_gaussian", "dot_product", "concatenation")
POOLINGS = ("att", "avg")  # attention pooling (SNL, GC), average pooling (SE)
FUSIONS = ("mul", "add")  # the order in which fusion applies them
FUSION_ALIASES = {"channel_add": "add", "channel_mul": "mul"}  # mmcv's names


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum`` (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` as a bool if it is one (Python's or NumPy's): a string such as
    ``'no'`` would be truthy, so it is refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} ({value!r})")
    return bool(value)


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``; ValueError naming them otherwise."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def is_number(value: object) -> bool:
    """A real number that is not a bool (Python's or NumPy's ints and floats)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_eps(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number > 0 (a LayerNorm/BatchNorm
    epsilon)."""
    if not is_number(value):
        raise TypeError(f"{name} must be a float such as 1e-5, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0 such as 1e-5, got {value}")
    return float(value)


def parse_fusions(fusions: Union[str, Iterable[str]]) -> Tuple[str, ...]:
    """Normalise ``fusions`` to a non-empty tuple of distinct names from ('add', 'mul').

    mmcv's ``'channel_add'``/``'channel_mul'`` are accepted; one name may stand alone.
    Example: ``parse_fusions(["channel_mul", "add"])`` is ``('mul', 'add')``.
    """
    if isinstance(fusions, str):
        fusions = (fusions,)
    try:
        names = tuple(fusions)
    except TypeError:
        raise TypeError(f"fusions must be a tuple such as ('add',), got {fusions!r}") from None
    if not names:
        raise ValueError("fusions must name at least one of 'add', 'mul', got an empty tuple")
    out = []
    for f in names:
        f = FUSION_ALIASES.get(f, f) if isinstance(f, str) else f
        check_choice("fusion", f, FUSIONS)
        if f in out:
            raise ValueError(f"fusion {f!r} is listed twice in {names!r}")
        out.append(f)
    return tuple(out)


def bottleneck_width(
    in_channels: int, ratio: float | None = None, planes: int | None = None,
    default_ratio: float = 1 / 16,
) -> int:
    """The bottleneck width P: ``planes`` if given, else ``int(in_channels * ratio)`` as mmcv's
    ContextBlock computes it (``ratio`` defaults to ``default_ratio``).

    ``ratio`` must be a number in (0, 1] (a fraction such as 1/16): a ratio above 1 would widen
    the bottleneck past C (``ratio=1e9`` asks for a billion channels), so it is refused with a
    pointer to ``planes=``, the explicit width. Passing both is allowed when they agree
    (``int(C * ratio) == planes`` or ``C * ratio`` is ``planes`` up to rounding).
    """
    if planes is not None:
        if isinstance(planes, bool) or not isinstance(planes, int):
            raise TypeError(
                f"planes must be an int (the bottleneck width), got {type(planes).__name__} "
                f"({planes!r})"
            )
        if planes < 1:
            raise ValueError(f"planes must be >= 1 (the bottleneck width), got {planes}")
        if ratio is not None:
            _check_ratio(ratio, in_channels)
            implied = in_channels * ratio
            if int(implied) != planes and not math.isclose(implied, planes, rel_tol=1e-9):
                raise ValueError(
                    f"ratio={ratio} and planes={planes} disagree for in_channels={in_channels} "
                    f"(int({in_channels} * {ratio}) = {int(implied)}); pass only one of them"
                )
        return planes
    if ratio is None:
        ratio = default_ratio
    _check_ratio(ratio, in_channels)
    width = int(in_channels * ratio)
    if width < 1:
        raise ValueError(
            f"ratio={ratio} gives a zero-width bottleneck for in_channels={in_channels} "
            f"(int({in_channels} * {ratio}) = 0); use ratio >= 1/{in_channels} or planes=1"
        )
    return width


def _check_ratio(ratio: object, in_channels: int) -> None:
    if not is_number(ratio):
        raise TypeError(
            f"ratio must be a float such as 1/16, got {type(ratio).__name__} ({ratio!r}); "
            "for an explicit bottleneck width pass planes= (an int)"
        )
    if not math.isfinite(ratio) or not 0 < ratio <= 1:
        raise ValueError(
            f"ratio must be a finite number > 0 and <= 1, a fraction such as 1/16 "
            f"(planes = int(C * ratio)), got "
            f"{ratio}; for an explicit bottleneck width pass planes= (an int), e.g. "
            f"planes={max(1, in_channels // 16)} for in_channels={in_channels}"
        )
