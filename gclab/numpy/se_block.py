r"""The Squeeze-and-Excitation (SE) block in NumPy, equal to ``gclab.nn.SEBlock``.

.. math::

    z_i = x_i \odot \sigma\Bigl(W_2\,\mathrm{ReLU}\bigl(W_1\,
          \tfrac{1}{N}\textstyle\sum_{j=1}^{N} x_j + b_1\bigr) + b_2\Bigr)

In the framework's words: :func:`context_modeling` = average pooling (*squeeze*),
:func:`transform` = a bottleneck without LayerNorm (*excitation*), :func:`fusion` = ``mul``
(*scale*). So SE **is** the GC block with ``pooling='avg', fusions=('mul',),
layer_norm=False``, and this file says exactly that. Keys: ``transform.mul.0.*``,
``transform.mul.3.*``. Shapes: x (B, C, H, W) -> z (B, C, H, W).

Example::

    >>> import gclab.nn, gclab.numpy as gnp
    >>> se = gclab.nn.SEBlock(16, ratio=1/4)
    >>> out, cache = forward(np.random.randn(2, 16, 5, 5), gnp.params_from_torch(se))
"""

from __future__ import annotations

from typing import Tuple, Union

import numpy as np

from . import gc_block
from ._checks import check_dout
from .framework import Params, fusion

SE_CONFIG = {"pooling": "avg", "fusions": ("mul",), "layer_norm": False}


def context_modeling(x: np.ndarray, params: Params) -> Tuple[np.ndarray, np.ndarray]:
    r"""Squeeze: :math:`c = \frac{1}{N}\sum_j x_j`.

    Returns (context (B, C, 1, 1), alpha = 1/N (B, N))."""
    return gc_block.context_modeling(x, params, pooling="avg")


def transform(context: np.ndarray, params: Params) -> np.ndarray:
    r"""Excitation before the sigmoid: :math:`W_2\,\mathrm{ReLU}(W_1 c + b_1) + b_2`.

    (B, C, 1, 1) -> (B, C, 1, 1)."""
    return gc_block.transform(context, params, fusions=("mul",), layer_norm=False)["mul"]


def gate(x: np.ndarray, params: Params) -> np.ndarray:
    r"""The excitation gates :math:`\sigma(\cdot)` in (0, 1), shape (B, C, 1, 1)."""
    from .ops import sigmoid

    return sigmoid(transform(context_modeling(x, params)[0], params))


def forward(
    x: np.ndarray, params: Params, return_attention: bool = False
) -> Tuple[Union[np.ndarray, Tuple[np.ndarray, np.ndarray]], dict]:
    """SE forward: ``gc_block.forward`` with pooling='avg', fusions=('mul',), no LayerNorm.

    Returns ``(out, cache)`` (``((out, attention), cache)`` with ``return_attention``; the
    attention (B, N, N) is uniform, 1/N).
    """
    return gc_block.forward(x, params, return_attention=return_attention, **SE_CONFIG)


def backward(dout: np.ndarray, cache: dict) -> Tuple[np.ndarray, Params]:
    """(dx, dparams) of :func:`forward` (keys ``transform.mul.{0,3}.{weight,bias}``);
    ``dout`` is dL/d out, of the output's shape (B, C, H, W)."""
    check_dout(dout, cache, "SE block", ("context_modeling", "transform", "fusion"))
    return gc_block.backward(dout, cache)


__all__ = [
    "backward", "context_modeling", "forward", "fusion", "gate", "transform",
]
