r"""The Non-local block in NumPy (1-D, 2-D, 3-D), equal to ``gclab.nn.NonLocal{1,2,3}d``.

.. math::

    y_i = \sum_{j=1}^{N'} a_{ij}\, g(x_j), \qquad z_i = x_i + W_z\, y_i

with :math:`\theta, \phi, g` 1x1 convs C -> C_i and the attention :math:`a_{ij}` set by ``mode``:

===================== =====================================================================
``gaussian``          :math:`\mathrm{softmax}_j(x_i^\top x_j)` (no :math:`\theta, \phi`)
``embedded_gaussian`` :math:`\mathrm{softmax}_j(\theta_i^\top\phi_j / \sqrt{C_i})`
                      (no division without ``use_scale``)
``dot_product``       :math:`\theta_i^\top\phi_j / N'`
``concatenation``     :math:`\mathrm{ReLU}(w_\theta^\top\theta_i + w_\phi^\top\phi_j) / N'`
===================== =====================================================================

The spatial dims are flattened (N = L, H*W or T*H*W); with ``sub_sample`` the keys
:math:`\phi, g` are 2x max-pooled after their convs (N' < N). The three steps:
:func:`context_modeling` (y and the attention), :func:`transform` (:math:`W_z` = ``conv_out``,
then BatchNorm in eval mode when ``norm='bn'``), :func:`fusion` (add).
No Python loop runs over positions (see :mod:`gclab.numpy.naive` for the loop version).

Example::

    >>> import gclab.nn, gclab.numpy as gnp
    >>> nl = gclab.nn.NonLocal2d(8, mode="dot_product")
    >>> x = np.random.randn(2, 8, 6, 6)
    >>> (out, attn), cache = forward(x, gnp.params_from_torch(nl), mode="dot_product",
    ...                              return_attention=True)
    >>> out.shape, attn.shape
    ((2, 8, 6, 6), (2, 36, 36))
"""

from __future__ import annotations

import math
from typing import Dict, List, Tuple, Union

import numpy as np

from ..vocab import NON_LOCAL_MODES, check_bool, check_choice
from . import ops
from ._checks import check_dout, check_input, check_keys, get_param

Params = Dict[str, np.ndarray]


def _conv(x: np.ndarray, params: Params, name: str, bias: bool = True):
    w = get_param(params, name + ".weight", "NonLocal")
    b = get_param(params, name + ".bias", "NonLocal") if bias else None
    return ops.conv1x1_forward(x, w, b)


# ----------------------------------------------------------------- embeddings
def embed_forward(
    x: np.ndarray, params: Params, mode: str = "embedded_gaussian", sub_sample: bool = False
) -> Tuple[Tuple[np.ndarray, np.ndarray, np.ndarray], dict]:
    r"""theta_x (B, N, C_i), phi_x (B, C_i, N'), g_x (B, N', C_i): :math:`\theta, \phi, g` of x.

    In ``gaussian`` mode :math:`\theta = \phi = x` (C channels instead of C_i).
    """
    check_bool("sub_sample", sub_sample)
    g, c_g = _conv(x, params, "g")  # g(x): (B, Ci, *S)
    if mode == "gaussian":
        theta, phi, c_th, c_ph = x, x, None, None
    else:
        theta, c_th = _conv(x, params, "theta")
        phi, c_ph = _conv(x, params, "phi")
    c_gp = c_pp = None
    if sub_sample:  # keys only: 2x max-pool after the convs
        g, c_gp = ops.max_pool_forward(g)
        phi, c_pp = ops.max_pool_forward(phi)
    theta_x = ops.flatten_spatial(theta).transpose(0, 2, 1)  # (B, N, Ci)
    phi_x = ops.flatten_spatial(phi)  # (B, Ci, N')
    g_x = ops.flatten_spatial(g).transpose(0, 2, 1)  # (B, N', Ci)
    shapes = (theta.shape, phi.shape, g.shape)
    return (theta_x, phi_x, g_x), {"convs": (c_th, c_ph, c_g), "pools": (c_gp, c_pp),
                                   "shapes": shapes, "mode": mode}


