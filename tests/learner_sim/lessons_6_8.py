"""Lessons 6-8: SE and the framework, experiments, gclab in your project."""
# ruff: noqa: E731, N803, N806

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

import gclab.numpy as gnp
from gclab.nn import (
    AttentionPooling,
    AveragePooling,
    Bottleneck,
    GCBlock,
    GlobalContextFramework,
    SEBlock,
)

from . import right, wrong


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


# ============================================================================ lesson 6
@wrong("se.squeeze", "mean over the channels, not the positions")
def _(x):
    return x.mean(axis=1, keepdims=True)


@wrong("se.squeeze", "mean over H only")
def _(x):
    return x.mean(axis=2, keepdims=True)[:, :, :, :1]


@wrong("se.squeeze", "no keepdims: (B, C)")
def _(x):
    return x.mean(axis=(2, 3))


@wrong("se.squeeze", "divides the sum by H + W")
def _(x):
    return x.sum(axis=(2, 3), keepdims=True) / (x.shape[2] + x.shape[3])


@wrong("se.squeeze", "mean over the batch too")
def _(x):
    return np.broadcast_to(x.mean(axis=(0, 2, 3), keepdims=True),
                           (x.shape[0], x.shape[1], 1, 1)).copy()


@right("se.squeeze", "reshape and mean")
def _(x):
    return x.reshape(*x.shape[:2], -1).mean(-1)[..., None, None]


@right("se.squeeze", "gclab.numpy's global_avg_pool")
def _(x):
    return gnp.ops.global_avg_pool(x)


def _exc(context, params, *, relu=True, gate=_sig, b0=True, b3=True, swap=False):
    w0, w3 = params["0.weight"], params["3.weight"]
    h = gnp.ops.conv1x1(context, w0, params["0.bias"] if b0 else None)
    if relu:
        h = np.maximum(h, 0)
    s = gnp.ops.conv1x1(h, w3, params["3.bias"] if b3 else None)
    return gate(s)


wrong("se.excitation", "tanh gate")(lambda c, p: _exc(c, p, gate=np.tanh))
wrong("se.excitation", "first conv's bias forgotten")(lambda c, p: _exc(c, p, b0=False))
wrong("se.excitation", "second conv's bias forgotten")(lambda c, p: _exc(c, p, b3=False))
wrong("se.excitation", "hard sigmoid clip((s + 3) / 6, 0, 1)")(
    lambda c, p: _exc(c, p, gate=lambda s: np.clip((s + 3) / 6, 0, 1)))
wrong("se.excitation", "sigmoid written as 1 / (1 + exp(s))")(
    lambda c, p: _exc(c, p, gate=lambda s: 1 / (1 + np.exp(s))))
right("se.excitation", "sigmoid via tanh")(lambda c, p: _exc(c, p, gate=lambda s: 0.5 * (
    1 + np.tanh(s / 2))))
right("se.excitation", "torch modules loaded with the params")(lambda c, p: torch.sigmoid(
    nn.Sequential(nn.Conv2d(c.shape[1], p["0.weight"].shape[0], 1), nn.ReLU(),
                  nn.Conv2d(p["0.weight"].shape[0], c.shape[1], 1)).double().requires_grad_(False)
    .__class__.__call__(_load_seq(c, p), torch.from_numpy(c))).detach().numpy())


def _load_seq(c, p):
    m = nn.Sequential(nn.Conv2d(c.shape[1], p["0.weight"].shape[0], 1), nn.ReLU(),
                      nn.Conv2d(p["0.weight"].shape[0], c.shape[1], 1)).double()
    m.load_state_dict({"0.weight": torch.from_numpy(p["0.weight"]),
                       "0.bias": torch.from_numpy(p["0.bias"]),
                       "2.weight": torch.from_numpy(p["3.weight"]),
                       "2.bias": torch.from_numpy(p["3.bias"])})
    return m


def _sub(params):
    pre = "transform.mul."
    return {k[len(pre):]: v for k, v in params.items() if k.startswith(pre)}


def _se(x, params, *, pool=lambda x: x.mean(axis=(2, 3), keepdims=True), fuse="mul"):
    g = _exc(pool(x), _sub(params))
    return x * g if fuse == "mul" else x + g


wrong("se.forward", "max pooling for the squeeze")(
    lambda x, p: _se(x, p, pool=lambda x: x.max(axis=(2, 3), keepdims=True)))
wrong("se.forward", "x * (1 + gate)")(lambda x, p: x * (1 + _exc(x.mean(axis=(2, 3),
                                                                     keepdims=True), _sub(p))))
