"""insert_blocks: placement, parameter counts against the papers' formulas, identity at init."""

from __future__ import annotations

import copy

import pytest
import torch
from resnet_layouts import RESNET18, RESNET50, TimmResNet, TorchvisionResNet
from torch import nn

from gclab.nn import GCBlock, InsertedBlock, NonLocal2d, SEBlock, insert_blocks

LAYOUTS = {"torchvision": TorchvisionResNet, "timm": TimmResNet}


def gc_params(c: int, r: int) -> int:
    """One add-only GC block (GCNet paper / mmcv): 2C^2/r + 2C + 3C/r + 1."""
    return 2 * c * c // r + 2 * c + 3 * c // r + 1


def se_params(c: int, r: int) -> int:
    """SE with biased 1x1 convs: C*C/r + C/r + C/r*C + C."""
    return 2 * c * c // r + c // r + c


def nl_params(c: int) -> int:
    """Non-local, reduction 2, no norm: theta, phi, g (C*Ci + Ci each) and conv_out (Ci*C + C)."""
    ci = c // 2
    return 4 * c * ci + 3 * ci + c


def snl_params(c: int) -> int:
    """SNL: W_k (C + 1) and W_v (C^2 + C)."""
    return c * c + 2 * c + 1


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def resnet(layout: str, spec) -> nn.Module:
    """A full-size layout on the meta device: parameter shapes without the cost of init."""
    with torch.device("meta"):
        return LAYOUTS[layout](*spec)


# ResNet-50 bottleneck output channels per stage and units per stage
R50 = {1: (256, 3), 2: (512, 4), 3: (1024, 6), 4: (2048, 3)}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_gc_r16_c3_c5_of_resnet50_adds_the_published_count(layout):
    model = resnet(layout, RESNET50)
    before = n_params(model)
    out, summary = insert_blocks(model, "gc", stages=(2, 3, 4), ratio=1 / 16)
    assert out is model
    expected = sum(n * gc_params(c, 16) for s, (c, n) in R50.items() if s > 1)
    assert expected == 2_521_741  # the formula agrees with the GCNet paper's total
    assert summary.params_added == 2_521_741
    assert n_params(model) - before == 2_521_741
    assert len(summary) == 13
    assert summary.paths[0] == "layer2.0.bn3.1" and summary.paths[-1] == "layer4.2.bn3.1"
    assert [e.channels for e in summary] == [512] * 4 + [1024] * 6 + [2048] * 3
    assert isinstance(model.layer3[5].bn3, InsertedBlock)
    assert isinstance(model.layer3[5].bn3[1], GCBlock)
    assert not isinstance(model.layer1[0].bn3, InsertedBlock)


def test_gc_r4_c3_c5_of_resnet50():
    model = resnet("torchvision", RESNET50)
    _, summary = insert_blocks(model, "gc", stages=(2, 3, 4), ratio=1 / 4)
    assert summary.params_added == 10_000_909  # GCNet r4 (reference notes)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_se_r16_on_all_16_bottlenecks(layout):
    model = resnet(layout, RESNET50)
    before = n_params(model)
    _, summary = insert_blocks(model, "se", stages=(1, 2, 3, 4), ratio=1 / 16)
    assert len(summary) == 16
    assert sum(n * se_params(c, 16) for c, n in R50.values()) == 2_530_992
    assert summary.params_added == n_params(model) - before == 2_530_992
    assert all(isinstance(m.bn3[1], SEBlock) for s in (1, 2, 3, 4)
               for m in getattr(model, f"layer{s}"))


def test_nl_every_second_unit_after_block_as_the_nl_paper():
    model = resnet("torchvision", RESNET50)
    before = n_params(model)
    _, summary = insert_blocks(model, "nl", stages=(2, 3), position="after_block", units=2)
    # res3: units 1, 3; res4: units 1, 3, 5 (5 blocks in R50, as in the NL paper)
    assert summary.paths == ["layer2.1.1", "layer2.3.1", "layer3.1.1", "layer3.3.1", "layer3.5.1"]
    assert nl_params(1024) == 2_099_712
    assert summary.params_added == 2 * nl_params(512) + 3 * nl_params(1024)
    assert n_params(model) - before == summary.params_added
    assert isinstance(model.layer3[1], InsertedBlock) and isinstance(model.layer3[1][1], NonLocal2d)


