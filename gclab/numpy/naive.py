r"""A naive, loop-based Non-local forward, for teaching only (slow: O(N N') Python steps).

.. math::  y_i = \frac{1}{\mathcal{C}_i} \sum_{j=1}^{N'} f(x_i, x_j)\, g(x_j), \qquad
           z_i = x_i + W_z y_i

Written as the paper's sum, with an explicit double loop over query positions i and key
positions j; it gives the same result as the vectorised :func:`gclab.numpy.non_local.forward`
(the 1x1 convs and the pooling reuse :mod:`gclab.numpy.ops`). Compare their speed in a
notebook: the loop version is orders of magnitude slower.

Example::

    >>> import gclab.nn, gclab.numpy as gnp
    >>> nl = gclab.nn.NonLocal2d(4, mode="gaussian")
    >>> x = np.random.randn(1, 4, 3, 3)
    >>> np.allclose(non_local_naive(x, gnp.params_from_torch(nl), mode="gaussian"), x)
    True
"""

from __future__ import annotations

import math
from typing import Dict, Tuple, Union

import numpy as np

from ..vocab import check_bool
from . import non_local


def non_local_naive(
    x: np.ndarray,
    params: Dict[str, np.ndarray],
    mode: str = "embedded_gaussian",
    use_scale: bool = True,
    sub_sample: bool = False,
    norm: str | None = None,
    return_attention: bool = False,
) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Non-local forward with Python loops over (batch, query i, key j). Same args and result
    as :func:`gclab.numpy.non_local.forward` (output only, or ``(out, attention)``)."""
    non_local.check_config(x, params, mode, sub_sample, norm)
    check_bool("use_scale", use_scale)
    check_bool("return_attention", return_attention)
    (theta_x, phi_x, g_x), _ = non_local.embed_forward(x, params, mode, sub_sample)
    batch, n, ci = theta_x.shape
    n_keys = phi_x.shape[2]
    if mode == "concatenation":
        w = params["concat_project.weight"].reshape(-1)
    attn = np.zeros((batch, n, n_keys), dtype=x.dtype)
    y = np.zeros((batch, n, g_x.shape[2]), dtype=x.dtype)
    for b in range(batch):
        for i in range(n):  # every query position i ...
            f = np.zeros(n_keys, dtype=x.dtype)
            for j in range(n_keys):  # ... against every key position j
                if mode == "concatenation":  # ReLU(w . [theta_i; phi_j])
                    cat = np.concatenate([theta_x[b, i], phi_x[b, :, j]])
                    f[j] = max(float(w @ cat), 0.0)
                else:  # theta_i . phi_j
                    f[j] = float(theta_x[b, i] @ phi_x[b, :, j])
            if mode in ("gaussian", "embedded_gaussian"):  # softmax over j
                if mode == "embedded_gaussian" and use_scale:
                    f = f / math.sqrt(ci)
                f = np.exp(f - f.max())
                f = f / f.sum()
            else:  # C(x) = N'
                f = f / n_keys
            attn[b, i] = f
            for j in range(n_keys):  # y_i = sum_j f_ij g_j
                y[b, i] += f[j] * g_x[b, j]
    y = y.transpose(0, 2, 1).reshape((batch, g_x.shape[2]) + x.shape[2:])
    out = non_local.fusion(x, non_local.transform(y, params, norm))  # z = x + W_z y
    return (out, attn) if return_attention else out
