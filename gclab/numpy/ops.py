r"""The building ops of every block, from scratch in NumPy, CS231n style.

Each op comes as a pair::

    out, cache = <op>_forward(inputs...)     # cache: what backward needs
    grads = <op>_backward(dout, cache)      # dout = dL/dout, same shape as out

plus a plain ``<op>(inputs...)`` that returns only ``out`` (for the course).

=========================  ==============================================================
op                          equation
=========================  ==============================================================
``conv1x1``                 :math:`y_{o,p} = \sum_c W_{oc} x_{c,p} + b_o` (a matmul over channels)
``softmax``                 :math:`y_k = e^{x_k - m} / \sum_j e^{x_j - m}`, :math:`m = \max_j x_j`
``layer_norm``              :math:`y = \gamma \odot (x - \mu) / \sqrt{\sigma^2 + \epsilon} + \beta`
``relu``                    :math:`y = \max(x, 0)`
``sigmoid``                 :math:`y = 1 / (1 + e^{-x})`
``global_avg_pool``         :math:`c = \frac{1}{N} \sum_p x_p`
``attention_pool``          :math:`c = \sum_p \mathrm{softmax}(\ell)_p\, x_p`
``max_pool``                2x max-pool (1-D 2, 2-D (2, 2), 3-D (1, 2, 2)), floor like torch
``batch_norm_eval``         :math:`y = \gamma (x - \mu_r) / \sqrt{\sigma^2_r + \epsilon} + \beta`
=========================  ==============================================================

Shapes follow PyTorch: x is (B, C, *spatial), e.g. (B, C, H, W).
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from ._checks import check_array

Cache = tuple


def flatten_spatial(x: np.ndarray) -> np.ndarray:
    """(B, C, *S) -> (B, C, N) with N = prod(S), written out rather than ``reshape(b, c, -1)``
    so that an empty batch (B = 0) works (-1 is ambiguous for an array with no elements).

    Example: ``flatten_spatial(np.zeros((0, 3, 4, 5))).shape == (0, 3, 20)``.
    """
    return x.reshape(x.shape[0], x.shape[1], int(np.prod(x.shape[2:], dtype=np.int64)))


# ----------------------------------------------------------------------------- 1x1 conv
def conv1x1_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None
) -> Tuple[np.ndarray, Cache]:
    r"""1x1 convolution as one matmul over channels.

    .. math::  y_{b,o,p} = \sum_{c} W_{o,c}\, x_{b,c,p} + b_o

    Shapes: x (B, Ci, *S) with any number of spatial dims; w (Co, Ci, 1, ..., 1) as torch's
    ``Conv{1,2,3}d`` weight (or a plain (Co, Ci) matrix); b (Co,) or None -> y (B, Co, *S).

    Example::

        >>> y, cache = conv1x1_forward(np.ones((2, 3, 4, 4)), np.ones((5, 3, 1, 1)))
        >>> y.shape
        (2, 5, 4, 4)
    """
    check_array("conv1x1 input x", x)
    check_array("conv1x1 weight w", w)
    if x.ndim < 2 or w.ndim < 2 or any(s != 1 for s in w.shape[2:]):
        raise ValueError(
            f"conv1x1 expects x (B, Ci, *S) and w (Co, Ci, 1, ...), got x {x.shape}, w {w.shape}"
        )
    if w.shape[1] != x.shape[1]:
        raise ValueError(
            f"conv1x1: weight {w.shape} expects {w.shape[1]} input channels, x has "
            f"{x.shape[1]} (shape {x.shape})"
        )
    if b is not None and (check_array("conv1x1 bias b", b).shape != (w.shape[0],)):
        raise ValueError(f"conv1x1: bias should have shape ({w.shape[0]},), got {b.shape}")
    w2 = w.reshape(w.shape[0], w.shape[1])  # (Co, Ci)
    xf = flatten_spatial(x)  # (B, Ci, N)
    y = w2 @ xf  # (B, Co, N): W x at every position p
    if b is not None:
        y = y + b[:, None]  # + b_o
    return y.reshape((x.shape[0], w.shape[0]) + x.shape[2:]), (xf, w, b is not None, x.shape)


def conv1x1_backward(
    dout: np.ndarray, cache: Cache
) -> Tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    r"""Gradients of :func:`conv1x1_forward`: (dx, dw, db); db is None without a bias.

    .. math::  \partial x = W^\top \partial y, \quad \partial W = \sum_{b,p} \partial y\, x^\top,
               \quad \partial b = \sum_{b,p} \partial y
    """
    xf, w, has_bias, x_shape = cache
    w2 = w.reshape(w.shape[0], w.shape[1])
    df = flatten_spatial(dout)  # (B, Co, N)
    dx = (w2.T @ df).reshape(x_shape)  # W^T dy
    dw = np.einsum("bon,bcn->oc", df, xf).reshape(w.shape)  # sum_{b,p} dy x^T
    db = df.sum(axis=(0, 2)) if has_bias else None  # sum_{b,p} dy
    return dx, dw, db


def conv1x1(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Output only of :func:`conv1x1_forward`."""
    return conv1x1_forward(x, w, b)[0]


