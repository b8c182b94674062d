r"""Exercises of lesson 08, gclab in your project (topic ``use.``).

A residual unit :math:`y = \mathrm{ReLU}(x + F(x))` gets a block :math:`B` either on its
residual branch (``'after_conv3'``, GCNet/SE) or after the unit (``'after_block'``, Non-local):

.. math::

    y = \mathrm{ReLU}\bigl(x + B(F(x))\bigr) \qquad\text{or}\qquad
    y = B\bigl(\mathrm{ReLU}(x + F(x))\bigr).

The exercises: that placement with a block of known fusion terms, the Non-local paper's
"every k-th unit", the parameters GC adds, and the key renaming that loads an mmdet/mmcv
checkpoint. References run ``gclab.nn`` (``fusion``, ``GCBlock``, ``insert_blocks``,
``map_checkpoint_keys``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import List, Sequence, Tuple

import numpy as np
import torch

from gclab.exercises.registry import Case, Exercise, Property, register
from gclab.nn import GCBlock, fusion, insert_blocks, map_checkpoint_keys
from gclab.nn.insert import select_units

from ._props import COUNT, count_is_int, counts_are_ints

NOTEBOOK = "08_gclab_in_your_project"
GC_STAGES = (2, 3, 4)  # the lesson's model: SmallResNet() with GC r4 at c3-c5


# ------------------------------------------------------------------------ use.unit_output
def ref_unit_output(identity, branch, mul, add, position):
    r"""A residual unit's output with a global-context block inserted at ``position``.

    ``identity`` (B, C, H, W) is the shortcut, ``branch`` :math:`F(x)` (B, C, H, W) the residual
    branch after its last norm; the block fuses ``mul``/``add`` (B, C, 1, 1) as
    ``gclab.nn.fusion``: :math:`B(t) = t \odot \sigma(\mathrm{mul}) + \mathrm{add}`.
    """
    t = {k: torch.as_tensor(v) for k, v in dict(i=identity, b=branch, m=mul, a=add).items()}
    if position == "after_conv3":
        out = torch.relu(t["i"] + fusion(t["b"], add=t["a"], mul=t["m"]))
    elif position == "after_block":
        out = fusion(torch.relu(t["i"] + t["b"]), add=t["a"], mul=t["m"])
    else:
        raise ValueError(f"position must be 'after_conv3' or 'after_block', got {position!r}")
    return out.numpy()


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def wrong_unit_block_on_shortcut(identity, branch, mul, add, position):
    if position == "after_block":
        return np.maximum(identity + branch, 0.0) * _sig(mul) + add
    return np.maximum(identity * _sig(mul) + add + branch, 0.0)


def wrong_unit_before_relu(identity, branch, mul, add, position):
    if position == "after_conv3":
        return np.maximum(identity + branch * _sig(mul) + add, 0.0)
    return np.maximum((identity + branch) * _sig(mul) + add, 0.0)


def wrong_unit_positions_swapped(identity, branch, mul, add, position):
    other = "after_block" if position == "after_conv3" else "after_conv3"
    return ref_unit_output(identity, branch, mul, add, other)


def wrong_unit_no_sigmoid(identity, branch, mul, add, position):
    if position == "after_conv3":
        return np.maximum(identity + branch * mul + add, 0.0)
    return np.maximum(identity + branch, 0.0) * mul + add


def cases_unit_output(rng: np.random.Generator) -> List[Case]:
    out = []
    for shape in [(2, 3, 4, 5), (1, 4, 3, 2)]:
        b, c = shape[:2]
        for position in ("after_conv3", "after_block"):
            out.append(Case(
                args=(
                    rng.standard_normal(shape), rng.standard_normal(shape),
                    rng.standard_normal((b, c, 1, 1)), rng.standard_normal((b, c, 1, 1)),
                    position,
                ),
                label=f"{shape} {position}",
            ))
    return out


def _shape_of_identity(out, identity, *args):
    return np.shape(out) == np.shape(identity)


register(Exercise(
    id="use.unit_output",
    notebook=NOTEBOOK,
    title="Where the block sits: after_conv3 (residual branch) vs after_block (unit output)",
    kind="function",
    reference=ref_unit_output,
    cases=cases_unit_output,
    rtol=1e-7,
    mistakes={
        "the block was applied to the shortcut instead of the residual branch":
            wrong_unit_block_on_shortcut,
        "the block runs after the addition but before the ReLU": wrong_unit_before_relu,
        "the two positions are swapped": wrong_unit_positions_swapped,
        "mul fusion without the sigmoid (x * mul instead of x * sigmoid(mul))":
            wrong_unit_no_sigmoid,
    },
    properties=[Property("output has the unit's shape (B, C, H, W)", _shape_of_identity)],
    hints=(
        "after_conv3 changes only the residual branch, before it meets the shortcut (GC, SE); "
        "after_block takes the finished unit output, after the addition and the ReLU (NL).",
        "All of identity and branch are (B, C, H, W); mul and add are (B, C, 1, 1) and broadcast. "
        "The block gates its input with the sigmoid of mul first, then adds add.",
        "write the block once as a small function of its input\nafter_conv3: apply the block to "
        "the branch, then add the shortcut, then the ReLU\nafter_block: add the shortcut and "
        "apply the ReLU first, then the block",
    ),
))


# -------------------------------------------------------------------------- use.every_kth
def ref_every_kth(n_units: int, k: int) -> List[int]:
    """Indices of the units of a stage with ``n_units`` units that get a block when every k-th
    unit gets one, counting from the first (``insert_blocks(..., units=k)``)."""
    return select_units(k, n_units, 0)


def wrong_every_kth_from_zero(n_units, k):
    return list(range(0, n_units, k))


def wrong_every_kth_one_based(n_units, k):
    return list(range(k, n_units + 1, k))


def cases_every_kth(rng: np.random.Generator) -> List[Case]:
    fixed = [(6, 2), (4, 2), (23, 2), (3, 3), (7, 3)]
    extra = [(int(rng.integers(4, 30)), int(rng.integers(2, 5))) for _ in range(2)]
    return [Case(args=a, label=f"n_units={a[0]}, k={a[1]}") for a in fixed + extra]


register(Exercise(
    id="use.every_kth",
    notebook=NOTEBOOK,
    title="Non-local's placement: a block after every second residual unit",
    kind="function",
    reference=ref_every_kth,
    cases=cases_every_kth,
    rtol=0,
    mistakes={
        "counting starts with a block at unit 0 (the NL paper's first block follows unit 1)":
            wrong_every_kth_from_zero,
        "1-based unit numbers (Python indexes the units from 0)": wrong_every_kth_one_based,
    },
    properties=[Property("unit indices are ints (use // for any division)", counts_are_ints),
                Property("a list of indices in 0..n_units-1",
                         lambda out, n, k: all(0 <= i < n for i in out))],
    hints=(
        "Every k-th unit, counted 1, 2, ..., k: the k-th unit is the first to get a block. In "
        "res4 of ResNet-50 (6 units) with k 2 that is three blocks.",
        "Return a list of Python ints, the 0-based indices into the stage's Sequential; 6 units "
        "with k 2 give 3 of them, and the first one is not index 0.",
        "walk the units in order, counting them from one\nkeep a unit when its count is divisible "
        "by k\nreport the kept units by their 0-based position",
    ),
))


# -------------------------------------------------------------------------- use.gc_params
def ref_gc_params(stages: Sequence[Tuple[int, int]], ratio: float) -> int:
    """Parameters that add-fusion GC blocks (``GCBlock(C, ratio)``) add to a backbone whose
    chosen stages have ``(channels, units)`` = ``stages``, one block per unit."""
    total = 0
    for c, n in stages:
        total += n * sum(p.numel() for p in GCBlock(c, ratio=ratio).parameters())
    return int(total)


def _gc_formula(c, ratio, layer_norm=True, biases=True):
    p = int(c * ratio)
    n = c + 2 * c * p  # W_k (C -> 1) and the two bottleneck convs
    if biases:
        n += 1 + p + c
    if layer_norm:
        n += 2 * p
    return n


def wrong_gc_no_layernorm(stages, ratio):
    return sum(n * _gc_formula(c, ratio, layer_norm=False) for c, n in stages)


def wrong_gc_no_biases(stages, ratio):
    return sum(n * _gc_formula(c, ratio, biases=False) for c, n in stages)


def wrong_gc_one_per_stage(stages, ratio):
    return sum(_gc_formula(c, ratio) for c, _ in stages)


def cases_gc_params(rng: np.random.Generator) -> List[Case]:
    resnet50_c3_c5 = [(512, 4), (1024, 6), (2048, 3)]
    small = [(16, 1), (32, 1), (32, 1)]
    rand = [(int(8 * rng.integers(2, 40)), int(rng.integers(2, 5))) for _ in range(2)]
    return [
        Case(args=(resnet50_c3_c5, 1 / 16), label="ResNet-50 c3-c5, r16"),
        Case(args=(resnet50_c3_c5, 1 / 4), label="ResNet-50 c3-c5, r4"),
        Case(args=(small, 1 / 4), label=f"{small}, r4"),
        Case(args=(rand, 1 / 8), label=f"{rand}, r8"),
        # C * ratio = 6.25 and 5.625: int() (mmcv), round() and ceil() all differ there
        Case(args=([(100, 2), (90, 1)], 1 / 16), label="[(100, 2), (90, 1)], r16"),
    ]


register(Exercise(
    id="use.gc_params",
    notebook=NOTEBOOK,
    title="How many parameters GC blocks add to a backbone",
    kind="function",
    reference=ref_gc_params,
    cases=cases_gc_params,
    rtol=0,
    mistakes={
        "the LayerNorm's weight and bias (2P per block) are missing": wrong_gc_no_layernorm,
        "the conv biases (1 + P + C per block) are missing": wrong_gc_no_biases,
        "one block per stage instead of one per residual unit": wrong_gc_one_per_stage,
    },
    properties=[Property(COUNT, count_is_int)],
    hints=(
        "A GC block is W_k (1x1 conv C -> 1, with bias) and a bottleneck: 1x1 conv C -> P, "
        "LayerNorm over P (weight and bias), ReLU, 1x1 conv P -> C; P is C times ratio, rounded "
        "down to an int (as mmcv's int() does). Every residual unit of a chosen stage gets one.",
        "Per block: the four parameterised layers, each with its weights and biases. Multiply by "
        "the units of the stage and sum over the stages. Return a Python int.",
        "start a running total at zero\nfor every stage (channels, units): compute its P, count "
        "one block at that width\nadd units times that count to the total",
    ),
))


# ---------------------------------------------------------------------------- use.map_key
@lru_cache(maxsize=1)
def _lesson_model():
    from gclab.experiments.models import SmallResNet

    model = SmallResNet()
    insert_blocks(model, "gc", stages=GC_STAGES, ratio=1 / 4)
    return model


def ref_map_key(key: str):
    """The key of the lesson's model (``SmallResNet`` + GC r4 at stages 2-4, after_conv3) that
    an mmdet checkpoint key loads into; None for keys outside ``backbone.``."""
    # a backbone key goes along so that a lone 'neck...' key is seen as part of a detector's
    # checkpoint (map_checkpoint_keys decides that from all the keys together)
    return map_checkpoint_keys(_lesson_model(), [key, "backbone.stem.0.weight"])[key]


_MMCV = (("conv_mask.", "context_modeling.conv_mask."), ("channel_add_conv.", "transform.add."))


def _manual_map(key, strip=True, wrap_norm=True, rename_inside=True):
    if not key.startswith("backbone."):
        return None
    rest = key[len("backbone."):] if strip else key
    parts = key[len("backbone."):].split(".")
    if len(parts) > 3 and parts[0] in {f"layer{s}" for s in GC_STAGES}:
        unit = ".".join(parts[:2])
        if parts[2] == "bn2" and wrap_norm:
            rest = ("" if strip else "backbone.") + f"{unit}.bn2.0." + ".".join(parts[3:])
        elif parts[2] == "context_block":
            inner = ".".join(parts[3:])
            if rename_inside:
                for old, new in _MMCV:
                    if inner.startswith(old):
                        inner = new + inner[len(old):]
            rest = ("" if strip else "backbone.") + f"{unit}.bn2.1.{inner}"
    return rest


def wrong_map_kept_prefix(key):
    return _manual_map(key, strip=False)


def wrong_map_norm_not_moved(key):
    return _manual_map(key, wrap_norm=False)


def wrong_map_mmcv_names_kept(key):
    return _manual_map(key, rename_inside=False)


MAP_KEYS = [
    "backbone.stem.0.weight",
    "backbone.layer1.0.bn2.weight",
    "backbone.layer2.0.bn2.running_mean",
    "backbone.layer3.0.conv1.weight",
    "backbone.layer3.0.context_block.conv_mask.weight",
    "backbone.layer4.0.context_block.channel_add_conv.0.weight",
    "backbone.layer2.0.context_block.channel_add_conv.1.bias",
    "neck.lateral_convs.0.conv.weight",
]


def cases_map_key(rng: np.random.Generator) -> List[Case]:
    order = rng.permutation(len(MAP_KEYS))
    return [Case(args=(MAP_KEYS[i],), label=MAP_KEYS[i]) for i in order]


register(Exercise(
    id="use.map_key",
    notebook=NOTEBOOK,
    title="Where an mmdet GCNet checkpoint key goes in the gclab model",
    kind="function",
    reference=ref_map_key,
    cases=cases_map_key,
    rtol=0,
    seeds=(0,),
    mistakes={
        "the detector's 'backbone.' prefix was kept": wrong_map_kept_prefix,
        "the wrapped norm keeps its old name (bn2 became InsertedBlock(bn2, block): bn2.0)":
            wrong_map_norm_not_moved,
        "mmcv's names inside the block were kept (conv_mask, channel_add_conv)":
            wrong_map_mmcv_names_kept,
    },
    hints=(
        "insert_blocks replaced each unit's bn2 (stages 2-4) by Sequential(bn2, GCBlock): the "
        "norm is now child 0, the block child 1. mmdet stored the block as unit.context_block, "
        "with mmcv's names inside. Keys outside 'backbone.' belong to the detector's neck/heads.",
        "A key is dotted parts: backbone, layer, unit, module, then the rest. Only the module "
        "part of stages 2-4 changes: the norm gains its child index, the context block becomes "
        "the Sequential's second child, and mmcv's two module names inside it become gclab's "
        "(conv_mask sits under context_modeling, channel_add_conv is the add transform). Neck and "
        "head keys have no counterpart.",
        "not a backbone key: return None\ndrop the backbone prefix and split the key on dots\nin "
        "stages 2-4: rename the bn2 part and the context_block part as above, and the mmcv name "
        "that follows a context_block\njoin the parts again",
    ),
))


class MMDetStyleBasicBlock(torch.nn.Module):
    """A residual unit as mmdet builds it with GCNet's plugin: the unit's own convs and norms,
    plus ``self.context_block`` (an mmcv ``ContextBlock``) applied after the last norm, before
    the residual addition. Built from a ``SmallResNet`` BasicBlock, whose modules it takes."""

    def __init__(self, unit: torch.nn.Module, context_block: torch.nn.Module) -> None:
        super().__init__()
        for name in ("conv1", "bn1", "relu", "conv2", "bn2", "downsample"):
            setattr(self, name, getattr(unit, name))
        self.context_block = context_block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.context_block(self.bn2(self.conv2(out)))
        return self.relu(out + identity)


def mmdet_style_small_resnet(ratio: float = 1 / 4, seed: int = 0) -> torch.nn.Module:
    """``gclab.experiments.models.SmallResNet`` whose units in stages 2-4 carry mmcv's
    ``ContextBlock`` as ``unit.context_block`` (mmdet's name and placement), every weight
    random: what a GCNet checkpoint from mmdet holds, in small. Needs mmcv (mmcv-lite)."""
    from mmcv.cnn import ContextBlock

    from gclab.experiments.models import SmallResNet

    torch.manual_seed(seed)
    model = SmallResNet()
    for s in GC_STAGES:
        stage = getattr(model, f"layer{s}")
        for i, unit in enumerate(stage):
            block = ContextBlock(unit.bn2.num_features, ratio=ratio)
            stage[i] = MMDetStyleBasicBlock(unit, block)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = p[0].numel() ** -0.5 if p.dim() > 1 else 0.1
            p.copy_(torch.randn(p.shape, generator=g) * scale + (1.0 if "bn" in name else 0.0))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return model.eval()
