r"""Exercises of lesson 06, SE and the three-step framework (topic ``se.``).

.. math::

    z_i = x_i \odot \sigma\bigl(W_2\,\mathrm{ReLU}(W_1 \tfrac{1}{N}\textstyle\sum_j x_j)\bigr)

Context modelling = average pooling (SE's *squeeze*), transform = a bottleneck without
LayerNorm (*excitation*), fusion = ``mul`` (*scale*). NumPy exercises take parameters as a
``gclab.nn.SEBlock`` state_dict converted to float64 arrays; references run ``gclab.nn``.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import torch
from torch import nn

from gclab.exercises.lessons.common import (
    context_shape,
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
from gclab.nn import AveragePooling, Bottleneck, GlobalContextFramework, SEBlock

NOTEBOOK = "06_se_framework"
SHAPES = [(2, 4, 3, 5), (3, 6, 5, 2), (2, 8, 4, 7), (1, 1, 4, 6)]
# ResNet-50's bottlenecks: (output channels, how many) per stage c2..c5
RESNET50_STAGES = ((256, 3), (512, 4), (1024, 6), (2048, 3))


def _se_module(params: Dict[str, np.ndarray]) -> SEBlock:
    p, c = params["transform.mul.0.weight"].shape[:2]
    m = SEBlock(c, ratio=1.0)  # ratio is replaced below: planes come from the params
    m.transform["mul"] = Bottleneck(c, p, layer_norm=False, zero_init=False)
    m = m.double()
    m.load_state_dict({k: tensor64(v) for k, v in params.items()}, strict=True)
    return m.eval()


# --------------------------------------------------------------------------- references
def ref_squeeze(x: np.ndarray) -> np.ndarray:
    """Context modelling of SE: global average pooling (B, C, H, W) -> (B, C, 1, 1)."""
    with torch.no_grad():
        return AveragePooling()(tensor64(x)).numpy()


def ref_excitation(context: np.ndarray, params: Dict[str, np.ndarray]) -> np.ndarray:
    """Transform of SE followed by its sigmoid: the gates (B, C, 1, 1), each in (0, 1)."""
    p, c = params["0.weight"].shape[:2]
    m = Bottleneck(c, p, layer_norm=False, zero_init=False).double()
    m.load_state_dict({k: tensor64(v) for k, v in params.items()}, strict=True)
    with torch.no_grad():
        return torch.sigmoid(m(tensor64(context))).numpy()


def ref_se_forward(x: np.ndarray, params: Dict[str, np.ndarray]) -> np.ndarray:
    """The SE block, computed by ``gclab.nn.SEBlock``."""
    with torch.no_grad():
        return _se_module(params)(tensor64(x)).numpy()


def ref_se_module(in_channels: int, ratio: float) -> nn.Module:
    """The reference of ``se.assemble``: SE assembled from the parts, as the exercise asks; its
    state_dict has ``gclab.nn.SEBlock``'s keys and its forward is SEBlock's (tested)."""
    planes = int(in_channels * ratio)
    excite = Bottleneck(in_channels, planes, layer_norm=False, zero_init=False)
    return GlobalContextFramework(in_channels, AveragePooling(), {"mul": excite})


def se_resnet50_params(stages=RESNET50_STAGES, ratio: float = 1 / 16) -> int:
    """Parameters that SE r16 adds to a ResNet-50 (one SEBlock per bottleneck), by PyTorch."""
    total = 0
    for c, n in stages:
        total += n * sum(p.numel() for p in SEBlock(c, ratio=ratio).parameters())
    return total


# --------------------------------------------------------------------------- wrong variants
def wrong_squeeze_max(x):
    return x.max(axis=(2, 3), keepdims=True)


def wrong_squeeze_sum(x):
    return x.sum(axis=(2, 3), keepdims=True)


def _excite(context, params, prefix="", relu=True, gate="sigmoid"):
    h = conv1x1_vector(params[prefix + "0.weight"], params[prefix + "0.bias"], context)
    if relu:
        h = np.maximum(h, 0.0)
    s = conv1x1_vector(params[prefix + "3.weight"], params[prefix + "3.bias"], h)
    if gate == "sigmoid":
        return sigmoid(s)
    if gate == "softmax":
        return softmax(s, axis=1)
    return s


def wrong_excitation_softmax(context, params):
    return _excite(context, params, gate="softmax")


def wrong_excitation_no_relu(context, params):
    return _excite(context, params, relu=False)


def wrong_excitation_no_sigmoid(context, params):
    return _excite(context, params, gate=None)


def _se_np(x, params, pool="avg", fuse="mul"):
    ctx = wrong_squeeze_max(x) if pool == "max" else x.mean(axis=(2, 3), keepdims=True)
    g = _excite(ctx, params, prefix="transform.mul.")
    return x * g if fuse == "mul" else x + g


def wrong_se_max(x, params):
    return _se_np(x, params, pool="max")


def wrong_se_add(x, params):
    return _se_np(x, params, fuse="add")


def wrong_se_no_scale(x, params):
    g = _excite(x.mean(axis=(2, 3), keepdims=True), params, prefix="transform.mul.")
    return np.broadcast_to(g, x.shape).copy()


class _MaxPooling(nn.Module):
    def forward(self, x):
        return x.amax(dim=(2, 3), keepdim=True)


def wrong_module_max(in_channels: int, ratio: float) -> nn.Module:
    planes = int(in_channels * ratio)
    excitation = Bottleneck(in_channels, planes, layer_norm=False, zero_init=False)
    return GlobalContextFramework(in_channels, _MaxPooling(), {"mul": excitation})


def wrong_module_no_relu(in_channels: int, ratio: float) -> nn.Module:
    planes = int(in_channels * ratio)
    excitation = Bottleneck(in_channels, planes, layer_norm=False, zero_init=False)
    excitation[2] = nn.Identity()
    return GlobalContextFramework(in_channels, AveragePooling(), {"mul": excitation})


# ------------------------------------------------------------- what se.assemble asks for
def _from_parts(module, in_channels, ratio):
    """Built from the framework's parts: a GlobalContextFramework itself, not a named block."""
    if type(module) is GlobalContextFramework:
        return True, ""
    name = type(module).__name__
    if isinstance(module, GlobalContextFramework):
        return False, (f"you returned a {name}, a named block; assemble SE from the parts: "
                       "GlobalContextFramework(C, <context modelling>, {<fusion>: <transform>})")
    return False, f"you returned a {name}; the exercise asks for a GlobalContextFramework"