def embed_backward(
    dtheta_x: np.ndarray, dphi_x: np.ndarray, dg_x: np.ndarray, cache: dict
) -> Tuple[np.ndarray, Params]:
    """(dx, dparams) of :func:`embed_forward`."""
    (c_th, c_ph, c_g), (c_gp, c_pp) = cache["convs"], cache["pools"]
    theta_shape, phi_shape, g_shape = cache["shapes"]
    dtheta = dtheta_x.transpose(0, 2, 1).reshape(theta_shape)
    dphi = dphi_x.reshape(phi_shape)
    dg = dg_x.transpose(0, 2, 1).reshape(g_shape)
    if c_gp is not None:  # back through the max-pools
        dg, dphi = ops.max_pool_backward(dg, c_gp), ops.max_pool_backward(dphi, c_pp)
    grads: Params = {}
    dx, grads["g.weight"], grads["g.bias"] = ops.conv1x1_backward(dg, c_g)
    if cache["mode"] == "gaussian":  # theta = phi = x
        return dx + dtheta + dphi, grads
    dx_t, grads["theta.weight"], grads["theta.bias"] = ops.conv1x1_backward(dtheta, c_th)
    dx_p, grads["phi.weight"], grads["phi.bias"] = ops.conv1x1_backward(dphi, c_ph)
    return dx + dx_t + dx_p, grads


# ----------------------------------------------------------------- pairwise functions
def pairwise_forward(
    theta_x: np.ndarray,
    phi_x: np.ndarray,
    mode: str = "embedded_gaussian",
    use_scale: bool = True,
    w_concat: np.ndarray | None = None,
) -> Tuple[np.ndarray, tuple]:
    r"""The attention a (B, N, N') from theta_x (B, N, Ci) and phi_x (B, Ci, N') (table above).

    ``w_concat`` is ``concat_project.weight`` (1, 2 Ci, 1, 1), for ``concatenation`` only.
    """
    check_choice("mode", mode, NON_LOCAL_MODES)
    check_bool("use_scale", use_scale)
    n_keys = phi_x.shape[-1]
    if mode == "concatenation":
        ci = theta_x.shape[-1]
        w = w_concat.reshape(2 * ci)
        s = (theta_x @ w[:ci])[:, :, None] + (phi_x.transpose(0, 2, 1) @ w[ci:])[:, None, :]
        attn = np.maximum(s, 0) / n_keys  # ReLU(w_t . theta_i + w_p . phi_j) / N'
        return attn, (mode, theta_x, phi_x, w_concat, s)
    logits = theta_x @ phi_x  # theta_i . phi_j: (B, N, N')
    if mode == "dot_product":
        return logits / n_keys, (mode, theta_x, phi_x, n_keys)  # / N'
    scale = math.sqrt(theta_x.shape[-1]) if mode == "embedded_gaussian" and use_scale else 1.0
    attn, c_sm = ops.softmax_forward(logits / scale, axis=-1)  # softmax_j(. / sqrt(Ci))
    return attn, (mode, theta_x, phi_x, (scale, c_sm))