wrong("se.forward", "returns x + x * gate (a residual SE)")(lambda x, p: x + _se(x, p))


@wrong("se.forward", "squeeze over the batch as well")
def _(x, params):
    ctx = np.broadcast_to(x.mean(axis=(0, 2, 3), keepdims=True), (x.shape[0], x.shape[1], 1, 1))
    return x * _exc(np.ascontiguousarray(ctx), _sub(params))


@wrong("se.forward", "in place x *= gates")
def _(x, params):
    x *= _exc(x.mean(axis=(2, 3), keepdims=True), _sub(params))
    return x


@right("se.forward", "gclab.numpy's se_block")
def _(x, params):
    return gnp.se_block.forward(x, params)[0]


def _assemble(in_channels, ratio, *, pooling=None, layer_norm=False, zero_init=False,
              fusion="mul", planes=None):
    p = planes(in_channels, ratio) if planes else int(in_channels * ratio)
    t = Bottleneck(in_channels, p, layer_norm=layer_norm, zero_init=zero_init)
    return GlobalContextFramework(in_channels, pooling or AveragePooling(), {fusion: t})


wrong("se.assemble", "SEBlock itself")(lambda c, ratio=1 / 16: SEBlock(c, ratio=ratio))
wrong("se.assemble", "a GCBlock with average pooling and mul fusion")(
    lambda c, ratio=1 / 16: GCBlock(c, ratio=ratio, pooling="avg", fusions=("mul",)))
wrong("se.assemble", "zero_init=True (GC's init)")(
    lambda c, ratio=1 / 16: _assemble(c, ratio, zero_init=True))
wrong("se.assemble", "kept the LayerNorm")(
    lambda c, ratio=1 / 16: _assemble(c, ratio, layer_norm=True))
wrong("se.assemble", "attention pooling")(
    lambda c, ratio=1 / 16: _assemble(c, ratio, pooling=AttentionPooling(c)))
