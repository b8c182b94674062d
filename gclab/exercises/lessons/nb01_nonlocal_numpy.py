r"""Exercises of lesson 01, the Non-local block forward in NumPy (topic ``nl.``).

The learner builds, step by step, the Non-local block of Wang et al. (2018):

.. math::

    y_i = \frac{1}{\mathcal{C}(x)} \sum_{j} f(x_i, x_j)\, g(x_j), \qquad
    z_i = W_z\, y_i + x_i

Conventions: maps are (B, C, H, W) float64, lists of positions (B, N, C) with position
``i = h * W + w``; embedded queries ``theta_x`` are (B, N, Ci), keys ``phi_x`` (B, Ci, N'), and
the pairwise functions return the normalised weights (B, N, N'). ``params`` holds the
``gclab.nn.NonLocal2d`` state_dict as float64 arrays (same keys).

References: the canonical package, :mod:`gclab.numpy.ops` and :mod:`gclab.numpy.non_local`
(itself tested against ``gclab.nn`` and mmcv); the two reshapes run through torch. Mistake
variants are written here, each one an exact wrong formula.
Every case uses H != W and N' != N where it matters, so a transposed reshape or a normalisation
by the wrong count cannot pass.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Tuple

import numpy as np

from gclab.exercises.lessons.common import positions, shape_is, tensor64, to_map, to_map_hw_swapped
from gclab.exercises.registry import Case, Exercise, Property, register
from gclab.numpy import non_local, ops

NOTEBOOK = "01_nonlocal_numpy"
MODES = ("gaussian", "embedded_gaussian", "dot_product", "concatenation")
Params = Dict[str, np.ndarray]


# ----------------------------------------------------------------------------- helpers
def _to_map_reshaped(t: np.ndarray, h: int, w: int) -> np.ndarray:
    """Mistake: reshape (B, N, C) straight to (B, C, H, W), no transpose."""
    return t.reshape(t.shape[0], t.shape[2], h, w)


def _sigmoid_for_softmax(z: np.ndarray) -> np.ndarray:
    return ops.sigmoid(z)


def _naive_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(z)
        return e / e.sum(axis=axis, keepdims=True)


def random_params(rng: np.random.Generator, c: int, mode: str, reduction: int = 2) -> Params:
    """Random NL parameters (the ``NonLocal2d`` state_dict keys), std 0.5, conv_out non-zero."""
    ci = max(c // reduction, 1)
    names = ["g"] if mode == "gaussian" else ["g", "theta", "phi"]
    p: Params = {}
    for n in names:
        p[f"{n}.weight"] = rng.standard_normal((ci, c, 1, 1)) * 0.5
        p[f"{n}.bias"] = rng.standard_normal(ci) * 0.5
    if mode == "concatenation":
        p["concat_project.weight"] = rng.standard_normal((1, 2 * ci, 1, 1)) * 0.5
    p["conv_out.weight"] = rng.standard_normal((c, ci, 1, 1)) * 0.5
    p["conv_out.bias"] = rng.standard_normal(c) * 0.5
    return p


# ----------------------------------------------------------------------------- references
def ref_to_positions(x: np.ndarray) -> np.ndarray:
    """(B, C, H, W) -> (B, N, C): torch's ``flatten(2).transpose(1, 2)``."""
    return tensor64(x).flatten(2).transpose(1, 2).numpy()


def ref_to_map(t: np.ndarray, H: int, W: int) -> np.ndarray:  # noqa: N803 - the lesson's names
    """(B, N, C) -> (B, C, H, W): torch's ``transpose(1, 2).reshape``."""
    tt = tensor64(t)
    return tt.transpose(1, 2).reshape(tt.shape[0], tt.shape[2], H, W).numpy()


