"""load_mmdet_gcnet: weights saved from an mmdet-style ResNet with mmcv ContextBlocks.

The source model is built from mmcv-lite's own ``ContextBlock`` under mmdet's names
(``layerX.Y.context_block``, inside a detector as ``backbone.``); its outputs are the truth.
"""

from __future__ import annotations

import pytest
import torch
from _tol import f32_tol, network_terms
from resnet_layouts import (
    RESNET50,
    MMDetDetector,
    MMDetGCResNet,
    TorchvisionResNet,
    randomize_,
)
from torch import nn

from gclab.nn import insert_blocks, load_mmdet_gcnet, map_checkpoint_keys

pytest.importorskip("mmcv", reason="mmcv-lite provides the reference ContextBlock")

WIDTH = 16  # ResNet-50 layout (3, 4, 6, 3 bottlenecks) at a quarter of the width: fast on CPU


def backbone_features(model: nn.Module, x: torch.Tensor) -> list:
    """The four stage outputs of a torchvision-layout ResNet."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    outs = []
    for s in (1, 2, 3, 4):
        x = getattr(model, f"layer{s}")(x)
        outs.append(x)
    return outs


@pytest.fixture(scope="module")
def mmdet_detector():
    torch.manual_seed(0)
    det = MMDetDetector(MMDetGCResNet(RESNET50[1], width=WIDTH, gcb_ratio=1 / 16))
    return randomize_(det, seed=1).eval()


def gclab_model(ratio=1 / 16, stages=(2, 3, 4)) -> nn.Module:
    model = TorchvisionResNet(*RESNET50, width=WIDTH, num_classes=10)
    insert_blocks(model, "gc", stages=stages, ratio=ratio)
    return model.eval()


def test_detector_checkpoint_file_loads_and_reproduces_mmcv(mmdet_detector, tmp_path):
    sd = mmdet_detector.state_dict()
    assert "backbone.layer2.0.context_block.conv_mask.weight" in sd
    assert "backbone.layer2.0.context_block.channel_add_conv.0.weight" in sd
    path = tmp_path / "gcnet_r50_r16_c3-c5.pth"
    torch.save({"meta": {"epoch": 12, "config": "model = dict(...)"}, "state_dict": sd}, path)

    model = gclab_model()
    report = load_mmdet_gcnet(model, path, strict=False)
    # the classifier is the only thing a detector's backbone lacks; the neck is ignored
    assert report.missing_keys == ["fc.weight", "fc.bias"]
    assert report.unexpected_keys == []
    assert report.ignored_keys == ["neck.weight", "neck.bias"]
    renamed = report.renamed
    assert renamed["backbone.layer2.0.context_block.conv_mask.weight"] == (
        "layer2.0.bn3.1.context_modeling.conv_mask.weight"
    )
    assert renamed["backbone.layer3.5.context_block.channel_add_conv.1.bias"] == (
        "layer3.5.bn3.1.transform.add.1.bias"
    )
    assert renamed["backbone.layer4.2.bn3.running_var"] == "layer4.2.bn3.0.running_var"
    assert renamed["backbone.layer1.0.bn3.weight"] == "layer1.0.bn3.weight"  # no block there
    assert "fc.{weight,bias}" in str(report)

    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        want = mmdet_detector.backbone(x)
        got = backbone_features(model, x)
    for w, g in zip(want, got):
        # float32, mmdet's and our ResNet-50 round the same chain of sums (tests/_tol.py)
        bar = f32_tol(network_terms(model, x[0, 0].numel()), max(1.0, w.abs().max().item()))
        assert (w - g).abs().max().item() <= bar
    # the GC blocks are not the identity any more: the test compares something
    block = model.layer3[2].bn3[1]
    assert block.transform["add"][3].weight.abs().sum() > 0


def test_backbone_state_dict_without_prefix_loads_strictly(mmdet_detector):
    backbone = mmdet_detector.backbone
    model = TorchvisionResNet(*RESNET50, width=WIDTH, num_classes=10)
    del model.fc  # a headless backbone, like mmdet's
    model.fc = nn.Identity()
    insert_blocks(model, "gc", stages=(2, 3, 4))
    report = load_mmdet_gcnet(model.eval(), backbone.state_dict(), strict=True)
    assert report.ok and report.ignored_keys == []
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = backbone(x)[-1]
        bar = f32_tol(network_terms(model, x[0, 0].numel()), max(1.0, want.abs().max().item()))
        assert (want - backbone_features(model, x)[-1]).abs().max() <= bar  # as above


def test_strict_mismatch_lists_the_missing_modules(mmdet_detector):
    model = gclab_model()
    with pytest.raises(RuntimeError, match=r"missing \(2 keys\): fc.\{weight,bias\}"):
        load_mmdet_gcnet(model, mmdet_detector.state_dict(), strict=True)


def test_checkpoint_with_more_blocks_than_the_model_reports_them_unexpected(mmdet_detector):
    model = gclab_model(stages=(3, 4))  # the checkpoint also has c3 (layer2) blocks
    report = load_mmdet_gcnet(model, mmdet_detector.state_dict(), strict=False)
    assert report.unexpected_keys
    assert all(k.startswith("layer2.") and ".context_block." in k for k in report.unexpected_keys)
    assert "layer2.0.context_block" in str(report)


def test_wrong_ratio_says_which_setting_to_check(mmdet_detector):
    with pytest.raises(ValueError, match=r"r4 = ratio=1/4"):
        load_mmdet_gcnet(gclab_model(ratio=1 / 4), mmdet_detector.state_dict(), strict=False)


def test_plain_resnet_weights_load_after_insertion_and_blocks_stay_identity():
    torch.manual_seed(0)
    plain = randomize_(TorchvisionResNet(*RESNET50, width=WIDTH, num_classes=10), seed=3).eval()
    model = gclab_model()
    report = load_mmdet_gcnet(model, plain.state_dict(), strict=False)
    assert report.unexpected_keys == []
    assert report.missing_keys and all(".bn3.1." in k for k in report.missing_keys)
    assert len({k.split(".bn3.1.")[0] for k in report.missing_keys}) == 13  # all 13 GC blocks
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(plain(x), model(x))  # zero-init GC: the same network


def test_a_gclab_state_dict_round_trips():
    src = randomize_(gclab_model(), seed=5)
    dst = gclab_model()
    report = load_mmdet_gcnet(dst, src.state_dict(), strict=True)
    assert report.ok and report.renamed == {}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


def test_bad_checkpoint_arguments(tmp_path):
    model = gclab_model()
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_mmdet_gcnet(model, tmp_path / "missing.pth")
    with pytest.raises(TypeError, match="must be a state_dict"):
        load_mmdet_gcnet(model, [1, 2])
    with pytest.raises(TypeError, match="must be tensors"):
        load_mmdet_gcnet(model, {"layer1.0.conv1.weight": [0.0]})


def test_map_checkpoint_keys_handles_dataparallel_and_after_block_wrappers():
    model = TorchvisionResNet(*RESNET50, width=WIDTH, num_classes=10)
    insert_blocks(model, "nl", stages=(3,), position="after_block", units=[0])
    insert_blocks(model, "gc", stages=(3,), units=[0])
    keys = [
        "module.layer3.0.conv1.weight",
        "module.layer3.0.bn3.bias",
        "module.layer3.0.context_block.channel_add_conv.3.weight",
        "module.layer3.1.bn3.bias",
    ]
    assert map_checkpoint_keys(model, keys) == {
        "module.layer3.0.conv1.weight": "layer3.0.0.conv1.weight",
        "module.layer3.0.bn3.bias": "layer3.0.0.bn3.0.bias",
        "module.layer3.0.context_block.channel_add_conv.3.weight": (
            "layer3.0.0.bn3.1.transform.add.3.weight"
        ),
        "module.layer3.1.bn3.bias": "layer3.1.bn3.bias",
    }
    model_keys = set(model.state_dict())
    assert all(v in model_keys for v in map_checkpoint_keys(model, keys).values())
