r"""A small ResNet-style backbone with torchvision's names, and block insertion.

Layout (torchvision naming, so code written for ``torchvision.models.resnet18`` finds its way)::

    stem      conv3x3(in -> w0) + BN + ReLU                       (stride 1)
    layer1    BasicBlock(w0 -> w0),   stride 1                   16 x 64 on the 16 x 64 tasks
    layer2    BasicBlock(w0 -> w1),   stride 2                    8 x 32
    layer3    BasicBlock(w1 -> w2),   stride 2                    4 x 16
    layer4    BasicBlock(w2 -> w3),   stride 1                    4 x 16

Default widths (8, 16, 64, 32): 64 channels where the blocks go (layer3), so that GC/SE at the
paper's ratio 1/16 keep a 4-wide bottleneck (at 32 channels it would be 2 wide, and a LayerNorm
over 2 numbers leaves one bit: GC r16 then never learned the task in our trials).
    avgpool   global average pooling;  fc  linear w3 -> classes

Each ``BasicBlock`` has ``conv1, bn1, conv2, bn2`` and ``downsample`` (1x1 conv + BN) when the
shape changes, as in torchvision. Its receptive field is 41 pixels (:func:`receptive_field`),
narrower than the 42 columns a feature must span to see both end objects of
:mod:`gclab.experiments.data`'s tasks.

``SmallResNet(block="gc", stages=(3,), position="after_conv3", block_kwargs={"ratio": 1/16})``
inserts a block in every unit of the chosen stages:

- ``'after_conv3'``: after the unit's last conv + norm (``bn2``), before the residual addition,
  as GC and SE are placed in their papers (block keys ``layer3.0.bn2.1.*``);
- ``'after_block'``: after the whole unit (after the addition and ReLU), as NL was placed
  (block keys ``layer3.0.1.*``).

The insertion is ``gclab.nn.insert_blocks`` (see :mod:`gclab.nn.insert`).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from gclab.nn import GCBlock, NonLocal2d, SEBlock, SimplifiedNonLocal2d

BLOCKS = ("gc", "nl", "snl", "se")
POSITIONS = ("after_conv3", "after_block")
DEFAULT_POSITION = {"gc": "after_conv3", "se": "after_conv3", "snl": "after_conv3",
                    "nl": "after_block"}


def make_block(name: Union[str, Callable[[int], nn.Module]], channels: int,
               **kwargs: Any) -> nn.Module:
    """Build block ``name`` ('gc', 'nl', 'snl', 'se', or a callable of the channels) for C.

    Example::

        >>> make_block("gc", 32, ratio=1/4).planes
        8
    """
    if callable(name) and not isinstance(name, str):
        return name(channels)
    if name == "gc":
        return GCBlock(channels, **kwargs)
    if name == "nl":
        return NonLocal2d(channels, **kwargs)
    if name == "snl":
        return SimplifiedNonLocal2d(channels, **kwargs)
    if name == "se":
        return SEBlock(channels, **kwargs)
    raise ValueError(f"block must be one of {list(BLOCKS)} or a callable, got {name!r}")


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    r"""torchvision's BasicBlock: :math:`y = \mathrm{ReLU}(F(x) + \mathrm{sc}(x))`.

    ``F = bn2(conv2(ReLU(bn1(conv1(x)))))``. Shapes (B, Cin, H, W) ->
    (B, Cout, H/stride, W/stride).
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class SmallResNet(nn.Module):
    """A 4-stage ResNet for 1 x 16 x 64 inputs, with optional blocks (see the module doc).

    Args:
        in_channels, num_classes: input channels and classes.
        widths: channels of layer1..layer4. strides: stride of each stage's first unit.
        layers: units (BasicBlocks) per stage.
        block: None (the baseline), 'gc', 'nl', 'snl', 'se' or a callable ``f(channels)``.
        stages: which of layer1..layer4 (1-based) get the block.
        position: 'after_conv3' or 'after_block'; default: after_block for NL, else after_conv3.
        block_kwargs: passed to the block's constructor (``ratio``, ``mode``, ``pooling``...).
        dense: a per-position head (a 1x1 conv on the layer4 map, logits (B, classes, H', W'))
            instead of global average pooling + linear (the dense ``paint`` task).

    Shapes: (B, in_channels, H, W) -> logits (B, num_classes).

    Example::

        >>> m = SmallResNet(block="gc", stages=(3,), block_kwargs={"ratio": 1 / 16})
        >>> m(torch.zeros(2, 1, 16, 64)).shape
        torch.Size([2, 2])
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        widths: Sequence[int] = (8, 16, 64, 32),
        strides: Sequence[int] = (1, 2, 2, 1),
        layers: Sequence[int] = (1, 1, 1, 1),
        block: Union[None, str, Callable[[int], nn.Module]] = None,
        stages: Iterable[int] = (3,),
        position: str | None = None,
        block_kwargs: Dict[str, Any] | None = None,
        dense: bool = False,
    ) -> None:
        super().__init__()
        if len(widths) != 4 or len(strides) != 4 or len(layers) != 4:
            raise ValueError(
                f"widths, strides and layers need 4 entries (layer1..layer4), got "
                f"{tuple(widths)}, {tuple(strides)}, {tuple(layers)}"
            )
        self.widths, self.strides, self.layers = tuple(widths), tuple(strides), tuple(layers)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        cin = widths[0]
        for i, (w, s, n) in enumerate(zip(widths, strides, layers), start=1):
            units: List[nn.Module] = []
            for j in range(n):
                stride = s if j == 0 else 1
                down = None
                if stride != 1 or cin != w:
                    down = nn.Sequential(nn.Conv2d(cin, w, 1, stride=stride, bias=False),
                                         nn.BatchNorm2d(w))
                units.append(BasicBlock(cin, w, stride, down))
                cin = w
            setattr(self, f"layer{i}", nn.Sequential(*units))
        self.dense = bool(dense)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(cin, num_classes, 1) if self.dense else nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.bias is None:  # the backbone's convs only
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.block_name = block if isinstance(block, str) or block is None else "custom"
        self.inserted: List[Tuple[str, nn.Module]] = []
        if block is not None:
            if position is None:
                position = DEFAULT_POSITION.get(block, "after_conv3") if isinstance(
                    block, str) else "after_conv3"
            self.inserted = insert(self, block, tuple(stages), position, **(block_kwargs or {}))

    def features(self, x: Tensor) -> Tensor:
        """The layer4 feature map (B, w3, H', W')."""
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        if self.dense:
            return self.fc(self.features(x))
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


def insert(model: nn.Module, block: Union[str, Callable[[int], nn.Module]],
           stages: Tuple[int, ...], position: str = "after_conv3",
           **kwargs: Any) -> List[Tuple[str, nn.Module]]:
    """Insert ``block`` into every unit of ``stages`` with ``gclab.nn.insert_blocks``.

    Returns [(qualified name, block module)] of the inserted blocks.
    """
    from gclab.nn import insert_blocks

    _, summary = insert_blocks(model, block, stages, position=position, **kwargs)
    modules = dict(model.named_modules())
    return [(p, modules[p]) for p in summary.paths]


def receptive_field(model: SmallResNet) -> int:
    r"""Theoretical receptive field (pixels, per side) of one layer4 feature of ``model``.

    :math:`r \leftarrow r + (k - 1)\,j,\; j \leftarrow j \cdot s` over the stem and every 3x3
    conv of the main path (the 1x1 shortcuts see less). Blocks inserted by :func:`insert`
    (GC, SE, SNL, NL) are global, so the RF of a model with any of them is the whole input;
    this function describes the plain backbone.
    """
    r, j = 3, 1  # the stem: one 3x3 conv, stride 1
    for s, n in zip(model.strides, model.layers):
        for u in range(n):
            stride = s if u == 0 else 1
            r += 2 * j  # conv1, 3x3 with the unit's stride
            j *= stride
            r += 2 * j  # conv2, 3x3 stride 1
    return r