def _se_parts(module, in_channels, ratio):
    """SE's parts: average pooling, one 'mul' transform, a Bottleneck without LayerNorm."""
    cm = module.context_modeling
    if not isinstance(cm, AveragePooling):
        return False, (f"its context modelling is a {type(cm).__name__}; SE squeezes by "
                       "average pooling (AveragePooling)")
    keys = list(module.transform.keys())
    if keys != ["mul"]:
        return False, (f"its transform has the fusion(s) {keys}; SE rescales the channels: "
                       "one 'mul' term")
    t = module.transform["mul"]
    if not isinstance(t, Bottleneck):
        return False, f"its transform is a {type(t).__name__}; use a Bottleneck"
    if any(isinstance(m, torch.nn.LayerNorm) for m in t.modules()):
        return False, "its Bottleneck has a LayerNorm; SE's excitation has none (layer_norm=False)"
    return True, ""


def _se_init(module, in_channels, ratio):
    """SE keeps PyTorch's default init: a zero last conv would make every gate sigmoid(0)."""
    t = module.transform["mul"]
    last = [m for m in t.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    if not torch.any(last.weight != 0):
        return False, ("its last conv starts at zero (zero_init=True, GC's init): every gate "
                       "starts at sigmoid(0) = 0.5; SE keeps the default init (zero_init=False)")
    return True, ""


SE_STRUCTURE = [
    Property("assembled from the framework's parts", _from_parts),
    Property("SE's parts (average pooling, a 'mul' Bottleneck without LayerNorm)", _se_parts),
    Property("SE's initialisation (zero_init=False)", _se_init),
]


# --------------------------------------------------------------------------- cases
def se_params(rng, c: int, p: int, prefix: str = "transform.mul.") -> Dict[str, np.ndarray]:
    """Random SE parameters (float64) with ``gclab.nn`` keys (no LayerNorm: no '1.*')."""
    return {
        prefix + "0.weight": rng.standard_normal((p, c, 1, 1)) / np.sqrt(c),
        prefix + "0.bias": 0.3 * rng.standard_normal(p),
        prefix + "3.weight": 2.0 * rng.standard_normal((c, p, 1, 1)) / np.sqrt(p),
        prefix + "3.bias": 0.3 * rng.standard_normal(c),
    }


def cases_squeeze(rng):
    return [Case(args=(rng.standard_normal(s) + 0.5,), label=f"x{s}") for s in SHAPES]


def cases_excitation(rng):
    out = []
    for b, c, p in ((2, 8, 2), (3, 12, 3), (2, 16, 4), (1, 8, 4)):
        ctx = rng.standard_normal((b, c, 1, 1))
        out.append(Case(args=(ctx, se_params(rng, c, p, prefix="")), label=f"C={c}, P={p}"))
    return out


def cases_forward(rng):
    out = []
    for (b, c, h, w), p in (((2, 8, 3, 5), 2), ((3, 12, 5, 2), 3), ((2, 16, 4, 6), 4),
                            ((1, 8, 6, 4), 2)):
        x = rng.standard_normal((b, c, h, w))
        out.append(Case(args=(x, se_params(rng, c, p)), label=f"x{(b, c, h, w)}, P={p}"))
    return out


# --------------------------------------------------------------------------- properties
def _gates_in_unit_interval(out, *args, **kw) -> bool:
    out = np.asarray(out)
    return bool(np.all(out > 0) and np.all(out < 1))


def _scaled_copy(out, x, *args, **kw) -> bool:
    """SE only rescales: out / x is one factor per (image, channel), in (0, 1)."""
    out = np.asarray(out)
    ratio = out / x
    flat = ratio.reshape(x.shape[0], x.shape[1], -1)
    return bool(np.allclose(flat, flat[:, :, :1]) and np.all(flat > 0) and np.all(flat < 1))


# --------------------------------------------------------------------------- registry
register(Exercise(
    id="se.squeeze",
    notebook=NOTEBOOK,
    title="Squeeze = context modelling by global average pooling",
    kind="function",
    reference=ref_squeeze,
    cases=cases_squeeze,
    rtol=1e-7,
    mistakes={
        "max instead of average pooling": wrong_squeeze_max,
        "summed instead of averaged (missing the 1/N)": wrong_squeeze_sum,
    },
    properties=[Property("shape (B, C, 1, 1)", context_shape)],
    hints=(
        "SE's context is the plain average of every position's feature vector: attention pooling "
        "with the same weight 1/N for every position.",
        "x (B, C, H, W) -> average over H and W, keeping them as size-1 axes -> (B, C, 1, 1).",
        "for every image and channel: the mean over all H*W positions\nkeep H and W as axes of "
        "size 1",
    ),
))

register(Exercise(
    id="se.excitation",
    notebook=NOTEBOOK,
    title="Excitation = transform (bottleneck, no LayerNorm) + sigmoid gates",
    kind="function",
    reference=ref_excitation,
    cases=cases_excitation,
    rtol=1e-7,
    mistakes={
        "softmax where sigmoid belongs (channel gates are independent, they need not sum to 1)":
            wrong_excitation_softmax,
        "no ReLU between the two convs": wrong_excitation_no_relu,
        "the sigmoid is missing (logits, not gates in (0, 1))": wrong_excitation_no_sigmoid,
    },
    properties=[
        Property("shape (B, C, 1, 1)", same_shape),
        Property("every gate lies in (0, 1)", _gates_in_unit_interval),
    ],
    hints=(
        "The bottleneck of the GC block without its LayerNorm, then a sigmoid so that each "
        "channel gets its own gate between 0 and 1 (independently of the other channels).",
        "context (B, C, 1, 1); the '0' weight (P, C, 1, 1) gives (B, P, 1, 1); ReLU; the '3' "
        "weight (C, P, 1, 1) gives (B, C, 1, 1); the sigmoid acts element-wise.",
        "1x1 conv of the context with the '0' parameters, then keep the positive part\n1x1 conv "
        "of that with the '3' parameters\nthe logistic sigmoid of every element",
    ),
))

register(Exercise(
    id="se.forward",
    notebook=NOTEBOOK,
    title="The SE block in NumPy: squeeze, excite, scale",
    kind="function",
    reference=ref_se_forward,
    cases=cases_forward,
    rtol=1e-7,
    mistakes={
        "max instead of average pooling": wrong_se_max,
        "add fusion instead of scaling (x + gates)": wrong_se_add,
        "the gates returned without scaling x (fusion forgotten)": wrong_se_no_scale,
    },
    properties=[
        Property("output has x's shape (B, C, H, W)", same_shape),
        Property("out / x is one factor per channel, in (0, 1)", _scaled_copy),
    ],
    hints=(
        "The three steps again: context modelling is average pooling, the transform is your "
        "excitation (bottleneck + sigmoid), the fusion multiplies every position by the gates.",
        "x (B, C, H, W) -> context (B, C, 1, 1) -> gates (B, C, 1, 1) -> gated x (B, C, H, W). "
        "The parameters are under 'transform.mul.'.",
        "the context: your squeeze of x\nthe parameters under 'transform.mul.', with that prefix "
        "removed\nthe gates: your excitation of the context with them\nscale x channel by channel "
        "by the gates",
    ),
))

register(Exercise(
    id="se.assemble",
    notebook=NOTEBOOK,
    title="Assemble SE from the framework's parts (GlobalContextFramework)",
    kind="module",
    reference=ref_se_module,
    cases=module_cases,
    structure=SE_STRUCTURE,
    rtol=1e-5,
    atol=1e-6,
    mistakes={
        "max instead of average pooling": wrong_module_max,
        "no ReLU between the two convs": wrong_module_no_relu,
    },
    properties=[Property("output has x's shape (B, C, H, W)", module_same_shape)],
    hints=(
        "Pick one piece per step: which context modelling does SE use, which transform, which "
        "fusion? The framework applies the sigmoid to a 'mul' term by itself.",
        "The framework takes C, a context-modelling module and a dict {fusion name: transform}; "
        "the transform maps (B, C, 1, 1) to (B, C, 1, 1) through P channels (C times ratio, "
        "rounded down to an int as mmcv's int() does).",
        "compute planes from C and the ratio\ncontext modelling: the pooling SE uses\ntransform: "
        "a Bottleneck without LayerNorm, and with PyTorch's ordinary (non-zero) initialisation "
        "of its last conv: Bottleneck zero-initialises it unless told not to (that is GC's "
        "choice)\nbuild the framework with the fusion SE uses as the key",
    ),
))

register(Exercise(
    id="se.params",
    notebook=NOTEBOOK,
    title="Parameters that SE r16 adds to a ResNet-50 (one SE per bottleneck)",
    kind="value",
    reference=se_resnet50_params,
    rtol=1e-12,
    mistakes={
        "forgetting the bias in the parameter count":
            lambda: sum(n * 2 * c * c // 16 for c, n in RESNET50_STAGES),
        "used the bottleneck's inner width (C/4) instead of its output width C":
            lambda: se_resnet50_params(tuple((c // 4, n) for c, n in RESNET50_STAGES)),
        "counted one SE per stage instead of one per bottleneck":
            lambda: se_resnet50_params(tuple((c, 1) for c, _ in RESNET50_STAGES)),
    },
    properties=[Property("an int", is_int)],
    hints=(
        "One SE block sits after conv3 of every bottleneck: 3, 4, 6 and 3 bottlenecks in the four "
        "stages, with 256, 512, 1024 and 2048 output channels. Count weights AND biases.",
        "One SE block at C channels: a conv C -> C/16 and a conv C/16 -> C, both with a bias; no "
        "LayerNorm, no W_k. One int.",
        "one SE at C channels: the two convs, each with its weights and its biases\nfor every "
        "stage: the number of blocks times one SE at its width\nadd the four stages",
    ),
))


# ----------------------------------------------------------------------------- derivations
def se_param_count(channels: int, reduction: int = 16) -> int:
    """Parameters of one SE block at C channels with P = C // reduction: two convs with biases."""
    p = channels // reduction
    return (channels * p + p) + (p * channels + channels)


def cases_param_count(rng):
    # C / r = 6.25 and 5.625: a ceil, a round and the floor (P = C // r) all differ there
    pairs = [(64, 16), (256, 16), (48, 4), (2048, 16), (10, 2), (96, 8), (100, 16), (90, 16)]
    cases = [Case(args=(c, r), label=f"C = {c}, r = {r}") for c, r in pairs]
    # the derivation itself: a block with 2 C^2 / r = 1.25e17 weights cannot be built and counted
    cases.append(Case(args=(10**9 + 7, 16), label="C = 1e9 + 7, r = 16 (too large to build a "
                      "module and count it: only the formula gets there)",
                      closed_form="at C = 1e9 + 7 an SE block (1.25e17 weights) cannot be "
                      "built, and its parameters cannot be counted one by one"))
    return cases


register(Exercise(
    id="se.param_count",
    notebook=NOTEBOOK,
    title="Derive the parameter count of an SE block",
    reference=se_param_count,
    cases=cases_param_count,
    rtol=0,
    mistakes={
        "biases left out": lambda channels, reduction=16: 2 * channels * (channels // reduction),
        "a LayerNorm counted in the bottleneck (as in GC)": (
            lambda channels, reduction=16: se_param_count(channels, reduction)
            + 2 * (channels // reduction)),
        "W_k counted (as in GC): SE's average pooling has no parameters": (
            lambda channels, reduction=16: se_param_count(channels, reduction) + channels + 1),
        "the first conv counted twice: the second (P -> C) has C biases, not P": (
            lambda channels, reduction=16: 2 * (channels * (channels // reduction)
                                                + channels // reduction)),
        "P = C * r: the reduction inverted (P is C // r)": (
            lambda channels, reduction=16: 2 * channels * (channels * reduction)
            + channels * reduction + channels),
    },
    properties=[Property("an int", lambda out, *a, **k: is_int(out))],
    hints=(
        "Go through the three steps and ask which of them has parameters: average pooling has "
        "none; the transform is a bottleneck of two 1x1 convs; the fusion (a product) has none.",
        "Inputs: C and the reduction r (P is C // r); output: one int. Steps: write down the "
        "channels each conv goes from and to, count each conv's weights and biases, and add; "
        "SE has no LayerNorm and no W_k.",
        "P: C divided by r, rounded down\n"
        "the first conv: a weight per (input, output) pair and a bias per output\n"
        "the second conv: the same, in the other direction\n"
        "return the sum as an int",
    ),
))
