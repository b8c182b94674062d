r"""The three steps shared by the GC, SE and SNL blocks, in NumPy (forward/backward pairs).

.. math::

    z_i = x_i \odot \sigma\bigl(\delta_{mul}(c)\bigr) + \delta_{add}(c), \qquad
    c = \mathrm{context\_modeling}(x)

1. **context modelling**: :func:`context_modeling_forward` (attention or average pooling);
2. **transform**: :func:`bottleneck_forward` (1x1 conv, LayerNorm, ReLU, 1x1 conv) or one
   1x1 conv (SNL), one per fusion branch;
3. **fusion**: :func:`fusion_forward` (multiply by the sigmoid first, then add).

Parameters use the keys of the PyTorch blocks' state_dicts (``context_modeling.conv_mask.*``,
``transform.add.0.*`` ...), so ``params_from_torch(block)`` runs here unchanged.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from ..vocab import POOLINGS, check_bool, check_choice, check_eps
from . import ops
from ._checks import get_param

MASK = "context_modeling.conv_mask."
Params = Dict[str, np.ndarray]


# ------------------------------------------------------------------- 1. context modelling
def context_modeling_forward(
    x: np.ndarray, params: Params, pooling: str = "att"
) -> Tuple[Tuple[np.ndarray, np.ndarray], dict]:
    r"""Pool x (B, C, H, W) into one context vector per image, (B, C, 1, 1).

    .. math::

        \texttt{att}:\; c = \sum_j \alpha_j x_j,\; \alpha = \mathrm{softmax}_j(W_k x_j + b_k)
        \qquad \texttt{avg}:\; c = \frac{1}{N}\sum_j x_j \;(\alpha_j = 1/N)

    Returns ``((context, alpha), cache)``; alpha (B, N) are the weights over positions.
    Uses ``context_modeling.conv_mask.{weight,bias}`` (W_k: (1, C, 1, 1), b_k: (1,)) for att.

    Example::

        >>> x = np.random.randn(2, 8, 5, 5)
        >>> (c, alpha), cache = context_modeling_forward(x, {}, pooling="avg")
        >>> c.shape, alpha.shape
        ((2, 8, 1, 1), (2, 25))
    """
    check_choice("pooling", pooling, POOLINGS)
    b, n = x.shape[0], int(np.prod(x.shape[2:]))
    if pooling == "avg":
        context, c_pool = ops.global_avg_pool_forward(x)  # c = mean_j x_j
        alpha = np.full((b, n), 1.0 / n, dtype=x.dtype)
        return (context, alpha), {"pooling": pooling, "pool": c_pool}
    w_k = get_param(params, MASK + "weight", "context_modeling", ndim=4)
    b_k = get_param(params, MASK + "bias", "context_modeling", ndim=1)
    logits, c_conv = ops.conv1x1_forward(x, w_k, b_k)  # W_k x_j + b_k: (B, 1, H, W)
    context, c_pool = ops.attention_pool_forward(x, logits)  # sum_j softmax(.)_j x_j
    alpha = c_pool[1]
    return (context, alpha), {"pooling": pooling, "conv": c_conv, "pool": c_pool}


def context_modeling_backward(dcontext: np.ndarray, cache: dict) -> Tuple[np.ndarray, Params]:
    """(dx, dparams) of :func:`context_modeling_forward` (dparams empty for avg)."""
    if cache["pooling"] == "avg":
        return ops.global_avg_pool_backward(dcontext, cache["pool"]), {}
    dx, dlogits = ops.attention_pool_backward(dcontext, cache["pool"])
    dx_conv, dw, db = ops.conv1x1_backward(dlogits, cache["conv"])
    return dx + dx_conv, {MASK + "weight": dw, MASK + "bias": db}


def context_modeling(
    x: np.ndarray, params: Params, pooling: str = "att"
) -> Tuple[np.ndarray, np.ndarray]:
    """(context (B, C, 1, 1), alpha (B, N)): the output of :func:`context_modeling_forward`."""
    return context_modeling_forward(x, params, pooling)[0]


# ------------------------------------------------------------------- 2. transform
def bottleneck_forward(
    c: np.ndarray, params: Params, prefix: str, layer_norm: bool = True, eps: float = 1e-5
) -> Tuple[np.ndarray, dict]:
    r"""One transform branch.

    .. math::  \delta(c) = W_2\,\mathrm{ReLU}(\mathrm{LN}(W_1 c + b_1)) + b_2

    Keys ``{prefix}0.*`` (W_1: (P, C, 1, 1)), ``{prefix}1.*`` (LayerNorm over (P, 1, 1), only
    with ``layer_norm``; epsilon ``eps``), ``{prefix}3.*`` (W_2: (C, P, 1, 1)).
    Shapes: (B, C, 1, 1) -> same.
    """
    check_bool("layer_norm", layer_norm)
    eps = check_eps("eps", eps)
    who = f"transform {prefix!r}"
    h, c0 = ops.conv1x1_forward(
        c, get_param(params, prefix + "0.weight", who, 4), get_param(params, prefix + "0.bias", who)
    )  # W_1 c + b_1: (B, P, 1, 1)
    c1 = None
    if layer_norm:  # LN over (P, 1, 1), affine (P, 1, 1)
        gamma = get_param(params, prefix + "1.weight", who)
        beta = get_param(params, prefix + "1.bias", who)
        h, c1 = ops.layer_norm_forward(h, gamma, beta, axes=(1, 2, 3), eps=eps)
    h, c2 = ops.relu_forward(h)
    t, c3 = ops.conv1x1_forward(
        h, get_param(params, prefix + "3.weight", who, 4), get_param(params, prefix + "3.bias", who)
    )  # W_2 h + b_2: (B, C, 1, 1)
    return t, {"prefix": prefix, "caches": (c0, c1, c2, c3)}


def bottleneck_backward(dt: np.ndarray, cache: dict) -> Tuple[np.ndarray, Params]:
    """(dc, dparams) of :func:`bottleneck_forward`."""
    p = cache["prefix"]
    c0, c1, c2, c3 = cache["caches"]
    grads: Params = {}
    dh, grads[p + "3.weight"], grads[p + "3.bias"] = ops.conv1x1_backward(dt, c3)
    dh = ops.relu_backward(dh, c2)
    if c1 is not None:
        dh, grads[p + "1.weight"], grads[p + "1.bias"] = ops.layer_norm_backward(dh, c1)
    dc, grads[p + "0.weight"], grads[p + "0.bias"] = ops.conv1x1_backward(dh, c0)
    return dc, grads


# ------------------------------------------------------------------- 3. fusion
def fusion_forward(
    x: np.ndarray, add: np.ndarray | None = None, mul: np.ndarray | None = None
) -> Tuple[np.ndarray, dict]:
    r"""Fusion: :math:`z = x \odot \sigma(\mathrm{mul}) + \mathrm{add}`, multiplication first.

    ``add``/``mul`` (B, C, 1, 1) broadcast over every position of x (B, C, H, W).

    Example::

        >>> x = np.random.randn(2, 4, 3, 3)
        >>> np.allclose(fusion(x, mul=np.zeros((2, 4, 1, 1))), 0.5 * x)
        True
    """
    for name, t in (("add", add), ("mul", mul)):
        if t is not None and t.shape != x.shape[:2] + (1,) * (x.ndim - 2):
            raise ValueError(
                f"fusion: {name} should be (B, C, 1, 1) for x {x.shape}, got {t.shape}"
            )
    out, gate = x, None
    if mul is not None:
        gate, c_sig = ops.sigmoid_forward(mul)  # sigma(mul)
        out = x * gate  # x * sigma(mul)
    if add is not None:
        out = out + add  # ... + add
    return out, {"x": x, "gate": gate, "sig": c_sig if mul is not None else None,
                 "add": add is not None}


def fusion_backward(
    dout: np.ndarray, cache: dict
) -> Tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(dx, dadd, dmul) of :func:`fusion_forward` (None for an absent branch)."""
    spatial = tuple(range(2, dout.ndim))
    dadd = dout.sum(axis=spatial, keepdims=True) if cache["add"] else None  # add is broadcast
    if cache["gate"] is None:
        return dout, dadd, None
    dgate = (dout * cache["x"]).sum(axis=spatial, keepdims=True)
    return dout * cache["gate"], dadd, ops.sigmoid_backward(dgate, cache["sig"])


def fusion(
    x: np.ndarray, add: np.ndarray | None = None, mul: np.ndarray | None = None
) -> np.ndarray:
    """Output only of :func:`fusion_forward`."""
    return fusion_forward(x, add, mul)[0]


def expand_attention(alpha: np.ndarray) -> np.ndarray:
    """(B, N) weights -> (B, N, N) attention, the same row for every query (a read-only view)."""
    b, n = alpha.shape
    return np.broadcast_to(alpha[:, None, :], (b, n, n))
