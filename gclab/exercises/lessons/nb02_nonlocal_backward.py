r"""Exercises of lesson 02, the Non-local backward pass and gradient checking (topic ``nlgrad.``).

CS231n style: every forward op has a backward that maps the upstream gradient
:math:`\partial L / \partial \text{out}` (``dout``) to the gradients of its inputs; numerical
gradients (centred differences) and the relative error check them. The central formulas:

.. math::

    \partial s = p \odot \big(\partial p - \langle \partial p, p\rangle\big)
    \quad (p = \mathrm{softmax}(s)), \qquad
    C = AB:\ \partial A = \partial C\, B^\top,\ \partial B = A^\top \partial C

References: :mod:`gclab.numpy` (``rel_error``, ``numerical_gradient``, ``ops.softmax_backward``,
``ops.conv1x1_backward``, ``non_local.pairwise_backward``, ``non_local.backward``) and torch
autograd for the batched matrix product. Mistake variants are exact wrong formulas written here.
Everything is float64; maps have H != W.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

from gclab.exercises.lessons.common import positions, shape_is, to_map, to_map_hw_swapped
from gclab.exercises.lessons.nb01_nonlocal_numpy import random_params
from gclab.exercises.registry import Case, Exercise, Property, register
from gclab.numpy import non_local, ops
from gclab.numpy.gradcheck import numerical_gradient, rel_error

NOTEBOOK = "02_nonlocal_backward"
Params = Dict[str, np.ndarray]


# ----------------------------------------------------------------------------- helpers
# ----------------------------------------------------------------------------- rel_error
def _rel_error_cases(rng: np.random.Generator) -> List[Case]:
    a = rng.standard_normal((4, 5))
    z = np.zeros(6)
    z2 = z.copy()
    z2[2] = 1e-3
    return [
        Case(args=(a, a + 1e-6 * rng.standard_normal(a.shape)), label="close (4,5)"),
        Case(args=(a, a * (1 + 0.1 * rng.standard_normal(a.shape))), label="10% apart"),
        Case(args=(rng.standard_normal(7) * 1e3, rng.standard_normal(7) * 1e3), label="large"),
        Case(args=(np.concatenate([z, [1.0, 2.0]]), np.concatenate([z2, [1.0, 2.001]])),
             label="zeros and small values"),
        # |a| + |b| near the 1e-8 floor: max(1e-8, .) and "+ 1e-8" differ here
        Case(args=(np.array([3e-9, 1e-8, 0.0]), np.array([6e-9, 2e-8, 0.0])),
             label="values ~1e-8"),
    ]


register(Exercise(
    id="nlgrad.rel_error",
    notebook=NOTEBOOK,
    title="CS231n's relative error, element by element",
    reference=lambda a, b: rel_error(a, b),
    cases=_rel_error_cases,
    rtol=1e-9,
    atol=0.0,
    mistakes={
        "mean instead of max over the elements": lambda a, b: float(
            np.mean(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)))
        ),
        "absolute error (not divided by |a| + |b|)": lambda a, b: float(np.max(np.abs(a - b))),
        "divided by the largest |a| + |b| (not element by element)": lambda a, b: float(
            np.max(np.abs(a - b)) / max(1e-8, float(np.max(np.abs(a) + np.abs(b))))
        ),
        "added 1e-8 to the denominator instead of taking max(1e-8, |a| + |b|)":
            lambda a, b: float(np.max(np.abs(a - b) / (np.abs(a) + np.abs(b) + 1e-8))),
    },
    properties=[Property("a number >= 0", lambda out, *a: float(out) >= 0)],
    hints=(
        "For each element, the difference relative to the size of the two values; then the worst "
        "element. The 1e-8 floor keeps 0/0 away when both values are zero.",
        "a and b have the same shape; the absolute difference and the sum of absolute values are "
        "arrays of that shape, and so is their ratio; the result is one Python float.",
        "element by element: the absolute difference of a and b\ndivided by the larger of 1e-8 "
        "and (the absolute value of a plus that of b)\nthe largest of these ratios, as a float",
    ),
))


# ----------------------------------------------------------------------------- numerical grad
def _ng_cases(rng: np.random.Generator) -> List[Case]:
    out = []
    x1 = rng.standard_normal((3, 4))
    out.append(Case(args=(np.sin, x1, rng.standard_normal((3, 4))), label="sin, x (3,4)"))
    m = rng.standard_normal((2, 5))
    x2 = rng.standard_normal((5, 3))
    out.append(Case(args=(lambda v, m=m: np.tanh(m @ v), x2, rng.standard_normal((2, 3))),
                    label="tanh(M x), x (5,3)"))
    x3 = rng.standard_normal((2, 3, 4))
    out.append(Case(args=(lambda v: ops.softmax(v * 2.0), x3, rng.standard_normal((2, 3, 4))),
                    label="softmax, x (2,3,4)"))
    x4 = rng.standard_normal(6)
    out.append(Case(args=(lambda v: float(np.sum(v ** 3)), x4, np.array(1.0)),
                    label="scalar sum(x^3)"))
    # a step other than the default: h hard-coded as 1e-5 is off by h^2 here
    x5 = rng.standard_normal(5)
    out.append(Case(args=(lambda v: float(np.sum(v ** 3)), x5, np.array(1.0)),
                    kwargs={"h": 1e-2}, label="scalar sum(x^3), h = 0.01"))
    return out


def _ng_variant(kind: str) -> Callable:
    def variant(f, x, df, h=1e-5):
        grad = np.zeros_like(x)
        it = np.nditer(x, flags=["multi_index"])
        while not it.finished:
            k = it.multi_index
            old = x[k]
            x[k] = old + h
            fp = np.array(f(x), dtype=np.float64)
            if kind == "forward":
                x[k] = old
                fm = np.array(f(x), dtype=np.float64)
                grad[k] = np.sum((fp - fm) * df) / h
            else:
                x[k] = old - h
                fm = np.array(f(x), dtype=np.float64)
                if kind != "no restore":
                    x[k] = old
                up = 1.0 if kind == "no df" else df
                denom = h if kind == "h" else 2 * h
                grad[k] = np.sum((fp - fm) * up) / denom
            it.iternext()
        return grad

    return variant


register(Exercise(
    id="nlgrad.numerical_gradient",
    notebook=NOTEBOOK,
    title="Numerical gradient by centred differences",
    reference=lambda f, x, df, h=1e-5: numerical_gradient(f, x, df, h),
    cases=_ng_cases,
    rtol=1e-7,
    mistakes={
        "forward difference (f(x+h) - f(x)) / h instead of the centred one": _ng_variant("forward"),
        "divided by h instead of 2h": _ng_variant("h"),
        "upstream gradient df ignored (gradient of sum(f), not of sum(f * df))":
            _ng_variant("no df"),
        "x not restored after perturbing it": _ng_variant("no restore"),
    },
    properties=[Property("shape of x", lambda out, f, x, df, h=1e-5: (
        getattr(out, "shape", None) == x.shape, f"shape {getattr(out, 'shape', None)}"))],
    hints=(
        "Nudge one entry x_k by +h and by -h, evaluate f both times, and take the slope of the "
        "loss. The loss weights f by df before summing. Put x_k back before moving on.",
        "grad has x's shape; f(x) and df have the same shape (any, maybe a scalar); each entry of "
        "grad is one number. NumPy's nditer with the multi_index flag walks every index of an "
        "array of any shape.",
        "grad starts as zeros shaped like x\nfor every index k of x: remember the old value\nset "
        "it to old plus h, evaluate f and keep a copy; set it to old minus h, evaluate "
        "again\nrestore the old value\ngrad at k is the loss difference (the change of f weighted "
        "by df, summed) over 2h",
    ),
))


# ----------------------------------------------------------------------------- softmax backward
def _sm_cases(rng: np.random.Generator) -> List[Case]:
    out = []
    # all 3-D (B, N, N'), so a sum over axis=1 is diagnosed as the wrong axis on every case
    for shape, s in [((2, 5, 7), 1.0), ((3, 4, 6), 3.0), ((1, 6, 6), 1.0), ((2, 3, 8), 30.0)]:
        p = ops.softmax(rng.standard_normal(shape) * s)
        out.append(Case(args=(rng.standard_normal(shape), p), label=f"{shape}, logits x{s:g}"))
    return out


register(Exercise(
    id="nlgrad.softmax_backward",
    notebook=NOTEBOOK,
    title="Softmax backward through the Jacobian diag(p) - p p^T",
    reference=lambda dout, p: ops.softmax_backward(dout, (p, -1)),
    cases=_sm_cases,
    rtol=1e-9,
    mistakes={
        "diagonal of the Jacobian only (p (1 - p) dout)": lambda dout, p: p * (1 - p) * dout,
        "softmax backward summed over the wrong axis (-2, not the last)":
            lambda dout, p: p * (dout - (dout * p).sum(axis=-2, keepdims=True)),
        "upstream gradient left out of the sum (p (dout - sum p))":
            lambda dout, p: p * (dout - p.sum(axis=-1, keepdims=True)),
        "the softmax Jacobian skipped (dout passed through as the logits' gradient)":
            lambda dout, p: dout.copy(),
    },
    properties=[
        Property("shape of p", shape_is(lambda dout, p: p.shape)),
        Property("every row of ds sums to 0 (softmax ignores a shift of its row)",
                 lambda out, dout, p: bool(np.allclose(np.asarray(out).sum(-1), 0, atol=1e-9))),
    ],
    hints=(
        "Each p_j depends on every logit s_k of its row. Write the Jacobian of the softmax (what "
        "is dp_j/ds_k when j = k, and when j != k?), then multiply the upstream gradient by it "
        "without ever building the N' x N' matrix.",
        "dout and p have the same shape (..., N'); the Jacobian splits into a diagonal part and "
        "an outer-product part; the outer-product part needs one number per row (a sum over the "
        "last axis, kept as (..., 1)); the result has p's shape and each of its rows sums to 0.",
        "per row: the inner product of dout with p (one number, axis kept)\nthe diagonal part "
        "gives p times dout; the outer-product part takes away p times that number\ncombine the "
        "two",
    ),
))


# ----------------------------------------------------------------------------- matmul backward
def ref_matmul_backward(dout, a, b) -> Tuple[np.ndarray, np.ndarray]:
    """torch autograd of C = A @ B (batched): (dA, dB)."""
    ta = torch.tensor(a, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    torch.bmm(ta, tb).backward(torch.tensor(dout))
    return ta.grad.numpy(), tb.grad.numpy()


def _mm_cases(rng: np.random.Generator) -> List[Case]:
    out = []
    for bsz, n, k, m in [(2, 5, 3, 4), (1, 6, 4, 2), (3, 4, 7, 5)]:
        a, b = rng.standard_normal((bsz, n, k)), rng.standard_normal((bsz, k, m))
        out.append(Case(args=(rng.standard_normal((bsz, n, m)), a, b),
                        label=f"A ({bsz},{n},{k}) @ B ({bsz},{k},{m})"))
    return out


register(Exercise(
    id="nlgrad.matmul_backward",
    notebook=NOTEBOOK,
    title="Batched matrix product backward: dA = dC B^T, dB = A^T dC",
    reference=ref_matmul_backward,
    cases=_mm_cases,
    rtol=1e-9,
    mistakes={
        "reshape where a transpose belongs (B.reshape instead of swapping its last two axes)":
            lambda dout, a, b: (
                dout @ b.reshape(b.shape[0], b.shape[2], b.shape[1]),
                a.reshape(a.shape[0], a.shape[2], a.shape[1]) @ dout,
            ),
        "upstream gradient dout ignored (gradient of sum(A @ B), not of the loss)":
            lambda dout, a, b: (
                np.ones_like(dout) @ b.transpose(0, 2, 1),
                a.transpose(0, 2, 1) @ np.ones_like(dout),
            ),
    },
    properties=[Property("shapes (dA like A, dB like B)",
                         shape_is(lambda dout, a, b: (a.shape, b.shape)))],
    hints=(
        "Write one entry of the product as a sum over k, differentiate it with respect to one "
        "entry of A and of B, and recognise each result as a matrix product again.",
        "dout (B, N, M), A (B, N, K), B (B, K, M). dA must be (B, N, K) and dB (B, K, M): there "
        "is only one way to multiply dout with the other factor (transposed in its last two axes) "
        "that gives each shape. Transposing all axes would also move the batch axis.",
        "dA: dout times the other factor with its last two axes swapped\ndB: the first factor "
        "with its last two axes swapped, times dout\nreturn both, in that order",
    ),
))


# ----------------------------------------------------------------------------- conv1x1 backward
def ref_conv1x1_backward(dout, x, weight):
    """``gclab.numpy.ops.conv1x1_backward``: (dx, dweight, dbias)."""
    _, cache = ops.conv1x1_forward(x, weight, np.zeros(weight.shape[0]))
    return ops.conv1x1_backward(dout, cache)


def _conv_variant(kind: str):
    def variant(dout, x, weight):
        dx, dw, db = ref_conv1x1_backward(dout, x, weight)
        if kind == "mean":
            return dx, dw / x.shape[0], db / x.shape[0]
        # dout flattened column by column, x row by row
        df = dout.transpose(0, 1, 3, 2).reshape(dout.shape[0], dout.shape[1], -1)
        xf = x.reshape(x.shape[0], x.shape[1], -1)
        return dx, np.einsum("bon,bcn->oc", df, xf).reshape(weight.shape), db

    return variant


def _conv_cases(rng: np.random.Generator) -> List[Case]:
    out = []
    for (b, c, h, w), co in [((2, 3, 4, 5), 4), ((3, 5, 3, 6), 2), ((2, 4, 5, 3), 4),
                             ((1, 2, 6, 4), 3)]:
        x = rng.standard_normal((b, c, h, w))
        out.append(Case(args=(rng.standard_normal((b, co, h, w)), x,
                              rng.standard_normal((co, c, 1, 1))),
                        label=f"x {(b, c, h, w)}, Co={co}"))
    return out


register(Exercise(
    id="nlgrad.conv1x1_backward",
    notebook=NOTEBOOK,
    title="1x1 convolution backward: dx = W^T dout, dW and db summed over batch and positions",
    reference=ref_conv1x1_backward,
    cases=_conv_cases,
    rtol=1e-9,
    mistakes={
        "averaged over the batch instead of summed": _conv_variant("mean"),
        "H and W transposed in a reshape (dout flattened column by column for dW)":
            _conv_variant("hw"),
    },
    properties=[Property(
        "shapes (dx like x, dW like weight, db (Co,))",
        shape_is(lambda dout, x, weight: (x.shape, weight.shape, (weight.shape[0],))),
    )],
    hints=(
        "The forward applies the same W and bias at every position and batch item. Parameters "
        "that are shared collect their gradients from every place they were used; the input at "
        "each position gets the transposed map of the upstream gradient at that position.",
        "Flatten: dout (B, Co, N), x (B, C, N), W (Co, C). dx: (C, Co) by (B, Co, N) -> (B, C, N) "
        "-> x's shape; dW: outer products of dout and x at each (b, n), summed -> (Co, C) -> (Co, "
        "C, 1, 1); dbias: dout summed over b and n -> (Co,).",
        "squeeze the weight to a matrix; flatten dout and x over the positions\ndx: the "
        "transposed weight applied to dout at every position, back to x's shape\ndW: sum over "
        "batch and positions of dout times x transposed (an einsum), back to the weight's "
        "shape\ndbias: dout summed over everything but its channel axis",
    ),
))


# ----------------------------------------------------------------------------- attention backward
def ref_embedded_gaussian_backward(dattn, theta_x, phi_x, attention, use_scale=True):
    """``gclab.numpy.non_local.pairwise_backward`` of the embedded gaussian: (dtheta_x, dphi_x)."""
    attn, cache = non_local.pairwise_forward(theta_x, phi_x, "embedded_gaussian", use_scale)
    dtheta, dphi, _ = non_local.pairwise_backward(dattn, cache)
    return dtheta, dphi


def _eg_variant(kind: str):
    def variant(dattn, theta_x, phi_x, attention, use_scale=True):
        scale = math.sqrt(theta_x.shape[-1]) if use_scale else 1.0
        axis = -2 if kind == "axis" else -1
        dlogits = attention * (dattn - (dattn * attention).sum(axis=axis, keepdims=True))
        if kind == "nojac":
            dlogits = dattn
        if kind != "scale":
            dlogits = dlogits / scale
        if kind == "reshape":
            bsz, ci, nk = phi_x.shape
            return (dlogits @ phi_x.reshape(bsz, nk, ci),
                    theta_x.reshape(bsz, ci, theta_x.shape[1]) @ dlogits)
        return dlogits @ phi_x.transpose(0, 2, 1), theta_x.transpose(0, 2, 1) @ dlogits

    return variant


def _eg_cases(rng: np.random.Generator) -> List[Case]:
    out = []
    for bsz, n, ci, nk, use_scale in [(2, 6, 4, 5, True), (1, 8, 3, 6, True),
                                      (2, 5, 2, 7, False), (3, 4, 8, 3, True)]:
        th, ph = rng.standard_normal((bsz, n, ci)), rng.standard_normal((bsz, ci, nk))
        attn = non_local.embedded_gaussian(th, ph, use_scale)
        out.append(Case(args=(rng.standard_normal((bsz, n, nk)), th, ph, attn),
                        kwargs={"use_scale": use_scale},
                        label=f"N={n}, N'={nk}, Ci={ci}, use_scale={use_scale}",
                        meta={"C_i": ci, "N": n, "N'": nk}))
    return out


register(Exercise(
    id="nlgrad.embedded_gaussian_backward",
    notebook=NOTEBOOK,
    title="Backward through the embedded gaussian: softmax, 1/sqrt(Ci), theta_x @ phi_x",
    reference=ref_embedded_gaussian_backward,
    cases=_eg_cases,
    rtol=1e-9,
    mistakes={
        "missing 1/sqrt(d) scale in the backward": _eg_variant("scale"),
        "softmax backward summed over the wrong axis (-2, not the keys)": _eg_variant("axis"),
        "reshape where a transpose belongs (phi_x / theta_x reshaped, not transposed)":
            _eg_variant("reshape"),
        "the softmax Jacobian skipped (dattn used as the logits' gradient)":
            _eg_variant("nojac"),
    },
    properties=[Property(
        "shapes (dtheta_x like theta_x, dphi_x like phi_x)",
        shape_is(lambda dattn, th, ph, attention, use_scale=True: (th.shape, ph.shape)),
    )],
    hints=(
        "Run the forward backwards: the attention is a softmax of the logits divided by s "
        "(sqrt(Ci), or 1), and the logits are a matrix product. Chain three backward rules: "
        "softmax, the division, the product.",
        "dattn and attention (B, N, N'); the logits' gradient (B, N, N'); dtheta_x (B, N, Ci); "
        "dphi_x (B, Ci, N'). The division by s in the forward shows up in the backward too.",
        "pass dattn through your softmax backward (with the attention from the cache)\nif "
        "use_scale: divide that by the square root of Ci\npass the result through your matmul "
        "backward with theta_x and phi_x",
    ),
))


# ----------------------------------------------------------------------------- block backward
def ref_block_grads(x, params, dout, use_scale=True):
    """``gclab.numpy.non_local`` forward then backward (embedded gaussian): (dx, dparams)."""
    _, cache = non_local.forward(x, params, "embedded_gaussian", use_scale)
    return non_local.backward(dout, cache)


def _block_variant(kind: str):
    """A NumPy NL (embedded gaussian) backward with one mistake; returns (dx, dparams)."""

    def variant(x, params, dout, use_scale=True):
        b, c, h, w = x.shape
        convs = {}
        for name in ("theta", "phi", "g"):
            convs[name] = ops.conv1x1_forward(x, params[name + ".weight"], params[name + ".bias"])
        theta, phi, g = (convs[n][0] for n in ("theta", "phi", "g"))
        theta_x, g_x = positions(theta), positions(g)
        phi_x = phi.reshape(b, phi.shape[1], -1)
        scale = math.sqrt(theta_x.shape[-1]) if use_scale else 1.0
        attn = ops.softmax(theta_x @ phi_x / scale)
        y = to_map(attn @ g_x, h, w)
        _, c_out = ops.conv1x1_forward(y, params["conv_out.weight"], params["conv_out.bias"])
        grads: Params = {}
        dy, grads["conv_out.weight"], grads["conv_out.bias"] = ops.conv1x1_backward(dout, c_out)
        dy_x = positions(dy)
        dattn, dg_x = dy_x @ g_x.transpose(0, 2, 1), attn.transpose(0, 2, 1) @ dy_x
        axis = -2 if kind == "axis" else -1
        dlogits = attn * (dattn - (dattn * attn).sum(axis=axis, keepdims=True))
        if kind != "scale":
            dlogits = dlogits / scale
        dtheta_x = dlogits @ phi_x.transpose(0, 2, 1)
        dphi_x = theta_x.transpose(0, 2, 1) @ dlogits
        back = to_map_hw_swapped if kind == "hw" else to_map
        dmaps = {"theta": back(dtheta_x, h, w), "phi": dphi_x.reshape(phi.shape),
                 "g": back(dg_x, h, w)}
        dx = np.zeros_like(x) if kind == "residual" else dout.copy()
        for name in ("theta", "phi", "g"):
            dxi, grads[name + ".weight"], grads[name + ".bias"] = ops.conv1x1_backward(
                dmaps[name], convs[name][1]
            )
            dx = dx + dxi
        return dx, grads

    return variant


def _block_cases(rng: np.random.Generator) -> List[Case]:
    out = []
    # the last case has logits ~1e3: a forward softmax without max-subtraction overflows
    for shape, use_scale, s in [((2, 4, 3, 5), True, 1.0), ((1, 6, 4, 3), True, 1.0),
                                ((2, 4, 5, 2), False, 1.0), ((3, 4, 4, 3), True, 30.0)]:
        x = rng.standard_normal(shape) * s
        p = random_params(rng, shape[1], "embedded_gaussian")
        out.append(Case(args=(x, p, rng.standard_normal(shape)), kwargs={"use_scale": use_scale},
                        label=f"x {shape}, use_scale={use_scale}"
                        + (", logits ~1e3" if s > 1 else ""),
                        meta={"C_i": shape[1] // 2, "N": shape[2] * shape[3]}))
    return out


register(Exercise(
    id="nlgrad.block_backward",
    notebook=NOTEBOOK,
    title="The NL block's backward with a cache: dx and a gradient for every parameter",
    reference=ref_block_grads,
    cases=_block_cases,
    rtol=1e-8,
    mistakes={
        "missing residual: dx lacks the dout that flows straight through z = x + W_z y":
            _block_variant("residual"),
        "softmax backward summed over the wrong axis (-2, not the keys)": _block_variant("axis"),
        "missing 1/sqrt(d) scale in the backward": _block_variant("scale"),
        "H and W transposed in a reshape (dtheta and dg put back as (W, H))":
            _block_variant("hw"),
    },
    properties=[Property(
        "dx has x's shape; every parameter gradient has its parameter's shape",
        lambda out, x, params, dout, use_scale=True: (
            out[0].shape == x.shape
            and all(out[1][k].shape == v.shape for k, v in params.items() if k in out[1])
        ),
    ), Property(
        "d phi.bias is 0 (the same shift of every key's logit leaves each softmax row unchanged)",
        lambda out, *a, **k: bool(np.abs(out[1]["phi.bias"]).max() < 1e-10),
    )],
    hints=(
        "Walk the forward backwards, step by step: fusion (the residual sends dout both to x and "
        "to the transform), transform (conv_out backward), context modelling (the aggregation is "
        "a matmul; the attention is the embedded gaussian), then the three embedding convs. x "
        "feeds theta, phi, g and the residual: its gradient is the sum of all four.",
        "dout (B, C, H, W) -> conv_out backward -> dy (B, Ci, H, W) -> to positions (B, N, Ci); "
        "dattention (B, N, N), dg_x (B, N, Ci); dtheta_x (B, N, Ci), dphi_x (B, Ci, N); back to "
        "maps (B, Ci, H, W) with to_map (theta, g) and a reshape (phi); each conv1x1 backward "
        "returns (part of dx, dW, dbias). The cache holds the use_scale flag, not the scale.",
        "conv_out backward of dout with the cached y: dy and conv_out's two gradients\nmatmul "
        "backward of dy (as positions) through the attention and g_x: dattention and "
        "dg_x\nembedded gaussian backward of dattention, with the cached theta_x, phi_x, "
        "attention and use_scale flag: dtheta_x and dphi_x\nturn the three gradients back into "
        "maps\ndx starts as a NEW array equal to dout (never change dout itself)\nfor theta, phi "
        "and g: conv1x1 backward of its map gradient with x; add the dx part to dx, store dW and "
        "dbias under the parameter's name\nreturn dx and the dict",
    ),
))


# ----------------------------------------------------------------------------- derivations
def ref_softmax_jacobian(p: np.ndarray) -> np.ndarray:
    """J[..., j, k] = dp_j / ds_k for p = softmax(s) over the last axis."""
    eye = np.eye(p.shape[-1])
    return p[..., :, None] * eye - p[..., :, None] * p[..., None, :]


def _jac_cases(rng: np.random.Generator) -> List[Case]:
    shapes = [(5,), (2, 4), (3, 7), (1, 6)]
    out = [Case(args=(ops.softmax(rng.standard_normal(s)),), label=str(s)) for s in shapes]
    big = ops.softmax(40 * rng.standard_normal((2, 5)))
    out.append(Case(args=(big,), label="(2, 5), large logits (a nearly one-hot p)"))
    return out


register(Exercise(
    id="nlgrad.softmax_jacobian",
    notebook=NOTEBOOK,
    title="Derive the softmax Jacobian",
    reference=ref_softmax_jacobian,
    cases=_jac_cases,
    rtol=1e-10,
    mistakes={
        "only the diagonal term diag(p): the dependence on the other logits left out": (
            lambda p: p[..., :, None] * np.eye(p.shape[-1])
        ),
        "the outer-product term added instead of subtracted": (
            lambda p: p[..., :, None] * np.eye(p.shape[-1]) + p[..., :, None] * p[..., None, :]
        ),
        "only the diagonal, with p(1 - p) on it: the off-diagonal terms left out": (
            lambda p: (p * (1 - p))[..., :, None] * np.eye(p.shape[-1])
        ),
        "the diagonal term diag(p) forgotten: only minus the outer product": (
            lambda p: -p[..., :, None] * p[..., None, :]
        ),
        "p(1 - p) on the diagonal AND the outer product subtracted: the diagonal's -p^2 "
        "counted twice": (
            lambda p: (p * (1 - p))[..., :, None] * np.eye(p.shape[-1])
            - p[..., :, None] * p[..., None, :]
        ),
    },
    properties=[
        Property("shape (..., N, N)", lambda out, p: np.shape(out) == p.shape + p.shape[-1:]),
        Property("every row sums to 0 (a shift of the logits changes nothing)",
                 lambda out, p: np.allclose(np.sum(out, axis=-1), 0, atol=1e-10)),
    ],
    hints=(
        "Write p_j as exp(s_j) over the row's sum of exponentials and differentiate with the "
        "quotient rule, once for k = j (s_k is in the numerator and in the sum) and once for k != "
        "j (only in the sum). Both answers can be written with p alone.",
        "p (..., N) -> J (..., N, N), its entry (j, k) the derivative of p_j with respect to s_k. "
        "Your k != j formula, applied on the diagonal too, is an outer product of p with itself; "
        "the k = j case then needs one extra diagonal term. Broadcasting with size-1 axes and an "
        "identity matrix builds both.",
        "build the outer-product term from p (p as a column, p as a row)\nbuild the extra "
        "diagonal term from p and an identity matrix\ncombine them with the signs your derivation "
        "gives, and check that every row sums to 0",
    ),
))


def ref_scale_backward(dout: np.ndarray, u: np.ndarray, s: float):
    """(du, ds) for out = u / s with a scalar s."""
    return dout / s, float(-np.sum(dout * u) / s**2)


def _scale_cases(rng: np.random.Generator) -> List[Case]:
    out = []
    for shape, s in [((2, 3, 5), math.sqrt(4)), ((1, 4, 4), math.sqrt(3)), ((3, 7, 6), 1.5),
                     ((2, 5, 5), 1.0)]:
        out.append(Case(args=(rng.standard_normal(shape), rng.standard_normal(shape), s),
                        label=f"{shape}, s = {s:.3g}"))
    return out


register(Exercise(
    id="nlgrad.scale_backward",
    notebook=NOTEBOOK,
    title="Derive the backward of the division by the scale",
    reference=ref_scale_backward,
    cases=_scale_cases,
    rtol=1e-10,
    mistakes={
        "ds with the wrong sign (dividing by a larger s makes the output smaller)": (
            lambda dout, u, s: (dout / s, float(np.sum(dout * u) / s**2))
        ),
        "ds divided by s, not by s squared": (
            lambda dout, u, s: (dout / s, float(-np.sum(dout * u) / s))
        ),
        "du not divided by s (the scale forgotten on the way back)": (
            lambda dout, u, s: (dout, float(-np.sum(dout * u) / s**2))
        ),
    },
    hints=(
        "out = u / s acts on every element; u's gradient is element-wise, but s is ONE number "
        "used by every element, so its gradient collects a contribution from each of them.",
        "dout and u have the same shape; du has that shape; ds is one float. Differentiate one "
        "element, u_k / s, with respect to u_k and with respect to s.",
        "du: dout scaled by the derivative of u_k over s with respect to u_k\n"
        "ds: for every element, dout times the derivative of u_k over s with respect to s "
        "(mind its sign and its power of s), summed over all elements",
    ),
))


def ref_maxpool_backward(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dx of the 2x2 stride-2 max pool (floor for odd sizes): dout goes to each window's max."""
    b, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    win = x[:, :, : 2 * h2, : 2 * w2].reshape(b, c, h2, 2, w2, 2)
    mask = win == win.max(axis=(3, 5), keepdims=True)
    dx = np.zeros_like(x)
    dx[:, :, : 2 * h2, : 2 * w2] = (mask * dout[:, :, :, None, :, None]).reshape(
        b, c, 2 * h2, 2 * w2)
    return dx


