"""Tensor checks shared by every PyTorch block: clear errors instead of silent broadcasting.

The scalar checks (ints, bools, choices, eps) both worlds share are in :mod:`gclab.vocab`.
"""

from __future__ import annotations

import torch
from torch import Tensor


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