wrong("se.assemble", "'add' fusion")(lambda c, ratio=1 / 16: _assemble(c, ratio, fusion="add"))
wrong("se.assemble", "planes = C // 16 regardless of ratio")(
    lambda c, ratio=1 / 16: _assemble(c, ratio, planes=lambda c, r: max(1, c // 16)))
right("se.assemble", "keyword arguments, transform built first")(
    lambda c, ratio=1 / 16: GlobalContextFramework(
        in_channels=c, context_modeling=AveragePooling(),
        transform={"mul": Bottleneck(c, int(c * ratio), layer_norm=False, zero_init=False)}))

_SE50 = sum(n * (2 * c * c // 16 + c // 16 + c) for c, n in ((256, 3), (512, 4), (1024, 6),
                                                               (2048, 3)))
wrong("se.params", "a float (c * c / 8)")(float(_SE50))
wrong("se.params", "only the last stage")(3 * (2 * 2048 * 2048 // 16 + 2048 // 16 + 2048))
wrong("se.params", "stages c3-c5 only (like GC)")(
    sum(n * (2 * c * c // 16 + c // 16 + c) for c, n in ((512, 4), (1024, 6), (2048, 3))))
wrong("se.params", "r = 4")(sum(n * (2 * c * c // 4 + c // 4 + c) for c, n in
                               ((256, 3), (512, 4), (1024, 6), (2048, 3))))
right("se.params", "counted by PyTorch")(lambda: sum(
    n * sum(p.numel() for p in SEBlock(c, 1 / 16).parameters())
    for c, n in ((256, 3), (512, 4), (1024, 6), (2048, 3))))
right("se.params", "a NumPy integer")(np.int64(_SE50))


# ============================================================================ lesson 7
@wrong("exp.mean_std", "std over the models, not the seeds")
def _(acc):
    return acc.mean(axis=1), np.broadcast_to(acc.std(axis=0, ddof=1).mean(),
                                             (acc.shape[0],)).copy()


@wrong("exp.mean_std", "returns (std, mean)")
def _(acc):
    return acc.std(axis=1, ddof=1), acc.mean(axis=1)


@wrong("exp.mean_std", "variance, not the std")
def _(acc):
    return acc.mean(axis=1), acc.var(axis=1, ddof=1)


@wrong("exp.mean_std", "standard error (std / sqrt(S))")
def _(acc):
    return acc.mean(axis=1), acc.std(axis=1, ddof=1) / np.sqrt(acc.shape[1])


@right("exp.mean_std", "returns a list, not a tuple (the same two arrays)")
def _(acc):
    return [acc.mean(axis=1), acc.std(axis=1, ddof=1)]


@right("exp.mean_std", "written out with sums")
def _(acc):
    s = acc.shape[1]
    m = acc.sum(1) / s
    return m, np.sqrt(((acc - m[:, None]) ** 2).sum(1) / (s - 1))


@wrong("exp.welch_t", "pooled-variance (Student's) t")
def _(a, b):
    na, nb = len(a), len(b)
    sp = ((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2)
    return float((a.mean() - b.mean()) / np.sqrt(sp * (1 / na + 1 / nb)))


@wrong("exp.welch_t", "b - a")
def _(a, b):
    return float((b.mean() - a.mean()) / np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))


@wrong("exp.welch_t", "standard errors added without the square root")
def _(a, b):
    return float((a.mean() - b.mean()) / (a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))


@wrong("exp.welch_t", "std instead of variance in the standard error")
def _(a, b):
    return float((a.mean() - b.mean()) / np.sqrt(a.std(ddof=1) / len(a) + b.std(ddof=1)
                                                 / len(b)))


@right("exp.welch_t", "scipy, returned as a NumPy scalar")
def _(a, b):
    from scipy import stats

    return stats.ttest_ind(a, b, equal_var=False).statistic


@right("exp.welch_t", "a 0-d array")
def _(a, b):
    return np.asarray((a.mean() - b.mean()) / np.sqrt(a.var(ddof=1) / len(a)
                                                     + b.var(ddof=1) / len(b)))


def _nlf(c, h, w, *, macs=False, convs=4, attn=2, ci_div=2):
    ci, n = c // ci_div, h * w
    conv = n * ((convs - 1) * c * ci + ci * c)
    att = attn * n * n * ci
    f = conv + att
    return f if macs else 2 * f


wrong("exp.nl_flops", "MACs, not FLOPs")(lambda c, h, w: _nlf(c, h, w, macs=True))
wrong("exp.nl_flops", "only one attention matmul counted")(lambda c, h, w: _nlf(c, h, w, attn=1))
wrong("exp.nl_flops", "C_i = C (no reduction)")(lambda c, h, w: _nlf(c, h, w, ci_div=1))
wrong("exp.nl_flops", "float division C / 2")(lambda c, h, w: 2 * (h * w * (3 * c * (c / 2)
                                                                        + (c / 2) * c)
                                                                   + 2 * (h * w) ** 2 * (c / 2)))
right("exp.nl_flops", "written as 2 * MACs term by term")(
    lambda c, h, w: 2 * (3 * h * w * c * (c // 2) + h * w * (c // 2) * c)
    + 4 * (h * w) ** 2 * (c // 2))


def _gcf(c, h, w, r, *, macs=False, pool=2, planes=lambda c, r: int(c * r)):
    n, p = h * w, planes(c, r)
    f = pool * c * n + 2 * c * p
    return f if macs else 2 * f


wrong("exp.gc_flops", "MACs, not FLOPs")(lambda c, h, w, r: _gcf(c, h, w, r, macs=True))
wrong("exp.gc_flops", "the pooling product forgotten")(lambda c, h, w, r: _gcf(c, h, w, r,
                                                                               pool=1))
wrong("exp.gc_flops", "planes = C / ratio")(lambda c, h, w, r: _gcf(c, h, w, r,
                                                                    planes=lambda c, r: int(c / r)))
wrong("exp.gc_flops", "planes as a float c * r")(lambda c, h, w, r: 2 * (2 * c * h * w
                                                                         + 2 * c * (c * r)))
right("exp.gc_flops", "a NumPy integer")(lambda c, h, w, r: np.int64(_gcf(c, h, w, r)))


# ============================================================================ lesson 8
def _unit(identity, branch, mul, add, position, *, sig=_sig, relu_after=True, swap=False):
    block = lambda t: t * sig(mul) + add
    if (position == "after_conv3") != swap:
        out = identity + block(branch)
        return np.maximum(out, 0) if relu_after else out
    return block(np.maximum(identity + branch, 0))


wrong("use.unit_output", "no ReLU after the addition (after_conv3)")(
    lambda i, b, m, a, pos: _unit(i, b, m, a, pos, relu_after=False))
wrong("use.unit_output", "tanh gate")(lambda i, b, m, a, pos: _unit(i, b, m, a, pos, sig=np.tanh))


@wrong("use.unit_output", "add before mul: (t + add) * sigmoid(mul)")
def _(identity, branch, mul, add, position):
    block = lambda t: (t + add) * _sig(mul)
    if position == "after_conv3":
        return np.maximum(identity + block(branch), 0)
    return block(np.maximum(identity + branch, 0))


@wrong("use.unit_output", "after_block without the ReLU before the block")
def _(identity, branch, mul, add, position):
    if position == "after_conv3":
        return _unit(identity, branch, mul, add, position)
    return (identity + branch) * _sig(mul) + add


@wrong("use.unit_output", "identity added after the block's ReLU (after_conv3)")
def _(identity, branch, mul, add, position):
    if position == "after_conv3":
        return np.maximum(branch * _sig(mul) + add, 0) + identity
    return _unit(identity, branch, mul, add, position)


@right("use.unit_output", "gclab.nn.fusion in torch")
def _(identity, branch, mul, add, position):
    from gclab.nn import fusion

    t = {k: torch.from_numpy(v) for k, v in dict(i=identity, b=branch, m=mul, a=add).items()}
    if position == "after_conv3":
        return torch.relu(t["i"] + fusion(t["b"], add=t["a"], mul=t["m"])).numpy()
    return fusion(torch.relu(t["i"] + t["b"]), add=t["a"], mul=t["m"]).numpy()


def _gcp(stages, ratio, *, ln=2, biases=True, planes=lambda c, r: int(c * r), per_stage=False):
    total = 0
    for c, n in stages:
        p = planes(c, ratio)
        one = c + 2 * c * p + ln * p + ((1 + p + c) if biases else 0)
        total += one * (1 if per_stage else n)
    return total


wrong("use.gc_params", "LayerNorm with P parameters only")(lambda s, r: _gcp(s, r, ln=1))
wrong("use.gc_params", "planes rounded up (math.ceil)")(lambda s, r: _gcp(
    s, r, planes=lambda c, r: math.ceil(c * r + 0.5)))
wrong("use.gc_params", "a float from planes = c * r")(lambda s, r: float(_gcp(
    s, r, planes=lambda c, r: c * r)))
wrong("use.gc_params", "W_k's bias forgotten only")(lambda s, r: _gcp(s, r) - sum(
    n for _, n in s))
right("use.gc_params", "counted by PyTorch")(lambda s, r: sum(
    n * sum(p.numel() for p in GCBlock(c, ratio=r).parameters()) for c, n in s))
right("use.gc_params", "a NumPy integer sum")(lambda s, r: np.sum([n * (
    2 * c * int(c * r) + 2 * c + 3 * int(c * r) + 1) for c, n in s]))


wrong("use.every_kth", "every k-th starting at index k (skips the first)")(
    lambda n, k: list(range(2 * k - 1, n, k)))
wrong("use.every_kth", "a numpy array of floats")(
    lambda n, k: list(np.arange(k - 1, n, k, dtype=float)))
wrong("use.every_kth", "i % k == 1")(lambda n, k: [i for i in range(n) if i % k == 1])
wrong("use.every_kth", "includes the last unit always")(
    lambda n, k: sorted(set(range(k - 1, n, k)) | {n - 1}))
right("use.every_kth", "range with a step")(lambda n, k: list(range(k - 1, n, k)))
right("use.every_kth", "NumPy integers in a list")(lambda n, k: list(np.arange(k - 1, n, k)))


def _mk(key, *, stages=("layer2", "layer3", "layer4"), names=True, keep_neck=False):
    if not key.startswith("backbone."):
        return key if keep_neck else None
    parts = key[len("backbone."):].split(".")
    if parts[0] in stages and parts[2] == "bn2":
        parts[2] = "bn2.0"
    elif parts[0] in stages and parts[2] == "context_block":
        parts[2] = "bn2.1"
        if names:
            m = {"conv_mask": "context_modeling.conv_mask", "channel_add_conv": "transform.add"}
            parts[3] = m.get(parts[3], parts[3])
    return ".".join(parts)


wrong("use.map_key", "wrapped bn2 in every stage, layer1 too")(
    lambda k: _mk(k, stages=("layer1", "layer2", "layer3", "layer4")))
wrong("use.map_key", "neck keys kept as they are")(lambda k: _mk(k, keep_neck=True))
wrong("use.map_key", "context_block mapped to bn2.0 (the norm's slot)")(
    lambda k: _mk(k).replace("bn2.1", "bn2.0") if _mk(k) else None)
wrong("use.map_key", "returns '' for keys outside the backbone")(lambda k: _mk(k) or "")
right("use.map_key", "str.replace chain")(lambda k: None if not k.startswith("backbone.") else (
    _mk(k)))
