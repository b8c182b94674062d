"""Lessons 3-5: looking inside NL, Simplified NL, the GC block."""
# ruff: noqa: E731, N803, N806

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import gclab.numpy as gnp
from gclab.nn import AttentionPooling, GCBlock

from . import right, wrong


# ============================================================================ lesson 3
@wrong("inside.query_map", "off by one row: (row + 1) * width + col")
def _(attention, row, col, height, width):
    q = min((row + 1) * width + col, attention.shape[1] - 1)
    return attention[:, q, :].reshape(attention.shape[0], height, width)


@wrong("inside.query_map", "first image only, batch axis dropped")
def _(attention, row, col, height, width):
    return attention[0, row * width + col, :].reshape(height, width)


@wrong("inside.query_map", "row * height + col")
def _(attention, row, col, height, width):
    q = min(row * height + col, attention.shape[1] - 1)
    return attention[:, q, :].reshape(attention.shape[0], height, width)


@right("inside.query_map", "np.ravel_multi_index for the flat index")
def _(attention, row, col, height, width):
    q = np.ravel_multi_index((row, col), (height, width))
    return attention[:, q].reshape(-1, height, width)


@right("inside.query_map", "reshape the keys to the grid first, then index")
def _(attention, row, col, height, width):
    b = attention.shape[0]
    return attention.reshape(b, height, width, height, width)[:, row, col].copy()


@wrong("inside.cosine_distance", "norms without the square root (squared norms)")
def _(u, v):
    return 1.0 - (u * v).sum(-1) / ((u * u).sum(-1) * (v * v).sum(-1))


@wrong("inside.cosine_distance", "norm over the whole array, not the last axis")
def _(u, v):
    return 1.0 - (u * v).sum(-1) / (np.linalg.norm(u) * np.linalg.norm(v))


@wrong("inside.cosine_distance", "returns 1 + cos")
def _(u, v):
    return 1.0 + (u * v).sum(-1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))


@wrong("inside.cosine_distance", "sum over the first axis")
def _(u, v):
    return 1.0 - (u * v).sum(0) / (np.linalg.norm(u, axis=0) * np.linalg.norm(v, axis=0))


@right("inside.cosine_distance", "einsum and a float for 1-d inputs")
def _(u, v):
    d = 1.0 - np.einsum("...d,...d->...", u, v) / np.sqrt(
        np.einsum("...d,...d->...", u, u) * np.einsum("...d,...d->...", v, v))
    return float(d) if np.ndim(d) == 0 else d


@right("inside.cosine_distance", "normalise first, then the dot product")
def _(u, v):
    uu = u / np.linalg.norm(u, axis=-1, keepdims=True)
    vv = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return 1 - np.sum(uu * vv, axis=-1)


@wrong("inside.pairwise_distance", "divided by N^2 after removing the diagonal")
def _(vectors):
    u = vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
    cos = u @ u.transpose(0, 2, 1)
    n = vectors.shape[1]
    return 1.0 - (cos.sum((1, 2)) - np.trace(cos, axis1=1, axis2=2)) / n**2


@wrong("inside.pairwise_distance", "unordered pairs i < j but divided by N (N - 1)")
def _(vectors):
    u = vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
    cos = u @ u.transpose(0, 2, 1)
    n = vectors.shape[1]
    iu = np.triu_indices(n, 1)
    return 1.0 - cos[:, iu[0], iu[1]].sum(-1) / (n * (n - 1))


@wrong("inside.pairwise_distance", "forgot to normalise: dot products, not cosines")
def _(vectors):
    cos = vectors @ vectors.transpose(0, 2, 1)
    n = vectors.shape[1]
    return 1.0 - (cos.sum((1, 2)) - np.trace(cos, axis1=1, axis2=2)) / (n * (n - 1))


@wrong("inside.pairwise_distance", "one mean over the whole batch")
def _(vectors):
    u = vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
    cos = u @ u.transpose(0, 2, 1)
    n = vectors.shape[1]
    d = 1.0 - (cos.sum((1, 2)) - np.trace(cos, axis1=1, axis2=2)) / (n * (n - 1))
    return np.full(vectors.shape[0], d.mean())


