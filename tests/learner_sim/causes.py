"""Realistic wrong answers whose cause is known, so that a verdict can be checked for naming the
RIGHT cause, not just a cause: the nine derivation exercises (ERF variance, softmax Jacobian,
scale / max-pool / dot-product backward, SNL and SE parameter counts, add / mul fusion
backward), right numbers in the wrong type or container, counts (a float, a bias, ddof), and
slips whose pass/fail pattern over the cases can look like another cause by coincidence.

Each is registered with :func:`named`: ``cause`` is a regular expression that a diagnosis naming
the real cause matches (written from the slip, before looking at any verdict). A verdict whose
diagnosis is set but does not match is *misnamed*; ``tests/test_learner_sim.py`` reports that
share beside the named share.
"""
# ruff: noqa: E731, N803, N806

from __future__ import annotations

import itertools
import math
from typing import Dict, Tuple

import numpy as np
import torch

from gclab.exercises import get

from . import right, wrong

#: (exercise, what) -> the regular expression a right diagnosis matches
CAUSES: Dict[Tuple[str, str], str] = {}


def named(exercise: str, what: str, cause: str):
    CAUSES[(exercise, what)] = cause
    return wrong(exercise, what)


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


BIAS = r"bias"
FLOAT_INT = r"float where an int|not a whole number|//"
TYPE = r"wrong type|belongs \(|is a .* where a"
CLOSED_FORM = r"needs the closed form: your code computes the answer numerically"


# ====================================== rf.erf_variance
@named("rf.erf_variance", "integer division by 12", FLOAT_INT + "|division|//")
def _(depth, kernel=3):
    return depth * (kernel**2 - 1) // 12


@named("rf.erf_variance", "np.var of the ERF values instead of the offsets' variance",
       r"ERF values|values of the map|offsets")
def _(depth, kernel=3):
    g = np.ones(1)
    for _ in range(depth):
        g = np.convolve(g, np.ones(kernel))
    return float(np.var(g / g.sum()))


@named("rf.erf_variance", "the offsets' variance with ddof=1", r"ddof")
def _(depth, kernel=3):
    offsets = np.arange(kernel) - (kernel - 1) / 2
    return float(depth * np.var(offsets, ddof=1))


