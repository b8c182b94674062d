"""Every exercise's level-3 hint, followed literally by a careful learner.

One answer per exercise, written from the hint's words (and the shapes of level 2) in the
order the hint gives them, the way a learner who reads nothing else would write it; where a
hint says "your X", the answer calls the hint-following answer of exercise X defined here.
``tests/test_learner_sim_hints.py`` checks that each one passes: a level-3 hint that leads a
careful learner to a failing answer is a wrong hint.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Callable, Dict, List, NamedTuple

import numpy as np
import torch
from torch import nn

import gclab.numpy as gnp
from gclab.nn import AttentionPooling, AveragePooling, Bottleneck, GlobalContextFramework


class Followed(NamedTuple):
    exercise: str
    hint: str  # the first 10 hex digits of the SHA-256 of the level-3 hint it follows
    obj: Any


FROM_HINTS: List[Followed] = []


def hint_digest(text: str) -> str:
    """The digest an answer records of the level-3 hint it was written from."""
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def follows(exercise: str, hint: str) -> Callable[[Any], Any]:
    """Decorator: the answer that ``exercise``'s level-3 hint describes; ``hint`` is the
    :func:`hint_digest` of the hint it was written from, so a changed hint asks for the answer
    to be followed again."""

    def deco(obj):
        FROM_HINTS.append(Followed(exercise, hint, obj))
        return obj

    return deco


# =========================================================================== lesson 0
@follows("rf.theoretical", "9c39e0178d")
def theoretical_rf(kernels, strides):
    field, jump = 1, 1  # a field of 1 pixel and a jump of 1
    for k, s in zip(kernels, strides):  # the layers in order
        field = field + (k - 1) * jump  # widen by (kernel minus one) jumps
        jump = jump * s  # then multiply the jump by the stride
    return field


@follows("rf.layers_to_cover", "45e105fd00")
def layers_to_cover(size, kernel=3):
    missing = size - 1  # the size minus the one pixel of no layer at all
    per_layer = kernel - 1
    return math.ceil(missing / per_layer)  # divide and round UP


@follows("rf.erf_1d", "5d30985d41")
def erf_1d(depth, kernel=3):
    g = np.array([1.0])
    for _ in range(depth):
        g = np.convolve(g, np.ones(kernel))  # full convolution with a box of kernel ones
    return g / g.sum()


@follows("rf.erf", "f1085c4826")
def effective_rf(net, x):
    xc = x.detach().clone().requires_grad_(True)  # a fresh copy that records gradients
    out = net(xc)
    h, w = out.shape[2], out.shape[3]
    centre = out[0, :, h // 2, w // 2].sum()  # the centre row and column, over channels
    (grad,) = torch.autograd.grad(centre, xc)
    a = grad.abs().sum(dim=(0, 1))  # absolute value, summed over batch and channels
    return (a / a.sum()).numpy()


@follows("rf.erf_std", "3af96989c8")
def erf_std(g):
    p = g / g.sum()  # normalise
    h, w = p.shape
    rows, cols = np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2, indexing="ij")
    return float(np.sqrt(np.sum(p * (rows ** 2 + cols ** 2))))


@follows("rf.growth_exponent", "fd01081eb7")
def growth_exponent(depths, sizes):
    slope, _ = np.polyfit(np.log(depths), np.log(sizes), 1)  # a degree-1 polynomial
    return float(slope)


@follows("rf.erf_variance", "c9998e3fc9")
def erf_variance(depth, kernel=3):
    # one box: offsets centred on 0, one apart; the mean of their squares, from the sum of
    # consecutive squares, is (k^2 - 1) / 12 for every k; independent layers add variances
    one_box = (kernel * kernel - 1) / 12
    return depth * one_box


# =========================================================================== lesson 1
@follows("nl.to_positions", "f425e1277d")
def to_positions(x):
    b, c = x.shape[0], x.shape[1]
    flat = x.reshape(b, c, -1)  # the spatial axes flattened, B and C in place
    return np.swapaxes(flat, 1, 2)  # swap the channel and position axes


@follows("nl.to_map", "f6620b7f47")
def to_map(t, H, W):
    b, n, c = t.shape
    swapped = np.swapaxes(t, 1, 2)  # swap the position and channel axes
    return swapped.reshape(b, c, H, W)  # split the positions into H rows of W


@follows("nl.conv1x1", "6a3dcb4e3d")
def conv1x1(x, weight, bias):
    w = weight[:, :, 0, 0]  # drop the two size-1 axes
    out = np.einsum("oc,bchw->bohw", w, x)  # contract over the channel axis
    return out + bias.reshape(1, -1, 1, 1)


@follows("nl.softmax", "36a08f46b2")
def softmax(z):
    top = np.max(z, axis=-1, keepdims=True)  # each row's maximum, axis kept
    e = np.exp(z - top)
    return e / np.sum(e, axis=-1, keepdims=True)


@follows("nl.embedded_gaussian", "411379fa6a")
def embedded_gaussian(theta_x, phi_x, use_scale=True):
    logits = np.matmul(theta_x, phi_x)  # the batched matrix product
    if use_scale:
        logits = logits / np.sqrt(theta_x.shape[-1])
    return softmax(logits)


@follows("nl.dot_product", "e2fec6632c")
def dot_product(theta_x, phi_x):
    dots = np.matmul(theta_x, phi_x)  # every query-key dot product
    return dots / phi_x.shape[-1]  # divided by the number of keys


@follows("nl.concatenation", "7ca10fcf89")
def concatenation(theta_x, phi_x, w):
    ci = theta_x.shape[-1]
    queries = np.einsum("bnc,c->bn", theta_x, w[:ci])  # first half of w, over Ci
    keys = np.einsum("bcm,c->bm", phi_x, w[ci:])  # second half of w, over Ci
    pairs = queries[:, :, np.newaxis] + keys[:, np.newaxis, :]  # a column plus a row
    return np.maximum(pairs, 0) / phi_x.shape[-1]  # positive part, over the number of keys


@follows("nl.max_pool2x2", "ac208d7aee")
def max_pool2x2(x):
    b, c, h, w = x.shape
    h2, w2 = h // 2, w // 2  # halve H and W, rounding down
    crop = x[:, :, :2 * h2, :2 * w2]  # the odd last row and column cropped away
    windows = crop.reshape(b, c, h2, 2, w2, 2)
    return windows.max(axis=(3, 5))  # the maximum over the two in-window axes


def gaussian(theta_x, phi_x):  # given in the lesson
    return softmax(theta_x @ phi_x)


@follows("nl.context_modeling", "fc489285fb")
def context_modeling(x, params, mode="embedded_gaussian", use_scale=True, sub_sample=False):
    B, C, H, W = x.shape
    g = conv1x1(x, params["g.weight"], params["g.bias"])  # embed g, pool it if sub_sample
    if sub_sample:
        g = max_pool2x2(g)
    if mode == "gaussian":  # theta and phi: x itself in gaussian mode
        theta, phi = x, x
    else:
        theta = conv1x1(x, params["theta.weight"], params["theta.bias"])
        phi = conv1x1(x, params["phi.weight"], params["phi.bias"])
    if sub_sample:
        phi = max_pool2x2(phi)
    theta_x, g_x = to_positions(theta), to_positions(g)  # flatten to positions
    phi_x = phi.reshape(B, phi.shape[1], -1)  # phi to (B, Ci, N')
    if mode == "gaussian":
        attention = gaussian(theta_x, phi_x)
    elif mode == "embedded_gaussian":
        attention = embedded_gaussian(theta_x, phi_x, use_scale)
    elif mode == "dot_product":
        attention = dot_product(theta_x, phi_x)
    else:
        attention = concatenation(theta_x, phi_x, params["concat_project.weight"].flatten())
    y = to_map(attention @ g_x, H, W)  # aggregate the g vectors, back on the grid
    return y, attention


@follows("nl.forward", "fe8f1d2a6d")
def nl_forward(x, params, mode="embedded_gaussian", use_scale=True, sub_sample=False):
    y = context_modeling(x, params, mode, use_scale, sub_sample)[0]
    return conv1x1(y, params["conv_out.weight"], params["conv_out.bias"]) + x


# =========================================================================== lesson 2
@follows("nlgrad.rel_error", "02de294b8b")
def rel_error(a, b):
    ratio = np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))
    return float(np.max(ratio))


@follows("nlgrad.numerical_gradient", "6304d2613c")
def numerical_gradient(f, x, df, h=1e-5):
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        k = it.multi_index
        old = x[k]  # remember the old value
        x[k] = old + h
        plus = np.copy(f(x))  # evaluate f and keep a copy
        x[k] = old - h
        minus = np.copy(f(x))
        x[k] = old  # restore it
        grad[k] = np.sum((plus - minus) * df) / (2 * h)
    return grad


@follows("nlgrad.softmax_backward", "996bb30a37")
def softmax_backward(dout, p):
    inner = np.sum(dout * p, axis=-1, keepdims=True)  # one number per row, axis kept
    return p * dout - p * inner  # the diagonal part minus the outer-product part


@follows("nlgrad.matmul_backward", "9c97cb8b22")
def matmul_backward(dout, a, b):
    da = dout @ np.swapaxes(b, -1, -2)
    db = np.swapaxes(a, -1, -2) @ dout
    return da, db


@follows("nlgrad.conv1x1_backward", "bb2d54f9a6")
def conv1x1_backward(dout, x, weight):
    w = weight[:, :, 0, 0]  # squeeze the weight to a matrix
    b, c, h, wd = x.shape
    d = dout.reshape(b, dout.shape[1], h * wd)  # flatten over the positions
    xf = x.reshape(b, c, h * wd)
    dx = np.einsum("oc,bon->bcn", w, d).reshape(x.shape)  # the transposed weight on dout
    dw = np.einsum("bon,bcn->oc", d, xf).reshape(weight.shape)
    dbias = dout.sum(axis=(0, 2, 3))  # everything but the channel axis
    return dx, dw, dbias


@follows("nlgrad.embedded_gaussian_backward", "ce71bacb37")
def embedded_gaussian_backward(dattn, theta_x, phi_x, attention, use_scale=True):
    dlogits = softmax_backward(dattn, attention)
    if use_scale:
        dlogits = dlogits / np.sqrt(theta_x.shape[-1])
    return matmul_backward(dlogits, theta_x, phi_x)


def _nonlocal_forward(x, params, use_scale=True):  # given in the lesson
    B, C, H, W = x.shape
    conv = {n: gnp.ops.conv1x1(x, params[n + ".weight"], params[n + ".bias"])
            for n in ("theta", "phi", "g")}
    theta_x, g_x = to_positions(conv["theta"]), to_positions(conv["g"])
    phi_x = conv["phi"].reshape(B, -1, H * W)
    s = math.sqrt(theta_x.shape[-1]) if use_scale else 1.0
    attention = gnp.ops.softmax(theta_x @ phi_x / s)
    y = to_map(attention @ g_x, H, W)
    wy = gnp.ops.conv1x1(y, params["conv_out.weight"], params["conv_out.bias"])
    cache = dict(x=x, params=params, theta_x=theta_x, phi_x=phi_x, g_x=g_x,
                 attention=attention, y=y, use_scale=use_scale)
    return x + wy, cache


def _nonlocal_backward(dout, cache):
    x, params = cache["x"], cache["params"]
    B, C, H, W = x.shape
    grads = {}
    dy, grads["conv_out.weight"], grads["conv_out.bias"] = conv1x1_backward(
        dout, cache["y"], params["conv_out.weight"])
    dattention, dg_x = matmul_backward(to_positions(dy), cache["attention"], cache["g_x"])
    dtheta_x, dphi_x = embedded_gaussian_backward(
        dattention, cache["theta_x"], cache["phi_x"], cache["attention"], cache["use_scale"])
    maps = {"theta": to_map(dtheta_x, H, W), "phi": dphi_x.reshape(B, -1, H, W),
            "g": to_map(dg_x, H, W)}
    dx = np.array(dout)  # a NEW array equal to dout
    for name in ("theta", "phi", "g"):
        part, grads[name + ".weight"], grads[name + ".bias"] = conv1x1_backward(
            maps[name], x, params[name + ".weight"])
        dx = dx + part
    return dx, grads


@follows("nlgrad.block_backward", "8c07868261")
def nonlocal_grads(x, params, dout, use_scale=True):  # the lesson's wrapper
    _, cache = _nonlocal_forward(x, params, use_scale)
    return _nonlocal_backward(dout, cache)


@follows("nlgrad.softmax_jacobian", "7e1913ee35")
def softmax_jacobian(p):
    outer = p[..., :, np.newaxis] * p[..., np.newaxis, :]  # p as a column times p as a row
    diagonal = p[..., :, np.newaxis] * np.eye(p.shape[-1])
    return diagonal - outer


@follows("nlgrad.scale_backward", "7bbe800cee")
def scale_backward(dout, u, s):
    du = dout * (1 / s)  # d(u_k / s) / du_k = 1 / s
    ds = np.sum(dout * (-u / s ** 2))  # d(u_k / s) / ds = -u_k / s^2
    return du, float(ds)


@follows("nlgrad.maxpool_backward", "d1883b07fb")
def maxpool_backward(dout, x):
    b, c, h, w = x.shape
    dx = np.zeros_like(x)
    h2, w2 = h // 2, w // 2
    windows = x[:, :, :2 * h2, :2 * w2].reshape(b, c, h2, 2, w2, 2)
    mark = windows == windows.max(axis=(3, 5), keepdims=True)
    routed = np.where(mark, dout[:, :, :, np.newaxis, :, np.newaxis], 0.0)
    dx[:, :, :2 * h2, :2 * w2] = routed.reshape(b, c, 2 * h2, 2 * w2)
    return dx


@follows("nlgrad.dot_product_backward", "d4269a9b4f")
def dot_product_backward(dattn, theta_x, phi_x):
    scaled = dattn / phi_x.shape[-1]  # divided by the number of keys
    dtheta_x, dphi_x = matmul_backward(scaled, theta_x, phi_x)
    return dtheta_x, dphi_x


# =========================================================================== lesson 3
@follows("inside.cosine_distance", "97beac8b57")
def cosine_distance(u, v):
    dot = np.sum(u * v, axis=-1)
    return 1 - dot / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))


@follows("inside.pairwise_distance", "f650cfb4b0")
def pairwise_distance(vectors):
    unit = vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
    cos = unit @ np.swapaxes(unit, 1, 2)  # all cosines
    n = vectors.shape[1]
    total = cos.sum(axis=(1, 2)) - np.trace(cos, axis1=1, axis2=2)  # minus the self-pairs
    return 1 - total / (n * (n - 1))


@follows("inside.query_map", "97941b272a")
def query_map(attention, row, col, height, width):
    index = row * width + col  # whole rows before it times the width, plus the column
    return attention[:, index, :].reshape(attention.shape[0], height, width)


@follows("inside.mean_map", "b5b13b5c61")
def mean_map(attention):
    return np.mean(attention, axis=1)  # the query axis


# =========================================================================== lesson 4
@follows("snl.attention", "becb7b2dc1")
def attention_weights(x, w_k, b_k):
    b, c = x.shape[:2]
    flat = x.reshape(b, c, -1)
    logits = np.einsum("c,bcn->bn", w_k, flat) + b_k  # weighted sum of channels, plus b_k
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@follows("snl.pool", "d768573ac0")
def attention_pool(x, alpha):
    b, c = x.shape[:2]
    flat = x.reshape(b, c, -1)
    pooled = np.einsum("bcn,bn->bc", flat, alpha)  # the alpha-weighted sum over positions
    return pooled[:, :, np.newaxis, np.newaxis]


@follows("snl.forward", "3fd88d8d0d")
def snl_forward(x, w_k, b_k, w_v, b_v):
    alpha = attention_weights(x, w_k, b_k)
    context = attention_pool(x, alpha).reshape(x.shape[0], x.shape[1])  # a (B, C) matrix
    term = context @ w_v.T + b_v  # W_v on every image's context vector, plus b_v
    return x + term[:, :, np.newaxis, np.newaxis]


@follows("snl.from_nonlocal", "c3fcfa7b90")
def nonlocal_to_snl(nl):
    w_theta = nl["theta.weight"][:, :, 0, 0]  # the four weights as matrices
    w_phi, w_g, w_z = (nl[k][:, :, 0, 0] for k in ("phi.weight", "g.weight", "conv_out.weight"))
    ci, c = w_theta.shape
    s = np.sqrt(ci)
    b_theta = nl["theta.bias"]
    mask = w_phi.T @ b_theta / s
    mask_bias = b_theta @ nl["phi.bias"] / s
    transform = w_z @ w_g
    transform_bias = w_z @ nl["g.bias"] + nl["conv_out.bias"]
    return {
        "context_modeling.conv_mask.weight": mask.reshape(1, c, 1, 1),
        "context_modeling.conv_mask.bias": np.array([mask_bias]),
        "transform.add.weight": transform.reshape(c, c, 1, 1),
        "transform.add.bias": transform_bias,
    }


@follows("snl.param_count", "f56a3e7161")
def snl_param_count(channels):
    w_k = channels * 1 + 1  # C inputs, one output, one bias
    w_v = channels * channels + channels  # every pair of channels, one bias per output
    return int(w_k + w_v)


follows("snl.params", "9abdd6046e")(snl_param_count(1024))


# =========================================================================== lesson 5
@follows("gc.layer_norm", "cc464e03cd")
def layer_norm(t, gamma, beta):
    mean = t.mean(axis=(1, 2, 3), keepdims=True)  # each sample over its last three axes
    var = t.var(axis=(1, 2, 3), keepdims=True)  # biased
    return (t - mean) / np.sqrt(var + 1e-5) * gamma + beta


@follows("gc.transform", "88621226e7")
def bottleneck(context, params):
    h = conv1x1(context, params["0.weight"], params["0.bias"])
    h = layer_norm(h, params["1.weight"], params["1.bias"])
    h = np.maximum(h, 0)
    return conv1x1(h, params["3.weight"], params["3.bias"])


@follows("gc.fusion", "d076746e38")
def fuse(x, add=None, mul=None):
    out = x
    if mul is not None:
        out = out * (1 / (1 + np.exp(-mul)))
    if add is not None:
        out = out + add
    return out


@follows("gc.forward", "6114fbb3ea")
def gc_forward(x, params):
    logits = conv1x1(x, params["context_modeling.conv_mask.weight"],
                     params["context_modeling.conv_mask.bias"])
    b, c = x.shape[:2]
    context = attention_pool(x, softmax(logits.reshape(b, -1)))  # attention pooling of x
    terms = {}
    for fusion in ("add", "mul"):
        prefix = f"transform.{fusion}."
        mine = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
        if mine:
            terms[fusion] = bottleneck(context, mine)
    return fuse(x, **terms)


def _conv(a, b):
    return a * b + b  # a conv from a to b channels: a times b weights plus b biases


_C, _P = 1024, 1024 // 16
follows("gc.params", "911ce86140")((_C * 1 + 1) + 2 * (_conv(_C, _P) + 2 * _P + _conv(_P, _C)))

_C, _N, _P = 256, 14 * 20, 16
follows("gc.flops", "b15e96d5b1")(2 * (_C * 1 * _N + _C * _N + _C * _P * 1 + _P * _C * 1))


@follows("gc.module", "a80519634e")
class GCModule(nn.Module):
    def __init__(self, in_channels, ratio):
        super().__init__()
        planes = int(in_channels * ratio)
        self.context_modeling = AttentionPooling(in_channels)
        self.transform = nn.ModuleDict({"add": nn.Sequential(
            nn.Conv2d(in_channels, planes, kernel_size=1),
            nn.LayerNorm([planes, 1, 1]),
            nn.ReLU(),
            nn.Conv2d(planes, in_channels, kernel_size=1),
        )})

    def forward(self, x):
        return x + self.transform["add"](self.context_modeling(x))


@follows("gc.mul_fusion_backward", "190b38deab")
def mul_fusion_backward(dout, x, m):
    gate = 1 / (1 + np.exp(-m))
    dx = dout * gate  # the chain rule through the product
    dgate = np.sum(dout * x, axis=(2, 3), keepdims=True)  # x multiplies the gate
    return dx, dgate * gate * (1 - gate)  # the sigmoid's derivative at m


@follows("gc.sigmoid_grad", "0526b1f4d5")
def sigmoid_grad(g):
    # e^-m / (1 + e^-m)^2 = sigmoid(m) * e^-m / (1 + e^-m), and e^-m / (1 + e^-m) = 1 - sigmoid
    other = 1 - g  # one minus the gate
    return g * other


@follows("gc.add_fusion_backward", "26632b0710")
def add_fusion_backward(dout):
    return dout.copy(), dout.sum(axis=(2, 3), keepdims=True)


# =========================================================================== lesson 6
@follows("se.squeeze", "c613bb8fe8")
def squeeze(x):
    return x.mean(axis=(2, 3), keepdims=True)


@follows("se.excitation", "48d42a5934")
def excitation(context, params):
    h = np.maximum(conv1x1(context, params["0.weight"], params["0.bias"]), 0)
    s = conv1x1(h, params["3.weight"], params["3.bias"])
    return 1 / (1 + np.exp(-s))


@follows("se.forward", "36438b9e0b")
def se_forward(x, params):
    context = squeeze(x)
    mine = {k[len("transform.mul."):]: v for k, v in params.items()
            if k.startswith("transform.mul.")}
    gates = excitation(context, mine)
    return x * gates


@follows("se.assemble", "d0b6a7a17e")
def make_se(in_channels, ratio):
    planes = int(in_channels * ratio)
    transform = Bottleneck(in_channels, planes, layer_norm=False, zero_init=False)
    return GlobalContextFramework(in_channels, AveragePooling(), {"mul": transform})


@follows("se.param_count", "8d3d415649")
def se_param_count(channels, reduction=16):
    p = channels // reduction  # C divided by r, rounded down
    first = channels * p + p
    second = p * channels + channels
    return int(first + second)


follows("se.params", "4e9673e83f")(sum(n * se_param_count(c, 16)
                         for c, n in ((256, 3), (512, 4), (1024, 6), (2048, 3))))


# =========================================================================== lesson 7
@follows("exp.mean_std", "760aa741f4")
def mean_std(acc):
    return acc.mean(axis=1), acc.std(axis=1, ddof=1)


@follows("exp.welch_t", "9f31bf5817")
def welch_t(a, b):
    se = np.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
    return float((np.mean(a) - np.mean(b)) / se)


@follows("exp.nl_flops", "5a9f2d6e07")
def nl_flops(channels, height, width):
    ci, n = channels // 2, height * width
    convs = 3 * channels * ci * n + ci * channels * n  # three embeddings, one transform
    attention = n * ci * n + n * n * ci  # the logits and the aggregation
    return int(2 * (convs + attention))


@follows("exp.gc_flops", "15a77d0f2d")
def gc_flops(channels, height, width, ratio):
    n, p = height * width, int(channels * ratio)
    context = channels * n + channels * n  # conv_mask and the weighted sum
    transform = channels * p + p * channels  # the two bottleneck convs on one vector
    return int(2 * (context + transform))


@follows("exp.which_claim", "91ab1c0939")
def which_claim(steps, a, b, chance):
    final_a, final_b = a[:, -1].mean(), b[:, -1].mean()
    if abs(final_a - final_b) <= 0.02:
        where = "same"
    else:
        where = "a" if final_a > final_b else "b"
    level = chance + 0.9 * (max(final_a, final_b) - chance)

    def first_steps(curves):
        out = []
        for seed in curves:
            hit = np.nonzero(seed >= level)[0]
            out.append(steps[hit[0]] if len(hit) else np.inf)
        return np.median(out)

    ta, tb = first_steps(a), first_steps(b)
    fast = "same" if ta == tb else ("a" if ta < tb else "b")
    return (where, fast)


# =========================================================================== lesson 8
@follows("use.unit_output", "45f8cde858")
def unit_output(identity, branch, mul, add, position):
    def block(t):
        return t * (1 / (1 + np.exp(-mul))) + add

    if position == "after_conv3":
        return np.maximum(block(branch) + identity, 0)
    return block(np.maximum(identity + branch, 0))


@follows("use.every_kth", "63b584fedc")
def every_kth(n_units, k):
    kept = []
    for count in range(1, n_units + 1):  # counting from one
        if count % k == 0:
            kept.append(count - 1)  # its 0-based position
    return kept


@follows("use.gc_params", "8c42d3e6da")
def gc_params(stages, ratio):
    total = 0
    for channels, units in stages:
        p = int(channels * ratio)
        one = (channels + 1) + (channels * p + p) + 2 * p + (p * channels + channels)
        total = total + units * one
    return total


@follows("use.map_key", "196eb71912")
def map_key(key):
    if not key.startswith("backbone."):
        return None
    parts = key[len("backbone."):].split(".")
    if parts[0] in ("layer2", "layer3", "layer4"):
        if parts[2] == "bn2":
            parts[2] = "bn2.0"  # the norm gains its child index
        elif parts[2] == "context_block":
            parts[2] = "bn2.1"  # the Sequential's second child
            renames: Dict[str, str] = {"conv_mask": "context_modeling.conv_mask",
                                       "channel_add_conv": "transform.add"}
            parts[3] = renames.get(parts[3], parts[3])
    return ".".join(parts)
