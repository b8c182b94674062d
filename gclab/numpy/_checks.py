"""Array checks for the NumPy blocks: clear errors instead of silent broadcasting.

The scalar checks (bools, choices, eps) both worlds share are in :mod:`gclab.vocab`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

_LAYOUT = {1: "(B, C, L)", 2: "(B, C, H, W)", 3: "(B, C, T, H, W)"}


def check_array(name: str, x: object) -> np.ndarray:
    """Return ``x`` if it is a floating-point ``np.ndarray``; raise TypeError otherwise."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            f"{name} must be a floating-point array (float32/float64), got dtype {x.dtype}; "
            f"convert with x.astype(np.float64)"
        )
    return x


def check_input(
    x: object, channels: int, spatial_dims: Sequence[int], who: str
) -> np.ndarray:
    """Check a block input (B, C, *spatial): float array, allowed ndim, C channels, non-empty."""
    x = check_array(f"{who} input x", x)
    if x.ndim - 2 not in spatial_dims:
        wanted = " or ".join(f"{d + 2}-D {_LAYOUT[d]}" for d in spatial_dims)
        raise ValueError(f"{who} expects a {wanted} input, got {x.ndim}-D with shape {x.shape}")
    if x.shape[1] != channels:
        raise ValueError(
            f"{who}: the params are for {channels} input channels, got an input with "
            f"{x.shape[1]} channels (shape {x.shape}){_channels_last_tip(x, channels)}"
        )
    if any(s == 0 for s in x.shape[2:]):
        raise ValueError(
            f"{who} got an empty input of shape {x.shape}: every spatial size must be >= 1 "
            f"(an empty batch, B = 0, is fine; an empty map is not)"
        )
    return x


def _channels_last_tip(x: np.ndarray, channels: int) -> str:
    """A pointer to the transpose when the channels sit in the last axis (channels-last)."""
    if x.shape[-1] != channels:
        return ""
    order = (0, x.ndim - 1, *range(1, x.ndim - 1))
    return (f"; the channels look like the last axis (channels-last): use "
            f"x.transpose{order} to make it (B, C, *spatial)")


def check_dout(dout: object, cache: object, who: str, keys: Sequence[str]) -> np.ndarray:
    """Check a backward's ``dout`` against the ``cache`` its forward returned.

    ``cache`` must be that forward's cache (a dict with ``keys`` and the output's shape);
    ``dout`` a floating-point ndarray of exactly the output's shape (dL/d out, no broadcasting).
    """
    if not isinstance(cache, Mapping) or any(k not in cache for k in keys) or (
        "out_shape" not in cache
    ):
        got = sorted(cache) if isinstance(cache, Mapping) else type(cache).__name__
        raise ValueError(
            f"{who} backward: cache must be the cache returned by this block's forward (a dict "
            f"with keys {sorted(list(keys) + ['out_shape'])}), got {got}"
        )
    shape = tuple(cache["out_shape"])
    if not isinstance(dout, np.ndarray):
        raise TypeError(
            f"{who} backward: dout must be a numpy.ndarray of the output's shape {shape}, "
            f"got {type(dout).__name__}"
        )
    check_array(f"{who} backward: dout", dout)
    if dout.shape != shape:
        raise ValueError(
            f"{who} backward: dout must have the output's shape {shape} (dL/d out, one value "
            f"per output element), got {dout.shape}"
        )
    return dout


def get_param(
    params: Mapping[str, np.ndarray], key: str, who: str, ndim: int | None = None
) -> np.ndarray:
    """``params[key]`` as a float array; a missing key is a ValueError naming the key."""
    if not isinstance(params, Mapping):
        raise TypeError(
            f"{who}: params must be a dict of arrays (see gclab.numpy.params_from_torch), "
            f"got {type(params).__name__}"
        )
    if key not in params:
        raise ValueError(
            f"{who}: params is missing the key {key!r} (params must hold the PyTorch block's "
            f"state_dict keys; got {sorted(params)})"
        )
    value = check_array(f"{who}: params[{key!r}]", params[key])
    if ndim is not None and value.ndim != ndim:
        raise ValueError(
            f"{who}: params[{key!r}] should be {ndim}-D, got shape {value.shape}"
        )
    return value


def check_keys(
    params: Mapping[str, object], expected: Sequence[str], who: str, optional: Sequence[str] = ()
) -> None:
    """The keys of ``params`` must be ``expected`` (plus any of ``optional``): a missing or an
    unused key is a ValueError naming it (it means the config does not match the weights)."""
    if not isinstance(params, Mapping):
        raise TypeError(
            f"{who}: params must be a dict of arrays (see gclab.numpy.params_from_torch), "
            f"got {type(params).__name__}"
        )
    missing = [k for k in expected if k not in params]
    if missing:
        raise ValueError(
            f"{who}: params is missing the key {missing[0]!r} (params must hold the PyTorch "
            f"block's state_dict keys; expected {list(expected)}, got {sorted(params)})"
        )
    unused = sorted(set(params) - set(expected) - set(optional))
    if unused:
        raise ValueError(
            f"{who}: params has keys this configuration does not use: {unused}; do the config "
            f"arguments match the block the weights come from? (see config_from_torch)"
        )