@named("rf.erf_variance", "offsets -k//2 .. k//2 (wrong for even k)", r"even|offset|centre|centred")
def _(depth, kernel=3):
    offsets = np.arange(-(kernel // 2), kernel // 2 + 1)
    return float(depth * np.mean(offsets.astype(float) ** 2))


@named("rf.erf_variance", "a hard-coded kernel of 3", r"kernel|k = 3|hard")
def _(depth, kernel=3):
    return depth * (3**2 - 1) / 12


@named("rf.erf_variance", "sum of squares divided by k - 1", r"k - 1|ddof|divided by")
def _(depth, kernel=3):
    offsets = np.arange(kernel) - (kernel - 1) / 2
    return float(depth * np.sum(offsets**2) / (kernel - 1))


@named("rf.erf_variance", "the offsets' mean square, times the depth, computed on the offsets",
       CLOSED_FORM)
def _(depth, kernel=3):
    offsets = np.arange(kernel) - (kernel - 1) / 2
    return float(depth * np.mean(offsets**2))


@named("rf.erf_variance", "a Python loop over the offsets (C-level sum, deaf to signals)",
       CLOSED_FORM)
def _(depth, kernel=3):
    squares = sum(map(pow, range(kernel), itertools.repeat(2)))  # never looks at signals
    mean = sum(range(kernel)) / kernel
    return depth * (squares / kernel - mean**2)


@right("rf.erf_variance", "E[X^2] - E[X]^2 of one layer's positions 0 .. k-1, times the depth")
def _(depth, kernel=3):
    mean_square = (kernel - 1) * (2 * kernel - 1) / 6
    return depth * (mean_square - ((kernel - 1) / 2) ** 2)


# ====================================== nlgrad.softmax_jacobian
@named("nlgrad.softmax_jacobian", "p (1 - p) on the diagonal AND the outer product subtracted",
       r"diagonal|diag")
def _(p):
    return (p * (1 - p))[..., :, None] * np.eye(p.shape[-1]) - p[..., :, None] * p[..., None, :]


@named("nlgrad.softmax_jacobian", "torch.autograd.functional.jacobian result as a tensor",
       TYPE)
def _(p):
    pt = torch.as_tensor(p)
    eye = torch.eye(p.shape[-1], dtype=pt.dtype)
    return pt[..., :, None] * eye - pt[..., :, None] * pt[..., None, :]


@named("nlgrad.softmax_jacobian", "np.diag on a batch (only works for 1-d p)", r"")
def _(p):
    return np.diag(p) - np.outer(p, p)


@named("nlgrad.softmax_jacobian", "p p^T - diag(p): the sign flipped", r"sign")
def _(p):
    return p[..., :, None] * p[..., None, :] - p[..., :, None] * np.eye(p.shape[-1])


@named("nlgrad.softmax_jacobian", "the outer product only (the diagonal term forgotten)",
       r"diagonal|diag")
def _(p):
    return -p[..., :, None] * p[..., None, :]


@right("nlgrad.softmax_jacobian", "np.einsum for the outer product")
def _(p):
    n = p.shape[-1]
    return np.einsum("...j,jk->...jk", p, np.eye(n)) - np.einsum("...j,...k->...jk", p, p)


# ====================================== nlgrad.scale_backward
@named("nlgrad.scale_backward", "ds not summed (an array where one number belongs)",
       r"shape|one number|summed|sum")
def _(dout, u, s):
    return dout / s, -dout * u / s**2


@named("nlgrad.scale_backward", "du = dout * s (multiplied instead of divided)", r"factor|s\b")
def _(dout, u, s):
    return dout * s, float(-np.sum(dout * u) / s**2)



@named("nlgrad.scale_backward", "ds = -sum(dout * u) / s**3", r"power|s|factor")
def _(dout, u, s):
    return dout / s, float(-np.sum(dout * u) / s**3)


@named("nlgrad.scale_backward", "(ds, du) in the wrong order", r"order")
def _(dout, u, s):
    return float(-np.sum(dout * u) / s**2), dout / s


@right("nlgrad.scale_backward", "ds as a 0-d array from np.sum")
def _(dout, u, s):
    return dout / s, -np.sum(dout * u) / s**2


# ====================================== nlgrad.maxpool_backward
@named("nlgrad.maxpool_backward", "mask against the whole map's max, not each window's",
       r"window|max|mask")
def _(dout, x):
    b, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    crop = x[:, :, : 2 * h2, : 2 * w2]
    mask = crop == crop.max(axis=(2, 3), keepdims=True)
    up = np.repeat(np.repeat(dout, 2, axis=2), 2, axis=3)
    dx = np.zeros_like(x)
    dx[:, :, : 2 * h2, : 2 * w2] = mask * up
    return dx


@named("nlgrad.maxpool_backward", "windows by a reshape without the transpose (H and W mixed)",
       r"wrong places|reshape|transpose|window")
def _(dout, x):
    b, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    win = x[:, :, : 2 * h2, : 2 * w2].reshape(b, c, h2 * w2, 4)
    mask = win == win.max(axis=-1, keepdims=True)
    dx = np.zeros_like(x)
    dx[:, :, : 2 * h2, : 2 * w2] = (mask * dout.reshape(b, c, -1, 1)).reshape(
        b, c, 2 * h2, 2 * w2)
    return dx


@named("nlgrad.maxpool_backward", "returns the gradient of the pooled map (shape of dout)",
       r"shape|inputs, unchanged")
def _(dout, x):
    return dout.copy()


@named("nlgrad.maxpool_backward", "odd sizes: crashes on the last row (no crop)", r"")
def _(dout, x):
    b, c, h, w = x.shape
    win = x.reshape(b, c, h // 2, 2, w // 2, 2)
    mask = win == win.max(axis=(3, 5), keepdims=True)
    return (mask * dout[:, :, :, None, :, None]).reshape(b, c, h, w)


@right("nlgrad.maxpool_backward", "loops over the windows with argmax")
def _(dout, x):
    dx = np.zeros_like(x)
    b, c, h, w = x.shape
    for i in range(h // 2):
        for j in range(w // 2):
            win = x[:, :, 2 * i: 2 * i + 2, 2 * j: 2 * j + 2]
            m = win == win.max(axis=(2, 3), keepdims=True)
            dx[:, :, 2 * i: 2 * i + 2, 2 * j: 2 * j + 2] = m * dout[:, :, i: i + 1, j: j + 1]
    return dx


# ====================================== nlgrad.dot_product_backward
@named("nlgrad.dot_product_backward", "divided by C_i instead of N'", r"C_i")
def _(dattn, theta_x, phi_x):
    ci = theta_x.shape[-1]
    return dattn @ phi_x.transpose(0, 2, 1) / ci, theta_x.transpose(0, 2, 1) @ dattn / ci


@named("nlgrad.dot_product_backward", "dphi as dattn^T theta (shape (B, N', C_i))",
       r"shape|transpos|axes")
def _(dattn, theta_x, phi_x):
    n = phi_x.shape[-1]
    return dattn @ phi_x.transpose(0, 2, 1) / n, dattn.transpose(0, 2, 1) @ theta_x / n


@named("nlgrad.dot_product_backward", "dtheta / N' but dphi not divided", r"N'|factor")
def _(dattn, theta_x, phi_x):
    n = phi_x.shape[-1]
    return dattn @ phi_x.transpose(0, 2, 1) / n, theta_x.transpose(0, 2, 1) @ dattn


@named("nlgrad.dot_product_backward", "multiplied by N' (the chain rule applied inverted)",
       r"N'|scaling or a normalisation")
def _(dattn, theta_x, phi_x):
    n = phi_x.shape[-1]
    return dattn @ phi_x.transpose(0, 2, 1) * n, theta_x.transpose(0, 2, 1) @ dattn * n


@named("nlgrad.dot_product_backward", "divided by sqrt(C_i) (as in the embedded gaussian)",
       r"sqrt\(C_i\)|C_i|scaling or a normalisation")
def _(dattn, theta_x, phi_x):
    s = math.sqrt(theta_x.shape[-1])
    return dattn @ phi_x.transpose(0, 2, 1) / s, theta_x.transpose(0, 2, 1) @ dattn / s


@right("nlgrad.dot_product_backward", "np.einsum")
def _(dattn, theta_x, phi_x):
    n = phi_x.shape[-1]
    return (np.einsum("bnm,bcm->bnc", dattn, phi_x) / n,
            np.einsum("bnc,bnm->bcm", theta_x, dattn) / n)


# ====================================== snl.param_count
@named("snl.param_count", "W_k's bias forgotten", BIAS + r"|one parameter")
def _(channels):
    return channels + channels * channels + channels


@named("snl.param_count", "W_v's bias forgotten", BIAS)
def _(channels):
    return channels + 1 + channels * channels


@named("snl.param_count", "W_v counted as C -> C/2 with a float C/2", FLOAT_INT + "|C/2|W_v")
def _(channels):
    return (channels + 1) + channels * (channels / 2) + channels / 2


@named("snl.param_count", "returns (C + 1) ** 2 - 1 (a wrong factorisation)", r"")
def _(channels):
    return (channels + 1) ** 2 - 1


@named("snl.param_count", "counts the softmax as C parameters", r"count|extra|C")
def _(channels):
    return (channels + 1) + (channels * channels + channels) + channels


@right("snl.param_count", "factored: (C + 1)^2")
def _(channels):
    return (channels + 1) ** 2


@named("snl.param_count", "counting an actual SimplifiedNonLocal2d's parameters", CLOSED_FORM)
def _(channels):
    from gclab.nn import SimplifiedNonLocal2d

    return sum(p.numel() for p in SimplifiedNonLocal2d(channels).parameters())


# ====================================== se.param_count
@named("se.param_count", "both biases forgotten", BIAS)
def _(channels, reduction=16):
    p = channels // reduction
    return channels * p + p * channels


@named("se.param_count", "the second conv's bias forgotten", BIAS)
def _(channels, reduction=16):
    p = channels // reduction
    return channels * p + p + p * channels


@named("se.param_count", "C / r as a float", FLOAT_INT + r"|C / r|C/r")
def _(channels, reduction=16):
    p = channels / reduction
    return (channels * p + p) + (p * channels + channels)


@named("se.param_count", "one conv counted twice (2 (C P + P))", r"twice|counted|conv")
def _(channels, reduction=16):
    p = channels // reduction
    return 2 * (channels * p + p)


@named("se.param_count", "P = C * r (the ratio inverted)", r"ratio|r\b|invert|C \* r")
def _(channels, reduction=16):
    p = channels * reduction
    return (channels * p + p) + (p * channels + channels)


@named("se.param_count", "the first conv's bias counted as C (per input)", BIAS)
def _(channels, reduction=16):
    p = channels // reduction
    return (channels * p + channels) + (p * channels + channels)


@named("se.param_count", "counting an actual SEBlock's parameters", CLOSED_FORM)
def _(channels, reduction=16):
    from gclab.nn import SEBlock

    return sum(p.numel() for p in SEBlock(channels, ratio=1 / reduction).parameters())


@right("se.param_count", "a helper that counts one conv (weights and biases), used twice")
def _(channels, reduction=16):
    def conv(c_in, c_out):
        return c_in * c_out + c_out

    p = channels // reduction
    return conv(channels, p) + conv(p, channels)


# ====================================== gc.mul_fusion_backward
@named("gc.mul_fusion_backward", "sigmoid derivative written on the gate: g' = s(g)(1 - s(g))",
       r"sigmoid|gate|derivative")
def _(dout, x, m):
    g = _sig(m)
    gp = _sig(g) * (1 - _sig(g))
    return dout * g, (dout * x).sum(axis=(2, 3), keepdims=True) * gp


@named("gc.mul_fusion_backward", "dx = dout * m (the logits, not the gate)", r"sigmoid|gate|m\b")
def _(dout, x, m):
    g = _sig(m)
    return dout * m, (dout * x).sum(axis=(2, 3), keepdims=True) * g * (1 - g)


@named("gc.mul_fusion_backward", "dx passed through the sigmoid's derivative too",
       r"sigmoid|derivative|dx")
def _(dout, x, m):
    g = _sig(m)
    return dout * g * (1 - g), (dout * x).sum(axis=(2, 3), keepdims=True) * g * (1 - g)


@named("gc.mul_fusion_backward", "dm without keepdims (shape (B, C))", r"shape|keep")
def _(dout, x, m):
    g = _sig(m)
    return dout * g, (dout * x).sum(axis=(2, 3)) * g[..., 0, 0] * (1 - g[..., 0, 0])


@named("gc.mul_fusion_backward", "dm summed over the channels too", r"sum|channel|axis")
def _(dout, x, m):
    g = _sig(m)
    return dout * g, (dout * x).sum(axis=(1, 2, 3), keepdims=True) * g * (1 - g)


@named("gc.mul_fusion_backward", "dx = dout (the gate forgotten)", r"sigmoid|gate|factor")
def _(dout, x, m):
    g = _sig(m)
    return dout.copy(), (dout * x).sum(axis=(2, 3), keepdims=True) * g * (1 - g)


@right("gc.mul_fusion_backward", "via torch.autograd (float64)")
def _(dout, x, m):
    xt = torch.tensor(x, requires_grad=True)
    mt = torch.tensor(m, requires_grad=True)
    (xt * torch.sigmoid(mt)).backward(torch.as_tensor(dout))
    return xt.grad.numpy(), mt.grad.numpy()


# ====================================== gc.add_fusion_backward
@named("gc.add_fusion_backward", "dx = ones (the upstream gradient forgotten)",
       r"upstream|dout|everywhere")
def _(dout):
    return np.ones_like(dout), dout.sum(axis=(2, 3), keepdims=True)


@named("gc.add_fusion_backward", "dadd without keepdims", r"shape|keep")
def _(dout):
    return dout.copy(), dout.sum(axis=(2, 3))


@named("gc.add_fusion_backward", "dadd = dout (no sum over the broadcast)", r"shape|sum")
def _(dout):
    return dout.copy(), dout.copy()


@named("gc.add_fusion_backward", "dadd summed over H only", r"shape|sum|axis")
def _(dout):
    return dout.copy(), dout.sum(axis=2, keepdims=True)


@named("gc.add_fusion_backward", "returns dx alone", r"tuple|type|packed|items")
def _(dout):
    return dout.copy()


@right("gc.add_fusion_backward", "the identity gradient as the same array's copy via np.array")
def _(dout):
    return np.array(dout), np.sum(dout, axis=(2, 3), keepdims=True)


# ====================================== types and containers
def _ref(exercise):
    return get(exercise).reference


@named("nl.softmax", "torch.softmax on a tensor, returned as a tensor", TYPE)
def _(z):
    return torch.softmax(torch.as_tensor(z), dim=-1)


@named("gc.layer_norm", "torch's layer_norm, the tensor returned", TYPE)
def _(t, gamma, beta):
    return torch.nn.functional.layer_norm(torch.as_tensor(t), gamma.shape,
                                          torch.as_tensor(gamma), torch.as_tensor(beta))



@named("snl.attention", "computed in float32", r"float32|dtype|precision")
def _(x, w_k, b_k):
    return _ref("snl.attention")(x.astype(np.float32), w_k.astype(np.float32),
                                 np.float32(b_k))


@named("inside.cosine_distance", "returns a torch tensor from F.cosine_similarity", TYPE)
def _(u, v):
    return torch.as_tensor(_ref("inside.cosine_distance")(u, v))


@named("se.squeeze", "np.mean over (2, 3) without keepdims", r"shape|keep")
def _(x):
    return x.mean(axis=(2, 3))


# ====================================== counts and ddof
@named("exp.mean_std", "np.std with the default ddof=0", r"ddof")
def _(acc):
    a = np.asarray(acc, dtype=float)
    return a.mean(axis=1), a.std(axis=1)


@named("use.gc_params", "each block's W_k bias forgotten", BIAS + r"|one parameter|per block")
def _(stages, ratio):
    total = _ref("use.gc_params")(stages, ratio)
    return total - sum(n for _, n in stages)


# ====================================== coincidences
@named("nl.dot_product", "divided by C_i instead of N'", r"C_i|N'")
def _(theta_x, phi_x):
    return theta_x @ phi_x / theta_x.shape[-1]


@named("se.squeeze", "averaged over the channels too", r"channel|axis|C\b")
def _(x):
    return np.broadcast_to(x.mean(axis=(1, 2, 3), keepdims=True),
                           x.shape[:2] + (1, 1)).copy()


