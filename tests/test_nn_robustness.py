"""The PyTorch blocks behave the same whatever comes in: an empty batch, a dtype that
is not the block's, a string where a bool belongs, a ratio that asks for a terabyte; and they
take the options their peers (mmcv, timm, torch.nn) take: ``planes=``, ``eps=``, ``device=``,
``dtype=``. Truth: mmcv-lite's ContextBlock, torch's autograd, hand formulas."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from gclab.nn import (
    AttentionPooling,
    Bottleneck,
    GCBlock,
    NonLocal1d,
    NonLocal2d,
    NonLocal3d,
    SEBlock,
    SimplifiedNonLocal2d,
    mmcv_to_gclab_state_dict,
)

C = 8
NL = {1: NonLocal1d, 2: NonLocal2d, 3: NonLocal3d}
MODES = ("gaussian", "embedded_gaussian", "dot_product", "concatenation")
GC_LIKE = {
    "gc": lambda **kw: GCBlock(C, ratio=1 / 4, **kw),
    "gc_mul_add": lambda **kw: GCBlock(C, ratio=1 / 4, fusions=("mul", "add"), **kw),
    "gc_avg": lambda **kw: GCBlock(C, ratio=1 / 4, pooling="avg", layer_norm=False, **kw),
    "se": lambda **kw: SEBlock(C, ratio=1 / 4, **kw),
    "snl": lambda **kw: SimplifiedNonLocal2d(C, **kw),
}
ALL = {
    **{k: (v, 2) for k, v in GC_LIKE.items()},
    "nl1d": (lambda **kw: NonLocal1d(C, **kw), 1),
    "nl2d_sub_bn": (lambda **kw: NonLocal2d(C, sub_sample=True, norm="bn", **kw), 2),
    "nl3d_concat": (lambda **kw: NonLocal3d(C, mode="concatenation", **kw), 3),
}


def raises(exc, *fragments):
    """pytest.raises that also requires every fragment (literal text) in the message."""
    return pytest.raises(exc, match="(?s)" + ".*".join(re.escape(f) for f in fragments))


def shape(dims: int, b: int = 2, size: int = 4) -> tuple:
    return (b, C) + (size,) * dims


# ------------------------------------------------------------------ empty batch (B = 0)
def _empty_batch_round_trip(block: nn.Module, dims: int, return_attention: bool):
    x = torch.randn(shape(dims, b=0), requires_grad=True)
    out = block(x, return_attention=True) if return_attention else block(x)
    attention = None
    if return_attention:
        out, attention = out
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    for name, p in block.named_parameters():
        # d(sum over no samples)/dp = 0: every parameter gets a zero gradient of its shape
        assert p.grad is not None, name
        assert p.grad.shape == p.shape and not p.grad.any(), name
    return out, attention


@pytest.mark.parametrize("name", sorted(GC_LIKE))
@pytest.mark.parametrize("return_attention", [False, True])
def test_empty_batch_gc_se_snl(name, return_attention, randomize):
    block = randomize(GC_LIKE[name]()).float()
    _, attention = _empty_batch_round_trip(block, 2, return_attention)
    if return_attention:
        assert attention.shape == (0, 16, 16)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sub_sample", [False, True])
@pytest.mark.parametrize("impl", ["auto", "explicit", "fast"])
@pytest.mark.parametrize("norm", [None, "bn"])
def test_empty_batch_non_local(dims, mode, sub_sample, impl, norm, randomize):
    block = randomize(NL[dims](C, mode=mode, sub_sample=sub_sample, norm=norm, impl=impl)).float()
    ra = impl != "fast"  # the fast path never builds the attention
    _, attention = _empty_batch_round_trip(block.train(), dims, return_attention=ra)
    if ra:
        n_keys = 4 ** dims // (2 ** min(dims, 2) if sub_sample else 1)  # 3-D pools H, W only
        assert attention.shape == (0, 4 ** dims, n_keys)
    block.eval()
    assert block(torch.randn(shape(dims, b=0))).shape == shape(dims, b=0)


@pytest.mark.parametrize("fusions", [("channel_add",), ("channel_mul",),
                                     ("channel_add", "channel_mul")])
@pytest.mark.parametrize("pooling", ["att", "avg"])
def test_empty_batch_matches_mmcv_context_block(fusions, pooling, randomize):
    mmcv_cnn = pytest.importorskip("mmcv.cnn", reason="mmcv-lite has the reference block")
    ref = randomize(mmcv_cnn.ContextBlock(C, 1 / 4, pooling_type=pooling, fusion_types=fusions))
    ours = GCBlock(C, ratio=1 / 4, pooling=pooling, fusions=fusions)
    ours.load_state_dict(ref.state_dict())
    outs, grads = [], []
    for m in (ref, ours):
        x = torch.randn(0, C, 5, 3, requires_grad=True)
        out = m(x)
        out.sum().backward()
        outs.append(out)
        grads.append({k: p.grad for k, p in mmcv_to_gclab_state_dict(
            dict(m.named_parameters()), "gc").items()})
    assert outs[0].shape == outs[1].shape == (0, C, 5, 3)
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        assert torch.equal(grads[0][k], grads[1][k]), k  # both exactly zero


@pytest.mark.parametrize("name", sorted(ALL))
def test_zero_spatial_size_is_still_an_error(name):
    make, dims = ALL[name]
    bad = list(shape(dims, b=0))
    bad[-1] = 0
    with raises(ValueError, "non-empty input", str(tuple(bad))):
        make()(torch.randn(bad))


# ------------------------------------------------------------------ dtypes
@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_input_of_another_dtype_says_both_and_the_fix(name, dtype):
    make, dims = ALL[name]
    block = make().eval()
    with raises(TypeError, type(block).__name__, "torch.float32 parameters", f"{dtype} input",
                f"block.to({dtype})", "x.float()"):
        block(torch.randn(shape(dims)).to(dtype))


def test_float64_block_and_float32_input_names_x_double():
    with raises(TypeError, "GCBlock has torch.float64 parameters", "torch.float32 input",
                "x.double()"):
        GCBlock(C, ratio=1 / 4).double()(torch.randn(shape(2)))


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("in_dtype", [torch.float32, torch.bfloat16])
def test_bf16_autocast_on_cpu_still_runs(name, in_dtype, randomize):
    make, dims = ALL[name]
    block = randomize(make()).float().eval()
    x = torch.randn(shape(dims))
    ref = block(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x.to(in_dtype))
    assert out.shape == x.shape and torch.isfinite(out).all()
    # bf16 keeps 8 significant bits (rel. 2^-8 = 0.4%) per op; a few ops deep over C = 8
    # channels, inputs of size ~1: 0.1 absolute is ~25 ulps of headroom, far below a wrong block
    assert (out.float() - ref).abs().max() < 0.1 * (1 + ref.abs().max())


# ------------------------------------------------------------------ bool options
@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("value", ["no", 1, None, "False"])
def test_return_attention_must_be_a_bool(name, value):
    make, dims = ALL[name]
    with raises(TypeError, "return_attention must be True or False", repr(value)):
        make()(torch.randn(shape(dims)), return_attention=value)


@pytest.mark.parametrize("kw", [{"use_scale": "no"}, {"sub_sample": "no"}, {"sub_sample": 0}])
def test_non_local_constructor_bools(kw):
    (name, value), = kw.items()
    with raises(TypeError, f"{name} must be True or False", repr(value)):
        NonLocal2d(C, **kw)


@pytest.mark.parametrize("make", [
    lambda: GCBlock(C, ratio=1 / 4, layer_norm="no"),
    lambda: Bottleneck(C, 2, layer_norm="no"),
    lambda: Bottleneck(C, 2, zero_init="no"),
])
def test_gc_constructor_bools(make):
    with raises(TypeError, "must be True or False", "'no'"):
        make()


# ------------------------------------------------------------------ ratio and planes
@pytest.mark.parametrize("cls", [GCBlock, SEBlock])
@pytest.mark.parametrize("ratio", [1e9, 1e5, 2, 1.0001, 0, -0.5, math.nan, math.inf])
def test_ratio_outside_0_1_is_refused_with_a_pointer_to_planes(cls, ratio):
    with raises(ValueError, "ratio must be a finite number > 0 and <= 1", f"got {ratio}",
                "planes="):
        cls(16, ratio=ratio)  # 1e9 would ask for ~1 TB of weights


@pytest.mark.parametrize("cls", [GCBlock, SEBlock])
@pytest.mark.parametrize("ratio", ["1/16", True, [0.25]])
def test_ratio_must_be_a_number(cls, ratio):
    with raises(TypeError, "ratio must be a float such as 1/16", "planes="):
        cls(16, ratio=ratio)


@pytest.mark.parametrize("cls", [GCBlock, SEBlock])
def test_ratio_one_is_the_widest(cls):
    assert cls(16, ratio=1).planes == 16


@pytest.mark.parametrize("cls", [GCBlock, SEBlock])
def test_planes_is_exact_where_ratio_truncates(cls):
    assert 100 * 0.29 < 29  # the float product truncates to 28
    assert cls(100, ratio=0.29).planes == 28
    block = cls(100, planes=29)
    assert block.planes == 29
    first = block.transform["mul" if cls is SEBlock else "add"][0]
    assert first.weight.shape == (29, 100, 1, 1)
    assert cls(100, ratio=0.29, planes=29).planes == 29  # agree up to rounding
    assert cls(100, ratio=1 / 4, planes=25).planes == 25


@pytest.mark.parametrize("cls", [GCBlock, SEBlock])
def test_ratio_and_planes_that_disagree(cls):
    with raises(ValueError, "ratio=0.25 and planes=8 disagree", "in_channels=16",
                "pass only one"):
        cls(16, ratio=0.25, planes=8)


@pytest.mark.parametrize("cls", [GCBlock, SEBlock])
@pytest.mark.parametrize("planes,exc", [(0, ValueError), (-3, ValueError), (2.5, TypeError),
                                        (True, TypeError), ("8", TypeError)])
def test_bad_planes(cls, planes, exc):
    with raises(exc, "planes must be", repr(planes) if exc is TypeError else str(planes)):
        cls(16, planes=planes)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("c,p", [(64, 5), (100, 29), (7, 7), (16, 40)])
@pytest.mark.parametrize("fusions", [("add",), ("add", "mul")])
@pytest.mark.parametrize("layer_norm", [True, False])
def test_param_count_with_explicit_planes(c, p, fusions, layer_norm):
    # conv_mask: C + 1; per branch: conv C->P (CP + P), LayerNorm (2P), conv P->C (PC + C)
    per_branch = 2 * c * p + p + c + (2 * p if layer_norm else 0)
    expected = (c + 1) + len(fusions) * per_branch
    assert n_params(GCBlock(c, planes=p, fusions=fusions, layer_norm=layer_norm)) == expected
    assert n_params(SEBlock(c, planes=p)) == 2 * c * p + p + c


# ------------------------------------------------------------------ LayerNorm eps
def test_eps_default_is_torch_and_mmcv():
    assert GCBlock(16).eps == 1e-5 == nn.LayerNorm(4).eps
    assert GCBlock(16).transform["add"][1].eps == 1e-5


@pytest.mark.parametrize("eps", [1e-6, 1e-3])
def test_layer_norm_uses_eps(eps, randomize):
    block = randomize(GCBlock(C, planes=4, eps=eps)).double()
    t = block.transform["add"]
    # a context whose first-conv output h has variance ~1e-8 over P, below eps: eps matters
    with torch.no_grad():
        t[0].weight.mul_(1e-4)
        t[0].bias.zero_()
    context = torch.randn(3, C, 1, 1, dtype=torch.float64)
    h = t[0](context)
    var = h.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
    assert var.max() < 1e-6  # below both eps tested
    hand = (h - h.mean(dim=(1, 2, 3), keepdim=True)) / torch.sqrt(var + eps)
    hand = hand * t[1].weight + t[1].bias
    # float64, 4 terms per mean: a few ulps of the O(1) result
    torch.testing.assert_close(t[1](h), hand, rtol=1e-12, atol=1e-12)
    other = (h - h.mean(dim=(1, 2, 3), keepdim=True)) / torch.sqrt(var + 1e-5)
    other = other * t[1].weight + t[1].bias
    assert (t[1](h) - other).abs().max() > 1e-3  # the eps in use is visible


@pytest.mark.parametrize("eps,exc", [(0, ValueError), (-1e-5, ValueError),
                                     (math.nan, ValueError), ("1e-5", TypeError)])
def test_bad_eps(eps, exc):
    with raises(exc, "eps must be"):
        GCBlock(16, eps=eps)


# ------------------------------------------------------------------ device= and dtype=
FACTORIES = {
    **{k: v for k, v in GC_LIKE.items()},
    "gc_planes_eps": lambda **kw: GCBlock(C, planes=3, eps=1e-6, fusions=("mul", "add"), **kw),
    **{f"nl{d}_{mode}_bn": (lambda d=d, mode=mode, **kw: NL[d](C, mode=mode, norm="bn", **kw))
       for d in (1, 2, 3) for mode in MODES},
    "nl2d_plain": lambda **kw: NonLocal2d(C, **kw),
    "attention_pooling": lambda **kw: AttentionPooling(C, **kw),
    "bottleneck": lambda **kw: Bottleneck(C, 3, **kw),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_dtype_at_construction(name):
    block = FACTORIES[name](dtype=torch.float64)
    tensors = dict(block.named_parameters()) | dict(block.named_buffers())
    floats = {k: t for k, t in tensors.items() if t.is_floating_point()}
    assert floats and all(t.dtype == torch.float64 for t in floats.values()), {
        k: t.dtype for k, t in floats.items()}
    assert block.state_dict().keys() == FACTORIES[name]().state_dict().keys()


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_meta_device_then_to_empty_and_reset(name):
    block = FACTORIES[name](device="meta")
    assert all(t.is_meta for t in block.state_dict().values())
    block.to_empty(device="cpu")
    torch.manual_seed(0)
    block.reset_parameters()
    ref = FACTORIES[name]()
    torch.manual_seed(0)
    ref.reset_parameters()
    got, want = block.state_dict(), ref.state_dict()
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k


def _zero_keys(sd: dict) -> set:
    return {k for k, v in sd.items() if v.is_floating_point() and not v.any()}


@pytest.mark.parametrize("fusions", [("channel_add",), ("channel_mul", "channel_add")])
def test_meta_init_zeroes_what_mmcv_zeroes(fusions):
    mmcv_cnn = pytest.importorskip("mmcv.cnn", reason="mmcv-lite has the reference blocks")
    ref = mmcv_to_gclab_state_dict(mmcv_cnn.ContextBlock(64, 1 / 4, fusion_types=fusions)
                                   .state_dict(), "gc")
    block = GCBlock(64, ratio=1 / 4, fusions=fusions, device="meta").to_empty(device="cpu")
    torch.manual_seed(0)  # the std check below is statistical: keep it deterministic
    block.reset_parameters()
    assert _zero_keys(block.state_dict()) == _zero_keys(ref)
    ln = block.transform["add"][1]
    assert torch.equal(ln.weight, torch.ones_like(ln.weight))
    # conv_mask: kaiming-normal, fan_in = 64, std sqrt(2/64) = 0.177; the sample std of 64
    # draws spreads by 1/sqrt(128) = 9%: +-30% is 3 sigma (and a wrong init, e.g. torch's
    # default uniform with std 1/sqrt(3*64) = 0.072, falls outside)
    assert 0.12 < block.context_modeling.conv_mask.weight.std() < 0.23
    if fusions == ("channel_add",):
        x = torch.randn(2, 64, 3, 3)
        assert torch.equal(block(x), x)  # the identity at init, as mmcv's


@pytest.mark.parametrize("norm", [None, "bn"])
def test_meta_init_non_local_matches_mmcv_zeros(norm):
    mmcv_cnn = pytest.importorskip("mmcv.cnn", reason="mmcv-lite has the reference blocks")
    norm_cfg = None if norm is None else {"type": "BN"}
    ref = mmcv_to_gclab_state_dict(
        mmcv_cnn.NonLocal2d(C, norm_cfg=norm_cfg).state_dict(), "nl")
    block = NonLocal2d(C, norm=norm, device="meta").to_empty(device="cpu")
    block.reset_parameters()
    sd = block.state_dict()
    assert _zero_keys(sd) == _zero_keys(ref)
    if norm == "bn":  # running statistics reset too (to_empty leaves garbage there)
        assert torch.equal(sd["norm.running_var"], torch.ones(C))
        assert int(sd["norm.num_batches_tracked"]) == 0
    x = torch.randn(2, C, 4, 4)
    assert torch.equal(block.eval()(x), x)
