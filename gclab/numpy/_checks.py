"""Input checks for the NumPy blocks: clear errors instead of silent broadcasting."""

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
            f"{x.shape[1]} channels (shape {x.shape})"
        )
    if x.size == 0:
        raise ValueError(f"{who} got an empty input of shape {x.shape}")
    return x


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


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``; ValueError otherwise."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
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
