r"""Numerical gradient checking, as in CS231n: centred differences and a relative error.

.. math::

    \frac{\partial L}{\partial x_k} \approx \frac{L(x + h e_k) - L(x - h e_k)}{2h},
    \qquad L(x) = \sum f(x) \odot \partial f

The error of the centred difference is :math:`O(h^2)`; with h = 1e-5 in float64 the analytic
and numerical gradients of a correct backward agree to a relative error of about 1e-7 or less
(CS231n: > 1e-2 is probably wrong, 1e-4 is suspicious near kinks, < 1e-7 is good).

Example::

    >>> x = np.random.randn(3, 4)
    >>> rel_error(numerical_gradient(lambda a: (a ** 2).sum(), x), 2 * x) < 1e-8
    True
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Mapping, MutableMapping

import numpy as np

from ._checks import check_array


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    r"""CS231n's relative error: :math:`\max_k |a_k - b_k| / \max(10^{-8}, |a_k| + |b_k|)`.

    Shapes must match exactly (no silent broadcasting). Empty arrays give 0.0.

    Example::

        >>> rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 2e-9])) < 1e-9  # 5e-10
        True
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error needs arrays of the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def numerical_gradient(
    f: Callable[[np.ndarray], object],
    x: np.ndarray,
    df: np.ndarray | None = None,
    h: float = 1e-5,
) -> np.ndarray:
    r"""Centred-difference gradient of :math:`L(x) = \sum f(x) \odot \partial f` w.r.t. x.

    .. math::  \frac{\partial L}{\partial x_k} \approx
               \sum \frac{f(x + h e_k) - f(x - h e_k)}{2h} \odot \partial f

    Args:
        f: called as ``f(x)``; returns a scalar or an array.
        x: float array; perturbed in place one entry at a time and restored afterwards.
        df: upstream gradient :math:`\partial f` with the shape of ``f(x)``; default ones
            (so an array-valued f gives the gradient of ``sum(f(x))``).
        h: step.

    Returns an array shaped like x. Cost: 2 * x.size calls of f (keep x small).

    Example::

        >>> x = np.linspace(-1, 1, 5)
        >>> rel_error(numerical_gradient(np.sin, x), np.cos(x)) < 1e-8
        True
    """
    check_array("numerical_gradient x", x)
    if not x.flags.writeable:
        raise ValueError("numerical_gradient perturbs x in place; pass a writeable array")
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"])
    while not it.finished:
        k = it.multi_index
        old = x[k]
        x[k] = old + h
        fp = np.array(f(x), dtype=np.float64, copy=True)  # f(x + h e_k)
        x[k] = old - h
        fm = np.array(f(x), dtype=np.float64, copy=True)  # f(x - h e_k)
        x[k] = old
        up = np.ones_like(fp) if df is None else np.asarray(df, dtype=np.float64)
        if up.shape != fp.shape:
            raise ValueError(f"df should have the shape of f(x), {fp.shape}; got {up.shape}")
        grad[k] = np.sum((fp - fm) * up) / (2 * h)  # centred difference
        it.iternext()
    return grad


def numerical_gradient_params(
    f: Callable[[MutableMapping[str, np.ndarray]], object],
    params: MutableMapping[str, np.ndarray],
    df: np.ndarray | None = None,
    h: float = 1e-5,
    keys: Iterable[str] | None = None,
) -> Dict[str, np.ndarray]:
    r""":func:`numerical_gradient` for every array of a dict of parameters.

    ``f(params)`` is called with ``params[key]`` perturbed in place (and restored), for each
    key in ``keys`` (default: every floating-point entry). Returns ``{key: gradient}``.

    Example::

        >>> p = {"w": np.random.randn(2, 3), "b": np.random.randn(2)}
        >>> x = np.random.randn(3)
        >>> g = numerical_gradient_params(lambda q: q["w"] @ x + q["b"], p)
        >>> rel_error(g["w"], np.tile(x, (2, 1))) < 1e-8 and rel_error(g["b"], np.ones(2)) < 1e-8
        True
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    if keys is None:
        keys = [
            k for k, v in params.items()
            if isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.floating)
        ]
    out: Dict[str, np.ndarray] = {}
    for key in keys:
        if key not in params:
            raise ValueError(f"numerical_gradient_params: no key {key!r} in params")
        out[key] = numerical_gradient(lambda _: f(params), params[key], df=df, h=h)
    return out