def _pool_back_all(dout, x, scale=1.0):
    b, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    dx = np.zeros_like(x)
    spread = np.broadcast_to(dout[:, :, :, None, :, None] * scale, (b, c, h2, 2, w2, 2))
    dx[:, :, : 2 * h2, : 2 * w2] = spread.reshape(b, c, 2 * h2, 2 * w2)
    return dx


def _maxpool_back_cases(rng: np.random.Generator) -> List[Case]:
    out = []
    for shape in [(2, 3, 4, 6), (1, 2, 5, 7), (3, 1, 6, 3), (1, 4, 2, 2), (2, 2, 5, 8)]:
        x = rng.standard_normal(shape)
        dout = rng.standard_normal((shape[0], shape[1], shape[2] // 2, shape[3] // 2))
        out.append(Case(args=(dout, x), label=f"x {shape}"))
    return out


register(Exercise(
    id="nlgrad.maxpool_backward",
    notebook=NOTEBOOK,
    title="Derive the backward of the sub-sampling max pool",
    reference=ref_maxpool_backward,
    cases=_maxpool_back_cases,
    rtol=1e-12,
    mistakes={
        "gradient copied to all four pixels of the window (no argmax mask)": _pool_back_all,
        "gradient spread evenly over the window (the backward of AVERAGE pooling)": (
            lambda dout, x: _pool_back_all(dout, x, 0.25)
        ),
        "the mask compares with the whole map's max, not each window's": (
            lambda dout, x: _pool_back_all(dout, x) * (
                x == x[:, :, : x.shape[2] // 2 * 2, : x.shape[3] // 2 * 2].max(
                    axis=(2, 3), keepdims=True))
        ),
    },
    properties=[Property("shape of x", lambda out, dout, x: np.shape(out) == x.shape)],
    hints=(
        "Ask how max(a, b, c, d) changes when you nudge one of its inputs a little: the input "
        "that won the window and the three that lost behave differently. The gradient follows "
        "that.",
        "x (B, C, H, W), dout (B, C, H//2, W//2), dx shaped like x. View the even crop of x as "
        "windows, as in the forward pass (one axis for the row and one for the column inside a "
        "window); a boolean mask of that shape marks each window's maximum; dout needs a size-1 "
        "axis at each in-window position to broadcast against it; the odd last row or column "
        "(never in a window) gets gradient 0.",
        "dx starts as zeros shaped like x\nview the even crop as 2 by 2 windows and mark where "
        "each window reaches its max\nput each window's upstream gradient where the mark is, 0 "
        "elsewhere\nwrite the result back into the cropped part of dx",
    ),
))


def ref_dot_product_backward(dattn: np.ndarray, theta_x: np.ndarray, phi_x: np.ndarray):
    """(dtheta_x, dphi_x) of attention = theta_x @ phi_x / N' (N' = phi_x.shape[-1])."""
    n_keys = phi_x.shape[-1]
    return (dattn @ phi_x.transpose(0, 2, 1) / n_keys,
            theta_x.transpose(0, 2, 1) @ dattn / n_keys)


def _dp_back_cases(rng: np.random.Generator) -> List[Case]:
    out = []
    for b, n, nk, ci in [(2, 12, 6, 3), (1, 15, 4, 2), (3, 8, 8, 5), (1, 20, 5, 1)]:
        out.append(Case(args=(rng.standard_normal((b, n, nk)), rng.standard_normal((b, n, ci)),
                              rng.standard_normal((b, ci, nk))),
                        label=f"B {b}, N {n}, N' {nk}, Ci {ci}"))
    return out


register(Exercise(
    id="nlgrad.dot_product_backward",
    notebook=NOTEBOOK,
    title="Derive the backward of the dot-product pairwise function",
    reference=ref_dot_product_backward,
    cases=_dp_back_cases,
    rtol=1e-10,
    mistakes={
        "the normalisation 1/N' left out of the backward": (
            lambda dattn, theta_x, phi_x: (dattn @ phi_x.transpose(0, 2, 1),
                                           theta_x.transpose(0, 2, 1) @ dattn)
        ),
        "divided by N (the queries) instead of N' (the keys)": (
            lambda dattn, theta_x, phi_x: (
                dattn @ phi_x.transpose(0, 2, 1) / theta_x.shape[1],
                theta_x.transpose(0, 2, 1) @ dattn / theta_x.shape[1])
        ),
        "divided by C_i (the embedding size) instead of N' (the keys)": (
            lambda dattn, theta_x, phi_x: (
                dattn @ phi_x.transpose(0, 2, 1) / theta_x.shape[2],
                theta_x.transpose(0, 2, 1) @ dattn / theta_x.shape[2])
        ),
    },
    hints=(
        "The dot-product attention is a batched matrix product followed by a division by a "
        "constant. Chain the two backward rules you already have; the constant comes back.",
        "dattn (B, N, N'), theta_x (B, N, Ci), phi_x (B, Ci, N'); dtheta_x has theta_x's shape "
        "and dphi_x phi_x's. N' (the keys) differs from N when the keys are sub-sampled.",
        "divide the upstream gradient by the number of keys\n"
        "pass it through your matmul backward with theta_x and phi_x\n"
        "return the two gradients",
    ),
))
