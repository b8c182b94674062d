"""The experiments backbone: layout, block insertion, and the receptive field argument."""

import pytest
import torch
from _tol import f32_tol
from torch import nn

from gclab.experiments.models import SmallResNet, receptive_field
from gclab.experiments.tasks import LEFT_COLUMNS, RIGHT_COLUMNS
from gclab.nn import GCBlock, NonLocal2d, SEBlock, SimplifiedNonLocal2d


def test_torchvision_names_and_shapes():
    m = SmallResNet()
    keys = m.state_dict().keys()
    for k in ("stem.0.weight", "layer1.0.conv1.weight", "layer1.0.bn2.weight",
              "layer2.0.downsample.0.weight", "layer4.0.conv2.weight", "fc.weight"):
        assert k in keys
    assert m(torch.zeros(3, 1, 16, 64)).shape == (3, 2)
    assert m.features(torch.zeros(1, 1, 16, 64)).shape == (1, 32, 4, 16)


@pytest.mark.parametrize(
    "block,kwargs,cls,key",
    [("gc", {"ratio": 1 / 4}, GCBlock, "layer3.0.bn2.1.context_modeling.conv_mask.weight"),
     ("se", {}, SEBlock, "layer3.0.bn2.1.transform.mul.0.weight"),
     ("snl", {}, SimplifiedNonLocal2d, "layer3.0.bn2.1.transform.add.weight"),
     ("nl", {"mode": "dot_product"}, NonLocal2d, "layer3.0.1.theta.weight")],
)
def test_one_argument_inserts_each_block(block, kwargs, cls, key):
    m = SmallResNet(block=block, block_kwargs=kwargs)
    assert [type(b) for _, b in m.inserted] == [cls]
    assert key in m.state_dict()
    assert m(torch.rand(2, 1, 16, 64)).shape == (2, 2)


def test_positions_and_stages():
    m = SmallResNet(block="gc", stages=(2, 3, 4), position="after_block")
    assert [n for n, _ in m.inserted] == ["layer2.0.1", "layer3.0.1", "layer4.0.1"]
    with pytest.raises(ValueError):
        SmallResNet(block="gc", stages=(5,))
    with pytest.raises(ValueError):
        SmallResNet(block="bogus")


def test_zero_init_gc_keeps_the_baseline_function():
    torch.manual_seed(0)
    base = SmallResNet().eval()
    torch.manual_seed(0)
    gc = SmallResNet(block="gc").eval()
    # the backbone weights are drawn first, so they agree; zero-init GC is the identity
    gc.load_state_dict({**gc.state_dict(), **{k.replace("bn2.", "bn2.0.") if k.startswith(
        "layer3.0.bn2.") else k: v for k, v in base.state_dict().items()}})
    x = torch.rand(4, 1, 16, 64)
    # zero-init GC adds exactly 0 (x + 0 == x): same kernels, same sums, so equal up to nothing;
    # the bar is one rounding of the logits (10·u·|logit|, |logit| <= ~10)
    assert torch.allclose(base(x), gc(x), atol=f32_tol(1, 10.0), rtol=0)


def _gradient_extent(model: nn.Module, size=(16, 160)) -> int:
    """Width of the input region that reaches one central layer4 feature (by autograd)."""
    m = SmallResNet(widths=model.widths, strides=model.strides, layers=model.layers).eval()
    for mod in m.modules():  # positive weights and no BN centring: no cancellation, ReLUs open
        if isinstance(mod, nn.Conv2d):
            nn.init.constant_(mod.weight, 0.05)
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.zero_()
            mod.running_var.fill_(1.0)
    x = torch.ones(1, 1, *size, requires_grad=True)
    f = m.features(x)
    f[0, :, f.shape[2] // 2, f.shape[3] // 2].sum().backward()
    cols = (x.grad[0, 0].abs().sum(0) > 0).nonzero().flatten()
    return int(cols.max() - cols.min() + 1)


def test_receptive_field_formula_matches_autograd_and_is_narrower_than_the_gap():
    m = SmallResNet()
    rf = receptive_field(m)
    assert rf == _gradient_extent(m)
    # the end objects of both tasks sit in LEFT_COLUMNS and RIGHT_COLUMNS (tests/test_data.py):
    # a feature that sees a pixel of each spans at least this many columns
    span = RIGHT_COLUMNS[0] - (LEFT_COLUMNS[1] - 1) + 1
    assert span == 42
    assert rf < span
