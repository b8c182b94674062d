r"""Exercises of lesson 04, the Simplified Non-local block (topic ``snl.``).

The learner writes the block in NumPy, step by step, and checks it against ``gclab.nn``:

.. math::

    \alpha_j = \mathrm{softmax}_j(W_k x_j + b_k), \qquad
    z_i = x_i + W_v \sum_{j=1}^{N} \alpha_j x_j + b_v

Conventions of every exercise here: ``x`` is (B, C, H, W) float64, ``w_k`` is (C,), ``b_k`` a
float, ``w_v`` is (C, C) and ``b_v`` is (C,). Every reference runs the ``gclab.nn`` PyTorch block
in float64, so the check compares the learner's NumPy against an independent implementation.
"""

from __future__ import annotations

import math
from typing import Dict

import numpy as np
import torch

from gclab.exercises.lessons.common import (
    context_shape,
    is_int,
    rows_sum_to_one,
    sigmoid,
    softmax,
    tensor64,
)
from gclab.exercises.registry import Case, Exercise, Property, register
from gclab.nn import AttentionPooling, NonLocal2d, SimplifiedNonLocal2d

NOTEBOOK = "04_simplified_nl"
SHAPES = [(2, 4, 3, 5), (3, 6, 5, 2), (2, 3, 4, 7), (1, 8, 6, 3)]


def _snl_module(c: int, w_k, b_k, w_v, b_v) -> SimplifiedNonLocal2d:
    """A float64 ``SimplifiedNonLocal2d`` holding the given NumPy parameters."""
    m = SimplifiedNonLocal2d(c).double()
    sd = {
        "context_modeling.conv_mask.weight": tensor64(w_k).reshape(1, c, 1, 1),
        "context_modeling.conv_mask.bias": tensor64(b_k).reshape(1),
        "transform.add.weight": tensor64(w_v).reshape(c, c, 1, 1),
        "transform.add.bias": tensor64(b_v).reshape(c),
    }
    m.load_state_dict(sd, strict=True)
    return m


# --------------------------------------------------------------------------- references
def ref_attention(x: np.ndarray, w_k: np.ndarray, b_k: float) -> np.ndarray:
    """alpha (B, N), N = H*W: softmax over positions of W_k x_j + b_k (gclab.nn)."""
    c = x.shape[1]
    pool = AttentionPooling(c).double()
    pool.conv_mask.weight.data = tensor64(w_k).reshape(1, c, 1, 1)
    pool.conv_mask.bias.data = tensor64(b_k).reshape(1)
    with torch.no_grad():
        return pool.attention(tensor64(x)).numpy()


