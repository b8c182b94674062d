"""Input checks shared by every block: clear errors instead of silent broadcasting."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum`` (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a bool (a string such as ``'no'`` would be truthy)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} ({value!r})")
    return value


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


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
    if not _is_number(ratio):
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


def check_eps(name: str, value: object) -> float:
    """Return ``value`` if it is a finite number > 0 (a LayerNorm/BatchNorm epsilon)."""
    if not _is_number(value):
        raise TypeError(f"{name} must be a float such as 1e-5, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0 such as 1e-5, got {value}")
    return float(value)


def check_input(
    x: object, in_channels: int, spatial_dims: int, who: str, module: object = None
) -> Tensor:
    """Check a block input of shape (B, C, *spatial) with ``spatial_dims`` spatial dims.

    An empty batch (B = 0) is accepted (the output is empty too, as in mmcv and timm); a zero
    spatial size is not (there would be no position to attend to). With ``module``, the
    input's dtype must be its parameters' (except under ``torch.autocast``, which casts).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who} expects a torch.Tensor, got {type(x).__name__}")
    names = {1: "(B, C, L)", 2: "(B, C, H, W)", 3: "(B, C, T, H, W)"}[spatial_dims]
    if x.dim() != spatial_dims + 2:
        raise ValueError(
            f"{who} expects a {spatial_dims + 2}-D input {names}, got {x.dim()}-D with shape "
            f"{tuple(x.shape)}"
        )
    if not torch.is_floating_point(x):
        raise TypeError(
            f"{who} expects a floating-point tensor (float16/bfloat16/float32/float64), "
            f"got {x.dtype}; convert with x.float()"
        )
    if x.shape[1] != in_channels:
        raise ValueError(
            f"{who} was built for in_channels={in_channels}, got an input with "
            f"{x.shape[1]} channels (shape {tuple(x.shape)}){_channels_last_tip(x, in_channels)}"
        )
    if any(s == 0 for s in x.shape[2:]):
        raise ValueError(
            f"{who} expects a non-empty input {names} (every spatial size >= 1), got an input "
            f"of shape {tuple(x.shape)} (an empty batch, B = 0, is fine; an empty map is not)"
        )
    if module is not None:
        check_dtype(x, module, who)
    return x


def _channels_last_tip(x: Tensor, in_channels: int) -> str:
    """A pointer to the permute when the channels sit in the last dimension, as in a
    channels-last (B, *spatial, C) array from NumPy, PIL or TensorFlow."""
    if x.shape[-1] != in_channels:
        return ""
    order = (0, x.dim() - 1, *range(1, x.dim() - 1))
    return (f"; the channels look like the last dimension (channels-last): use "
            f"x.permute{order} to make it (B, C, *spatial)")


def check_dtype(x: Tensor, module: object, who: str) -> None:
    """The input's dtype must be the block's parameters' dtype, but under ``torch.autocast``
    (which casts inside each op): otherwise torch fails deep inside a matmul."""
    param = _first_parameter(module)
    if param is None or param.dtype == x.dtype or torch.is_autocast_enabled(x.device.type):
        return
    short = {torch.float32: "x.float()", torch.float64: "x.double()",
             torch.float16: "x.half()", torch.bfloat16: "x.bfloat16()"}.get(param.dtype)
    raise TypeError(
        f"{who} has {param.dtype} parameters but got a {x.dtype} input; use one dtype for both: "
        f"block.to({x.dtype}) to run in {x.dtype}, or {short or f'x.to({param.dtype})'} to "
        f"convert the input (or run under torch.autocast for mixed precision)"
    )


def _first_parameter(module: object) -> Tensor | None:
    """The first parameter of ``module`` in ``parameters()`` order, found without building the
    generator of all of them (that costs ~10 us per forward; this, ~1 us)."""
    for p in module._parameters.values():  # type: ignore[attr-defined]
        if p is not None:
            return p
    for child in module._modules.values():  # type: ignore[attr-defined]
        if child is not None:
            found = _first_parameter(child)
            if found is not None:
                return found
    return None
