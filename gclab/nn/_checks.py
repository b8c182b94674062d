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


def bottleneck_width(in_channels: int, ratio: float) -> int:
    """``planes = int(in_channels * ratio)``, as mmcv's ContextBlock computes it.

    Raises if the ratio is not a positive finite number or gives a zero-width bottleneck.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise TypeError(f"ratio must be a float such as 1/16, got {type(ratio).__name__}")
    if not math.isfinite(ratio) or ratio <= 0:
        raise ValueError(
            f"ratio must be a finite number > 0 (a fraction such as 1/16), got {ratio}"
        )
    planes = int(in_channels * ratio)
    if planes < 1:
        raise ValueError(
            f"ratio={ratio} gives a zero-width bottleneck for in_channels={in_channels} "
            f"(int({in_channels} * {ratio}) = 0); use ratio >= 1/{in_channels}"
        )
    return planes


def check_input(x: object, in_channels: int, spatial_dims: int, who: str) -> Tensor:
    """Check a block input of shape (B, C, *spatial) with ``spatial_dims`` spatial dims."""
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
            f"{x.shape[1]} channels (shape {tuple(x.shape)})"
        )
    if x.shape[0] == 0 or any(s == 0 for s in x.shape[2:]):
        raise ValueError(
            f"{who} expects a non-empty input {names} (every size >= 1), got an empty input "
            f"of shape {tuple(x.shape)}"
        )
    return x
