r"""The Simplified Non-local (SNL) block in NumPy, equal to ``gclab.nn.SimplifiedNonLocal2d``.

.. math::

    z_i = x_i + W_v \sum_{j=1}^{N} \frac{e^{W_k x_j}}{\sum_m e^{W_k x_m}}\, x_j + b_v

One attention map, shared by every query i. The three steps: :func:`context_modeling`
(attention pooling, ``context_modeling.conv_mask.*`` = W_k), :func:`transform` (one 1x1 conv
C -> C, ``transform.add.{weight,bias}`` = W_v), :func:`fusion` (add).
Shapes: x (B, C, H, W) -> z (B, C, H, W).

Example::

    >>> import gclab.nn, gclab.numpy as gnp
    >>> snl = gclab.nn.SimplifiedNonLocal2d(8)
    >>> x = np.random.randn(2, 8, 5, 5)
    >>> (out, attn), cache = forward(x, gnp.params_from_torch(snl), return_attention=True)
    >>> np.array_equal(out, x), attn.shape  # identity at init; (B, N, N)
    (True, (2, 25, 25))
"""

from __future__ import annotations

from typing import Tuple, Union

import numpy as np

from ..vocab import check_bool
from . import ops
from ._checks import check_dout, check_input, check_keys, get_param
from .framework import (
    MASK,
    Params,
    context_modeling_backward,
    context_modeling_forward,
    expand_attention,
    fusion_backward,
    fusion_forward,
)

W_V = "transform.add."


def context_modeling(x: np.ndarray, params: Params) -> Tuple[np.ndarray, np.ndarray]:
    r"""Step 1: :math:`c = \sum_j \mathrm{softmax}_j(W_k x_j)\, x_j`.

    Returns (context (B, C, 1, 1), alpha (B, N))."""
    return context_modeling_forward(x, params, "att")[0]


def transform_forward(context: np.ndarray, params: Params) -> Tuple[np.ndarray, tuple]:
    r"""Step 2: :math:`W_v c + b_v`, a 1x1 conv C -> C; (B, C, 1, 1) -> (B, C, 1, 1)."""
    w = get_param(params, W_V + "weight", "SNL transform", ndim=4)
    return ops.conv1x1_forward(context, w, get_param(params, W_V + "bias", "SNL transform"))


def transform(context: np.ndarray, params: Params) -> np.ndarray:
    """Output only of :func:`transform_forward`."""
    return transform_forward(context, params)[0]


def fusion(x: np.ndarray, add: np.ndarray) -> np.ndarray:
    r"""Step 3: :math:`z_i = x_i + \mathrm{add}` at every position i."""
    return fusion_forward(x, add=add)[0]


def forward(
    x: np.ndarray, params: Params, return_attention: bool = False
) -> Tuple[Union[np.ndarray, Tuple[np.ndarray, np.ndarray]], dict]:
    """SNL forward. Returns ``(out, cache)``, or ``((out, attention (B, N, N)), cache)``."""
    check_bool("return_attention", return_attention)
    keys = [MASK + "weight", MASK + "bias", W_V + "weight", W_V + "bias"]
    check_keys(params, keys, "SNL block")
    check_input(x, get_param(params, MASK + "weight", "SNL block", 4).shape[1], (2,), "SNL block")
    (context, alpha), c_cm = context_modeling_forward(x, params, "att")  # 1. c
    t, c_tr = transform_forward(context, params)  # 2. W_v c + b_v
    out, c_fu = fusion_forward(x, add=t)  # 3. x + W_v c + b_v
    cache = {"context_modeling": c_cm, "transform": c_tr, "fusion": c_fu, "out_shape": out.shape}
    return ((out, expand_attention(alpha)) if return_attention else out), cache


def backward(dout: np.ndarray, cache: dict) -> Tuple[np.ndarray, Params]:
    """(dx, dparams) of :func:`forward`; ``dout`` is dL/d out, the output's shape (B, C, H, W)."""
    check_dout(dout, cache, "SNL block", ("context_modeling", "transform", "fusion"))
    dx, dt, _ = fusion_backward(dout, cache["fusion"])  # 3.
    dcontext, dw, db = ops.conv1x1_backward(dt, cache["transform"])  # 2.
    dx_cm, grads = context_modeling_backward(dcontext, cache["context_modeling"])  # 1.
    return dx + dx_cm, {**grads, W_V + "weight": dw, W_V + "bias": db}


__all__ = [
    "backward", "context_modeling", "forward", "fusion", "transform", "transform_forward",
]
