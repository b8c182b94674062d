"""The three-step framework: context modelling -> transform -> fusion, and its pieces compose.

SE, SNL and GC are rebuilt by hand from AttentionPooling / AveragePooling / Bottleneck /
nn.Conv2d inside GlobalContextFramework and must compute what the named blocks compute on the
same weights; SE *is* GC with avg pooling, mul fusion and no LayerNorm; fusion multiplies first.
"""

from __future__ import annotations

import pytest
import torch
from _tol import f32_tol
from torch import nn

from gclab.nn import (
    AttentionPooling,
    AveragePooling,
    Bottleneck,
    GCBlock,
    GlobalContextFramework,
    NonLocal2d,
    SEBlock,
    SimplifiedNonLocal2d,
    fusion,
)

C = 16


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("ratio", [1 / 16, 1 / 4, 1 / 2])
def test_se_is_gc_with_avg_pooling_mul_fusion_and_no_layer_norm(ratio, randomize):
    se = randomize(SEBlock(C, ratio), std=0.5)
    gc = GCBlock(C, ratio, pooling="avg", fusions=("mul",), layer_norm=False)
    se_sd, gc_sd = se.state_dict(), gc.state_dict()
    assert list(se_sd) == list(gc_sd)
    assert sorted(se_sd) == [f"transform.mul.{i}.{p}" for i in (0, 3) for p in ("bias", "weight")]
    assert all(se_sd[k].shape == gc_sd[k].shape for k in se_sd)
    gc.load_state_dict(se_sd, strict=True)
    x = _x(2, C, 5, 3)
    out = se(x)
    assert torch.equal(out, gc(x))
    assert not torch.allclose(out, x)


def test_gc_rebuilt_from_the_pieces(randomize):
    gc = randomize(GCBlock(C, 1 / 4, pooling="att", fusions=("add", "mul")), std=0.5)
    rebuilt = GlobalContextFramework(
        C,
        context_modeling=AttentionPooling(C),
        transform={"add": Bottleneck(C, 4), "mul": Bottleneck(C, 4)},
    )
    rebuilt.load_state_dict(gc.state_dict(), strict=True)
    x = _x(2, C, 4, 6)
    out, attention = gc(x, return_attention=True)
    out2, attention2 = rebuilt(x, return_attention=True)
    assert torch.equal(out, out2) and torch.equal(attention, attention2)
    assert not torch.allclose(out, x)


def test_snl_rebuilt_from_the_pieces(randomize):
    snl = randomize(SimplifiedNonLocal2d(C), std=0.5)
    rebuilt = GlobalContextFramework(C, AttentionPooling(C), {"add": nn.Conv2d(C, C, 1)})
    rebuilt.load_state_dict(snl.state_dict(), strict=True)
    x = _x(1, C, 3, 7)
    assert torch.equal(snl(x), rebuilt(x))
    assert not torch.allclose(snl(x), x)


def test_se_rebuilt_from_the_pieces(randomize):
    se = randomize(SEBlock(C, 1 / 4), std=0.5)
    rebuilt = GlobalContextFramework(
        C, AveragePooling(), {"mul": Bottleneck(C, 4, layer_norm=False, zero_init=False)}
    )
    rebuilt.load_state_dict(se.state_dict(), strict=True)
    x = _x(3, C, 2, 2)
    assert torch.equal(se(x), rebuilt(x))


@pytest.mark.parametrize("block", ["gc", "snl", "se"])
def test_forward_is_the_three_steps_composed(block, randomize):
    m = randomize({"gc": lambda: GCBlock(C, 1 / 4, fusions=("mul", "add")),
                   "snl": lambda: SimplifiedNonLocal2d(C),
                   "se": lambda: SEBlock(C, 1 / 4)}[block](), std=0.5)
    x = _x(2, C, 3, 3)
    context = m.context_modeling(x)  # 1. context modelling
    assert context.shape == (2, C, 1, 1)
    terms = {name: t(context) for name, t in m.transform.items()}  # 2. transform
    z = fusion(x, add=terms.get("add"), mul=terms.get("mul"))  # 3. fusion
    assert torch.equal(m(x), z)


def test_non_local_forward_is_the_three_steps_composed(randomize):
    nl = randomize(NonLocal2d(C, sub_sample=True), std=0.3)
    x = _x(2, C, 4, 4)
    y, attention = nl.context_modeling(x)
    assert y.shape == (2, nl.inter_channels, 4, 4) and attention.shape == (2, 16, 4)
    out, attention2 = nl(x, return_attention=True)
    assert torch.equal(out, x + nl.transform(y))
    assert torch.equal(attention, attention2)


