"""Lessons 0-2: receptive fields, the NL block in NumPy, its backward."""
# ruff: noqa: E731, N803, N806

from __future__ import annotations

import math

import numpy as np
import torch

import gclab.numpy as gnp
from gclab.exercises import get

from . import right, wrong


# ============================================================================ lesson 0
@wrong("rf.theoretical", "multiplies the kernel sizes")
def _(kernels, strides):
    r = 1
    for k in kernels:
        r *= k
    return r


@wrong("rf.theoretical", "jump updated before the layer's growth")
def _(kernels, strides):
    r, jump = 1, 1
    for k, s in zip(kernels, strides):
        jump *= s
        r += (k - 1) * jump
    return r


@wrong("rf.theoretical", "adds k instead of k - 1 per layer")
def _(kernels, strides):
    r, jump = 1, 1
    for k, s in zip(kernels, strides):
        r += k * jump
        jump *= s
    return r


@wrong("rf.theoretical", "returns a float (np.prod of strides)")
def _(kernels, strides):
    r = 1.0
    for i, k in enumerate(kernels):
        r += (k - 1) * float(np.prod(strides[:i]))
    return r


@right("rf.theoretical", "np.cumprod of the strides")
def _(kernels, strides):
    jumps = np.concatenate([[1], np.cumprod(strides)[:-1]])
    return int(1 + np.sum((np.asarray(kernels) - 1) * jumps))


@wrong("rf.layers_to_cover", "size / (k - 1) rounded")
def _(size, kernel=3):
    return round(size / (kernel - 1))


@wrong("rf.layers_to_cover", "math.ceil returns the right number but divides with / (a float)")
def _(size, kernel=3):
    return float(math.ceil((size - 1) / (kernel - 1)))


@wrong("rf.layers_to_cover", "a loop that stops one layer too late (<= instead of <)")
def _(size, kernel=3):
    n, r = 0, 1
    while r <= size:
        r += kernel - 1
        n += 1
    return n


