"""Parameter counts equal the formulas of the reference notes (and the published numbers).

Each expected value is computed here from the formula, independently of the code, and the
literal number published by the papers/notes is asserted as well.
"""

from __future__ import annotations

import pytest
from torch import nn

from gclab.nn import GCBlock, NonLocal1d, NonLocal2d, NonLocal3d, SEBlock, SimplifiedNonLocal2d

# ResNet-50 bottleneck output widths per stage (c2..c5) and the number of bottlenecks in each
RESNET50_STAGES = ((256, 3), (512, 4), (1024, 6), (2048, 3))


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def gc_add_formula(c: int, r: int) -> int:
    """One add-only GC block: 2C^2/r + 2C + 3C/r + 1 (exact when r divides C)."""
    assert c % r == 0
    return 2 * c * c // r + 2 * c + 3 * c // r + 1


def se_formula(c: int, r: int) -> int:
    """One SE block with biases: C*C/r + C/r (squeeze conv) + C/r*C + C (excite conv)."""
    return 2 * c * c // r + c // r + c


def nl_formula(c: int, reduction: int = 2, mode: str = "embedded_gaussian", bn: bool = False):
    """One Non-local block: g (+theta, phi) convs C->Ci with bias, conv_out Ci->C (bias unless
    a norm follows), + BatchNorm affine 2C, + concat_project 2Ci (no bias)."""
    ci = max(c // reduction, 1)
    embeds = 1 if mode == "gaussian" else 3
    total = embeds * (c * ci + ci) + ci * c + (0 if bn else c)
    if bn:
        total += 2 * c
    if mode == "concatenation":
        total += 2 * ci
    return total


def snl_formula(c: int) -> int:
    """W_k (C->1, bias: C + 1) + W_v (C->C, bias: C^2 + C) = C^2 + 2C + 1."""
    return (c + 1) + (c * c + c)


@pytest.mark.parametrize("c,r", [(16, 4), (16, 16), (64, 8), (256, 16), (1024, 16), (512, 4)])
def test_one_gc_add_block(c, r):
    assert n_params(GCBlock(c, ratio=1 / r)) == gc_add_formula(c, r)


def test_one_gc_r16_block_at_1024_is_133313():
    assert gc_add_formula(1024, 16) == 133_313
    assert n_params(GCBlock(1024, ratio=1 / 16)) == 133_313


@pytest.mark.parametrize("fusions,branches", [(("add",), 1), (("mul",), 1), (("add", "mul"), 2)])
@pytest.mark.parametrize("pooling", ["att", "avg"])
@pytest.mark.parametrize("layer_norm", [True, False])
def test_gc_variants_count_each_piece(fusions, branches, pooling, layer_norm):
    """conv_mask (C+1) only with att pooling; one bottleneck per fusion branch; LayerNorm 2P."""
    c, r = 32, 8
    p = c // r
    bottleneck = c * p + p + (2 * p if layer_norm else 0) + p * c + c
    expected = (c + 1 if pooling == "att" else 0) + branches * bottleneck
    block = GCBlock(c, 1 / r, pooling=pooling, fusions=fusions, layer_norm=layer_norm)
    assert n_params(block) == expected


@pytest.mark.parametrize("r,published", [(16, 2_521_741), (4, 10_000_909)])
def test_gc_in_every_c3_to_c5_bottleneck_of_resnet50(r, published):
    c3_to_c5 = RESNET50_STAGES[1:]
    expected = sum(n * gc_add_formula(c, r) for c, n in c3_to_c5)
    assert expected == published
    blocks = nn.ModuleList(GCBlock(c, ratio=1 / r) for c, n in c3_to_c5 for _ in range(n))
    assert len(blocks) == 13
    assert n_params(blocks) == published


def test_se_r16_in_all_16_bottlenecks_of_resnet50():
    expected = sum(n * se_formula(c, 16) for c, n in RESNET50_STAGES)
    assert expected == 2_530_992
    blocks = nn.ModuleList(SEBlock(c, ratio=1 / 16) for c, n in RESNET50_STAGES for _ in range(n))
    assert len(blocks) == 16
    assert n_params(blocks) == 2_530_992


def test_one_nl_block_at_1024_is_2099712():
    assert nl_formula(1024) == 2_099_712
    assert n_params(NonLocal2d(1024)) == 2_099_712


def test_one_snl_block_at_1024_is_1050625():
    assert snl_formula(1024) == 1_050_625
    assert n_params(SimplifiedNonLocal2d(1024)) == 1_050_625


@pytest.mark.parametrize("mode", ["gaussian", "embedded_gaussian", "dot_product", "concatenation"])
@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("cls", [NonLocal1d, NonLocal2d, NonLocal3d])
def test_nl_every_mode_and_norm(cls, mode, bn):
    c, reduction = 24, 4
    block = cls(c, reduction=reduction, mode=mode, norm="bn" if bn else None)
    assert n_params(block) == nl_formula(c, reduction, mode, bn)


def test_nl_inter_channels_never_zero():
    """Ci = max(C // reduction, 1), as mmcv: a reduction larger than C still gives Ci = 1."""
    assert NonLocal2d(3, reduction=8).inter_channels == 1
    assert n_params(NonLocal2d(3, reduction=8)) == nl_formula(3, 8)


@pytest.mark.parametrize("c,r", [(16, 4), (64, 16), (2048, 16)])
def test_se_block(c, r):
    assert n_params(SEBlock(c, ratio=1 / r)) == se_formula(c, r)