def ref_conv1x1(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """out = W x + b at every position (``gclab.numpy.ops.conv1x1``)."""
    return ops.conv1x1(x, weight, bias)


def ref_softmax(z: np.ndarray) -> np.ndarray:
    """Stable softmax over the last axis (``gclab.numpy.ops.softmax``)."""
    return ops.softmax(z, axis=-1)


def ref_embedded_gaussian(theta_x, phi_x, use_scale: bool = True) -> np.ndarray:
    """softmax_j(theta_i . phi_j / sqrt(Ci)) (``gclab.numpy.non_local.embedded_gaussian``)."""
    return non_local.embedded_gaussian(theta_x, phi_x, use_scale)


def ref_dot_product(theta_x, phi_x) -> np.ndarray:
    """theta_i . phi_j / N' (``gclab.numpy.non_local.dot_product``)."""
    return non_local.dot_product(theta_x, phi_x)


def ref_concatenation(theta_x, phi_x, w) -> np.ndarray:
    """ReLU(w . [theta_i; phi_j]) / N' (``gclab.numpy.non_local.concatenation``)."""
    return non_local.concatenation(theta_x, phi_x, w)


def ref_max_pool2x2(x: np.ndarray) -> np.ndarray:
    """2x2 max-pool, stride 2, floor (``gclab.numpy.ops.max_pool``)."""
    return ops.max_pool(x, (2, 2))


def ref_context_modeling(
    x, params, mode="embedded_gaussian", use_scale=True, sub_sample=False
) -> Tuple[np.ndarray, np.ndarray]:
    """(y (B, Ci, H, W), attention (B, N, N')) (``gclab.numpy.non_local.context_modeling``)."""
    return non_local.context_modeling(x, params, mode, use_scale, sub_sample)


def ref_forward(x, params, mode="embedded_gaussian", use_scale=True, sub_sample=False):
    """z = x + W_z y, (B, C, H, W) (``gclab.numpy.non_local.forward``)."""
    return non_local.forward(x, params, mode, use_scale, sub_sample)[0]


# ----------------------------------------------------------------------------- mistakes
def _nl(
    x,
    params,
    mode="embedded_gaussian",
    use_scale=True,
    sub_sample=False,
    *,
    softmax_axis: int = -1,
    scale_power: float = -0.5,
    to_map: Callable = to_map,
    residual: bool = True,
    normalise: Callable = None,
    scale_by_c: bool = False,
    keys_as_queries: bool = False,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A NumPy NL with knobs for the mistakes: returns (z, y, attention)."""
    b, c, h, w = x.shape
    pool = (lambda t: ops.max_pool(t, (2, 2))) if sub_sample else (lambda t: t)
    g = pool(ops.conv1x1(x, params["g.weight"], params["g.bias"]))
    if mode == "gaussian":
        theta_x, phi = positions(x), pool(x)
    else:
        theta_x = positions(ops.conv1x1(x, params["theta.weight"], params["theta.bias"]))
        phi = pool(ops.conv1x1(x, params["phi.weight"], params["phi.bias"]))
    phi_x = phi.reshape(b, phi.shape[1], -1)
    g_x = positions(g)
    logits = theta_x @ phi_x
    n_keys = theta_x.shape[1] if keys_as_queries else phi_x.shape[-1]
    if mode in ("gaussian", "embedded_gaussian"):
        if mode == "embedded_gaussian" and use_scale:
            logits = logits * (c if scale_by_c else theta_x.shape[-1]) ** scale_power
        attention = (normalise or (lambda s: ops.softmax(s, axis=softmax_axis)))(logits)
    elif mode == "dot_product":
        attention = logits / n_keys
    else:
        wf = params["concat_project.weight"].reshape(-1)
        ci = theta_x.shape[-1]
        s = (theta_x @ wf[:ci])[:, :, None] + np.einsum("bcn,c->bn", phi_x, wf[ci:])[:, None, :]
        attention = np.maximum(s, 0) / n_keys
    y = to_map(attention @ g_x, h, w)
    wz = ops.conv1x1(y, params["conv_out.weight"], params["conv_out.bias"])
    return (x + wz if residual else wz), y, attention


def _ctx(**knobs):
    def variant(x, params, mode="embedded_gaussian", use_scale=True, sub_sample=False):
        _, y, attention = _nl(x, params, mode, use_scale, sub_sample, **knobs)
        return y, attention

    return variant


def _fwd(**knobs):
    def variant(x, params, mode="embedded_gaussian", use_scale=True, sub_sample=False):
        return _nl(x, params, mode, use_scale, sub_sample, **knobs)[0]

    return variant


# ----------------------------------------------------------------------------- cases
def _map_cases(rng: np.random.Generator) -> List[Case]:
    shapes = [(2, 3, 4, 5), (1, 5, 3, 7), (3, 2, 6, 4), (2, 1, 5, 6)]
    return [Case(args=(rng.standard_normal(s),), label=str(s)) for s in shapes]


def _to_map_cases(rng: np.random.Generator) -> List[Case]:
    out = []
    for b, c, h, w in [(2, 3, 4, 5), (1, 5, 3, 7), (3, 2, 6, 4)]:
        out.append(Case(args=(rng.standard_normal((b, h * w, c)), h, w), label=f"H={h}, W={w}"))
    return out


def _conv_cases(rng: np.random.Generator) -> List[Case]:
    out = []
    for (b, c, h, w), co in [((2, 3, 4, 5), 4), ((1, 6, 3, 7), 2), ((3, 4, 5, 3), 4),
                             ((2, 1, 4, 6), 3)]:
        x = rng.standard_normal((b, c, h, w))
        wt = rng.standard_normal((co, c, 1, 1))
        out.append(Case(args=(x, wt, rng.standard_normal(co)), label=f"x {(b, c, h, w)}, Co={co}"))
    return out


def _softmax_cases(rng: np.random.Generator) -> List[Case]:
    # all 3-D (B, N, N') like an attention matrix, so softmax(z, axis=1) is diagnosed as the
    # wrong axis on every case
    return [
        Case(args=(rng.standard_normal((2, 5, 7)),), label="(2,5,7)"),
        Case(args=(rng.standard_normal((3, 4, 6)) * 3,), label="(3,4,6)"),
        Case(args=(rng.standard_normal((2, 6, 3)) * 1e3,), label="(2,6,3), logits ~1e3"),
        Case(args=(rng.standard_normal((1, 4, 4)) * 1e4,), label="(1,4,4), logits ~1e4"),
    ]


def _pair_cases(rng: np.random.Generator, big: bool = True) -> List[Case]:
    """theta_x (B, N, Ci), phi_x (B, Ci, N') with N' != N (keys sub-sampled) in most cases."""
    out = []
    for b, n, ci, nk in [(2, 6, 4, 5), (1, 12, 3, 3), (3, 4, 8, 7), (2, 5, 2, 5)]:
        th, ph = rng.standard_normal((b, n, ci)), rng.standard_normal((b, ci, nk))
        out.append(Case(args=(th, ph), label=f"N={n}, N'={nk}, Ci={ci}",
                        meta={"C_i": ci, "N": n, "N'": nk}))
    if big:
        th, ph = rng.standard_normal((2, 5, 4)) * 30, rng.standard_normal((2, 4, 6)) * 30
        out.append(Case(args=(th, ph), label="N=5, N'=6, logits ~1e3",
                        meta={"C_i": 4, "N": 5, "N'": 6}))
    return out


def _embedded_cases(rng: np.random.Generator) -> List[Case]:
    cases = _pair_cases(rng)
    th, ph = rng.standard_normal((2, 6, 4)), rng.standard_normal((2, 4, 3))
    cases.append(Case(args=(th, ph), kwargs={"use_scale": False}, label="use_scale=False",
                      meta={"C_i": 4, "N": 6, "N'": 3}))
    return cases


def _concat_cases(rng: np.random.Generator) -> List[Case]:
    cases = _pair_cases(rng, big=False)
    out = []
    for cse in cases:
        ci = cse.args[0].shape[-1]
        out.append(Case(args=cse.args + (rng.standard_normal(2 * ci),), label=cse.label,
                        meta=cse.meta))
    return out


def _pool_cases(rng: np.random.Generator) -> List[Case]:
    shapes = [(2, 3, 4, 6), (1, 2, 5, 7), (2, 4, 7, 4), (2, 1, 6, 8)]
    return [Case(args=(rng.standard_normal(s),), label=f"{s}") for s in shapes]


def _block_cases(rng: np.random.Generator) -> List[Case]:
    out = []
    specs = [
        ((2, 4, 3, 5), "embedded_gaussian", True, False),
        ((1, 6, 4, 6), "embedded_gaussian", True, True),
        ((2, 4, 5, 3), "gaussian", True, False),
        ((1, 4, 4, 5), "dot_product", True, True),
        ((2, 6, 3, 4), "concatenation", True, False),
        ((1, 4, 6, 4), "embedded_gaussian", False, False),
        # large logits (~1e3): an exp without max-subtraction overflows here
        ((2, 4, 4, 6), "embedded_gaussian", True, True, 30.0),
        ((1, 4, 3, 4), "gaussian", True, False, 20.0),
    ]
    for shape, mode, use_scale, sub, *scale in specs:
        x = rng.standard_normal(shape) * (scale[0] if scale else 1.0)
        p = random_params(rng, shape[1], mode)
        kw = {"mode": mode, "use_scale": use_scale, "sub_sample": sub}
        label = f"{shape} {mode} scale={use_scale} sub={sub}" + (", logits ~1e3" if scale else "")
        b, c, h, w = shape
        n = h * w
        meta = {"C_i": c // 2, "N": n, "N'": (h // 2) * (w // 2) if sub else n}
        out.append(Case(args=(x, p), kwargs=kw, label=label, meta=meta))
    return out


# ----------------------------------------------------------------------------- properties
def _rows_sum_to_one(out, *args, **kwargs):
    s = np.asarray(out).sum(-1)
    return bool(np.allclose(s, 1.0)), f"row sums range over [{s.min():.3g}, {s.max():.3g}]"


def _finite(out, *args, **kwargs):
    return bool(np.all(np.isfinite(out))), "contains NaN or inf"


def _attention_rows(out, x, params, mode="embedded_gaussian", use_scale=True, sub_sample=False):
    attention = out[1]
    if mode not in ("gaussian", "embedded_gaussian"):
        return True
    return _rows_sum_to_one(attention)


def _ctx_shapes(out, x, params, mode="embedded_gaussian", use_scale=True, sub_sample=False):
    b, c, h, w = x.shape
    ci = params["g.weight"].shape[0]
    nk = (h // 2) * (w // 2) if sub_sample else h * w
    want = ((b, ci, h, w), (b, h * w, nk))
    got = tuple(getattr(o, "shape", None) for o in out)
    return got == want, f"shapes {got}, expected (y, attention) {want}"


# ----------------------------------------------------------------------------- exercises
register(Exercise(
    id="nl.to_positions",
    notebook=NOTEBOOK,
    title="Flatten a (B, C, H, W) map into a (B, N, C) list of positions",
    reference=ref_to_positions,
    cases=_map_cases,
    rtol=1e-12,
    mistakes={
        "reshape where a transpose belongs: x.reshape(B, N, C) mixes channels and positions":
            lambda x: x.reshape(x.shape[0], -1, x.shape[1]),
        "H and W transposed in a reshape (positions read column by column)":
            lambda x: positions(x.transpose(0, 1, 3, 2)),
    },
    properties=[Property(
        "shape (B, H*W, C)",
        shape_is(lambda x: (x.shape[0], x.shape[2] * x.shape[3], x.shape[1])),
    )],
    hints=(
        "Position i = h*W + w is what a row-major flattening of the two spatial axes gives. Merge "
        "H and W first, keeping the channel axis where it is; only then move channels last.",
        "(B, C, H, W) -> merge the last two axes -> (B, C, N) -> swap the last two axes -> (B, N, "
        "C). A direct reshape to (B, N, C) has the right shape but the wrong numbers.",
        "read B and C from the shape\nflatten the spatial axes into one of length N, keeping B "
        "and C in place\nswap the channel and position axes",
    ),
))

register(Exercise(
    id="nl.to_map",
    notebook=NOTEBOOK,
    title="Put a (B, N, C) list of positions back into a (B, C, H, W) map",
    reference=ref_to_map,
    cases=_to_map_cases,
    rtol=1e-12,
    mistakes={
        "reshape where a transpose belongs: t.reshape(B, C, H, W) mixes channels and positions":
            lambda t, H, W: t.reshape(t.shape[0], t.shape[2], H, W),
        "H and W transposed in a reshape (reshaped to (W, H), then transposed)":
            to_map_hw_swapped,
    },
    properties=[Property(
        "shape (B, C, H, W)",
        shape_is(lambda t, H, W: (t.shape[0], t.shape[2], H, W)),
    )],
    hints=(
        "This undoes to_positions: undo its steps in reverse order. Position i = h*W + w, so the "
        "N axis splits as (H, W), H first.",
        "(B, N, C) -> swap the last two axes -> (B, C, N) -> split N -> (B, C, H, W).",
        "read B, N and C from the shape\nswap the position and channel axes\nsplit the position "
        "axis into H rows of W",
    ),
))

register(Exercise(
    id="nl.conv1x1",
    notebook=NOTEBOOK,
    title="A 1x1 convolution as one matrix product",
    reference=ref_conv1x1,
    cases=_conv_cases,
    rtol=1e-10,
    mistakes={
        "forgot the bias": lambda x, weight, bias: ops.conv1x1(x, weight),
        "H and W transposed in a reshape (the output map is transposed)":
            lambda x, weight, bias: ops.conv1x1(x.transpose(0, 1, 3, 2), weight, bias).reshape(
                x.shape[0], weight.shape[0], x.shape[2], x.shape[3]
            ),
    },
    properties=[Property(
        "shape (B, Co, H, W)",
        shape_is(lambda x, weight, bias: (x.shape[0], weight.shape[0]) + x.shape[2:]),
    )],
    hints=(
        "At every position (h, w) the same matrix W (Co x C) multiplies the C-vector of x at that "
        "position, then the bias is added. No neighbourhood is involved.",
        "weight (Co, C, 1, 1) -> a (Co, C) matrix; x (B, C, H, W). The sum runs over C; B, H and "
        "W are carried along. bias (Co,) must broadcast along the channel axis, as (1, Co, 1, 1).",
        "drop the two size-1 axes of the weight to get a (Co, C) matrix\ncontract it with x over "
        "the channel axis (an einsum names every axis), giving (B, Co, H, W)\nadd the bias, "
        "shaped so it lines up with the channel axis",
    ),
))

register(Exercise(
    id="nl.softmax",
    notebook=NOTEBOOK,
    title="Numerically stable softmax over the last axis",
    reference=ref_softmax,
    cases=_softmax_cases,
    rtol=1e-9,
    mistakes={
        "softmax over the wrong axis (over the queries, axis -2, not the keys)":
            lambda z: ops.softmax(z, axis=-2),
        "softmax over the wrong axis (over the batch, axis 0, not the keys)":
            lambda z: ops.softmax(z, axis=0),
        "no max subtraction (exp overflows for large logits)": _naive_softmax,
        "sigmoid where softmax belongs (rows do not sum to 1)": _sigmoid_for_softmax,
    },
    properties=[
        Property("rows sum to 1", _rows_sum_to_one),
        Property("finite on every case (logits up to ~1e4)", _finite),
    ],
    hints=(
        "softmax(z)_j is exp(z_j) divided by the row's sum of exponentials. Subtracting the row's "
        "maximum first does not change the result and keeps exp from overflowing.",
        "z (..., N'): the max and the sum both run over the last axis; keep that axis (with size "
        "1) so that (..., 1) broadcasts against (..., N').",
        "find each row's maximum, keeping its axis\nexponentiate the shifted logits (logits minus "
        "that maximum)\ndivide each row by its own sum",
    ),
))

register(Exercise(
    id="nl.embedded_gaussian",
    notebook=NOTEBOOK,
    title="Embedded gaussian pairwise function with the 1/sqrt(Ci) scale",
    reference=ref_embedded_gaussian,
    cases=_embedded_cases,
    rtol=1e-9,
    mistakes={
        "missing 1/sqrt(d) scale (logits not divided by sqrt(Ci))":
            lambda th, ph, use_scale=True: ops.softmax(th @ ph),
        "multiplied by sqrt(d) instead of dividing (the old mmdetection bug)":
            lambda th, ph, use_scale=True: ops.softmax(
                th @ ph * (math.sqrt(th.shape[-1]) if use_scale else 1.0)
            ),
        "softmax over the wrong axis (over the queries, not the keys)":
            lambda th, ph, use_scale=True: ops.softmax(
                th @ ph / (math.sqrt(th.shape[-1]) if use_scale else 1.0), axis=-2
            ),
        "sigmoid where softmax belongs (rows do not sum to 1)":
            lambda th, ph, use_scale=True: ops.sigmoid(
                th @ ph / (math.sqrt(th.shape[-1]) if use_scale else 1.0)
            ),
    },
    properties=[
        Property("shape (B, N, N')", shape_is(
            lambda th, ph, use_scale=True: (th.shape[0], th.shape[1], ph.shape[2]))),
        Property("rows sum to 1", _rows_sum_to_one),
        Property("finite on every case (logits up to ~1e3)", _finite),
    ],
    hints=(
        "Similarity of query i and key j is the dot product of theta_i and phi_j; divide it by "
        "sqrt(Ci) (when use_scale) so its size does not grow with the width; then a softmax over "
        "the keys j turns each query's row into weights that sum to 1.",
        "theta_x (B, N, Ci) times phi_x (B, Ci, N') as a batched matrix product gives the logits "
        "(B, N, N'). Ci is the last axis of theta_x. The softmax runs over the last axis (the "
        "keys).",
        "the logits are the batched matrix product of theta_x and phi_x\nif use_scale: shrink "
        "them by the square root of Ci\nreturn your stable softmax of them over the last axis",
    ),
))

register(Exercise(
    id="nl.dot_product",
    notebook=NOTEBOOK,
    title="Dot-product pairwise function, normalised by the number of keys N'",
    reference=ref_dot_product,
    cases=_pair_cases,
    rtol=1e-9,
    mistakes={
        "divided by N (the queries) instead of N' (the keys)":
            lambda th, ph: th @ ph / th.shape[1],
        "no normalisation by N' (C(x) = N' forgotten)": lambda th, ph: th @ ph,
        "divided by C_i (the embedding size) instead of N' (the keys)":
            lambda th, ph: th @ ph / th.shape[2],
        "a softmax added (the dot-product form has none)":
            lambda th, ph: ops.softmax(th @ ph / ph.shape[-1]),
    },
    properties=[Property("shape (B, N, N')", shape_is(
        lambda th, ph: (th.shape[0], th.shape[1], ph.shape[2])))],
    hints=(
        "f(x_i, x_j) is the dot product theta_i . phi_j, and C(x) is N', the number of keys. No "
        "softmax: the weights may be negative and rows need not sum to 1.",
        "theta_x (B, N, Ci) times phi_x (B, Ci, N') as a batched matrix product gives (B, N, N'); "
        "N' is the length of phi_x's last axis, which differs from N when the keys are "
        "sub-sampled.",
        "compute every query-key dot product in one batched matrix product\ndivide by the number "
        "of keys (not of queries)",
    ),
))

register(Exercise(
    id="nl.concatenation",
    notebook=NOTEBOOK,
    title="Concatenation pairwise function without building the (N, N', 2Ci) tensor",
    reference=ref_concatenation,
    cases=_concat_cases,
    rtol=1e-9,
    mistakes={
        "ReLU forgotten": lambda th, ph, w: (
            (th @ w[: th.shape[-1]])[:, :, None]
            + np.einsum("bcn,c->bn", ph, w[th.shape[-1]:])[:, None, :]
        ) / ph.shape[-1],
        "halves of w swapped (w_phi applied to theta)": lambda th, ph, w: np.maximum(
            (th @ w[th.shape[-1]:])[:, :, None]
            + np.einsum("bcn,c->bn", ph, w[: th.shape[-1]])[:, None, :], 0
        ) / ph.shape[-1],
        "no normalisation by N' (C(x) = N' forgotten)": lambda th, ph, w: np.maximum(
            (th @ w[: th.shape[-1]])[:, :, None]
            + np.einsum("bcn,c->bn", ph, w[th.shape[-1]:])[:, None, :], 0
        ),
    },
    properties=[
        Property("shape (B, N, N')", shape_is(
            lambda th, ph, w: (th.shape[0], th.shape[1], ph.shape[2]))),
        Property("weights >= 0 (after the ReLU)", lambda out, *a: bool(np.all(out >= 0))),
    ],
    hints=(
        "The projection of [theta_i; phi_j] on w splits into two dot products: one score per "
        "query (with the first half of w) plus one score per key (with the second half). Add them "
        "for every pair by broadcasting, apply ReLU, divide by N'.",
        "w (2Ci,): its first Ci entries go with theta_x (B, N, Ci), giving (B, N); the last Ci "
        "with phi_x (B, Ci, N'), giving (B, N'). Broadcast (B, N, 1) plus (B, 1, N') to (B, N, "
        "N').",
        "score every query with the first half of w (a product over Ci)\nscore every key with the "
        "second half of w (a sum over Ci)\nadd the query scores as a column and the key scores as "
        "a row, for every pair\nkeep the positive part and divide by the number of keys",
    ),
))

register(Exercise(
    id="nl.max_pool2x2",
    notebook=NOTEBOOK,
    title="Sub-sampling: 2x2 max-pool with stride 2 (odd edges dropped)",
    reference=ref_max_pool2x2,
    cases=_pool_cases,
    rtol=1e-12,
    mistakes={
        "average instead of max pooling": lambda x: x[
            :, :, : x.shape[2] // 2 * 2, : x.shape[3] // 2 * 2
        ].reshape(x.shape[0], x.shape[1], x.shape[2] // 2, 2, x.shape[3] // 2, 2).mean((3, 5)),
        "strided slicing (every second pixel) instead of the window's max":
            lambda x: x[:, :, : x.shape[2] // 2 * 2 : 2, : x.shape[3] // 2 * 2 : 2],
    },
    properties=[Property(
        "shape (B, C, H//2, W//2)",
        shape_is(lambda x: x.shape[:2] + (x.shape[2] // 2, x.shape[3] // 2)),
    )],
    hints=(
        "Each output pixel is the maximum of a non-overlapping 2x2 window. With an odd size the "
        "last row or column fits no window and is dropped (floor), as in torch.",
        "x (B, C, H, W) -> (B, C, H//2, W//2). Two steps: drop an odd last row or column so "
        "that both sizes are even; then give the row and the column inside a window their own "
        "axes with one reshape (each right after the axis of the output pixel it belongs to), "
        "and reduce over those two axes.",
        "halve H and W, rounding down\ncrop away the last row and column if they are odd\nview "
        "the crop as windows of 2 by 2 and take the maximum over the two in-window axes",
    ),
))

register(Exercise(
    id="nl.context_modeling",
    notebook=NOTEBOOK,
    title="Context modelling of the NL block: y and the attention, all four modes",
    reference=ref_context_modeling,
    cases=_block_cases,
    rtol=1e-8,
    mistakes={
        "softmax over the wrong axis (over the queries, not the keys)": _ctx(softmax_axis=-2),
        "H and W transposed in a reshape (y put back as (W, H))":
            _ctx(to_map=to_map_hw_swapped),
        "reshape where a transpose belongs: (attention @ g_x).reshape(B, Ci, H, W)":
            _ctx(to_map=_to_map_reshaped),
        "missing 1/sqrt(d) scale in the embedded gaussian": _ctx(scale_power=0.0),
        "sigmoid where softmax belongs (rows do not sum to 1)": _ctx(normalise=ops.sigmoid),
        "scaled by 1/sqrt(C), the block's channels, instead of 1/sqrt(C_i), theta's":
            _ctx(scale_by_c=True),
        "divided by N (the queries) instead of N' (the sub-sampled keys)":
            _ctx(keys_as_queries=True),
    },
    properties=[
        Property("shapes y (B, Ci, H, W), attention (B, N, N')", _ctx_shapes),
        Property("attention rows sum to 1 (softmax modes)", _attention_rows),
    ],
    hints=(
        "Three moves: embed (1x1 convs theta, phi, g; pool phi and g when sub_sample), compare (a "
        "pairwise function of theta_x and phi_x gives the attention), and aggregate (the "
        "attention weighs the g vectors; put the result back on the H x W grid).",
        "theta_x (B, N, Ci) from to_positions; phi_x (B, Ci, N') from a plain reshape of the "
        "(pooled) phi map; g_x (B, N', Ci) from to_positions of the (pooled) g map; attention (B, "
        "N, N'); attention times g_x (B, N, Ci); back to a map (B, Ci, H, W). In gaussian mode "
        "theta and phi are x itself (C channels). concat_project.weight is (1, 2Ci, 1, 1): "
        "flatten it to w.",
        "embed g with its 1x1 conv and pool it if sub_sample\ntheta and phi: x itself in gaussian "
        "mode, else their own 1x1 convs; pool phi if sub_sample\nflatten: theta and g to "
        "positions, phi to (B, Ci, N')\nattention: the pairwise function named by mode\naggregate "
        "the g vectors with the attention, put them back on the grid; return y and the attention",
    ),
))

register(Exercise(
    id="nl.forward",
    notebook=NOTEBOOK,
    title="The whole NL block: context modelling -> transform -> fusion",
    reference=ref_forward,
    cases=_block_cases,
    rtol=1e-8,
    mistakes={
        "missing residual (returned W_z y, not x + W_z y)": _fwd(residual=False),
        "softmax over the wrong axis (over the queries, not the keys)": _fwd(softmax_axis=-2),
        "H and W transposed in a reshape (y put back as (W, H))":
            _fwd(to_map=to_map_hw_swapped),
        "reshape where a transpose belongs: (attention @ g_x).reshape(B, Ci, H, W)":
            _fwd(to_map=_to_map_reshaped),
        "missing 1/sqrt(d) scale in the embedded gaussian": _fwd(scale_power=0.0),
        "scaled by 1/sqrt(C), the block's channels, instead of 1/sqrt(C_i), theta's":
            _fwd(scale_by_c=True),
        "divided by N (the queries) instead of N' (the sub-sampled keys)":
            _fwd(keys_as_queries=True),
    },
    properties=[Property("shape of x (B, C, H, W)", shape_is(lambda x, *a, **k: x.shape))],
    hints=(
        "Context modelling gives y (Ci channels); the transform W_z is the 1x1 conv conv_out back "
        "to C channels; fusion adds the input (a residual connection).",
        "y (B, Ci, H, W) -> conv_out.weight (C, Ci, 1, 1), conv_out.bias (C,) -> (B, C, H, W), "
        "the shape of x.",
        "run your context modelling with the same options and keep its first output\napply the "
        "conv_out 1x1 convolution to it\nadd the input x",
    ),
))