@right("rf.layers_to_cover", "integer ceiling by -(-a // b)")
def _(size, kernel=3):
    return -(-(size - 1) // (kernel - 1))


@right("rf.layers_to_cover", "a loop")
def _(size, kernel=3):
    n, r = 0, 1
    while r < size:
        r += kernel - 1
        n += 1
    return n


@wrong("rf.erf_1d", "not normalised (binomial counts)")
def _(depth, kernel=3):
    g = np.ones(1)
    for _ in range(depth):
        g = np.convolve(g, np.ones(kernel))
    return g


@wrong("rf.erf_1d", "one convolution too many")
def _(depth, kernel=3):
    g = np.ones(kernel)
    for _ in range(depth):
        g = np.convolve(g, np.ones(kernel))
    return g / g.sum()


@wrong("rf.erf_1d", "mode='same' keeps the length fixed")
def _(depth, kernel=3):
    g = np.zeros(depth * (kernel - 1) + 1)
    g[len(g) // 2] = 1.0
    for _ in range(depth):
        g = np.convolve(g, np.ones(kernel), mode="same")
    return g / g.max()


@right("rf.erf_1d", "normalising each step by the kernel sum")
def _(depth, kernel=3):
    g = np.ones(1)
    for _ in range(depth):
        g = np.convolve(g, np.ones(kernel) / kernel)
    return g


def _erf(net, x, pick, absval=True, reduce=(0, 1)):
    x = x.detach().clone().requires_grad_(True)
    y = net(x)
    h, w = y.shape[-2:]
    (grad,) = torch.autograd.grad(pick(y, h, w).sum(), x)
    g = grad.abs() if absval else grad
    erf = g.sum(dim=reduce)
    return (erf / erf.sum()).detach().numpy()


@wrong("rf.erf", "centre at ((h - 1) // 2, (w - 1) // 2): half a pixel off on even sizes")
def _(net, x):
    return _erf(net, x, lambda y, h, w: y[0, :, (h - 1) // 2, (w - 1) // 2])


@wrong("rf.erf", "centre taken on the input's size, not the output's")
def _(net, x):
    H, W = x.shape[-2:]
    return _erf(net, x, lambda y, h, w: y[0, :, (H - 1) // 2, (W - 1) // 2])


@wrong("rf.erf", "gradient of the mean output, not the centre pixel")
def _(net, x):
    return _erf(net, x, lambda y, h, w: y[0, :, :, :])


@wrong("rf.erf", "only channel 0 of the output")
def _(net, x):
    return _erf(net, x, lambda y, h, w: y[0, :1, h // 2, w // 2])


@wrong("rf.erf", "squared gradient instead of its absolute value")
def _(net, x):
    x = x.detach().clone().requires_grad_(True)
    y = net(x)
    h, w = y.shape[-2:]
    (grad,) = torch.autograd.grad(y[0, :, h // 2, w // 2].sum(), x)
    erf = (grad**2).sum(dim=(0, 1))
    return (erf / erf.sum()).detach().numpy()


@right("rf.erf", "a one-hot upstream gradient through backward()")
def _(net, x):
    x = x.detach().clone().requires_grad_(True)
    y = net(x)
    h, w = y.shape[-2:]
    seed = torch.zeros_like(y)
    seed[0, :, h // 2, w // 2] = 1.0
    y.backward(seed)
    erf = x.grad.abs().sum(dim=(0, 1))
    return (erf / erf.sum()).numpy()


@wrong("rf.erf_std", "centre (H - 1) / 2: half a pixel off on even sizes")
def _(g):
    h, w = g.shape
    p = g / g.sum()
    i, j = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    return float(np.sqrt((p * (i**2 + j**2)).sum()))


@wrong("rf.erf_std", "not normalised by the total mass")
def _(g):
    h, w = g.shape
    i, j = np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2, indexing="ij")
    return float(np.sqrt((g * (i**2 + j**2)).sum()))


@wrong("rf.erf_std", "variance, not its square root")
def _(g):
    h, w = g.shape
    p = g / g.sum()
    i, j = np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2, indexing="ij")
    return float((p * (i**2 + j**2)).sum())


@wrong("rf.erf_std", "meshgrid with the default xy indexing (shapes (W, H))")
def _(g):
    h, w = g.shape
    p = g / g.sum()
    i, j = np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2)
    return float(np.sqrt((p * (i**2 + j**2)).sum()))


@right("rf.erf_std", "np.sum returns a NumPy scalar (no float())")
def _(g):
    h, w = g.shape
    p = g / g.sum()
    ii = (np.arange(h) - h // 2)[:, None] ** 2
    jj = (np.arange(w) - w // 2)[None, :] ** 2
    return np.sqrt(np.sum(p * (ii + jj)))


@right("rf.erf_std", "a 0-d array result")
def _(g):
    h, w = g.shape
    p = g / g.sum()
    i, j = np.indices((h, w))
    return np.asarray(np.sqrt((p * ((i - h // 2) ** 2 + (j - w // 2) ** 2)).sum()))


@wrong("rf.growth_exponent", "fit on the raw values, not the logs")
def _(depths, sizes):
    return float(np.polyfit(depths, sizes, 1)[0])


@wrong("rf.growth_exponent", "log10 of sizes, natural log of depths")
def _(depths, sizes):
    return float(np.polyfit(np.log(depths), np.log10(sizes), 1)[0])


@wrong("rf.growth_exponent", "slope between the first and last points only")
def _(depths, sizes):
    d, s = np.log(depths), np.log(sizes)
    return float((s[-1] - s[0]) / (d[-1] - d[0]))


@right("rf.growth_exponent", "least squares by np.linalg.lstsq")
def _(depths, sizes):
    a = np.stack([np.log(depths), np.ones(len(depths))], axis=1)
    return float(np.linalg.lstsq(a, np.log(sizes), rcond=None)[0][0])


# ============================================================================ lesson 1
@wrong("nl.to_positions", "reshape straight to (B, N, C)")
def _(x):
    b, c, h, w = x.shape
    return x.reshape(b, h * w, c)


@wrong("nl.to_positions", "transposed H and W before flattening")
def _(x):
    b, c = x.shape[:2]
    return x.transpose(0, 1, 3, 2).reshape(b, c, -1).transpose(0, 2, 1)


@wrong("nl.to_positions", "forgot the transpose: (B, C, N)")
def _(x):
    return x.reshape(x.shape[0], x.shape[1], -1)


@right("nl.to_positions", "np.moveaxis then reshape")
def _(x):
    b, c, h, w = x.shape
    return np.moveaxis(x, 1, -1).reshape(b, h * w, c)


@right("nl.to_positions", "einsum then reshape")
def _(x):
    b, c, h, w = x.shape
    return np.einsum("bchw->bhwc", x).reshape(b, h * w, c)


@wrong("nl.to_map", "reshape straight to (B, C, H, W)")
def _(t, H, W):
    b, n, c = t.shape
    return t.reshape(b, c, H, W)


@wrong("nl.to_map", "reshaped to (B, C, W, H), then swapped the last axes")
def _(t, H, W):
    b, n, c = t.shape
    return t.transpose(0, 2, 1).reshape(b, c, W, H).swapaxes(2, 3)


@right("nl.to_map", "reshape to (B, H, W, C) then transpose")
def _(t, H, W):
    b, n, c = t.shape
    return t.reshape(b, H, W, c).transpose(0, 3, 1, 2)


@wrong("nl.conv1x1", "forgot the bias")
def _(x, weight, bias):
    return np.einsum("oc,bchw->bohw", weight[:, :, 0, 0], x)


@wrong("nl.conv1x1", "bias added twice (once inside the sum over channels)")
def _(x, weight, bias):
    w = weight[:, :, 0, 0]
    return np.einsum("oc,bchw->bohw", w, x) + 2 * bias[:, None, None]


@wrong("nl.conv1x1", "weight used as (Ci, Co) after a reshape (not a transpose)")
def _(x, weight, bias):
    co, ci = weight.shape[:2]
    w = weight.reshape(ci, co).T
    return np.einsum("oc,bchw->bohw", w, x) + bias[:, None, None]


@wrong("nl.conv1x1", "computes in float32")
def _(x, weight, bias):
    w = weight[:, :, 0, 0].astype(np.float32)
    out = np.einsum("oc,bchw->bohw", w, x.astype(np.float32)) + bias[:, None, None]
    return out.astype(np.float64)


@right("nl.conv1x1", "matmul on the flattened positions")
def _(x, weight, bias):
    b, c, h, w = x.shape
    out = weight[:, :, 0, 0] @ x.reshape(b, c, h * w) + bias[:, None]
    return out.reshape(b, -1, h, w)


@right("nl.conv1x1", "tensordot")
def _(x, weight, bias):
    out = np.tensordot(weight[:, :, 0, 0], x, axes=([1], [1]))  # (Co, B, H, W)
    return out.transpose(1, 0, 2, 3) + bias[None, :, None, None]


@wrong("nl.softmax", "no max subtraction")
def _(z):
    e = np.exp(z)
    return e / np.sum(e, axis=-1, keepdims=True)


@wrong("nl.softmax", "max over the whole array (one max, not per row) -> underflow")
def _(z):
    e = np.exp(z - z.max())
    return e / e.sum(axis=-1, keepdims=True)


@wrong("nl.softmax", "normalised by the sum over the whole matrix, not per row")
def _(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=(-2, -1), keepdims=True)


@wrong("nl.softmax", "log-softmax (returned the log of the weights)")
def _(z):
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


@wrong("nl.softmax", "in place: z -= max modifies the input")
def _(z):
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@right("nl.softmax", "log-sum-exp then exp")
def _(z):
    m = z.max(axis=-1, keepdims=True)
    return np.exp(z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))


def _sm(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@wrong("nl.embedded_gaussian", "divided by C_i, not sqrt(C_i)")
def _(theta_x, phi_x, use_scale=True):
    s = theta_x @ phi_x
    return _sm(s / theta_x.shape[-1] if use_scale else s)


@wrong("nl.embedded_gaussian", "scale applied after the softmax")
def _(theta_x, phi_x, use_scale=True):
    a = _sm(theta_x @ phi_x)
    return a / np.sqrt(theta_x.shape[-1]) if use_scale else a


@wrong("nl.embedded_gaussian", "naive exp (no max subtraction)")
def _(theta_x, phi_x, use_scale=True):
    s = theta_x @ phi_x
    if use_scale:
        s = s / np.sqrt(theta_x.shape[-1])
    e = np.exp(s)
    return e / e.sum(-1, keepdims=True)


@wrong("nl.embedded_gaussian", "sqrt(N') instead of sqrt(C_i)")
def _(theta_x, phi_x, use_scale=True):
    s = theta_x @ phi_x
    return _sm(s / np.sqrt(phi_x.shape[-1]) if use_scale else s)


@wrong("nl.embedded_gaussian", "ignores use_scale (always scales)")
def _(theta_x, phi_x, use_scale=True):
    return _sm(theta_x @ phi_x / np.sqrt(theta_x.shape[-1]))


@right("nl.embedded_gaussian", "einsum for the logits")
def _(theta_x, phi_x, use_scale=True):
    s = np.einsum("bnc,bcm->bnm", theta_x, phi_x)
    if use_scale:
        s = s * theta_x.shape[-1] ** -0.5
    return _sm(s)


@wrong("nl.dot_product", "divided by sqrt(N')")
def _(theta_x, phi_x):
    return theta_x @ phi_x / np.sqrt(phi_x.shape[-1])


@wrong("nl.dot_product", "divided by C_i")
def _(theta_x, phi_x):
    return theta_x @ phi_x / theta_x.shape[-1]


@wrong("nl.dot_product", "normalised each row to sum 1")
def _(theta_x, phi_x):
    s = theta_x @ phi_x
    return s / s.sum(-1, keepdims=True)


@right("nl.dot_product", "einsum, then times 1/N'")
def _(theta_x, phi_x):
    return np.einsum("bnc,bcm->bnm", theta_x, phi_x) * (1.0 / phi_x.shape[-1])


@wrong("nl.concatenation", "no ReLU")
def _(theta_x, phi_x, w):
    ci = theta_x.shape[-1]
    s = (theta_x @ w[:ci])[:, :, None] + np.einsum("bcn,c->bn", phi_x, w[ci:])[:, None, :]
    return s / phi_x.shape[-1]


@wrong("nl.concatenation", "the halves of w swapped")
def _(theta_x, phi_x, w):
    ci = theta_x.shape[-1]
    s = (theta_x @ w[ci:])[:, :, None] + np.einsum("bcn,c->bn", phi_x, w[:ci])[:, None, :]
    return np.maximum(s, 0) / phi_x.shape[-1]


@wrong("nl.concatenation", "softmax instead of ReLU / N'")
def _(theta_x, phi_x, w):
    ci = theta_x.shape[-1]
    s = (theta_x @ w[:ci])[:, :, None] + np.einsum("bcn,c->bn", phi_x, w[ci:])[:, None, :]
    return _sm(s)


@wrong("nl.concatenation", "forgot the 1/N' normalisation")
def _(theta_x, phi_x, w):
    ci = theta_x.shape[-1]
    s = (theta_x @ w[:ci])[:, :, None] + np.einsum("bcn,c->bn", phi_x, w[ci:])[:, None, :]
    return np.maximum(s, 0)


@right("nl.concatenation", "explicit concatenation of every pair, then the projection")
def _(theta_x, phi_x, w):
    b, n, ci = theta_x.shape
    nk = phi_x.shape[-1]
    pairs = np.concatenate([np.repeat(theta_x[:, :, None, :], nk, 2),
                            np.repeat(phi_x.transpose(0, 2, 1)[:, None, :, :], n, 1)], axis=-1)
    return np.maximum(pairs @ w, 0) / nk


@wrong("nl.max_pool2x2", "average pooling")
def _(x):
    b, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, :, :2 * h2, :2 * w2].reshape(b, c, h2, 2, w2, 2).mean(axis=(3, 5))


@wrong("nl.max_pool2x2", "reshape with the window axes in the wrong places")
def _(x):
    b, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, :, :2 * h2, :2 * w2].reshape(b, c, 2, h2, 2, w2).max(axis=(2, 4))


@wrong("nl.max_pool2x2", "strided slicing: keeps the top-left pixel only")
def _(x):
    h2, w2 = x.shape[2] // 2, x.shape[3] // 2
    return x[:, :, 0:2 * h2:2, 0:2 * w2:2].copy()


@right("nl.max_pool2x2", "maximum of the four strided slices")
def _(x):
    h2, w2 = x.shape[2] // 2, x.shape[3] // 2
    a = x[:, :, :2 * h2, :2 * w2]
    return np.maximum(np.maximum(a[:, :, 0::2, 0::2], a[:, :, 1::2, 0::2]),
                      np.maximum(a[:, :, 0::2, 1::2], a[:, :, 1::2, 1::2]))


# ---- the whole NL block: the reference pieces, one slip at a time
def _nl(x, params, mode="embedded_gaussian", use_scale=True, sub_sample=False, *,
        naive=False, scale_sqrt_n=False, pool_theta=False, no_g_bias=False, avg_pool=False,
        residual=True, out_bias=True, g_from_x=False):
    B, C, H, W = x.shape
    conv = gnp.ops.conv1x1

    def pool(t):
        if not sub_sample:
            return t
        h2, w2 = t.shape[2] // 2, t.shape[3] // 2
        r = t[:, :, :2 * h2, :2 * w2].reshape(t.shape[0], t.shape[1], h2, 2, w2, 2)
        return r.mean(axis=(3, 5)) if avg_pool else r.max(axis=(3, 5))

    pos = lambda t: t.reshape(t.shape[0], t.shape[1], -1).transpose(0, 2, 1)
    g = pool(x if g_from_x else conv(x, params["g.weight"],
                                     None if no_g_bias else params["g.bias"]))
    if mode == "gaussian":
        theta_x, phi = pos(pool(x) if pool_theta else x), pool(x)
    else:
        th = conv(x, params["theta.weight"], params["theta.bias"])
        theta_x = pos(pool(th) if pool_theta else th)
        phi = pool(conv(x, params["phi.weight"], params["phi.bias"]))
    phi_x = phi.reshape(B, phi.shape[1], -1)
    g_x = pos(g)
    s = theta_x @ phi_x
    nk = phi_x.shape[-1]
    if mode in ("gaussian", "embedded_gaussian"):
        if mode == "embedded_gaussian" and use_scale:
            s = s / (np.sqrt(H * W) if scale_sqrt_n else np.sqrt(theta_x.shape[-1]))
        if naive:
            e = np.exp(s)
            att = e / e.sum(-1, keepdims=True)
        else:
            att = _sm(s)
    elif mode == "dot_product":
        att = s / nk
    else:
        wf = params["concat_project.weight"].reshape(-1)
        ci = theta_x.shape[-1]
        t = (theta_x @ wf[:ci])[:, :, None] + np.einsum("bcn,c->bn", phi_x, wf[ci:])[:, None, :]
        att = np.maximum(t, 0) / nk
    y = (att @ g_x).transpose(0, 2, 1).reshape(B, -1, H, W)
    z = conv(y, params["conv_out.weight"], params["conv_out.bias"] if out_bias else None)
    return (x + z if residual else z), y, att


def _ctx(**kn):
    def f(x, params, mode="embedded_gaussian", use_scale=True, sub_sample=False):
        _, y, a = _nl(x, params, mode, use_scale, sub_sample, **kn)
        return y, a
    return f


def _fwd(**kn):
    def f(x, params, mode="embedded_gaussian", use_scale=True, sub_sample=False):
        return _nl(x, params, mode, use_scale, sub_sample, **kn)[0]
    return f


for _what, _kn in [
    ("naive softmax (no max subtraction) inside the block", {"naive": True}),
    ("scaled by sqrt(N) instead of sqrt(C_i)", {"scale_sqrt_n": True}),
    ("average instead of max pooling for the sub-sampled keys", {"avg_pool": True}),
    ("g's bias forgotten", {"no_g_bias": True}),
]:
    wrong("nl.context_modeling", _what)(_ctx(**_kn))
    wrong("nl.forward", _what)(_fwd(**_kn))
wrong("nl.forward", "conv_out's bias forgotten")(_fwd(out_bias=False))
wrong("nl.forward", "g taken as x itself (no g conv): shapes only work when C_i = C")(
    _fwd(g_from_x=True))


@wrong("nl.context_modeling", "returns (attention, y) in the wrong order")
def _(x, params, mode="embedded_gaussian", use_scale=True, sub_sample=False):
    _, y, a = _nl(x, params, mode, use_scale, sub_sample)
    return a, y


@wrong("nl.forward", "returns x + y (skips the conv_out transform): shapes differ")
def _(x, params, mode="embedded_gaussian", use_scale=True, sub_sample=False):
    _, y, _ = _nl(x, params, mode, use_scale, sub_sample)
    return x[:, : y.shape[1]] + y


@wrong("nl.forward", "in place: x += z modifies the caller's x")
def _(x, params, mode="embedded_gaussian", use_scale=True, sub_sample=False):
    z = _nl(x, params, mode, use_scale, sub_sample, residual=False)[0]
    x += z
    return x


@right("nl.forward", "gclab.numpy's forward")
def _(x, params, mode="embedded_gaussian", use_scale=True, sub_sample=False):
    return gnp.non_local.forward(x, params, mode, use_scale, sub_sample)[0]


@right("nl.context_modeling", "written out step by step")
def _(x, params, mode="embedded_gaussian", use_scale=True, sub_sample=False):
    _, y, a = _nl(x, params, mode, use_scale, sub_sample)
    return y, a


# ============================================================================ lesson 2
@wrong("nlgrad.rel_error", "divided by max(|a|, |b|)")
def _(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.maximum(np.abs(a), np.abs(b)))))


@wrong("nlgrad.rel_error", "no floor: 0/0 gives NaN on zeros")
def _(a, b):
    with np.errstate(all="ignore"):
        return float(np.max(np.abs(a - b) / (np.abs(a) + np.abs(b))))


@wrong("nlgrad.rel_error", "|a - b| / |a| only")
def _(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a))))


@wrong("nlgrad.rel_error", "forgot the absolute values in the denominator")
def _(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, a + b)))


@right("nlgrad.rel_error", "returns a NumPy scalar (np.max)")
def _(a, b):
    return np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)))


@right("nlgrad.rel_error", "returns a 0-d array")
def _(a, b):
    return np.asarray(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


@wrong("nlgrad.numerical_gradient", "forward difference (f(x + h) - f(x)) / h")
def _(f, x, df, h=1e-5):
    grad = np.zeros_like(x)
    f0 = np.array(f(x), dtype=np.float64)
    for k in np.ndindex(x.shape):
        old = x[k]
        x[k] = old + h
        fp = np.array(f(x), dtype=np.float64)
        x[k] = old
        grad[k] = np.sum((fp - f0) * df) / h
    return grad


@wrong("nlgrad.numerical_gradient", "restores x by arithmetic (x += h; x -= 2h; x += h)")
def _(f, x, df, h=1e-5):
    grad = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        x[k] += h
        fp = np.array(f(x), dtype=np.float64)
        x[k] -= 2 * h
        fm = np.array(f(x), dtype=np.float64)
        x[k] += h
        grad[k] = np.sum((fp - fm) * df) / (2 * h)
    return grad


@wrong("nlgrad.numerical_gradient", "divides by h instead of 2h")
def _(f, x, df, h=1e-5):
    grad = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        old = x[k]
        x[k] = old + h
        fp = np.array(f(x), dtype=np.float64)
        x[k] = old - h
        fm = np.array(f(x), dtype=np.float64)
        x[k] = old
        grad[k] = np.sum((fp - fm) * df) / h
    return grad


@wrong("nlgrad.numerical_gradient", "forgot the upstream gradient df (sums f's change)")
def _(f, x, df, h=1e-5):
    grad = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        old = x[k]
        x[k] = old + h
        fp = np.array(f(x), dtype=np.float64)
        x[k] = old - h
        fm = np.array(f(x), dtype=np.float64)
        x[k] = old
        grad[k] = np.sum(fp - fm) / (2 * h)
    return grad


@right("nlgrad.numerical_gradient", "perturbs a copy of x each time")
def _(f, x, df, h=1e-5):
    grad = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[k] += h
        xm[k] -= h
        grad[k] = np.sum((np.array(f(xp), dtype=np.float64) - np.array(f(xm), dtype=np.float64))
                         * df) / (2 * h)
    return grad


@wrong("nlgrad.softmax_backward", "sign of the correction flipped")
def _(dout, p):
    return p * (dout + (dout * p).sum(axis=-1, keepdims=True))


@wrong("nlgrad.softmax_backward", "<dout, p> summed over the whole array, not per row")
def _(dout, p):
    return p * (dout - (dout * p).sum())


@wrong("nlgrad.softmax_backward", "full Jacobian with p p^T but without the diagonal")
def _(dout, p):
    return -p * (dout * p).sum(axis=-1, keepdims=True)


@right("nlgrad.softmax_backward", "explicit Jacobian diag(p) - p p^T per row")
def _(dout, p):
    jac = np.einsum("...i,ij->...ij", p, np.eye(p.shape[-1])) - p[..., :, None] * p[..., None, :]
    return np.einsum("...ij,...j->...i", jac, dout)


@wrong("nlgrad.matmul_backward", "returns (dB, dA)")
def _(dout, a, b):
    return a.transpose(0, 2, 1) @ dout, dout @ b.transpose(0, 2, 1)


@wrong("nlgrad.matmul_backward", "dA = dout @ B (no transpose): shapes only fit by reshape")
def _(dout, a, b):
    return (dout @ b.reshape(b.shape[0], b.shape[2], b.shape[1]),
            a.transpose(0, 2, 1) @ dout)


@wrong("nlgrad.matmul_backward", "transposed the batch axis too (.T on 3-d arrays)")
def _(dout, a, b):
    return (dout @ b.transpose(0, 2, 1), np.einsum("bkn,bnm->bkm", a.transpose(0, 2, 1), dout)
            .sum(0, keepdims=True).repeat(a.shape[0], 0))


@right("nlgrad.matmul_backward", "einsum")
def _(dout, a, b):
    return np.einsum("bnm,bkm->bnk", dout, b), np.einsum("bnk,bnm->bkm", a, dout)


def _c1b(dout, x, weight):
    b, c = x.shape[:2]
    w2 = weight.reshape(weight.shape[0], c)
    df = dout.reshape(b, dout.shape[1], -1)
    xf = x.reshape(b, c, -1)
    return (w2.T @ df).reshape(x.shape), np.einsum("bon,bcn->oc", df, xf).reshape(weight.shape), \
        df.sum(axis=(0, 2))


@wrong("nlgrad.conv1x1_backward", "db summed over positions only (per image)")
def _(dout, x, weight):
    dx, dw, _ = _c1b(dout, x, weight)
    return dx, dw, dout.sum(axis=(2, 3))[0]


@wrong("nlgrad.conv1x1_backward", "dx with W instead of W^T (only fits when Co = C)")
def _(dout, x, weight):
    dx, dw, db = _c1b(dout, x, weight)
    w2 = weight.reshape(weight.shape[0], -1)
    df = dout.reshape(dout.shape[0], dout.shape[1], -1)
    return (w2.reshape(w2.shape[1], w2.shape[0]) @ df).reshape(x.shape), dw, db


@wrong("nlgrad.conv1x1_backward", "dW of the first image only")
def _(dout, x, weight):
    dx, _, db = _c1b(dout, x, weight)
    return dx, _c1b(dout[:1], x[:1], weight)[1], db


@wrong("nlgrad.conv1x1_backward", "dW returned as (Co, C) without the 1x1 axes")
def _(dout, x, weight):
    dx, dw, db = _c1b(dout, x, weight)
    return dx, dw[:, :, 0, 0], db


@right("nlgrad.conv1x1_backward", "einsum on the 4-d arrays")
def _(dout, x, weight):
    w = weight[:, :, 0, 0]
    return (np.einsum("oc,bohw->bchw", w, dout),
            np.einsum("bohw,bchw->oc", dout, x)[:, :, None, None], dout.sum(axis=(0, 2, 3)))


def _egb(dattn, theta_x, phi_x, attention, use_scale=True, s_of=lambda ci: math.sqrt(ci)):
    ds = attention * (dattn - (dattn * attention).sum(-1, keepdims=True))
    if use_scale:
        ds = ds / s_of(theta_x.shape[-1])
    return ds @ phi_x.transpose(0, 2, 1), theta_x.transpose(0, 2, 1) @ ds


@wrong("nlgrad.embedded_gaussian_backward", "multiplied by sqrt(C_i) instead of dividing")
def _(dattn, theta_x, phi_x, attention, use_scale=True):
    return _egb(dattn, theta_x, phi_x, attention, use_scale, lambda ci: 1 / math.sqrt(ci))


@wrong("nlgrad.embedded_gaussian_backward", "divided by C_i, not sqrt(C_i)")
def _(dattn, theta_x, phi_x, attention, use_scale=True):
    return _egb(dattn, theta_x, phi_x, attention, use_scale, lambda ci: ci)


@wrong("nlgrad.embedded_gaussian_backward", "the two gradients returned swapped")
def _(dattn, theta_x, phi_x, attention, use_scale=True):
    a, b = _egb(dattn, theta_x, phi_x, attention, use_scale)
    return b, a


@wrong("nlgrad.embedded_gaussian_backward", "ignores use_scale")
def _(dattn, theta_x, phi_x, attention, use_scale=True):
    return _egb(dattn, theta_x, phi_x, attention, True)


@right("nlgrad.embedded_gaussian_backward", "einsum and a precomputed 1/sqrt")
def _(dattn, theta_x, phi_x, attention, use_scale=True):
    ds = attention * dattn - attention * np.einsum("bnm,bnm->bn", attention, dattn)[..., None]
    ds = ds * (theta_x.shape[-1] ** -0.5 if use_scale else 1.0)
    return np.einsum("bnm,bcm->bnc", ds, phi_x), np.einsum("bnc,bnm->bcm", theta_x, ds)


_REF_BLOCK = get("nlgrad.block_backward").reference


def _block_post(fix):
    """The block backward with one slip whose effect on the gradients is exact (``fix`` edits
    the correct (dx, grads) the way the slip does)."""
    def f(x, params, dout, use_scale=True):
        dx, grads = _REF_BLOCK(x, params, dout, use_scale)
        return fix(x, params, dout, dx, dict(grads))
    return f


def _no_residual(x, p, dout, dx, g):
    return dx - dout, g


def _no_bias_sums(x, p, dout, dx, g):
    g["conv_out.bias"] = dout.sum(axis=(2, 3))[0]
    return dx, g


def _mean_over_batch(x, p, dout, dx, g):
    return dx, {k: v / x.shape[0] for k, v in g.items()}


def _missing_key(x, p, dout, dx, g):
    g.pop("phi.bias")
    return dx, g


wrong("nlgrad.block_backward", "the residual's dout not added to dx")(_block_post(_no_residual))
wrong("nlgrad.block_backward", "conv_out's bias gradient of image 0 only")(
    _block_post(_no_bias_sums))
wrong("nlgrad.block_backward", "averaged the parameter gradients over the batch")(
    _block_post(_mean_over_batch))
wrong("nlgrad.block_backward", "forgot phi's bias gradient")(_block_post(_missing_key))


@wrong("nlgrad.block_backward", "forward with a naive softmax (overflows on large logits)")
def _(x, params, dout, use_scale=True):
    # the learner's forward computes exp(logits) / sum: NaN once a logit passes ~709
    th = gnp.ops.conv1x1(x, params["theta.weight"], params["theta.bias"])
    ph = gnp.ops.conv1x1(x, params["phi.weight"], params["phi.bias"])
    b, ci = th.shape[:2]
    s = th.reshape(b, ci, -1).transpose(0, 2, 1) @ ph.reshape(b, ci, -1)
    s = s / (np.sqrt(ci) if use_scale else 1.0)
    dx, grads = _REF_BLOCK(x, params, dout, use_scale)
    if np.abs(s).max() > 709:
        return dx * np.nan, {k: v * np.nan for k, v in grads.items()}
    return dx, grads


@right("nlgrad.block_backward", "gclab.numpy forward and backward")
def _(x, params, dout, use_scale=True):
    _, cache = gnp.non_local.forward(x, params, "embedded_gaussian", use_scale)
    return gnp.non_local.backward(dout, cache)
