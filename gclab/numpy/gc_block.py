r"""The Global Context (GC) block in NumPy: forward and backward, equal to ``gclab.nn.GCBlock``.

.. math::

    z_i = x_i \odot \sigma\bigl(\delta_{mul}(c)\bigr) + \delta_{add}(c), \quad
    \delta(c) = W_{v2}\,\mathrm{ReLU}\bigl(\mathrm{LN}(W_{v1} c)\bigr), \quad
    c = \sum_{j=1}^{N} \frac{e^{W_k x_j}}{\sum_m e^{W_k x_m}}\, x_j

The three steps, by the framework's names: :func:`context_modeling` (attention or average
pooling), :func:`transform` (one LayerNorm bottleneck per fusion branch), :func:`fusion`
(``mul`` first, then ``add``). Shapes: x (B, C, H, W) -> z (B, C, H, W).

Example::

    >>> import torch, gclab.nn, gclab.numpy as gnp
    >>> gc = gclab.nn.GCBlock(16, ratio=1/4, fusions=("add", "mul")).double()
    >>> x = np.random.randn(2, 16, 5, 5)
    >>> out, cache = forward(x, gnp.params_from_torch(gc), **gnp.config_from_torch(gc))
    >>> dx, dparams = backward(np.ones_like(out), cache)
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Tuple, Union

import numpy as np

from ..vocab import POOLINGS, check_bool, check_choice, check_eps, parse_fusions
from ._checks import check_dout, check_input, check_keys, get_param
from .framework import (
    MASK,
    Params,
    bottleneck_backward,
    bottleneck_forward,
    context_modeling,
    context_modeling_backward,
    context_modeling_forward,
    expand_attention,
    fusion,
    fusion_backward,
    fusion_forward,
)


def transform_forward(
    context: np.ndarray,
    params: Params,
    fusions: Union[str, Iterable[str]] = ("add",),
    layer_norm: bool = True,
    eps: float = 1e-5,
) -> Tuple[Dict[str, np.ndarray], dict]:
    r"""Step 2: one bottleneck per fusion branch, :math:`\delta_f(c)` for f in ``fusions``.

    Keys ``transform.{f}.{0,1,3}.*``; ``eps`` is the LayerNorm's epsilon.
    Returns ``({"add": (B, C, 1, 1), ...}, cache)``.
    """
    terms, caches = {}, {}
    for f in parse_fusions(fusions):
        terms[f], caches[f] = bottleneck_forward(
            context, params, f"transform.{f}.", layer_norm, eps
        )
    return terms, caches


def transform_backward(
    dterms: Dict[str, np.ndarray | None], cache: dict
) -> Tuple[np.ndarray, Params]:
    """(dcontext, dparams): the branches' gradients summed into the shared context."""
    dcontext, grads = 0.0, {}
    for f, c in cache.items():
        dc, g = bottleneck_backward(dterms[f], c)
        dcontext, grads = dcontext + dc, {**grads, **g}
    return dcontext, grads


def transform(
    context: np.ndarray,
    params: Params,
    fusions: Union[str, Iterable[str]] = ("add",),
    layer_norm: bool = True,
    eps: float = 1e-5,
) -> Dict[str, np.ndarray]:
    """Output only of :func:`transform_forward`: ``{fusion name: term (B, C, 1, 1)}``."""
    return transform_forward(context, params, fusions, layer_norm, eps)[0]


def param_keys(
    pooling: str = "att", fusions: Union[str, Iterable[str]] = ("add",), layer_norm: bool = True
) -> List[str]:
    """The state_dict keys of ``gclab.nn.GCBlock`` with this configuration."""
    keys = [MASK + "weight", MASK + "bias"] if pooling == "att" else []
    for f in parse_fusions(fusions):
        for i in (0, 1, 3) if layer_norm else (0, 3):
            keys += [f"transform.{f}.{i}.weight", f"transform.{f}.{i}.bias"]
    return keys


def forward(
    x: np.ndarray,
    params: Params,
    pooling: str = "att",
    fusions: Union[str, Iterable[str]] = ("add",),
    layer_norm: bool = True,
    return_attention: bool = False,
    eps: float = 1e-5,
) -> Tuple[Union[np.ndarray, Tuple[np.ndarray, np.ndarray]], dict]:
    r"""GC block forward: context modelling -> transform -> fusion.

    Args mirror ``gclab.nn.GCBlock`` (the width P comes from the params' shapes; ``eps`` is
    the LayerNorm's epsilon, ``GCBlock.eps``, carried by ``config_from_torch``).
    Returns ``(out, cache)``, or ``((out, attention), cache)`` with ``return_attention``;
    attention (B, N, N), N = H*W, repeats the weights alpha (B, N) for every query.
    An empty batch (B = 0) gives an empty output (and zero gradients in :func:`backward`).
    """
    check_choice("pooling", pooling, POOLINGS)
    check_bool("layer_norm", layer_norm)
    check_bool("return_attention", return_attention)
    eps = check_eps("eps", eps)
    fusions = parse_fusions(fusions)
    check_keys(params, param_keys(pooling, fusions, layer_norm), "GC block")
    first = MASK + "weight" if pooling == "att" else f"transform.{fusions[0]}.0.weight"
    check_input(x, get_param(params, first, "GC block", ndim=4).shape[1], (2,), "GC block")
    (context, alpha), c_cm = context_modeling_forward(x, params, pooling)  # 1. c (B, C, 1, 1)
    terms, c_tr = transform_forward(context, params, fusions, layer_norm, eps)  # 2. delta_f(c)
    out, c_fu = fusion_forward(x, terms.get("add"), terms.get("mul"))  # 3. x*sig(mul) + add
    cache = {"context_modeling": c_cm, "transform": c_tr, "fusion": c_fu, "out_shape": out.shape}
    if return_attention:
        return (out, expand_attention(alpha)), cache
    return out, cache


def backward(dout: np.ndarray, cache: dict) -> Tuple[np.ndarray, Params]:
    """(dx, dparams) of :func:`forward`; dparams has a key for every trainable parameter.

    ``dout`` is dL/d out (B, C, H, W) (the attention map, if returned, is not differentiated).
    """
    check_dout(dout, cache, "GC block", ("context_modeling", "transform", "fusion"))
    dx, dadd, dmul = fusion_backward(dout, cache["fusion"])  # 3.
    dcontext, grads = transform_backward({"add": dadd, "mul": dmul}, cache["transform"])  # 2.
    dx_cm, grads_cm = context_modeling_backward(dcontext, cache["context_modeling"])  # 1.
    return dx + dx_cm, {**grads_cm, **grads}


__all__ = [
    "backward",
    "context_modeling",
    "context_modeling_backward",
    "context_modeling_forward",
    "forward",
    "fusion",
    "fusion_backward",
    "fusion_forward",
    "param_keys",
    "transform",
    "transform_backward",
    "transform_forward",
]