def test_snl_count_and_explicit_unit_list():
    model = resnet("torchvision", RESNET50)
    _, summary = insert_blocks(model, "snl", stages=(3,), units=[0, -1])
    assert summary.paths == ["layer3.0.bn3.1", "layer3.5.bn3.1"]
    assert snl_params(1024) == 1_050_625
    assert summary.params_added == 2 * snl_params(1024)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_basic_blocks_get_the_block_after_bn2(layout):
    model = resnet(layout, RESNET18)
    _, summary = insert_blocks(model, "gc", stages=(2, 3, 4))
    assert summary.paths == [f"layer{s}.{i}.bn2.1" for s in (2, 3, 4) for i in (0, 1)]
    assert summary.params_added == 2 * sum(gc_params(c, 16) for c in (128, 256, 512))


def test_custom_callable_block_and_kwargs():
    seen = []

    def make(c, ratio):
        seen.append((c, ratio))
        return SEBlock(c, ratio=ratio)

    model = TorchvisionResNet(*RESNET18, width=8)
    _, summary = insert_blocks(model, make, stages=(4,), ratio=1 / 4)
    assert seen == [(64, 0.25), (64, 0.25)]
    assert summary.params_added == 2 * se_params(64, 4)
    text = str(summary)
    assert "layer4.0.bn2.1" in text and "SEBlock" in text and f"{summary.params_added:,}" in text


def small(layout: str, block: str = "basic") -> nn.Module:
    torch.manual_seed(0)
    layers = (2, 2, 2, 2) if block == "basic" else (1, 2, 2, 1)
    return LAYOUTS[layout](block, layers, width=8, num_classes=5).eval()


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("unit", ["basic", "bottleneck"])
@pytest.mark.parametrize(
    "block,position,kwargs",
    [
        ("gc", "after_conv3", {"ratio": 1 / 4}),
        ("gc", "after_conv3", {"ratio": 1 / 4, "fusions": ("add",), "pooling": "avg"}),
        ("snl", "after_conv3", {}),
        ("nl", "after_block", {}),
        ("nl", "after_conv3", {"norm": "bn", "sub_sample": True}),
    ],
)
def test_identity_blocks_leave_the_output_unchanged(layout, unit, block, position, kwargs):
    model = small(layout, unit)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        before = model(x)
        insert_blocks(model, block, stages=(2, 3, 4), position=position, **kwargs)
        after = model(x)
    assert torch.equal(before, after)


def test_se_is_not_the_identity_so_the_identity_test_can_fail():
    model = small("torchvision")
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        before = model(x)
        insert_blocks(model, "se", stages=(3,))
        assert not torch.allclose(before, model(x))