# ----------------------------------------------------------------------------- softmax
def softmax_forward(x: np.ndarray, axis: int = -1) -> Tuple[np.ndarray, Cache]:
    r"""Numerically stable softmax along ``axis``.

    .. math::  y_k = \frac{e^{x_k - m}}{\sum_j e^{x_j - m}}, \quad m = \max_j x_j

    Subtracting the max changes nothing mathematically and keeps ``exp`` finite for logits
    of any size (e.g. +-1e4). Shapes: any; y has x's shape and sums to 1 along ``axis``.

    Example::

        >>> softmax(np.array([1e4, 0.0, -1e4]))
        array([1., 0., 0.])
    """
    check_array("softmax input x", x)
    e = np.exp(x - x.max(axis=axis, keepdims=True))  # e^{x - m} <= 1
    y = e / e.sum(axis=axis, keepdims=True)
    return y, (y, axis)


def softmax_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    r"""dx of :func:`softmax_forward`.

    .. math::  \partial x = y \odot (\partial y - \langle \partial y, y\rangle)
    """
    y, axis = cache
    return y * (dout - (dout * y).sum(axis=axis, keepdims=True))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Output only of :func:`softmax_forward`."""
    return softmax_forward(x, axis)[0]


# ----------------------------------------------------------------------------- layer norm
def _norm_axes(x: np.ndarray, axes: Sequence[int] | None, gamma: np.ndarray) -> tuple:
    if axes is None:  # torch's normalized_shape: the trailing gamma.ndim dims
        axes = range(x.ndim - gamma.ndim, x.ndim)
    axes = tuple(sorted(a % x.ndim for a in axes))
    norm_shape = tuple(x.shape[a] for a in axes)
    if gamma.shape != norm_shape:
        raise ValueError(
            f"layer_norm: gamma/beta should have the normalised shape {norm_shape} (axes {axes} "
            f"of x {x.shape}), got {gamma.shape}"
        )
    return axes


def _bshape(x: np.ndarray, axes: tuple) -> tuple:
    """Shape that places a (normalised-shape) array on ``axes`` of x, 1 elsewhere."""
    return tuple(x.shape[a] if a in axes else 1 for a in range(x.ndim))


def layer_norm_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    axes: Sequence[int] | None = None,
    eps: float = 1e-5,
) -> Tuple[np.ndarray, Cache]:
    r"""Layer normalisation over ``axes`` with an affine map, as ``torch.nn.LayerNorm``.

    .. math::  y = \gamma \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta

    with :math:`\mu, \sigma^2` the mean and biased variance over ``axes``. ``gamma``/``beta``
    have the normalised shape ``x.shape[axes]``; ``axes=None`` means the trailing
    ``gamma.ndim`` dims (torch's ``normalized_shape``). In GC: x (B, P, 1, 1), axes (1, 2, 3),
    gamma (P, 1, 1).

    Example::

        >>> y = layer_norm(np.arange(4.0).reshape(1, 4, 1, 1), np.ones((4, 1, 1)),
        ...                np.zeros((4, 1, 1)))
        >>> round(float(y.mean()), 12), round(float(y.var()), 4)
        (0.0, 1.0)
    """
    check_array("layer_norm input x", x)
    check_array("layer_norm gamma", gamma)
    check_array("layer_norm beta", beta)
    if beta.shape != gamma.shape:
        raise ValueError(f"layer_norm: beta {beta.shape} and gamma {gamma.shape} differ")
    axes = _norm_axes(x, axes, gamma)
    g = gamma.reshape(_bshape(x, axes))
    mu = x.mean(axis=axes, keepdims=True)  # mu
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)  # sigma^2 (biased, as torch)
    inv = 1.0 / np.sqrt(var + eps)  # 1 / sqrt(sigma^2 + eps)
    xhat = (x - mu) * inv
    y = g * xhat + beta.reshape(g.shape)  # gamma xhat + beta
    return y, (xhat, inv, g, axes, gamma.shape)


def layer_norm_backward(
    dout: np.ndarray, cache: Cache
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""(dx, dgamma, dbeta) of :func:`layer_norm_forward`.

    .. math::  \partial x = \frac{1}{\sqrt{\sigma^2+\epsilon}}\Bigl(\partial\hat x
               - \overline{\partial\hat x} - \hat x\, \overline{\partial\hat x \odot \hat x}\Bigr),
               \quad \partial\hat x = \gamma \odot \partial y

    (bars are means over the normalised axes).
    """
    xhat, inv, g, axes, p_shape = cache
    other = tuple(a for a in range(dout.ndim) if a not in axes)
    dgamma = (dout * xhat).sum(axis=other).reshape(p_shape)
    dbeta = dout.sum(axis=other).reshape(p_shape)
    dxhat = dout * g
    dx = inv * (
        dxhat
        - dxhat.mean(axis=axes, keepdims=True)
        - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True)
    )
    return dx, dgamma, dbeta