@right("inside.pairwise_distance", "double loop over pairs")
def _(vectors):
    b, n, _ = vectors.shape
    out = np.zeros(b)
    for k in range(b):
        tot = 0.0
        for i in range(n):
            for j in range(n):
                if i != j:
                    u, v = vectors[k, i], vectors[k, j]
                    tot += 1 - u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
        out[k] = tot / (n * (n - 1))
    return out


@right("inside.pairwise_distance", "mean of the upper triangle (symmetric)")
def _(vectors):
    u = vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
    cos = u @ u.transpose(0, 2, 1)
    iu = np.triu_indices(vectors.shape[1], 1)
    return 1.0 - cos[:, iu[0], iu[1]].mean(-1)


@wrong("inside.mean_map", "median instead of mean")
def _(attention):
    return np.median(attention, axis=1)


@wrong("inside.mean_map", "averaged over the batch too")
def _(attention):
    return np.broadcast_to(attention.mean(axis=(0, 1)), attention[:, 0].shape).copy()


@wrong("inside.mean_map", "float32 mean")
def _(attention):
    return attention.astype(np.float32).mean(axis=1).astype(np.float64)


@right("inside.mean_map", "sum over queries / N")
def _(attention):
    return attention.sum(axis=1) / attention.shape[1]


# ============================================================================ lesson 4
def _sm1(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _logits(x, w_k, b_k):
    b, c = x.shape[:2]
    return np.einsum("c,bcn->bn", w_k, x.reshape(b, c, -1)) + b_k


@wrong("snl.attention", "naive exp (no max subtraction)")
def _(x, w_k, b_k):
    e = np.exp(_logits(x, w_k, b_k))
    return e / e.sum(1, keepdims=True)


@right("snl.attention", "b_k dropped: a softmax ignores a constant shift of its logits")
def _(x, w_k, b_k):
    b, c = x.shape[:2]
    return _sm1(np.einsum("c,bcn->bn", w_k, x.reshape(b, c, -1)))


@wrong("snl.attention", "returned the logits")
def _(x, w_k, b_k):
    return _logits(x, w_k, b_k)


@wrong("snl.attention", "logits divided by sqrt(C) (an NL habit)")
def _(x, w_k, b_k):
    return _sm1(_logits(x, w_k, b_k) / np.sqrt(x.shape[1]))


@wrong("snl.attention", "softmax over the whole batch")
def _(x, w_k, b_k):
    s = _logits(x, w_k, b_k)
    e = np.exp(s - s.max())
    return e / e.sum()


@right("snl.attention", "scipy-free logsumexp")
def _(x, w_k, b_k):
    s = _logits(x, w_k, b_k)
    m = s.max(1, keepdims=True)
    return np.exp(s - m - np.log(np.exp(s - m).sum(1, keepdims=True)))


@right("snl.attention", "via gclab.numpy's 1x1 conv and softmax")
def _(x, w_k, b_k):
    s = gnp.ops.conv1x1(x, w_k.reshape(1, -1, 1, 1), np.array([b_k]))
    return gnp.ops.softmax(s.reshape(x.shape[0], -1), axis=1)


@wrong("snl.pool", "pooled with alpha reshaped (W, H) then flattened the other way")
def _(x, alpha):
    b, c, h, w = x.shape
    a = alpha.reshape(b, w, h).transpose(0, 2, 1).reshape(b, -1)
    return np.einsum("bcn,bn->bc", x.reshape(b, c, -1), a).reshape(b, c, 1, 1)


@wrong("snl.pool", "returns (B, C) without the 1x1 axes")
def _(x, alpha):
    b, c = x.shape[:2]
    return np.einsum("bcn,bn->bc", x.reshape(b, c, -1), alpha)


@wrong("snl.pool", "divided by N (a mean of the weighted values)")
def _(x, alpha):
    b, c = x.shape[:2]
    n = x.shape[2] * x.shape[3]
    return (np.einsum("bcn,bn->bc", x.reshape(b, c, -1), alpha) / n).reshape(b, c, 1, 1)


@right("snl.pool", "matmul with alpha as a column")
def _(x, alpha):
    b, c = x.shape[:2]
    return (x.reshape(b, c, -1) @ alpha[:, :, None])[..., None]


@right("snl.pool", "broadcast multiply and sum")
def _(x, alpha):
    b, c, h, w = x.shape
    return (x * alpha.reshape(b, 1, h, w)).sum(axis=(2, 3), keepdims=True)


def _snl(x, w_k, b_k, w_v, b_v, *, naive=False, residual=True, bias=True, avg=False,
         out_only=False):
    b, c = x.shape[:2]
    s = _logits(x, w_k, b_k)
    if naive:
        e = np.exp(s)
        a = e / e.sum(1, keepdims=True)
    else:
        a = _sm1(s)
    xf = x.reshape(b, c, -1)
    ctx = xf.mean(-1) if avg else np.einsum("bcn,bn->bc", xf, a)
    term = ctx @ w_v.T + (b_v if bias else 0)
    return (x if residual else 0) + term[:, :, None, None] + (0 * x if not residual else 0)


for _what, _kn in [("naive softmax inside the block", {"naive": True}),
                   ("average pooling instead of the attention", {"avg": True})]:
    wrong("snl.forward", _what)(lambda x, w_k, b_k, w_v, b_v, kn=_kn: _snl(x, w_k, b_k, w_v, b_v,
                                                                            **kn))


@wrong("snl.forward", "the residual added twice (x + x + term)")
def _(x, w_k, b_k, w_v, b_v):
    return x + _snl(x, w_k, b_k, w_v, b_v)


@wrong("snl.forward", "b_v added inside the context (before W_v)")
def _(x, w_k, b_k, w_v, b_v):
    b, c = x.shape[:2]
    ctx = np.einsum("bcn,bn->bc", x.reshape(b, c, -1), _sm1(_logits(x, w_k, b_k)))
    return x + ((ctx + b_v) @ w_v.T)[:, :, None, None]


@right("snl.forward", "gclab.numpy's attention_pool and conv1x1")
def _(x, w_k, b_k, w_v, b_v):
    logits = gnp.ops.conv1x1(x, w_k.reshape(1, -1, 1, 1), np.array([b_k]))
    ctx = gnp.ops.attention_pool(x, logits)
    return x + gnp.ops.conv1x1(ctx, w_v[:, :, None, None], b_v)


_REF_CONVERT = None


def _convert(nl, *, no_scale=False, use_theta_weight=False, gz_order=False, drop_bias=False):
    sq = lambda k: nl[k][:, :, 0, 0]
    w_phi, w_g, w_z = sq("phi.weight"), sq("g.weight"), sq("conv_out.weight")
    ci, c = w_phi.shape
    b_theta = nl["theta.bias"]
    s = 1.0 if no_scale else np.sqrt(ci)
    wk = (w_phi.T @ b_theta / s).reshape(1, c, 1, 1)
    out = {
        "context_modeling.conv_mask.weight": wk,
        "context_modeling.conv_mask.bias": np.array([b_theta @ nl["phi.bias"] / s]),
        "transform.add.weight": ((w_g.T @ w_z.T).T if not gz_order else
                                 (w_g[:, :c].T @ w_z[:ci].T)).reshape(c, c, 1, 1),
        "transform.add.bias": w_z @ nl["g.bias"] + (0 if drop_bias else nl["conv_out.bias"]),
    }
    return out


@wrong("snl.from_nonlocal", "scale sqrt(C) instead of sqrt(C_i)")
def _(nl):
    out = _convert(nl)
    ci = nl["phi.weight"].shape[0]
    c = nl["phi.weight"].shape[1]
    f = np.sqrt(ci) / np.sqrt(c)
    out["context_modeling.conv_mask.weight"] = out["context_modeling.conv_mask.weight"] * f
    out["context_modeling.conv_mask.bias"] = out["context_modeling.conv_mask.bias"] * f
    return out


@wrong("snl.from_nonlocal", "conv_out's bias left out of the transform's bias")
def _(nl):
    return _convert(nl, drop_bias=True)


@wrong("snl.from_nonlocal", "the key's bias term dropped (conv_mask.bias = 0)")
def _(nl):
    out = _convert(nl)
    out["context_modeling.conv_mask.bias"] = np.zeros(1)
    return out


@wrong("snl.from_nonlocal", "weights returned without the 1x1 axes")
def _(nl):
    out = _convert(nl)
    out["transform.add.weight"] = out["transform.add.weight"][:, :, 0, 0]
    return out


@right("snl.from_nonlocal", "einsum for the products")
def _(nl):
    w_phi = nl["phi.weight"][:, :, 0, 0]
    ci, c = w_phi.shape
    s = np.sqrt(ci)
    return {
        "context_modeling.conv_mask.weight": np.einsum("ic,i->c", w_phi, nl["theta.bias"])
        .reshape(1, c, 1, 1) / s,
        "context_modeling.conv_mask.bias": np.array([nl["theta.bias"] @ nl["phi.bias"]]) / s,
        "transform.add.weight": np.einsum("oi,ic->oc", nl["conv_out.weight"][:, :, 0, 0],
                                          nl["g.weight"][:, :, 0, 0])[:, :, None, None],
        "transform.add.bias": nl["conv_out.weight"][:, :, 0, 0] @ nl["g.bias"]
        + nl["conv_out.bias"],
    }


wrong("snl.params", "forgot W_k's bias")((1024) + (1024 * 1024 + 1024))
wrong("snl.params", "W_v counted as C x C without bias")((1024 + 1) + 1024 * 1024)
wrong("snl.params", "computed as a float with /")(float((1024 + 1) + 1024 * 1024 / 1 + 1024))
wrong("snl.params", "counted W_v twice (as NL's g and W_z)")((1024 + 1) + 2 * (1024 * 1024 + 1024))
right("snl.params", "a NumPy integer")(np.int64((1024 + 1) + (1024 * 1024 + 1024)))
right("snl.params", "a lambda that counts")(lambda: 1025 + 1024 * 1025)


# ============================================================================ lesson 5
def _ln(t, gamma, beta, eps=1e-5, axes=(1, 2, 3), ddof=0):
    mu = t.mean(axis=axes, keepdims=True)
    var = t.var(axis=axes, keepdims=True, ddof=ddof)
    return gamma * (t - mu) / np.sqrt(var + eps) + beta


@wrong("gc.layer_norm", "divides by the std of the whole batch")
def _(t, gamma, beta):
    return gamma * (t - t.mean(axis=(1, 2, 3), keepdims=True)) / np.sqrt(t.var() + 1e-5) + beta


@wrong("gc.layer_norm", "forgot the mean subtraction")
def _(t, gamma, beta):
    return gamma * t / np.sqrt(t.var(axis=(1, 2, 3), keepdims=True) + 1e-5) + beta


@wrong("gc.layer_norm", "gamma and beta swapped")
def _(t, gamma, beta):
    return _ln(t, beta, gamma)


@wrong("gc.layer_norm", "forgot beta")
def _(t, gamma, beta):
    return _ln(t, gamma, 0.0)


@wrong("gc.layer_norm", "eps = 1e-3")
def _(t, gamma, beta):
    return _ln(t, gamma, beta, eps=1e-3)


@wrong("gc.layer_norm", "std computed in float32")
def _(t, gamma, beta):
    return _ln(t.astype(np.float32), gamma.astype(np.float32), beta.astype(np.float32)).astype(
        np.float64)


@right("gc.layer_norm", "torch's layer_norm")
def _(t, gamma, beta):
    return torch.nn.functional.layer_norm(torch.from_numpy(t), gamma.shape,
                                          torch.from_numpy(gamma), torch.from_numpy(beta),
                                          eps=1e-5).numpy()


@right("gc.layer_norm", "variance as the mean of squares minus the squared mean")
def _(t, gamma, beta):
    mu = t.mean(axis=(1, 2, 3), keepdims=True)
    var = (t**2).mean(axis=(1, 2, 3), keepdims=True) - mu**2
    return (t - mu) * (gamma / np.sqrt(var + 1e-5)) + beta


def _bott(context, params, *, order="ln_relu", ln=_ln, relu=True, bias3=True):
    h = gnp.ops.conv1x1(context, params["0.weight"], params["0.bias"])
    if order == "ln_relu":
        h = ln(h, params["1.weight"], params["1.bias"])
        h = np.maximum(h, 0) if relu else h
    else:
        h = ln(np.maximum(h, 0), params["1.weight"], params["1.bias"])
    return gnp.ops.conv1x1(h, params["3.weight"], params["3.bias"] if bias3 else None)


wrong("gc.transform", "no ReLU")(lambda c, p: _bott(c, p, relu=False))
wrong("gc.transform", "last conv's bias forgotten")(lambda c, p: _bott(c, p, bias3=False))
wrong("gc.transform", "LayerNorm without eps")(lambda c, p: _bott(c, p, ln=lambda t, g, b: _ln(
    t, g, b, eps=0.0)))
wrong("gc.transform", "LayerNorm's variance with ddof=1")(lambda c, p: _bott(c, p, ln=lambda t, g,
                                                                            b: _ln(t, g, b,
                                                                                   ddof=1)))


@wrong("gc.transform", "sigmoid at the end (that belongs to the mul fusion)")
def _(context, params):
    return 1 / (1 + np.exp(-_bott(context, params)))


@right("gc.transform", "torch Sequential loaded with the params")
def _(context, params):
    c = context.shape[1]
    p = params["0.weight"].shape[0]
    m = nn.Sequential(nn.Conv2d(c, p, 1), nn.LayerNorm([p, 1, 1]), nn.ReLU(),
                      nn.Conv2d(p, c, 1)).double()
    m.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    with torch.no_grad():
        return m(torch.from_numpy(context)).numpy()


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


@wrong("gc.fusion", "mul without the sigmoid... and add ignored when both are given")
def _(x, add=None, mul=None):
    if mul is not None:
        return x * _sig(mul)
    return x + add


@wrong("gc.fusion", "x * (1 + sigmoid(mul))")
def _(x, add=None, mul=None):
    out = x
    if mul is not None:
        out = out * (1 + _sig(mul))
    if add is not None:
        out = out + add
    return out


@wrong("gc.fusion", "tanh instead of sigmoid")
def _(x, add=None, mul=None):
    out = x * np.tanh(mul) if mul is not None else x
    return out + add if add is not None else out


@wrong("gc.fusion", "in place: x *= sigmoid(mul)")
def _(x, add=None, mul=None):
    if mul is not None:
        x *= _sig(mul)
    if add is not None:
        x += add
    return x


@right("gc.fusion", "np.where-free, with a torch sigmoid")
def _(x, add=None, mul=None):
    out = x.copy()
    if mul is not None:
        out = out * torch.sigmoid(torch.from_numpy(mul)).numpy()
    if add is not None:
        out += add
    return out


def _gcb(x, params, *, naive=False, pool="att", ln=_ln, residual=True):
    b, c = x.shape[:2]
    s = gnp.ops.conv1x1(x, params["context_modeling.conv_mask.weight"],
                        params["context_modeling.conv_mask.bias"]).reshape(b, -1)
    if naive:
        e = np.exp(s)
        a = e / e.sum(1, keepdims=True)
    else:
        a = _sm1(s)
    xf = x.reshape(b, c, -1)
    ctx = (xf.mean(-1) if pool == "avg" else xf.max(-1) if pool == "max"
           else np.einsum("bcn,bn->bc", xf, a)).reshape(b, c, 1, 1)
    out = x if residual else np.zeros_like(x)
    terms = {}
    for f in ("add", "mul"):
        pre = f"transform.{f}."
        if pre + "0.weight" in params:
            sub = {k[len(pre):]: v for k, v in params.items() if k.startswith(pre)}
            terms[f] = _bott(ctx, sub, ln=ln)
    if "mul" in terms:
        out = out * _sig(terms["mul"]) if residual else x * _sig(terms["mul"])
    if "add" in terms:
        out = out + terms["add"]
    return out


for _what, _kn in [("naive softmax in the attention pooling", {"naive": True}),
                   ("average pooling instead of attention pooling", {"pool": "avg"}),
                   ("LayerNorm without eps in the bottlenecks",
                    {"ln": lambda t, g, b: _ln(t, g, b, eps=0.0)})]:
    wrong("gc.forward", _what)(lambda x, params, kn=_kn: _gcb(x, params, **kn))


@wrong("gc.forward", "add branch applied before the mul branch")
def _(x, params):
    add_only = {k: v for k, v in params.items() if not k.startswith("transform.mul.")}
    mul_only = {k: v for k, v in params.items() if not k.startswith("transform.add.")}
    if any(k.startswith("transform.mul.") for k in params) and any(
            k.startswith("transform.add.") for k in params):
        y = _gcb(x, add_only)
        ctx_logits = _gcb(x, mul_only) / x  # x * sigmoid(mul) / x
        return y * ctx_logits
    return _gcb(x, params)


@wrong("gc.forward", "only the 'add' branch used, mul ignored")
def _(x, params):
    return _gcb(x, {k: v for k, v in params.items() if not k.startswith("transform.mul.")})


@right("gc.forward", "gclab.numpy's gc_block")
def _(x, params):
    fusions = tuple(f for f in ("add", "mul") if f"transform.{f}.0.weight" in params)
    return gnp.gc_block.forward(x, params, fusions=fusions)[0]


wrong("gc.params", "one bottleneck, not one per fusion")((1024 + 1) + (1024 * 64 + 64) + 128
                                                        + (64 * 1024 + 1024))
wrong("gc.params", "r = 4 instead of 16")((1024 + 1) + 2 * ((1024 * 256 + 256) + 512
                                                           + (256 * 1024 + 1024)))
wrong("gc.params", "LayerNorm counted with P weights only")(
    (1024 + 1) + 2 * ((1024 * 64 + 64) + 64 + (64 * 1024 + 1024)))
wrong("gc.params", "a float from 1024 / 16")((1024 + 1) + 2 * ((1024 * 1024 / 16 + 64) + 128
                                                              + (64 * 1024 + 1024)))
right("gc.params", "a NumPy integer")(np.int64((1024 + 1) + 2 * ((1024 * 64 + 64) + 128
                                                                 + (64 * 1024 + 1024))))
right("gc.params", "counted by PyTorch")(lambda: sum(
    p.numel() for p in GCBlock(1024, 1 / 16, fusions=("add", "mul")).parameters()))

_N, _C, _P = 14 * 20, 256, 16
wrong("gc.flops", "MACs, not FLOPs (no factor 2)")(_C * _N + _C * _N + _C * _P + _P * _C)
wrong("gc.flops", "the pooling product forgotten")(2 * (_C * _N + _C * _P + _P * _C))
wrong("gc.flops", "the bottleneck convs counted on the H x W map")(
    2 * (_C * _N + _C * _N + _C * _P * _N + _P * _C * _N))
right("gc.flops", "a 0-d array")(np.asarray(2 * (2 * _C * _N + 2 * _C * _P)))


class _GC(nn.Module):
    def __init__(self, in_channels, ratio=1 / 16, layers=None, pooling=None, fuse="add",
                 residual=True):
        super().__init__()
        planes = int(in_channels * ratio)
        self.context_modeling = pooling(in_channels) if pooling else AttentionPooling(in_channels)
        self.transform = nn.ModuleDict({"add": nn.Sequential(*(layers(in_channels, planes) if
                                                               layers else [
            nn.Conv2d(in_channels, planes, 1), nn.LayerNorm([planes, 1, 1]), nn.ReLU(),
            nn.Conv2d(planes, in_channels, 1)]))})
        self.fuse, self.residual = fuse, residual

    def forward(self, x):
        t = self.transform["add"](self.context_modeling(x))
        if self.fuse == "mul":
            return x * torch.sigmoid(t)
        return x + t if self.residual else t


def _gcm(**kw):
    return lambda c, ratio=1 / 16: _GC(c, ratio, **kw)


wrong("gc.module", "an extra LayerNorm after the last conv")(_gcm(layers=lambda c, p: [
    nn.Conv2d(c, p, 1), nn.LayerNorm([p, 1, 1]), nn.ReLU(), nn.Conv2d(p, c, 1),
    nn.LayerNorm([c, 1, 1])]))
wrong("gc.module", "ReLU before the LayerNorm")(_gcm(layers=lambda c, p: [
    nn.Conv2d(c, p, 1), nn.ReLU(), nn.LayerNorm([p, 1, 1]), nn.Conv2d(p, c, 1)]))
wrong("gc.module", "no ReLU (layers renumbered)")(_gcm(layers=lambda c, p: [
    nn.Conv2d(c, p, 1), nn.LayerNorm([p, 1, 1]), nn.Conv2d(p, c, 1)]))
wrong("gc.module", "LayerNorm over [P] only")(_gcm(layers=lambda c, p: [
    nn.Conv2d(c, p, 1), nn.LayerNorm(p), nn.ReLU(), nn.Conv2d(p, c, 1)]))
wrong("gc.module", "BatchNorm instead of LayerNorm")(_gcm(layers=lambda c, p: [
    nn.Conv2d(c, p, 1), nn.BatchNorm2d(p), nn.ReLU(), nn.Conv2d(p, c, 1)]))
wrong("gc.module", "planes = int(C / ratio)")(lambda c, ratio=1 / 16: _GC(c, 1 / ratio / c * c /
                                                                            c * c / c))
wrong("gc.module", "mul fusion x * sigmoid(term) instead of add")(_gcm(fuse="mul"))
wrong("gc.module", "no residual")(_gcm(residual=False))


class _MeanPool(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv_mask = nn.Conv2d(c, 1, 1)

    def forward(self, x):
        return x.mean(dim=(2, 3), keepdim=True)


class _NaivePool(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv_mask = nn.Conv2d(c, 1, 1)

    def forward(self, x):
        b, c = x.shape[:2]
        e = torch.exp(self.conv_mask(x).reshape(b, 1, -1))
        a = e / e.sum(-1, keepdim=True)
        return (x.reshape(b, c, -1) * a).sum(-1).reshape(b, c, 1, 1)


class _SigmoidPool(_NaivePool):
    def forward(self, x):
        b, c = x.shape[:2]
        a = torch.sigmoid(self.conv_mask(x).reshape(b, 1, -1))
        return (x.reshape(b, c, -1) * a).sum(-1).reshape(b, c, 1, 1)


wrong("gc.module", "mean pooling (conv_mask kept but unused)")(_gcm(pooling=_MeanPool))
wrong("gc.module", "attention pooling with a naive exp (overflows in float32)")(
    _gcm(pooling=_NaivePool))
wrong("gc.module", "sigmoid weights instead of a softmax")(_gcm(pooling=_SigmoidPool))
right("gc.module", "GCBlock itself (this exercise allows it)")(
    lambda c, ratio=1 / 16: GCBlock(c, ratio=ratio))
class _SoftPool(_NaivePool):
    def forward(self, x):
        b, c = x.shape[:2]
        a = torch.softmax(self.conv_mask(x).reshape(b, 1, -1), dim=-1)
        return (x.reshape(b, c, -1) * a).sum(-1)[..., None, None]


right("gc.module", "own attention pooling with torch.softmax")(_gcm(pooling=_SoftPool))