def ref_attention_pool(x: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """context (B, C, 1, 1) = sum_j alpha_j x_j."""
    b, c = x.shape[:2]
    with torch.no_grad():
        ctx = torch.bmm(tensor64(x).reshape(b, c, -1), tensor64(alpha).unsqueeze(2))
    return ctx.reshape(b, c, 1, 1).numpy()


def ref_forward(x, w_k, b_k, w_v, b_v) -> np.ndarray:
    """The SNL block z (B, C, H, W), computed by ``gclab.nn.SimplifiedNonLocal2d``."""
    m = _snl_module(x.shape[1], w_k, b_k, w_v, b_v)
    with torch.no_grad():
        return m(tensor64(x)).numpy()


def ref_nonlocal_to_snl(nl: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    r"""SNL parameters equal to an embedded-Gaussian NL block whose ``theta.weight`` is zero.

    With :math:`W_\theta = 0` the query embedding is the constant :math:`b_\theta`, so the NL
    logits :math:`b_\theta^\top(W_\phi x_j + b_\phi)/\sqrt{C_i}` no longer depend on i:
    :math:`w_k = W_\phi^\top b_\theta/\sqrt{C_i}`, :math:`b_k = b_\theta^\top b_\phi/\sqrt{C_i}`;
    and since the weights sum to 1, :math:`W_v = W_z W_g`, :math:`b_v = W_z b_g + b_z`.
    """
    w_phi = nl["phi.weight"][:, :, 0, 0]  # (Ci, C)
    ci, c = w_phi.shape
    b_theta, b_phi = nl["theta.bias"], nl["phi.bias"]
    w_g, b_g = nl["g.weight"][:, :, 0, 0], nl["g.bias"]
    w_z, b_z = nl["conv_out.weight"][:, :, 0, 0], nl["conv_out.bias"]
    s = math.sqrt(ci)
    return {
        "context_modeling.conv_mask.weight": (w_phi.T @ b_theta / s).reshape(1, c, 1, 1),
        "context_modeling.conv_mask.bias": np.array([b_theta @ b_phi / s]),
        "transform.add.weight": (w_z @ w_g).reshape(c, c, 1, 1),
        "transform.add.bias": w_z @ b_g + b_z,
    }


def ref_snl_params() -> int:
    """Parameters of one SimplifiedNonLocal2d at C = 1024, counted by PyTorch."""
    return sum(p.numel() for p in SimplifiedNonLocal2d(1024).parameters())


# --------------------------------------------------------------------------- wrong variants
def _logits(x, w_k, b_k, transpose_hw: bool = False) -> np.ndarray:
    if transpose_hw:
        x = x.transpose(0, 1, 3, 2)
    b, c = x.shape[:2]
    return np.einsum("c,bcn->bn", w_k, x.reshape(b, c, -1)) + b_k


def wrong_attention_axis(x, w_k, b_k):
    return softmax(_logits(x, w_k, b_k), axis=0)


def wrong_attention_sigmoid(x, w_k, b_k):
    return sigmoid(_logits(x, w_k, b_k))


def wrong_attention_transposed(x, w_k, b_k):
    return softmax(_logits(x, w_k, b_k, transpose_hw=True), axis=1)


def wrong_pool_mean(x, alpha):
    return x.mean(axis=(2, 3), keepdims=True)


def wrong_pool_transposed(x, alpha):
    b, c = x.shape[:2]
    xt = x.transpose(0, 1, 3, 2).reshape(b, c, -1)
    return np.einsum("bcn,bn->bc", xt, alpha).reshape(b, c, 1, 1)


def wrong_pool_max(x, alpha):
    b, c = x.shape[:2]
    return (x.reshape(b, c, -1) * alpha[:, None, :]).max(axis=2).reshape(b, c, 1, 1)


def _snl_np(x, w_k, b_k, w_v, b_v, gate=None, residual=True, bias=True, w_v_t=True
            ) -> np.ndarray:
    b, c = x.shape[:2]
    logits = _logits(x, w_k, b_k)
    alpha = softmax(logits, axis=1) if gate is None else gate(logits)
    ctx = np.einsum("bcn,bn->bc", x.reshape(b, c, -1), alpha)
    term = (ctx @ w_v.T if w_v_t else ctx @ w_v) + (b_v if bias else 0.0)
    out = term[:, :, None, None] + (x if residual else 0.0)
    return np.broadcast_to(out, x.shape).copy()


def wrong_forward_no_residual(x, w_k, b_k, w_v, b_v):
    return _snl_np(x, w_k, b_k, w_v, b_v, residual=False)


def wrong_forward_sigmoid(x, w_k, b_k, w_v, b_v):
    return _snl_np(x, w_k, b_k, w_v, b_v, gate=sigmoid)


def wrong_forward_no_bias(x, w_k, b_k, w_v, b_v):
    return _snl_np(x, w_k, b_k, w_v, b_v, bias=False)


def wrong_forward_w_v_untransposed(x, w_k, b_k, w_v, b_v):
    return _snl_np(x, w_k, b_k, w_v, b_v, w_v_t=False)


def wrong_convert_no_scale(nl):
    out = ref_nonlocal_to_snl(nl)
    s = math.sqrt(nl["phi.weight"].shape[0])
    out["context_modeling.conv_mask.weight"] = out["context_modeling.conv_mask.weight"] * s
    out["context_modeling.conv_mask.bias"] = out["context_modeling.conv_mask.bias"] * s
    return out


def wrong_convert_zero_bk(nl):
    out = ref_nonlocal_to_snl(nl)
    out["context_modeling.conv_mask.bias"] = np.zeros(1)
    return out


def wrong_convert_no_g_bias(nl):
    out = ref_nonlocal_to_snl(nl)
    out["transform.add.bias"] = nl["conv_out.bias"].copy()
    return out


# --------------------------------------------------------------------------- cases
def _params(rng: np.random.Generator, c: int):
    w_k = rng.standard_normal(c)
    b_k = float(rng.standard_normal())
    w_v = rng.standard_normal((c, c)) / math.sqrt(c)
    b_v = rng.standard_normal(c)
    return w_k, b_k, w_v, b_v


# one channel, and logits ~1e3 (x scaled), where an exp without max-subtraction overflows
EXTRA = [((2, 1, 4, 6), 1.0), ((2, 4, 4, 5), 400.0)]


def _label(shape, s):
    return f"x{shape}" + (", logits ~1e3" if s > 1 else "")


def cases_attention(rng):
    out = []
    for shape, s in [(sh, 1.0) for sh in SHAPES] + EXTRA:
        x = rng.standard_normal(shape) * s
        w_k, b_k, _, _ = _params(rng, shape[1])
        out.append(Case(args=(x, w_k, b_k), label=_label(shape, s)))
    return out


def cases_pool(rng):
    out = []
    for shape in SHAPES + [(2, 1, 4, 6)]:
        b, c, h, w = shape
        x = rng.standard_normal(shape)
        alpha = softmax(2.0 * rng.standard_normal((b, h * w)), axis=1)
        out.append(Case(args=(x, alpha), label=f"x{shape}"))
    return out


def cases_forward(rng):
    out = []
    for shape, s in [(sh, 1.0) for sh in SHAPES] + EXTRA[1:]:
        x = rng.standard_normal(shape) * s
        out.append(Case(args=(x, *_params(rng, shape[1])), label=_label(shape, s)))
    return out


def nonlocal_theta_zero(rng: np.random.Generator, c: int) -> Dict[str, np.ndarray]:
    """A random embedded-Gaussian ``NonLocal2d(c)`` state_dict (float64) with theta.weight = 0."""
    torch.manual_seed(int(rng.integers(2**31)))
    nl = NonLocal2d(c, reduction=2).double()
    for p in nl.parameters():
        torch.nn.init.normal_(p, std=0.5)
    torch.nn.init.zeros_(nl.theta.weight)
    return {k: v.numpy().copy() for k, v in nl.state_dict().items()}


def cases_convert(rng):
    return [Case(args=(nonlocal_theta_zero(rng, c),), label=f"C={c}") for c in (4, 6, 8)]


# --------------------------------------------------------------------------- properties
def _shape_bn(out, x, *args, **kw) -> bool:
    return np.shape(out) == (x.shape[0], x.shape[2] * x.shape[3])


def _non_negative(out, *args, **kw) -> bool:
    return bool(np.all(np.asarray(out) >= 0))


def _shape_like_x(out, x, *args, **kw) -> bool:
    return np.shape(out) == x.shape


def _same_map_for_every_query(out, x, *args, **kw) -> bool:
    # z - x is the same vector at every position: one context for all queries
    d = (np.asarray(out) - x).reshape(x.shape[0], x.shape[1], -1)
    return bool(np.allclose(d, d[:, :, :1]))


def _reproduces_nl(out, nl, *args, **kw) -> bool:
    """Loaded into SimplifiedNonLocal2d, the parameters reproduce the NL block's output."""
    try:
        c = nl["g.weight"].shape[1]
        ref = NonLocal2d(c, reduction=2).double()
        ref.load_state_dict({k: tensor64(v) for k, v in nl.items()})
        snl = SimplifiedNonLocal2d(c).double()
        snl.load_state_dict({k: tensor64(v) for k, v in out.items()})
        x = tensor64(np.random.default_rng(0).standard_normal((2, c, 3, 5)))
        with torch.no_grad():
            return bool(torch.allclose(snl(x), ref(x), rtol=1e-6, atol=1e-8))
    except Exception:
        return False


# --------------------------------------------------------------------------- registry
register(Exercise(
    id="snl.attention",
    notebook=NOTEBOOK,
    title="The one attention map: softmax over positions of W_k x_j",
    kind="function",
    reference=ref_attention,
    cases=cases_attention,
    rtol=1e-7,
    mistakes={
        "softmax over the wrong axis (over the batch, not the N positions)": wrong_attention_axis,
        "sigmoid where softmax belongs (weights do not sum to 1)": wrong_attention_sigmoid,
        "H and W transposed in the reshape (positions flattened column-major)":
            wrong_attention_transposed,
    },
    properties=[
        Property("shape (B, H*W)", _shape_bn),
        Property("every row sums to 1", rows_sum_to_one),
        Property("weights are >= 0", _non_negative),
    ],
    hints=(
        "One score per position j (a 1x1 conv C -> 1 of x_j, plus its bias), turned into weights "
        "that are positive and sum to 1 over all N = H*W positions: a softmax over positions, not "
        "over the batch.",
        "x (B, C, H, W) -> flatten to (B, C, N) in row-major order (position j is h*W + w); the "
        "logits contract w_k with x over C, giving (B, N); the softmax runs along axis 1, giving "
        "(B, N).",
        "flatten the spatial axes of x\none logit per image and position: the weighted sum of the "
        "channels with w_k, plus b_k\nsubtract each image's largest logit, exponentiate\ndivide "
        "by each image's total",
    ),
))

register(Exercise(
    id="snl.pool",
    notebook=NOTEBOOK,
    title="Attention pooling: the context vector sum_j alpha_j x_j",
    kind="function",
    reference=ref_attention_pool,
    cases=cases_pool,
    rtol=1e-7,
    mistakes={
        "plain average: the attention weights are ignored": wrong_pool_mean,
        "H and W transposed in the reshape (x and alpha index positions differently)":
            wrong_pool_transposed,
        "max over positions instead of the weighted sum": wrong_pool_max,
    },
    properties=[Property("shape (B, C, 1, 1)", context_shape)],
    hints=(
        "The context is ONE vector per image: the average of the features x_j weighted by "
        "alpha_j.",
        "x (B, C, H, W) -> (B, C, N); alpha (B, N); contract over N -> (B, C); give it two "
        "trailing size-1 axes -> (B, C, 1, 1).",
        "flatten the spatial axes of x\nfor every image and channel: the alpha-weighted sum over "
        "the positions\nreturn it with two trailing size-1 axes",
    ),
))

register(Exercise(
    id="snl.forward",
    notebook=NOTEBOOK,
    title="The Simplified NL block in NumPy",
    kind="function",
    reference=ref_forward,
    cases=cases_forward,
    rtol=1e-7,
    mistakes={
        "a missing residual (the block must return x + ...)": wrong_forward_no_residual,
        "sigmoid where softmax belongs (weights do not sum to 1)": wrong_forward_sigmoid,
        "W_v's bias b_v forgotten": wrong_forward_no_bias,
        "W_v not transposed (context @ W_v; the conv computes W_v @ context, i.e. "
        "context @ W_v.T)": wrong_forward_w_v_untransposed,
    },
    properties=[
        Property("output has the input's shape (B, C, H, W)", _shape_like_x),
        Property("z - x is the same vector at every position", _same_map_for_every_query),
    ],
    hints=(
        "Three steps: context modelling (attention pooling, one vector per image), transform "
        "(W_v, a C x C matrix, plus b_v), fusion (add the result to EVERY position of x).",
        "alpha (B, N) -> context (B, C) -> the transform gives (B, C) -> broadcast as (B, C, 1, "
        "1) and add to x (B, C, H, W).",
        "the weights come from your attention function; the context from your pooling, as a (B, "
        "C) matrix\napply W_v to every image's context vector, add b_v\nadd that vector to every "
        "position of x",
    ),
))

register(Exercise(
    id="snl.from_nonlocal",
    notebook=NOTEBOOK,
    title="When NL is SNL: convert an NL block whose theta.weight is zero",
    kind="function",
    reference=ref_nonlocal_to_snl,
    cases=cases_convert,
    rtol=1e-7,
    mistakes={
        "a missing 1/sqrt(C_i) scale on the logits": wrong_convert_no_scale,
        "g's bias forgotten (b_v must be W_z b_g + b_z)": wrong_convert_no_g_bias,
        "conv_mask.bias left at 0: the softmax forgives it, but the logits must equal "
        "b_theta . (W_phi x_j + b_phi) / sqrt(C_i), so b_k = b_theta . b_phi / sqrt(C_i)":
            wrong_convert_zero_bk,
    },
    properties=[
        Property("loaded into SimplifiedNonLocal2d it reproduces the NL output", _reproduces_nl),
    ],
    hints=(
        "With theta's weight at zero, theta at every query is its bias b_theta, the same for all "
        "i, so each logit depends only on the key j: it is a 1x1 conv of x_j. The weights sum to "
        "1, so the transform of the pooled g vectors folds into one linear map plus a bias.",
        "Squeeze the 1x1 convs to matrices: W_phi, W_g (C_i, C), W_z (C, C_i). Write the NL logit "
        "for key j with theta fixed at b_theta and read off a weight vector (C,) and a scalar "
        "bias; write W_z applied to the weighted sum of the g vectors and read off a (C, C) "
        "matrix and a (C,) bias. Store them with the shapes (1, C, 1, 1), (1,), (C, C, 1, 1), "
        "(C,).",
        "squeeze the four 1x1 conv weights to matrices and take C_i and the scale s from "
        "them\nconv_mask: the key embedding seen through b_theta (transposed phi weight applied "
        "to b_theta), divided by s; its bias: b_theta against phi's bias, divided by "
        "s\ntransform: the composition of the g embedding and W_z; its bias: W_z applied to g's "
        "bias, plus W_z's own bias\nreshape each to the key's shape and return the dict",
    ),
))

register(Exercise(
    id="snl.params",
    notebook=NOTEBOOK,
    title="Parameters of one SNL block at C = 1024",
    kind="value",
    reference=ref_snl_params,
    cases=None,
    rtol=1e-12,
    mistakes={
        "forgetting the bias in the parameter count (W_k's and W_v's)": lambda: 1024**2 + 1024,
        "forgetting W_k's single bias": lambda: 1024**2 + 2 * 1024,
        "counted a full NL block (theta, phi, g at C/2 and W_z) instead": lambda: sum(
            p.numel() for p in NonLocal2d(1024, reduction=2).parameters()
        ),
    },
    properties=[Property("an int", is_int)],
    hints=(
        "A 1x1 conv from a channels to b channels has one weight per (input, output) pair and one "
        "bias per output. Count every weight and every bias.",
        "Two convs, both with a bias: W_k maps C channels to 1 and W_v maps C to C; here C = "
        "1024. The answer is one int.",
        "count W_k: its weights (one per input channel) and its single bias\ncount W_v: one "
        "weight per pair of channels, one bias per output channel\nadd the two counts",
    ),
))


# ----------------------------------------------------------------------------- derivations
def snl_param_count(channels: int) -> int:
    """Parameters of one SNL block at C channels: W_k (C -> 1) and W_v (C -> C), with biases."""
    return (channels + 1) + (channels * channels + channels)


def cases_param_count(rng):
    cs = [1, 3, 64, 256, 1024, int(rng.integers(5, 500))]
    cases = [Case(args=(c,), label=f"C = {c}") for c in cs]
    # the derivation itself: a block with C^2 = 1e18 weights cannot be built and counted
    cases.append(Case(args=(10**9,), label="C = 1e9 (too large to build a module and count "
                      "it: only the formula gets there)",
                      closed_form="at C = 1e9 an SNL block (1e18 weights) cannot be built, "
                      "and its parameters cannot be counted one by one"))
    return cases


register(Exercise(
    id="snl.param_count",
    notebook=NOTEBOOK,
    title="Derive the parameter count of an SNL block as a function of C",
    reference=snl_param_count,
    cases=cases_param_count,
    rtol=0,
    mistakes={
        "biases left out (W_k's and W_v's)": lambda channels: channels + channels * channels,
        "W_k's bias left out (one parameter short)": (
            lambda channels: channels + channels * channels + channels),
        "W_v's bias left out (C parameters short)": (
            lambda channels: channels + 1 + channels * channels),
        "W_k counted as a C -> C conv (like W_v)": (
            lambda channels: 2 * (channels * channels + channels)
        ),
        "W_v counted as a bottleneck C -> C/2 -> C (like NL's W_g and W_z)": (
            lambda channels: (channels + 1) + 2 * (channels * (channels // 2)) + channels // 2
            + channels
        ),
    },
    properties=[Property("an int", lambda out, *a, **k: is_int(out))],
    hints=(
        "Write the count as a formula in C: a 1x1 conv from a channels to b channels has a "
        "weight for every (input, output) pair and a bias for every output.",
        "Input: C (an int); output: one int. Steps: list the layers of the block that hold "
        "parameters (which convs, from how many channels to how many; a softmax or a sum has "
        "none), count each one's weights and biases, and add the counts.",
        "W_k: weights for C inputs and one output, plus one bias\n"
        "W_v: weights for every pair of channels, plus one bias per output\n"
        "return the sum as an int",
    ),
))
