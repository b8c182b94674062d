"""Checkpoints that cannot load fail with a message naming what came in and what was expected;
a state_dict holding both gclab's and mmcv's name for one tensor is an error, not a silent pick."""

from __future__ import annotations

import pickle

import pytest
import torch
from resnet_layouts import RESNET50, TorchvisionResNet
from torch import nn

from gclab.nn import GCBlock, NonLocal2d, insert_blocks, load_mmdet_gcnet, mmcv_to_gclab_state_dict

WIDTH = 16


def gc_model() -> nn.Module:
    model = TorchvisionResNet(*RESNET50, width=WIDTH, num_classes=10)
    insert_blocks(model, "gc", stages=(4,), ratio=1 / 4)
    return model.eval()


# ------------------------------------------------------------- both names for one tensor
@pytest.mark.parametrize("strict", [True, False])
def test_gc_state_dict_with_both_names_is_an_error(strict):
    block = GCBlock(16, ratio=1 / 4)
    sd = block.state_dict()
    sd["conv_mask.weight"] = torch.ones_like(sd["context_modeling.conv_mask.weight"])
    before = block.context_modeling.conv_mask.weight.clone()
    both = r"'context_modeling\.conv_mask\.weight'.*'conv_mask\.weight'"
    with pytest.raises(ValueError, match=both):
        block.load_state_dict(sd, strict=strict)
    # nothing was half-loaded from the mmcv tensor
    assert torch.equal(block.context_modeling.conv_mask.weight, before)


@pytest.mark.parametrize("strict", [True, False])
def test_non_local_state_dict_with_both_names_is_an_error(strict):
    block = NonLocal2d(8)
    sd = block.state_dict()
    sd["g.conv.weight"] = sd["g.weight"] + 1
    with pytest.raises(ValueError, match=r"'g\.weight'.*'g\.conv\.weight'"):
        block.load_state_dict(sd, strict=strict)


def test_two_mmcv_names_for_one_tensor_is_an_error():
    block = NonLocal2d(8, sub_sample=True)
    sd = block.state_dict()
    sd["g.0.conv.weight"] = sd.pop("g.weight")
    sd["g.conv.weight"] = sd["g.0.conv.weight"]
    with pytest.raises(ValueError, match=r"'g\.0\.conv\.weight' and 'g\.conv\.weight'"):
        block.load_state_dict(sd)


def test_both_names_inside_a_model_and_in_the_converter():
    model = nn.Sequential(nn.Identity(), GCBlock(16, ratio=1 / 4))
    sd = model.state_dict()
    sd["1.channel_add_conv.0.bias"] = sd["1.transform.add.0.bias"]
    with pytest.raises(ValueError, match=r"'1\.transform\.add\.0\.bias'.*'1\.channel_add_conv"):
        model.load_state_dict(sd)
    with pytest.raises(ValueError, match="two names for one parameter"):
        mmcv_to_gclab_state_dict(
            {"conv_mask.weight": 1, "context_modeling.conv_mask.weight": 2}, "gc"
        )


def test_mmcv_names_alone_still_load():
    ours = GCBlock(16, ratio=1 / 4)
    src = GCBlock(16, ratio=1 / 4)
    nn.init.normal_(src.context_modeling.conv_mask.weight)
    sd = {k.replace("context_modeling.conv_mask", "conv_mask").replace("transform.add",
          "channel_add_conv"): v for k, v in src.state_dict().items()}
    assert ours.load_state_dict(sd, strict=True).missing_keys == []
    mask = ours.context_modeling.conv_mask.weight
    assert torch.equal(mask, src.context_modeling.conv_mask.weight)


@pytest.mark.parametrize("strict", [True, False])
def test_load_mmdet_gcnet_refuses_both_names(strict):
    model = gc_model()
    sd = model.state_dict()
    gclab_key = "layer4.0.bn3.1.context_modeling.conv_mask.weight"
    mmdet_key = "layer4.0.context_block.conv_mask.weight"
    sd[mmdet_key] = torch.ones_like(sd[gclab_key])
    with pytest.raises(ValueError, match=rf"'{gclab_key}' and '{mmdet_key}'"):
        load_mmdet_gcnet(model, sd, strict=strict)


# ------------------------------------------------------------- files that are not checkpoints
def test_missing_file(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=r"nope\.pth.*torch\.save"):
        load_mmdet_gcnet(gc_model(), path)


def test_directory(tmp_path):
    with pytest.raises(IsADirectoryError, match=rf"{tmp_path.name}.*directory.*torch\.save"):
        load_mmdet_gcnet(gc_model(), tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.pth.*empty.*state_dict"):
        load_mmdet_gcnet(gc_model(), path)


@pytest.mark.parametrize("text", ["hello\n", "model = dict(type='MaskRCNN')\n", "{}"])
@pytest.mark.parametrize("weights_only", [True, False])
def test_text_file(tmp_path, text, weights_only):
    path = tmp_path / "config.py"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"config\.py.*not.*torch.*state_dict"):
        load_mmdet_gcnet(gc_model(), path, weights_only=weights_only)


@pytest.mark.parametrize("weights_only", [True, False])
def test_a_corrupt_pickle_is_not_called_a_pickle_of_objects(tmp_path, weights_only):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"\x80\x02garbage that is no pickle")
    with raises_not_checkpoint("corrupt.pth"):
        load_mmdet_gcnet(gc_model(), path, weights_only=weights_only)


def raises_not_checkpoint(name):
    return pytest.raises(ValueError, match=rf"{name}.*not a torch checkpoint.*state_dict")


class _Meta:  # an arbitrary Python object inside a checkpoint (as old mmcv saved configs)
    pass


def test_weights_only_refusal_says_why_and_what_to_do(tmp_path):
    model = gc_model()
    path = tmp_path / "with_objects.pth"
    torch.save({"meta": _Meta(), "state_dict": model.state_dict()}, path)
    with pytest.raises(pickle.UnpicklingError, match=r"(?s)with_objects\.pth.*on purpose.*run "
                       r"code.*weights_only=False.*state_dict"):
        load_mmdet_gcnet(model, path)
    with pytest.raises(pickle.UnpicklingError, match=r"torch said: Unsupported global.*_Meta"):
        load_mmdet_gcnet(model, path)
    # the way out the message names works: load it yourself, pass the dict
    ckpt = torch.load(path, weights_only=False)
    assert load_mmdet_gcnet(model, ckpt).ok
    assert load_mmdet_gcnet(model, path, weights_only=False).ok


def test_a_dict_is_accepted_as_is():
    model = gc_model()
    sd = model.state_dict()
    assert load_mmdet_gcnet(model, sd).ok
    assert load_mmdet_gcnet(model, {"state_dict": sd, "meta": {"epoch": 1}}).ok