def test_fusion_multiplies_first_then_adds():
    x, add, mul = _x(2, 4, 3, 3, seed=1), _x(2, 4, 1, 1, seed=2), _x(2, 4, 1, 1, seed=3)
    z = fusion(x, add=add, mul=mul)
    expected = x * (1 / (1 + torch.exp(-mul))) + add
    # elementwise: x·sigmoid(m) + a, a few roundings of O(1) values (tests/_tol.py)
    assert torch.allclose(z, expected, atol=f32_tol(4, 3.0), rtol=0)
    assert not torch.allclose(z, (x + add) * torch.sigmoid(mul), atol=1e-3)
    assert torch.equal(fusion(x, add=add), x + add)
    assert torch.equal(fusion(x, mul=mul), x * torch.sigmoid(mul))
    assert torch.equal(fusion(x), x)


@pytest.mark.parametrize(
    "fusions", [("add", "mul"), ("mul", "add"), ("channel_add", "channel_mul")]
)
def test_gc_applies_mul_before_add_whatever_the_order_given(fusions, randomize):
    gc = randomize(GCBlock(C, 1 / 4, fusions=fusions), std=0.5)
    assert gc.fusions == ("mul", "add")
    assert list(gc.transform.keys()) == ["mul", "add"]
    x = _x(2, C, 3, 4)
    context = gc.context_modeling(x)
    add, mul = gc.transform["add"](context), gc.transform["mul"](context)
    expected = x * (1 / (1 + torch.exp(-mul))) + add
    # the same sums in the same kernels, then the elementwise fusion: a few roundings, |out| < 5
    assert torch.allclose(gc(x), expected, atol=f32_tol(4, 5.0), rtol=0)


@pytest.mark.parametrize("pooling", ["att", "avg"])
def test_mul_only_gc_at_init_halves_x(pooling):
    gc = GCBlock(C, 1 / 4, pooling=pooling, fusions=("mul",))
    x = _x(2, C, 5, 5)
    assert torch.equal(gc(x), 0.5 * x)


def test_add_and_mul_gc_at_init_halves_x():
    x = _x(1, C, 2, 3)
    assert torch.equal(GCBlock(C, 1 / 4, fusions=("add", "mul"))(x), 0.5 * x)


def test_se_is_not_zero_initialised():
    """SE keeps PyTorch's default init (as the original), unlike GC's zero last conv."""
    se = SEBlock(C, 1 / 4)
    assert se.transform["mul"][3].weight.abs().sum() > 0
    gc = GCBlock(C, 1 / 4)
    assert gc.transform["add"][3].weight.abs().sum() == 0
    assert gc.transform["add"][3].bias.abs().sum() == 0


def test_pooling_pieces_by_hand(randomize):
    pool = randomize(AttentionPooling(C), std=0.5)
    x = _x(2, C, 3, 5)
    context, alpha = pool.forward_with_attention(x)
    logits = torch.einsum("c,bcn->bn", pool.conv_mask.weight.reshape(C), x.flatten(2))
    expected_alpha = torch.softmax(logits + pool.conv_mask.bias, dim=1)
    # C-term logits by einsum vs the conv's kernel, through a softmax over N: K = C·N terms
    assert torch.allclose(alpha, expected_alpha, atol=f32_tol(C * 15), rtol=0)
    # an N-term weighted sum of O(1) features, in two kernels (tests/_tol.py)
    assert torch.allclose(context[..., 0, 0], torch.einsum("bcn,bn->bc", x.flatten(2), alpha),
                          atol=f32_tol(15, 3.0), rtol=0)
    assert torch.equal(pool(x), context)
    avg_context, avg_alpha = AveragePooling().forward_with_attention(x)
    assert torch.allclose(avg_context, x.mean((2, 3), keepdim=True))
    assert torch.allclose(avg_alpha, torch.full((2, 15), 1 / 15))


def test_bottleneck_layout_matches_the_paper():
    b = Bottleneck(C, 4)
    assert isinstance(b[0], nn.Conv2d) and (b[0].in_channels, b[0].out_channels) == (C, 4)
    assert isinstance(b[1], nn.LayerNorm) and tuple(b[1].normalized_shape) == (4, 1, 1)
    assert isinstance(b[2], nn.ReLU)
    assert isinstance(b[3], nn.Conv2d) and (b[3].in_channels, b[3].out_channels) == (4, C)
    assert isinstance(Bottleneck(C, 4, layer_norm=False)[1], nn.Identity)
