r"""Exercises of lesson 05, the Global Context block (topic ``gc.``).

.. math::

    z_i = x_i \odot \sigma\bigl(\delta_{mul}(c)\bigr) + \delta_{add}(c), \quad
    \delta(c) = W_{v2}\,\mathrm{ReLU}(\mathrm{LN}(W_{v1} c)), \quad
    c = \sum_j \mathrm{softmax}_j(W_k x_j)\, x_j

NumPy exercises take parameters as a ``gclab.nn`` state_dict converted to float64 arrays
(``transform.add.0.weight`` of shape (P, C, 1, 1), ...). References run ``gclab.nn`` (PyTorch,
float64) or count with PyTorch itself (``numel``, ``FlopCounterMode``).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from gclab.exercises.lessons.common import (
    conv1x1_vector,
    is_int,
    module_cases,
    module_same_shape,
    same_shape,
    sigmoid,
    softmax,
    tensor64,
)
from gclab.exercises.registry import Case, Exercise, Property, register
from gclab.nn import AttentionPooling, Bottleneck, GCBlock, GlobalContextFramework, fusion

NOTEBOOK = "05_gc_block"
EPS = 1e-5  # nn.LayerNorm's default


def _load(module: nn.Module, params: Dict[str, np.ndarray]) -> nn.Module:
    module = module.double()
    module.load_state_dict({k: tensor64(v) for k, v in params.items()}, strict=True)
    return module.eval()


# --------------------------------------------------------------------------- references
def ref_layer_norm(t: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """LayerNorm over (P, 1, 1) of t (B, P, 1, 1), affine gamma/beta (P, 1, 1), eps 1e-5."""
    with torch.no_grad():
        out = torch.nn.functional.layer_norm(tensor64(t), gamma.shape, tensor64(gamma),
                                             tensor64(beta), eps=EPS)
    return out.numpy()


def ref_transform(context: np.ndarray, params: Dict[str, np.ndarray]) -> np.ndarray:
    """The bottleneck transform (B, C, 1, 1) -> (B, C, 1, 1), by ``gclab.nn.Bottleneck``."""
    p, c = params["0.weight"].shape[:2]
    m = _load(Bottleneck(c, p), params)
    with torch.no_grad():
        return m(tensor64(context)).numpy()


def ref_fusion(
    x: np.ndarray, add: Optional[np.ndarray] = None, mul: Optional[np.ndarray] = None  # noqa: UP045
) -> np.ndarray:
    """``gclab.nn.fusion``: x * sigmoid(mul) + add, multiplication first."""
    with torch.no_grad():
        out = fusion(
            tensor64(x),
            add=None if add is None else tensor64(add),
            mul=None if mul is None else tensor64(mul),
        )
    return out.numpy()


def _gc_module(params: Dict[str, np.ndarray]) -> GlobalContextFramework:
    c = params["context_modeling.conv_mask.weight"].shape[1]
    fusions = [f for f in ("mul", "add") if f"transform.{f}.0.weight" in params]
    p = params[f"transform.{fusions[0]}.0.weight"].shape[0]
    m = GlobalContextFramework(
        c, AttentionPooling(c), {f: Bottleneck(c, p, layer_norm=True) for f in fusions}
    )
    return _load(m, params)


def ref_gc_forward(x: np.ndarray, params: Dict[str, np.ndarray]) -> np.ndarray:
    """A GC block (att pooling, LayerNorm bottleneck, the fusions present in ``params``)."""
    with torch.no_grad():
        return _gc_module(params)(tensor64(x)).numpy()


def ref_gc_params() -> int:
    """Parameters of one GC r16 block with both fusions at C = 1024, counted by PyTorch."""
    block = GCBlock(1024, ratio=1 / 16, fusions=("add", "mul"))
    return sum(p.numel() for p in block.parameters())


def _gc_count(c: int = 1024, r: int = 16, branches: int = 2, w_k: int = 1, biases: bool = True,
              ln: bool = True) -> int:
    """A GC block's parameters from the formula, with switches for the wrong variants."""
    p = c // r
    branch = 2 * c * p + (p + c if biases else 0) + (2 * p if ln else 0)
    return w_k * (c + (1 if biases else 0)) + branches * branch


FLOP_SHAPE = (1, 256, 14, 20)