def pairwise_backward(
    dattn: np.ndarray, cache: tuple
) -> Tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(dtheta_x, dphi_x, dw_concat) of :func:`pairwise_forward` (dw_concat None but in
    concatenation mode)."""
    mode, theta_x, phi_x, extra = cache[:4]
    if mode == "concatenation":
        w_concat, s = extra, cache[4]
        ci = theta_x.shape[-1]
        w = w_concat.reshape(2 * ci)
        ds = dattn * (s > 0) / phi_x.shape[-1]  # through ReLU and / N'
        da, db = ds.sum(axis=2), ds.sum(axis=1)  # (B, N), (B, N')
        dtheta = da[:, :, None] * w[:ci]
        dphi = db[:, None, :] * w[ci:, None]
        dw = np.concatenate([np.einsum("bn,bnc->c", da, theta_x),
                             np.einsum("bm,bcm->c", db, phi_x)])
        return dtheta, dphi, dw.reshape(w_concat.shape)
    if mode == "dot_product":
        dlogits = dattn / extra
    else:
        scale, c_sm = extra
        dlogits = ops.softmax_backward(dattn, c_sm) / scale
    # logits = theta_x @ phi_x
    return dlogits @ phi_x.transpose(0, 2, 1), theta_x.transpose(0, 2, 1) @ dlogits, None


def gaussian(theta_x: np.ndarray, phi_x: np.ndarray) -> np.ndarray:
    r""":math:`\mathrm{softmax}_j(x_i^\top x_j)`: (B, N, C), (B, C, N') -> (B, N, N')."""
    return pairwise_forward(theta_x, phi_x, "gaussian")[0]


def embedded_gaussian(theta_x: np.ndarray, phi_x: np.ndarray, use_scale: bool = True) -> np.ndarray:
    r""":math:`\mathrm{softmax}_j(\theta_i^\top\phi_j / \sqrt{C_i})`: -> (B, N, N')."""
    return pairwise_forward(theta_x, phi_x, "embedded_gaussian", use_scale)[0]


def dot_product(theta_x: np.ndarray, phi_x: np.ndarray) -> np.ndarray:
    r""":math:`\theta_i^\top\phi_j / N'`: -> (B, N, N')."""
    return pairwise_forward(theta_x, phi_x, "dot_product")[0]


def concatenation(theta_x: np.ndarray, phi_x: np.ndarray, w_concat: np.ndarray) -> np.ndarray:
    r""":math:`\mathrm{ReLU}(w^\top[\theta_i; \phi_j]) / N'`, w = ``concat_project.weight``."""
    return pairwise_forward(theta_x, phi_x, "concatenation", w_concat=w_concat)[0]


# ----------------------------------------------------------------- the three steps
def context_modeling_forward(
    x: np.ndarray,
    params: Params,
    mode: str = "embedded_gaussian",
    use_scale: bool = True,
    sub_sample: bool = False,
) -> Tuple[Tuple[np.ndarray, np.ndarray], dict]:
    r"""Step 1: :math:`y_i = \sum_j a_{ij}\, g(x_j)`.

    Returns ((y (B, Ci, *S), attention a (B, N, N')), cache)."""
    (theta_x, phi_x, g_x), c_emb = embed_forward(x, params, mode, sub_sample)
    w_concat = None
    if mode == "concatenation":
        w_concat = get_param(params, "concat_project.weight", "NonLocal(concatenation)")
    attn, c_pw = pairwise_forward(theta_x, phi_x, mode, use_scale, w_concat)  # a (B, N, N')
    y = attn @ g_x  # sum_j a_ij g_j: (B, N, Ci)
    y = y.transpose(0, 2, 1).reshape((x.shape[0], g_x.shape[2]) + x.shape[2:])
    return (y, attn), {"embed": c_emb, "pairwise": c_pw, "attn": attn, "g_x": g_x}


def context_modeling_backward(dy: np.ndarray, cache: dict) -> Tuple[np.ndarray, Params]:
    """(dx, dparams) of :func:`context_modeling_forward`."""
    attn, g_x = cache["attn"], cache["g_x"]
    dy = ops.flatten_spatial(dy).transpose(0, 2, 1)  # (B, N, Ci)
    dattn = dy @ g_x.transpose(0, 2, 1)  # (B, N, N')
    dg_x = attn.transpose(0, 2, 1) @ dy  # (B, N', Ci)
    dtheta_x, dphi_x, dw = pairwise_backward(dattn, cache["pairwise"])
    dx, grads = embed_backward(dtheta_x, dphi_x, dg_x, cache["embed"])
    if dw is not None:
        grads["concat_project.weight"] = dw
    return dx, grads


def context_modeling(
    x: np.ndarray,
    params: Params,
    mode: str = "embedded_gaussian",
    use_scale: bool = True,
    sub_sample: bool = False,
) -> Tuple[np.ndarray, np.ndarray]:
    """(y (B, Ci, *S), attention (B, N, N')): output of :func:`context_modeling_forward`."""
    return context_modeling_forward(x, params, mode, use_scale, sub_sample)[0]


def transform_forward(
    y: np.ndarray, params: Params, norm: str | None = None, eps: float = 1e-5
) -> Tuple[np.ndarray, tuple]:
    r"""Step 2: :math:`W_z y` = ``conv_out`` (Ci -> C, bias only without norm), then BatchNorm
    in eval mode (``norm.*`` running statistics) when ``norm='bn'``. (B, Ci, *S) -> (B, C, *S)."""
    t, c_conv = _conv(y, params, "conv_out", bias=norm is None)
    c_bn = None
    if norm == "bn":
        keys = ("weight", "bias", "running_mean", "running_var")
        t, c_bn = ops.batch_norm_eval_forward(
            t, *(get_param(params, "norm." + k, "NonLocal(norm='bn')") for k in keys), eps=eps
        )
    return t, (c_conv, c_bn)


def transform_backward(dt: np.ndarray, cache: tuple) -> Tuple[np.ndarray, Params]:
    """(dy, dparams) of :func:`transform_forward`."""
    c_conv, c_bn = cache
    grads: Params = {}
    if c_bn is not None:
        dt, grads["norm.weight"], grads["norm.bias"] = ops.batch_norm_eval_backward(dt, c_bn)
    dy, grads["conv_out.weight"], db = ops.conv1x1_backward(dt, c_conv)
    if db is not None:
        grads["conv_out.bias"] = db
    return dy, grads


def transform(y: np.ndarray, params: Params, norm: str | None = None) -> np.ndarray:
    """Output only of :func:`transform_forward`."""
    return transform_forward(y, params, norm)[0]


def fusion(x: np.ndarray, wy: np.ndarray) -> np.ndarray:
    r"""Step 3: :math:`z = x + W_z y` (same shape, no broadcasting)."""
    if wy.shape != x.shape:
        raise ValueError(f"fusion: W_z y should have x's shape {x.shape}, got {wy.shape}")
    return x + wy


def param_keys(mode: str = "embedded_gaussian", norm: str | None = None) -> List[str]:
    """The state_dict keys of ``gclab.nn.NonLocal{1,2,3}d`` with this configuration (but the
    BatchNorm's ``norm.num_batches_tracked``, which is accepted and not needed)."""
    names = ["g"] if mode == "gaussian" else ["g", "theta", "phi"]
    keys = [f"{n}.{p}" for n in names for p in ("weight", "bias")]
    keys += ["concat_project.weight"] if mode == "concatenation" else []
    keys += ["conv_out.weight"] + (["conv_out.bias"] if norm is None else [])
    if norm == "bn":
        keys += ["norm." + k for k in ("weight", "bias", "running_mean", "running_var")]
    return keys


def check_config(
    x: np.ndarray, params: Params, mode: str, sub_sample: bool, norm: str | None
) -> np.ndarray:
    """Validate the input and the configuration of a Non-local forward (clear errors)."""
    check_choice("mode", mode, NON_LOCAL_MODES)
    check_bool("sub_sample", sub_sample)
    if norm is not None:
        check_choice("norm", norm, ("bn",))
    check_keys(params, param_keys(mode, norm), "NonLocal", ["norm.num_batches_tracked"])
    w_g = get_param(params, "g.weight", "NonLocal")
    who = f"NonLocal{w_g.ndim - 2}d" if w_g.ndim in (3, 4, 5) else "NonLocal"
    check_input(x, w_g.shape[1], (1, 2, 3), who)
    if w_g.ndim != x.ndim:
        raise ValueError(
            f"{who}: the params are for {w_g.ndim}-D inputs (g.weight {w_g.shape}), "
            f"got a {x.ndim}-D input of shape {x.shape}"
        )
    if sub_sample and any(s < k for s, k in zip(x.shape[2:], ops.POOL_KERNEL[x.ndim - 2])):
        raise ValueError(
            f"{who}(sub_sample=True) max-pools the keys by 2, so each pooled spatial dim must "
            f"be >= 2; got an input of shape {x.shape}"
        )
    return x


def forward(
    x: np.ndarray,
    params: Params,
    mode: str = "embedded_gaussian",
    use_scale: bool = True,
    sub_sample: bool = False,
    norm: str | None = None,
    return_attention: bool = False,
) -> Tuple[Union[np.ndarray, Tuple[np.ndarray, np.ndarray]], dict]:
    r"""Non-local forward, x (B, C, L) / (B, C, H, W) / (B, C, T, H, W) -> z of the same shape.

    Args mirror ``gclab.nn.NonLocal{1,2,3}d`` (C_i comes from the params' shapes; the spatial
    dims from x). Returns ``(out, cache)``, or ``((out, attention (B, N, N')), cache)``.
    """
    check_config(x, params, mode, sub_sample, norm)
    check_bool("use_scale", use_scale)
    check_bool("return_attention", return_attention)
    (y, attn), c_cm = context_modeling_forward(x, params, mode, use_scale, sub_sample)  # 1.
    wy, c_tr = transform_forward(y, params, norm)  # 2. W_z y
    out = fusion(x, wy)  # 3. z = x + W_z y
    cache = {"context_modeling": c_cm, "transform": c_tr, "out_shape": out.shape}
    return ((out, attn) if return_attention else out), cache


def backward(dout: np.ndarray, cache: dict) -> Tuple[np.ndarray, Params]:
    """(dx, dparams) of :func:`forward`: one gradient per trainable parameter key; ``dout`` is
    dL/d out, of the output's shape (B, C, *S)."""
    check_dout(dout, cache, "NonLocal", ("context_modeling", "transform"))
    dy, grads = transform_backward(dout, cache["transform"])  # 2. (fusion passes dout to both)
    dx, grads_cm = context_modeling_backward(dy, cache["context_modeling"])  # 1.
    return dout + dx, {**grads_cm, **grads}


__all__ = [
    "backward", "concatenation", "context_modeling", "context_modeling_backward",
    "context_modeling_forward", "dot_product", "embed_backward", "embed_forward",
    "embedded_gaussian", "forward", "fusion", "gaussian", "pairwise_backward",
    "pairwise_forward", "param_keys", "transform", "transform_backward", "transform_forward",
]