def layer_norm(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    axes: Sequence[int] | None = None,
    eps: float = 1e-5,
) -> np.ndarray:
    """Output only of :func:`layer_norm_forward`."""
    return layer_norm_forward(x, gamma, beta, axes, eps)[0]


# ----------------------------------------------------------------------------- ReLU, sigmoid
def relu_forward(x: np.ndarray) -> Tuple[np.ndarray, Cache]:
    r""":math:`y = \max(x, 0)`, any shape.

    Example::

        >>> relu(np.array([-1.0, 0.0, 2.0]))
        array([0., 0., 2.])
    """
    check_array("relu input x", x)
    return np.maximum(x, 0), x


def relu_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    r""":math:`\partial x = \partial y \odot [x > 0]` (0 at x = 0, as torch)."""
    return dout * (cache > 0)


def relu(x: np.ndarray) -> np.ndarray:
    """Output only of :func:`relu_forward`."""
    return relu_forward(x)[0]


def sigmoid_forward(x: np.ndarray) -> Tuple[np.ndarray, Cache]:
    r"""Logistic sigmoid, stable for large :math:`|x|`.

    .. math::  \sigma(x) = \frac{1}{1 + e^{-x}} = \frac{e^{x}}{1 + e^{x}}

    The first form for x >= 0, the second for x < 0, so ``exp`` never overflows.

    Example::

        >>> sigmoid(np.array([-1000.0, 0.0, 1000.0]))
        array([0. , 0.5, 1. ])
    """
    check_array("sigmoid input x", x)
    e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    y = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)
    return y, y