def count_flops(module: nn.Module, shape: Sequence[int]) -> int:
    """FLOPs that ``FlopCounterMode`` counts for one forward pass on an input of ``shape``
    (on the meta device: nothing is computed, so big maps cost nothing)."""
    module = module.to("meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(torch.empty(*shape, device="meta"))
    return int(counter.get_total_flops())


def ref_gc_flops() -> int:
    """FLOPs of GCBlock(256, 1/16) on a (1, 256, 14, 20) input, as FlopCounterMode counts."""
    return count_flops(GCBlock(256, ratio=1 / 16), FLOP_SHAPE)


def ref_gc_module(in_channels: int, ratio: float) -> nn.Module:
    """The reference of ``gc.module``: ``gclab.nn.GCBlock`` with add fusion."""
    return GCBlock(in_channels, ratio=ratio)


# --------------------------------------------------------------------------- wrong variants
def _ln_np(t: np.ndarray, gamma, beta, axes=(1, 2, 3), ddof=0, eps=EPS, eps_inside=True
           ) -> np.ndarray:
    mu = t.mean(axis=axes, keepdims=True)
    var = t.var(axis=axes, keepdims=True, ddof=ddof)
    if not eps_inside:
        return (t - mu) / (np.sqrt(var) + eps) * gamma + beta
    return (t - mu) / np.sqrt(var + eps) * gamma + beta


def wrong_ln_no_eps(t, gamma, beta):
    return _ln_np(t, gamma, beta, eps=0.0)


def wrong_ln_eps_outside(t, gamma, beta):
    return _ln_np(t, gamma, beta, eps_inside=False)


def wrong_ln_eps_1e6(t, gamma, beta):
    return _ln_np(t, gamma, beta, eps=1e-6)


def wrong_ln_batch(t, gamma, beta):
    return _ln_np(t, gamma, beta, axes=(0,))


def wrong_ln_spatial(t, gamma, beta):
    return _ln_np(t, gamma, beta, axes=(2, 3))


def wrong_ln_unbiased(t, gamma, beta):
    return _ln_np(t, gamma, beta, ddof=1)


def _bottleneck_np(context, params, prefix="", ln_axes=(1, 2, 3), order="ln_relu", ln=True):
    g = params[prefix + "1.weight"] if ln else None
    b = params[prefix + "1.bias"] if ln else None
    h = conv1x1_vector(params[prefix + "0.weight"], params[prefix + "0.bias"], context)
    if order == "relu_ln":
        h = np.maximum(h, 0.0)
    if ln:
        h = _ln_np(h, g, b, axes=ln_axes)
    if order == "ln_relu":
        h = np.maximum(h, 0.0)
    return conv1x1_vector(params[prefix + "3.weight"], params[prefix + "3.bias"], h)


def wrong_transform_relu_first(context, params):
    return _bottleneck_np(context, params, order="relu_ln")


def wrong_transform_ln_batch(context, params):
    return _bottleneck_np(context, params, ln_axes=(0,))


def wrong_transform_no_ln(context, params):
    return _bottleneck_np(context, params, ln=False)


def wrong_fusion_mul_after_add(x, add=None, mul=None):
    out = x if add is None else x + add
    return out if mul is None else out * sigmoid(mul)


def wrong_fusion_no_sigmoid(x, add=None, mul=None):
    out = x if mul is None else x * mul
    return out if add is None else out + add


def wrong_fusion_no_residual(x, add=None, mul=None):
    if mul is not None:
        out = x * sigmoid(mul)
        return out if add is None else out + add
    return np.broadcast_to(add, x.shape).copy()


def _gc_np(x, params, gate="softmax", ln_axes=(1, 2, 3), residual=True, mul_after_add=False):
    b, c = x.shape[:2]
    xf = x.reshape(b, c, -1)
    w_k = params["context_modeling.conv_mask.weight"].reshape(c)
    logits = np.einsum("c,bcn->bn", w_k, xf) + params["context_modeling.conv_mask.bias"]
    alpha = softmax(logits, 1) if gate == "softmax" else sigmoid(logits)
    ctx = np.einsum("bcn,bn->bc", xf, alpha)[:, :, None, None]
    terms = {
        f: _bottleneck_np(ctx, params, prefix=f"transform.{f}.", ln_axes=ln_axes)
        for f in ("mul", "add")
        if f"transform.{f}.0.weight" in params
    }
    if mul_after_add:
        return wrong_fusion_mul_after_add(x, terms.get("add"), terms.get("mul"))
    if not residual:
        return wrong_fusion_no_residual(x, terms.get("add"), terms.get("mul"))
    out = x if "mul" not in terms else x * sigmoid(terms["mul"])
    return out if "add" not in terms else out + terms["add"]


def wrong_gc_no_residual(x, params):
    return _gc_np(x, params, residual=False)


def wrong_gc_ln_batch(x, params):
    return _gc_np(x, params, ln_axes=(0,))


def wrong_gc_sigmoid(x, params):
    return _gc_np(x, params, gate="sigmoid")


def wrong_gc_avg_pool(x, params):
    """Average pooling where the attention pooling belongs (conv_mask ignored): SE's squeeze."""
    from gclab.numpy import gc_block

    fusions = tuple(f for f in ("add", "mul") if f"transform.{f}.0.weight" in params)
    rest = {k: v for k, v in params.items() if not k.startswith("context_modeling.")}
    return gc_block.forward(x, rest, pooling="avg", fusions=fusions)[0]


def wrong_gc_mul_after_add(x, params):
    return _gc_np(x, params, mul_after_add=True)


class _LayerNormOverBatch(nn.Module):
    """Same parameters as nn.LayerNorm([P, 1, 1]), but normalises over the batch axis."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(planes, 1, 1))
        self.bias = nn.Parameter(torch.zeros(planes, 1, 1))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        mu = t.mean(dim=0, keepdim=True)
        var = t.var(dim=0, keepdim=True, unbiased=False)
        return (t - mu) / torch.sqrt(var + EPS) * self.weight + self.bias


def wrong_module_ln_batch(in_channels: int, ratio: float) -> nn.Module:
    m = GCBlock(in_channels, ratio=ratio)
    m.transform["add"][1] = _LayerNormOverBatch(m.planes)
    return m


class _NoResidualGC(GCBlock):
    def forward(self, x, return_attention=False):
        return super().forward(x) - x


def wrong_module_no_residual(in_channels: int, ratio: float) -> nn.Module:
    return _NoResidualGC(in_channels, ratio=ratio)


class _MaxPooling(nn.Module):
    """Keeps conv_mask (so the state_dict matches) but pools with a max over positions."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv_mask = nn.Conv2d(in_channels, 1, kernel_size=1)

    def forward(self, x):
        return x.amax(dim=(2, 3), keepdim=True)


def wrong_module_max_pool(in_channels: int, ratio: float) -> nn.Module:
    m = GCBlock(in_channels, ratio=ratio)
    m.context_modeling = _MaxPooling(in_channels)
    return m


# --------------------------------------------------------------------------- cases
def _ln_params(rng, p):
    return 1.0 + 0.5 * rng.standard_normal((p, 1, 1)), 0.5 * rng.standard_normal((p, 1, 1))


def cases_layer_norm(rng):
    out = []
    for b, p in ((2, 4), (3, 8), (4, 3), (1, 5)):
        t = 2.0 * rng.standard_normal((b, p, 1, 1)) + 1.0
        out.append(Case(args=(t, *_ln_params(rng, p)), label=f"t({b},{p},1,1)"))
    # nearly constant vectors (variance ~1e-4): eps matters, so where it goes shows
    t = 1.0 + 0.01 * rng.standard_normal((2, 6, 1, 1))
    out.append(Case(args=(t, *_ln_params(rng, 6)), label="t(2,6,1,1), variance ~1e-4"))
    return out


def bottleneck_params(rng, c: int, p: int, prefix: str = "") -> Dict[str, np.ndarray]:
    g, b = _ln_params(rng, p)
    return {
        prefix + "0.weight": rng.standard_normal((p, c, 1, 1)) / np.sqrt(c),
        prefix + "0.bias": 0.3 * rng.standard_normal(p),
        prefix + "1.weight": g,
        prefix + "1.bias": b,
        prefix + "3.weight": rng.standard_normal((c, p, 1, 1)) / np.sqrt(p),
        prefix + "3.bias": 0.3 * rng.standard_normal(c),
    }


def cases_transform(rng):
    out = []
    for b, c, p in ((2, 8, 2), (3, 12, 3), (2, 16, 4), (1, 8, 2)):
        ctx = rng.standard_normal((b, c, 1, 1))
        out.append(Case(args=(ctx, bottleneck_params(rng, c, p)), label=f"C={c}, P={p}, B={b}",
                        meta={"P": p}))
    return out


def cases_fusion(rng):
    out = []
    for (b, c, h, w), which in (
        ((2, 4, 3, 5), ("add", "mul")),
        ((2, 6, 4, 2), ("add",)),
        ((3, 5, 2, 3), ("mul",)),
        ((1, 3, 5, 4), ("add", "mul")),
        ((2, 1, 4, 6), ("add", "mul")),
    ):
        x = rng.standard_normal((b, c, h, w))
        kw = {f: rng.standard_normal((b, c, 1, 1)) for f in which}
        out.append(Case(args=(x,), kwargs=kw, label=f"x{(b, c, h, w)}, {'+'.join(which)}"))
    return out


def gc_params(rng, c: int, p: int, fusions=("add",)) -> Dict[str, np.ndarray]:
    """Random parameters of a GC block as float64 arrays with ``gclab.nn`` keys."""
    params = {
        "context_modeling.conv_mask.weight": rng.standard_normal((1, c, 1, 1)),
        "context_modeling.conv_mask.bias": rng.standard_normal(1),
    }
    for f in ("mul", "add"):
        if f in fusions:
            params.update(bottleneck_params(rng, c, p, prefix=f"transform.{f}."))
    return params


def cases_forward(rng):
    out = []
    for (b, c, h, w), p, fusions, *scale in (
        ((2, 8, 3, 5), 2, ("add",)),
        ((3, 12, 5, 2), 3, ("add",)),
        ((2, 8, 4, 6), 4, ("add", "mul")),
        ((2, 16, 2, 3), 4, ("mul",)),
        ((1, 8, 6, 4), 4, ("add",)),
        ((2, 8, 4, 5), 4, ("add", "mul"), 300.0),  # logits ~1e3: exp must not overflow
    ):
        s = scale[0] if scale else 1.0
        x = rng.standard_normal((b, c, h, w)) * s
        label = f"x{(b, c, h, w)}, P={p}, {'+'.join(fusions)}" + (", logits ~1e3" if scale else "")
        out.append(Case(args=(x, gc_params(rng, c, p, fusions)), label=label,
                        meta={"P": p}))
    return out


# --------------------------------------------------------------------------- properties
def _normalised_per_sample(out, t, gamma, beta) -> bool:
    u = (np.asarray(out) - beta) / gamma  # undo the affine: mean 0, variance 1 per sample
    return bool(
        np.allclose(u.mean(axis=(1, 2, 3)), 0.0, atol=1e-6)
        # variance 1 up to eps: var / (var + eps)
        and np.allclose(u.var(axis=(1, 2, 3)), (v := np.var(t, axis=(1, 2, 3))) / (v + EPS),
                        atol=1e-3)
    )


# --------------------------------------------------------------------------- registry
register(Exercise(
    id="gc.layer_norm",
    notebook=NOTEBOOK,
    title="LayerNorm over (P, 1, 1): normalise each sample's bottleneck vector",
    kind="function",
    reference=ref_layer_norm,
    cases=cases_layer_norm,
    rtol=1e-7,
    mistakes={
        "LayerNorm over the wrong axes (over the batch, per channel, as BatchNorm would)":
            wrong_ln_batch,
        "LayerNorm over the wrong axes (the trailing 1x1 axes only: every value becomes beta)":
            wrong_ln_spatial,
        "unbiased variance (divide by P-1; LayerNorm divides by P)": wrong_ln_unbiased,
        "LayerNorm without eps (nn.LayerNorm adds eps = 1e-5 to the variance)": wrong_ln_no_eps,
        "eps added outside the square root (sqrt(var) + eps, not sqrt(var + eps))":
            wrong_ln_eps_outside,
        "eps = 1e-6 (nn.LayerNorm's default is 1e-5)": wrong_ln_eps_1e6,
    },
    properties=[
        Property("output has the input's shape (B, P, 1, 1)", same_shape),
        Property("(out - beta) / gamma has mean 0 and variance 1 per sample",
                 _normalised_per_sample),
    ],
    hints=(
        "LayerNorm normalises each sample on its own, over the normalized_shape (P, 1, 1): mean "
        "and (biased) variance over everything but the batch axis, then the affine map with gamma "
        "and beta.",
        "t (B, P, 1, 1) -> one mean and one variance per sample, each kept as (B, 1, 1, 1) so "
        "that it broadcasts back against t; gamma and beta (P, 1, 1) broadcast against "
        "(B, P, 1, 1). Steps: statistics, normalise, then the affine map.",
        "the mean of each sample over its last three axes\nthe biased variance of each sample "
        "over the same axes\ncentre t and divide by the square root of (variance plus eps)\nscale "
        "by gamma and shift by beta",
    ),
))

register(Exercise(
    id="gc.transform",
    notebook=NOTEBOOK,
    title="The bottleneck transform: conv C->P, LayerNorm, ReLU, conv P->C",
    kind="function",
    reference=ref_transform,
    cases=cases_transform,
    rtol=1e-7,
    mistakes={
        "ReLU before LayerNorm (the order is conv, LayerNorm, ReLU, conv)":
            wrong_transform_relu_first,
        "LayerNorm over the wrong axes (over the batch, per channel)": wrong_transform_ln_batch,
        "no LayerNorm (the '1.*' parameters are ignored)": wrong_transform_no_ln,
    },
    properties=[Property("output has the context's shape (B, C, 1, 1)", same_shape)],
    hints=(
        "Squeeze C channels into P (C times ratio), normalise that small vector per sample, keep "
        "its positive part, expand back to C. The keys '0', '1', '3' are the Sequential's indices "
        "(index 2 is the ReLU, which has no parameters).",
        "context (B, C, 1, 1); the '0' weight (P, C, 1, 1) gives (B, P, 1, 1); the '1' weight and "
        "bias (P, 1, 1) are the LayerNorm's; the '3' weight (C, P, 1, 1) gives (B, C, 1, 1).",
        "1x1 conv of the context with the '0' parameters\nyour layer_norm with the '1' "
        "parameters\nkeep the positive part (ReLU)\n1x1 conv with the '3' parameters",
    ),
))

register(Exercise(
    id="gc.fusion",
    notebook=NOTEBOOK,
    title="Fusion: x * sigmoid(mul) + add, multiplication first",
    kind="function",
    reference=ref_fusion,
    cases=cases_fusion,
    rtol=1e-7,
    mistakes={
        "mul applied after add (the order is multiply first, then add)":
            wrong_fusion_mul_after_add,
        "mul without its sigmoid (the gate must be in (0, 1))": wrong_fusion_no_sigmoid,
        "a missing residual (add fusion returns x + add, not add)": wrong_fusion_no_residual,
    },
    properties=[Property("output has x's shape (B, C, H, W)", same_shape)],
    hints=(
        "Both terms are one vector per image that acts on EVERY position: 'mul' rescales each "
        "channel by a gate in (0, 1), 'add' shifts it. Either may be None.",
        "x (B, C, H, W); add and mul (B, C, 1, 1) broadcast over H and W. The order matters: "
        "rescale first, then shift.",
        "start from x\nif there is a mul term: multiply by its logistic sigmoid\nthen, if there "
        "is an add term: add it\nreturn the result",
    ),
))

register(Exercise(
    id="gc.forward",
    notebook=NOTEBOOK,
    title="The GC block in NumPy: context modelling, transform, fusion",
    kind="function",
    reference=ref_gc_forward,
    cases=cases_forward,
    rtol=1e-7,
    mistakes={
        "a missing residual (add fusion returns x + add, not add)": wrong_gc_no_residual,
        "LayerNorm over the wrong axes (over the batch, per channel)": wrong_gc_ln_batch,
        "sigmoid where softmax belongs (attention weights do not sum to 1)": wrong_gc_sigmoid,
        "mul applied after add (the order is multiply first, then add)": wrong_gc_mul_after_add,
        "average pooling where the attention pooling belongs, or W_k left out (both give "
        "uniform weights 1/N)":
            wrong_gc_avg_pool,
    },
    properties=[Property("output has x's shape (B, C, H, W)", same_shape)],
    hints=(
        "Reuse your pieces: context modelling is attention pooling with conv_mask (lesson 04), "
        "the transform is one bottleneck per fusion present in params, the fusion is your fuse().",
        "x (B, C, H, W) -> one logit per position (B, 1, H, W) -> context (B, C, 1, 1) -> each "
        "branch (B, C, 1, 1) -> out (B, C, H, W). Branch f's parameters are the keys starting "
        "'transform.f.'.",
        "the logits: a 1x1 conv of x with the conv_mask parameters\nthe context: attention "
        "pooling of x with those logits\nfor each fusion whose 'transform.<fusion>.' keys are "
        "present: take those keys without the prefix and run your bottleneck on the context\nfuse "
        "x with the terms you have",
    ),
))

register(Exercise(
    id="gc.params",
    notebook=NOTEBOOK,
    title="Parameters of one GC r16 block with both fusions (add and mul) at C = 1024",
    kind="value",
    reference=ref_gc_params,
    rtol=1e-12,
    mistakes={
        "counted only one branch (add and mul each have their own bottleneck)":
            lambda: _gc_count(branches=1),
        "counted W_k twice (one context modelling feeds both branches)":
            lambda: _gc_count(w_k=2),
        "forgetting the bias in the parameter count (no conv biases)":
            lambda: _gc_count(biases=False),
        "forgetting the LayerNorms' gamma and beta (2C/r per branch)":
            lambda: _gc_count(ln=False),
    },
    properties=[Property("an int", is_int)],
    hints=(
        "The table above counts one add block. With both fusions the context modelling (W_k) is "
        "computed once and shared; each fusion has its own bottleneck (two convs with biases and "
        "a LayerNorm).",
        "C = 1024 and the ratio is 1/16. W_k: a 1x1 conv C -> 1 with bias. One bottleneck: a conv "
        "C -> P, a LayerNorm over P (a weight and a bias per channel), a conv P -> C. One int.",
        "a conv from a to b channels: a times b weights plus b biases; a LayerNorm over P: twice "
        "P\none bottleneck: the conv into P, the LayerNorm, the conv back to C\nthe whole block: "
        "W_k once, plus one bottleneck for each of the two fusions",
    ),
))

register(Exercise(
    id="gc.flops",
    notebook=NOTEBOOK,
    title="FLOPs of GCBlock(256, 1/16) on a (1, 256, 14, 20) map, as FlopCounterMode counts",
    kind="value",
    reference=ref_gc_flops,
    rtol=1e-12,
    mistakes={
        "counted multiply-adds, not FLOPs (FlopCounterMode counts 2 FLOPs per MAC)":
            lambda: (2 * 256 * 280 + 2 * 256 * 16),
        "forgot the attention pooling's matrix product (x times alpha)":
            lambda: 2 * 256 * 280 + 4 * 256 * 16,
    },
    properties=[Property("an int", is_int)],
    hints=(
        "FlopCounterMode counts only convolutions and matrix products, 2 FLOPs per multiply-add. "
        "Softmax, LayerNorm, ReLU and the final addition count 0.",
        "N is 14 times 20 positions and P is 16. conv_mask works at every position; the pooling "
        "is a (C, N) by (N, 1) product; the two bottleneck convs work on a 1x1 map.",
        "multiply-adds of a 1x1 conv from a to b channels on an H x W map: a times b times the "
        "positions\nmultiply-adds of a (C, N) by (N, 1) product: C times N\nadd those of "
        "conv_mask, the pooling product and both bottleneck convs\nFLOPs are twice the "
        "multiply-adds",
    ),
))

register(Exercise(
    id="gc.module",
    notebook=NOTEBOOK,
    title="Build the GC block (add fusion) as an nn.Module with gclab's parameter names",
    kind="module",
    reference=ref_gc_module,
    cases=module_cases,
    rtol=1e-5,
    atol=1e-6,
    mistakes={
        "a missing residual (add fusion returns x + add, not add)": wrong_module_no_residual,
        "LayerNorm over the wrong axes (over the batch, per channel)": wrong_module_ln_batch,
        "max instead of attention pooling (conv_mask unused)": wrong_module_max_pool,
    },
    properties=[Property("output has x's shape (B, C, H, W)", module_same_shape)],
    hints=(
        "Same maths as gc.forward, in PyTorch: context modelling is the AttentionPooling module "
        "you built in lesson 04; the transform is a ModuleDict with one 'add' entry (the "
        "bottleneck); the fusion adds the term to x.",
        "planes: in_channels times ratio, rounded down to an int. The bottleneck is a Sequential "
        "of four modules: a 1x1 Conv2d C -> P, a LayerNorm over [P, 1, 1], a ReLU, a 1x1 Conv2d P "
        "-> C (the names of the state_dict follow). forward: x (B, C, H, W) -> context (B, C, 1, "
        "1) -> term (B, C, 1, 1) -> (B, C, H, W).",
        "in the constructor: compute planes; the context modelling is an AttentionPooling over "
        "in_channels\nthe transform: a ModuleDict whose 'add' entry is the four-module "
        "Sequential\nin forward: the context of x, passed through the 'add' entry, added to x",
    ),
))


# ----------------------------------------------------------------------------- derivations
def ref_mul_fusion_backward(dout: np.ndarray, x: np.ndarray, m: np.ndarray):
    """(dx, dm) of out = x * sigmoid(m), x (B, C, H, W), m (B, C, 1, 1)."""
    g = sigmoid(m)
    return dout * g, (dout * x).sum(axis=(2, 3), keepdims=True) * g * (1 - g)


def _fusion_back_cases(rng, large=True):
    out = []
    for shape in [(2, 3, 4, 6), (1, 4, 5, 3), (3, 2, 7, 7), (1, 1, 2, 5)]:
        b, c = shape[:2]
        out.append(Case(args=(rng.standard_normal(shape), rng.standard_normal(shape),
                              rng.standard_normal((b, c, 1, 1))), label=f"x {shape}"))
    if large:
        shape = (2, 3, 3, 4)
        out.append(Case(args=(rng.standard_normal(shape), rng.standard_normal(shape),
                              8 * rng.standard_normal((2, 3, 1, 1))),
                        label=f"x {shape}, large gate logits"))
    return out


register(Exercise(
    id="gc.mul_fusion_backward",
    notebook=NOTEBOOK,
    title="Derive the backward of the mul fusion",
    reference=ref_mul_fusion_backward,
    cases=_fusion_back_cases,
    rtol=1e-10,
    mistakes={
        "the sigmoid's derivative left out of dm": lambda dout, x, m: (
            dout * sigmoid(m), (dout * x).sum(axis=(2, 3), keepdims=True)),
        "x left out of dm (the gate multiplies x, so x comes back)": lambda dout, x, m: (
            dout * sigmoid(m),
            dout.sum(axis=(2, 3), keepdims=True) * sigmoid(m) * (1 - sigmoid(m))),
        "dm averaged over the positions instead of summed": lambda dout, x, m: (
            dout * sigmoid(m),
            (dout * x).mean(axis=(2, 3), keepdims=True) * sigmoid(m) * (1 - sigmoid(m))),
        "the sigmoid's derivative taken at the gate sigmoid(m), not at m": lambda dout, x, m: (
            dout * sigmoid(m), (dout * x).sum(axis=(2, 3), keepdims=True)
            * sigmoid(sigmoid(m)) * (1 - sigmoid(sigmoid(m)))),
        "dx = dout * m: the logits m where the gate sigmoid(m) belongs": lambda dout, x, m: (
            dout * m,
            (dout * x).sum(axis=(2, 3), keepdims=True) * sigmoid(m) * (1 - sigmoid(m))),
        "dx passed through the sigmoid's derivative too (only dm goes through the sigmoid)": (
            lambda dout, x, m: (
                dout * sigmoid(m) * (1 - sigmoid(m)),
                (dout * x).sum(axis=(2, 3), keepdims=True) * sigmoid(m) * (1 - sigmoid(m)))),
    },
    properties=[Property("shapes of x and m", lambda out, dout, x, m: (
        isinstance(out, tuple) and np.shape(out[0]) == x.shape and np.shape(out[1]) == m.shape))],
    hints=(
        "The gate sigmoid(m) is one number per image and channel, used at every position. The "
        "gradient reaching x is element-wise; the gradient reaching m collects a contribution "
        "from every position it scaled, and then passes through the sigmoid.",
        "dout, x (B, C, H, W); m (B, C, 1, 1); dx like x, dm like m. The derivative of the "
        "sigmoid can be written with the sigmoid itself.",
        "the gate: the sigmoid of m\ndx: the chain rule through the product, element by "
        "element\ndm: first the gradient reaching the gate, collected over H and W (mind which "
        "factor multiplies the gate, and keep the axes); then through the sigmoid's derivative at "
        "m",
    ),
))


def ref_add_fusion_backward(dout: np.ndarray):
    """(dx, dadd) of out = x + add, add (B, C, 1, 1) broadcast over H and W."""
    return dout.copy(), dout.sum(axis=(2, 3), keepdims=True)


register(Exercise(
    id="gc.add_fusion_backward",
    notebook=NOTEBOOK,
    title="Derive the backward of the add fusion (a broadcast)",
    reference=ref_add_fusion_backward,
    cases=lambda rng: [Case(args=(c.args[0],), label=c.label)
                       for c in _fusion_back_cases(rng, large=False)],
    rtol=1e-12,
    mistakes={
        "dadd averaged over the positions instead of summed": (
            lambda dout: (dout.copy(), dout.mean(axis=(2, 3), keepdims=True))),
        "dadd also summed over the batch (one term per image, not per batch)": (
            lambda dout: (dout.copy(),
                          np.broadcast_to(dout.sum(axis=(0, 2, 3), keepdims=True),
                                          dout.shape[:2] + (1, 1)).copy())),
    },
    properties=[Property("dadd is (B, C, 1, 1)", lambda out, dout: (
        isinstance(out, tuple) and np.shape(out[1]) == dout.shape[:2] + (1, 1)))],
    hints=(
        "Broadcasting copies one value to many places in the forward; in the backward the "
        "copies' gradients meet again at the one value.",
        "dout (B, C, H, W) -> dx (B, C, H, W) and dadd (B, C, 1, 1): one value per image and "
        "channel.",
        "dx: the upstream gradient itself (a copy)\n"
        "dadd: the upstream gradient collected over every position of its image and channel, "
        "keeping the two spatial axes of size 1",
    ),
))


# ----------------------------------------------------------------------------- the derivation
def ref_sigmoid_grad(g):
    """d sigmoid(m) / dm written with the gate g = sigmoid(m) alone."""
    return g * (1 - g)


def _sigmoid_grad_cases(rng):
    """Gates in (0, 1), and values no gate takes (outside [0, 1]): there an expression in g
    still evaluates, while a derivative computed through m = logit(g) (autograd, finite
    differences, exp and log) has no m to start from."""
    beyond = np.array([2.0, -0.5, 1.5, 3.0, -2.0, float(rng.uniform(1.1, 4.0))])
    inside = "gates between 0 and 1"
    return [Case(args=(rng.uniform(0.02, 0.98, (2, 3, 1, 1)),), label=f"g (2, 3, 1, 1), {inside}"),
            Case(args=(rng.uniform(0.3, 0.7, (1, 5, 1, 1)),), label=f"g (1, 5, 1, 1), {inside}"),
            Case(args=(beyond.reshape(1, 6, 1, 1),),
                 label="g (1, 6, 1, 1) outside [0, 1] (no m has these gates: only an expression "
                       "in g gets there)")]


def _through_logit(g):
    """The derivative at m = logit(g), computed from m: what autograd gives (NaN outside)."""
    with np.errstate(all="ignore"):
        s = 1.0 / (1.0 + np.exp(-np.log(g / (1.0 - g))))
    return s * (1.0 - s)


def _quarter_at_most(out, g):
    o, g = np.asarray(out, dtype=np.float64), np.asarray(g, dtype=np.float64)
    gates = (g >= 0) & (g <= 1)
    ok = bool(np.all(o[gates] >= 0) and np.all(o[gates] <= 0.25))
    return ok, "sigma'(m) lies in [0, 1/4] for every gate in [0, 1]"


register(Exercise(
    id="gc.sigmoid_grad",
    notebook=NOTEBOOK,
    title="Derive the sigmoid's derivative, written with the gate itself",
    reference=ref_sigmoid_grad,
    cases=_sigmoid_grad_cases,
    rtol=1e-12,
    mistakes={
        "the factor (1 - g) is missing: that is the derivative of exp, not of the sigmoid": (
            lambda g: g * 1),
        "the factor g is missing: only (1 - g) is left": lambda g: 1 - g,
        "the sign is flipped: the sigmoid increases, so its derivative is positive": (
            lambda g: g * (g - 1)),
        "computed through m = logit(g) (autograd or exp and log), not derived in g: outside "
        "[0, 1] there is no such m, while an expression in g still evaluates": _through_logit,
    },
    properties=[Property("between 0 and 1/4 for gates in [0, 1]", _quarter_at_most)],
    hints=(
        "Differentiate sigmoid(m), one over (1 plus e to the minus m), with the chain rule; then "
        "rewrite every e to the minus m with the sigmoid itself, until no exponential is left.",
        "Input: the gate g, an array of any shape; output: the same shape. One case evaluates "
        "your expression at values no gate takes (outside 0 to 1), where there is no m: only "
        "arithmetic on g works there, not exp, log or autograd.",
        "write the derivative as e to the minus m over the square of (1 plus e to the minus m)\n"
        "split it into the sigmoid times one other factor\nrecognise that factor as one minus "
        "the gate\nreturn the gate times that factor",
    ),
))