class Double(nn.Module):
    """A stand-in block with a known effect: z = 2x; records its input."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.seen: list = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return 2 * x


def capture(module: nn.Module, store: dict, key: str):
    def hook(m, inputs, output):
        store[key] = (inputs[0].detach().clone(), output.detach().clone())

    return module.register_forward_hook(hook)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("unit", ["basic", "bottleneck"])
def test_after_conv3_sees_the_residual_branch_before_the_addition(layout, unit):
    model = small(layout, unit)
    last_norm = "bn3" if unit == "bottleneck" else "bn2"
    plain = copy.deepcopy(model)
    ref: dict = {}
    capture(plain.layer3[1], ref, "unit")
    capture(getattr(plain.layer3[1], last_norm), ref, "norm")
    x = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        plain(x)
        insert_blocks(model, Double, stages=(3,), units=[1])
        got: dict = {}
        capture(model.layer3[1], got, "unit")
        model(x)
    block = getattr(model.layer3[1], last_norm)[1]
    unit_in, unit_out = ref["unit"]
    branch = ref["norm"][1]  # F(x): the last norm's output, before the addition
    assert torch.equal(block.seen[0], branch)
    assert not torch.allclose(block.seen[0], unit_out)  # it is not the unit's output
    # y = ReLU(x + 2 F(x)) (identity shortcut: layer3[1] keeps the shape)
    # elementwise (x + 2F, ReLU): a rounding or two of each value, inside assert_close's float32
    # default (rtol 1.3e-6 ~ 20u, atol 1e-5)
    torch.testing.assert_close(got["unit"][1], torch.relu(unit_in + 2 * branch))


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_after_block_sees_the_post_relu_unit_output(layout):
    model = small(layout, "bottleneck")
    plain = copy.deepcopy(model)
    ref: dict = {}
    capture(plain.layer3[1], ref, "unit")
    x = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        plain(x)
        insert_blocks(model, Double, stages=(3,), position="after_block", units=[1])
        got: dict = {}
        capture(model.layer3[1], got, "wrapped")
        model(x)
    block = model.layer3[1][1]
    assert torch.equal(block.seen[0], ref["unit"][1])
    assert (block.seen[0] >= 0).all()  # after the ReLU
    torch.testing.assert_close(got["wrapped"][1], 2 * ref["unit"][1])  # x2 is exact: as above


def test_timm_se_attribute_is_left_in_place_and_runs_after_the_inserted_block():
    model = small("timm", "bottleneck")
    model.layer3[0].se = SEBlock(128, ratio=1 / 4)
    insert_blocks(model, "gc", stages=(3,), ratio=1 / 4)
    assert isinstance(model.layer3[0].se, SEBlock)
    assert isinstance(model.layer3[0].bn3[1], GCBlock)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)


def test_both_positions_in_one_unit_and_block_after_an_after_block_wrapper():
    model = small("torchvision", "bottleneck")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        insert_blocks(model, "nl", stages=(3,), position="after_block")
        _, s = insert_blocks(model, "gc", stages=(3,), ratio=1 / 4)
        assert s.paths == ["layer3.0.0.bn3.1", "layer3.1.0.bn3.1"]
        assert torch.equal(model(x), before)


def test_gclab_small_backbone():
    try:
        from gclab.experiments.models import SmallResNet
    except ImportError as err:  # the experiments' backbone
        pytest.skip(f"gclab.experiments.models is not available yet: {err}")
    model = SmallResNet().eval()
    x = torch.randn(2, 1, 16, 64)
    with torch.no_grad():
        before = model(x)
        _, summary = insert_blocks(model, "gc", stages=(2, 3, 4), ratio=1 / 4)
        assert torch.equal(model(x), before)
    widths = model.widths
    assert [e.channels for e in summary] == [widths[1], widths[2], widths[3]]
    assert summary.params_added == sum(gc_params(c, 4) for c in widths[1:])
    assert summary.paths == ["layer2.0.bn2.1", "layer3.0.bn2.1", "layer4.0.bn2.1"]


# ----------------------------------------------------------------------------- bad input
def test_errors_name_what_was_expected_and_what_came_in():
    model = small("torchvision")
    with pytest.raises(ValueError, match=r"block must be one of .*'gc'.*got 'gcnet'"):
        insert_blocks(model, "gcnet", stages=(2,))
    with pytest.raises(TypeError, match="block must be one of"):
        insert_blocks(model, 3, stages=(2,))
    for bad in [(0,), (5,), (2, 5), (True,), ("3",)]:
        with pytest.raises(ValueError, match=r"stages are torchvision's layer numbers 1..4"):
            insert_blocks(model, "gc", stages=bad)
    with pytest.raises(ValueError, match="empty"):
        insert_blocks(model, "gc", stages=())
    with pytest.raises(ValueError, match="twice"):
        insert_blocks(model, "gc", stages=(2, 2))
    with pytest.raises(ValueError, match=r"position must be one of .*got 'after_conv2'"):
        insert_blocks(model, "gc", stages=(2,), position="after_conv2")
    with pytest.raises(ValueError, match=r"out of range for layer2, which has 2"):
        insert_blocks(model, "gc", stages=(2,), units=[2])
    with pytest.raises(ValueError, match="k >= 1"):
        insert_blocks(model, "gc", stages=(2,), units=0)
    with pytest.raises(TypeError, match="must return an nn.Module"):
        insert_blocks(model, lambda c: None, stages=(2,))
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        insert_blocks("resnet", "gc")


def test_a_model_without_stages_is_refused_with_a_hint():
    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = small("torchvision")
            self.head = nn.Linear(4, 4)

    det = Detector()
    with pytest.raises(ValueError, match=r"no layer2, layer3, layer4.*pass model.backbone"):
        insert_blocks(det, "gc")
    _, summary = insert_blocks(det.backbone, "gc")  # the hint works
    assert len(summary) == 6


def test_refuses_a_second_block_in_the_same_place_without_changing_anything():
    model = small("torchvision")
    insert_blocks(model, "gc", stages=(3,))
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"layer3.0.bn2 already has a block"):
        insert_blocks(model, "se", stages=(2, 3))
    assert not isinstance(model.layer2[0].bn2, InsertedBlock)  # nothing half-done
    assert model.state_dict().keys() == state.keys()


def test_units_without_named_convs_need_after_block():
    class Stage(nn.Module):
        def __init__(self):
            super().__init__()
            for i in range(1, 5):
                setattr(self, f"layer{i}", nn.Sequential(nn.Conv2d(4, 4, 1)))

    with pytest.raises(ValueError, match="use position='after_block'"):
        insert_blocks(Stage(), "gc", stages=(2,))
    with pytest.raises(ValueError, match="cannot tell the output channels"):
        insert_blocks(Stage(), "gc", stages=(2,), position="after_block")


def test_new_blocks_follow_the_dtype_and_mode_of_the_model():
    model = small("torchvision").double().train()
    insert_blocks(model, "gc", stages=(2,))
    block = model.layer2[0].bn2[1]
    assert block.context_modeling.conv_mask.weight.dtype == torch.float64
    assert block.training
    assert model(torch.randn(2, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64