def sigmoid_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    r""":math:`\partial x = \partial y\, \sigma (1 - \sigma)`."""
    y = cache
    return dout * y * (1.0 - y)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Output only of :func:`sigmoid_forward`."""
    return sigmoid_forward(x)[0]


# ----------------------------------------------------------------------------- pooling
def global_avg_pool_forward(x: np.ndarray) -> Tuple[np.ndarray, Cache]:
    r"""Global average pooling (SE's squeeze): :math:`c = \frac{1}{N}\sum_{p} x_p`.

    Shapes: x (B, C, *S) -> (B, C, 1, ..., 1) (keeps the spatial dims as 1s, like
    ``adaptive_avg_pool2d(x, 1)``).

    Example::

        >>> global_avg_pool(np.arange(8.0).reshape(1, 2, 2, 2)).ravel()
        array([1.5, 5.5])
    """
    check_array("global_avg_pool input x", x)
    if x.ndim < 3:
        raise ValueError(f"global_avg_pool expects (B, C, *spatial), got shape {x.shape}")
    axes = tuple(range(2, x.ndim))
    return x.mean(axis=axes, keepdims=True), x.shape


def global_avg_pool_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    r""":math:`\partial x_p = \partial c / N` at every position."""
    x_shape = cache
    n = int(np.prod(x_shape[2:]))
    return np.broadcast_to(dout / n, x_shape).copy()


def global_avg_pool(x: np.ndarray) -> np.ndarray:
    """Output only of :func:`global_avg_pool_forward`."""
    return global_avg_pool_forward(x)[0]


def attention_pool_forward(x: np.ndarray, logits: np.ndarray) -> Tuple[np.ndarray, Cache]:
    r"""Attention pooling (SNL and GC context modelling): softmax over positions, weighted sum.

    .. math::  \alpha = \mathrm{softmax}(\ell), \qquad c = \sum_{p=1}^{N} \alpha_p\, x_p
               \;(= x\,\alpha \text{ as a matrix product})

    Shapes: x (B, C, *S); logits (B, N) or (B, 1, *S) with N = prod(S) -> context
    (B, C, 1, ..., 1). The cache is ``(x, alpha)`` plus bookkeeping; ``cache[1]`` is alpha (B, N).

    Example::

        >>> x = np.random.randn(2, 3, 4, 4)
        >>> c = attention_pool(x, np.zeros((2, 16)))  # uniform weights: the average
        >>> np.allclose(c, global_avg_pool(x))
        True
    """
    check_array("attention_pool input x", x)
    check_array("attention_pool logits", logits)
    b, c = x.shape[0], x.shape[1]
    xf = flatten_spatial(x)  # (B, C, N)
    if logits.size != b * xf.shape[2] or logits.shape[0] != b:
        raise ValueError(
            f"attention_pool: logits should be (B, N) = ({b}, {xf.shape[2]}) or (B, 1, *S), "
            f"got {logits.shape} for x {x.shape}"
        )
    alpha, sm_cache = softmax_forward(logits.reshape(b, xf.shape[2]), axis=1)  # alpha (B, N)
    context = (xf @ alpha[:, :, None]).reshape((b, c) + (1,) * (x.ndim - 2))  # x alpha
    return context, (xf, alpha, sm_cache, x.shape, logits.shape)


def attention_pool_backward(dout: np.ndarray, cache: Cache) -> Tuple[np.ndarray, np.ndarray]:
    r"""(dx, dlogits) of :func:`attention_pool_forward`.

    .. math::  \partial x_p = \alpha_p\, \partial c, \qquad
               \partial\alpha_p = \langle \partial c, x_p \rangle, \qquad
               \partial\ell = \alpha \odot (\partial\alpha - \langle \partial\alpha, \alpha\rangle)
    """
    xf, alpha, sm_cache, x_shape, logits_shape = cache
    dc = dout.reshape(xf.shape[0], xf.shape[1], 1)  # (B, C, 1)
    dx = (dc * alpha[:, None, :]).reshape(x_shape)  # alpha_p dc
    dalpha = (dc * xf).sum(axis=1)  # <dc, x_p>, (B, N)
    dlogits = softmax_backward(dalpha, sm_cache).reshape(logits_shape)
    return dx, dlogits


def attention_pool(x: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Output only of :func:`attention_pool_forward`."""
    return attention_pool_forward(x, logits)[0]


POOL_KERNEL = {1: (2,), 2: (2, 2), 3: (1, 2, 2)}  # Non-local's sub-sampling kernels


def max_pool_forward(
    x: np.ndarray, kernel: Sequence[int] | None = None
) -> Tuple[np.ndarray, Cache]:
    r"""Max-pooling with stride = kernel, no padding, floor mode (as torch's ``max_pool``).

    .. math::  y_{q} = \max_{p \in \mathrm{window}(q)} x_p

    ``kernel`` defaults to Non-local's sub-sampling: (2,) for (B, C, L), (2, 2) for
    (B, C, H, W), (1, 2, 2) for (B, C, T, H, W). Trailing rows/cols that do not fill a window
    are dropped (floor). Backward routes each gradient to the window's argmax, the first
    maximum on ties (as torch).

    Example::

        >>> max_pool(np.arange(16.0).reshape(1, 1, 4, 4))[0, 0]
        array([[ 5.,  7.],
               [13., 15.]])
    """
    check_array("max_pool input x", x)
    d = x.ndim - 2
    if kernel is None:
        if d not in POOL_KERNEL:
            raise ValueError(f"max_pool expects a 3-, 4- or 5-D input, got shape {x.shape}")
        kernel = POOL_KERNEL[d]
    kernel = tuple(int(k) for k in kernel)
    if len(kernel) != d or any(k < 1 for k in kernel):
        raise ValueError(f"max_pool: kernel {kernel} does not fit an input of shape {x.shape}")
    out_sp = tuple(s // k for s, k in zip(x.shape[2:], kernel))
    if any(s == 0 for s in out_sp):
        raise ValueError(f"max_pool: kernel {kernel} is larger than the input {x.shape}")
    # crop to whole windows, split every dim s into (s // k, k), move the k's last, flatten them
    crop = x[(slice(None), slice(None)) + tuple(slice(0, o * k) for o, k in zip(out_sp, kernel))]
    split = crop.reshape(x.shape[:2] + sum(((o, k) for o, k in zip(out_sp, kernel)), ()))
    order = (0, 1) + tuple(2 + 2 * i for i in range(d)) + tuple(3 + 2 * i for i in range(d))
    n_win = int(np.prod(kernel))  # (not -1: an empty batch B = 0 must work)
    windows = split.transpose(order).reshape(x.shape[:2] + out_sp + (n_win,))  # (B, C, *So, K)
    arg = windows.argmax(axis=-1)  # first max in row-major window order
    y = np.take_along_axis(windows, arg[..., None], axis=-1)[..., 0]
    return y, (arg, x.shape, kernel, out_sp, order, split.shape)


def max_pool_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    r""":math:`\partial x_p = \partial y_q` if p is the argmax of window q, else 0."""
    arg, x_shape, kernel, out_sp, order, split_shape = cache
    k = int(np.prod(kernel))
    dwin = np.zeros(dout.shape + (k,), dtype=dout.dtype)
    np.put_along_axis(dwin, arg[..., None], dout[..., None], axis=-1)
    # undo the flatten/transpose/split of the forward, then pad the cropped border with 0
    dsplit = dwin.reshape(tuple(split_shape[i] for i in order)).transpose(np.argsort(order))
    dx = np.zeros(x_shape, dtype=dout.dtype)
    region = (slice(None), slice(None)) + tuple(slice(0, o * kk) for o, kk in zip(out_sp, kernel))
    dx[region] = dsplit.reshape(dx[region].shape)
    return dx


def max_pool(x: np.ndarray, kernel: Sequence[int] | None = None) -> np.ndarray:
    """Output only of :func:`max_pool_forward`."""
    return max_pool_forward(x, kernel)[0]


# ----------------------------------------------------------------------------- batch norm
def batch_norm_eval_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    eps: float = 1e-5,
) -> Tuple[np.ndarray, Cache]:
    r"""BatchNorm in eval mode: a per-channel affine map from the running statistics.

    .. math::  y_{b,c,p} = \gamma_c \frac{x_{b,c,p} - \mu_c}{\sqrt{\sigma^2_c + \epsilon}}
               + \beta_c

    Shapes: x (B, C, *S); gamma, beta, running_mean, running_var (C,) -> y like x.

    Example::

        >>> c = 3
        >>> y = batch_norm_eval(np.ones((2, c, 4)), np.ones(c), np.zeros(c), np.ones(c),
        ...                     np.ones(c) - 1e-5)
        >>> np.allclose(y, 0)
        True
    """
    check_array("batch_norm_eval input x", x)
    c = x.shape[1] if x.ndim >= 2 else -1
    for name, v in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if check_array(f"batch_norm_eval {name}", v).shape != (c,):
            raise ValueError(f"batch_norm_eval: {name} should be ({c},), got {v.shape}")
    shape = (1, c) + (1,) * (x.ndim - 2)
    inv = (1.0 / np.sqrt(running_var + eps)).reshape(shape)  # 1 / sqrt(sigma^2 + eps)
    xhat = (x - running_mean.reshape(shape)) * inv
    y = gamma.reshape(shape) * xhat + beta.reshape(shape)  # gamma xhat + beta
    return y, (xhat, inv, gamma.reshape(shape))


def batch_norm_eval_backward(
    dout: np.ndarray, cache: Cache
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""(dx, dgamma, dbeta): :math:`\partial x = \gamma\,\partial y / \sqrt{\sigma^2+\epsilon}`
    (the running statistics are constants, not trained)."""
    xhat, inv, g = cache
    other = (0,) + tuple(range(2, dout.ndim))
    return dout * g * inv, (dout * xhat).sum(axis=other), dout.sum(axis=other)


def batch_norm_eval(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    eps: float = 1e-5,
) -> np.ndarray:
    """Output only of :func:`batch_norm_eval_forward`."""
    return batch_norm_eval_forward(x, gamma, beta, running_mean, running_var, eps)[0]
