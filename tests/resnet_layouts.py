"""ResNet layouts as torchvision, timm and mmdet build them, for tests without those packages.

torchvision and timm cannot be installed beside the CPU torch of this environment, so the tests
build modules with the same attribute names and the same forward order:

- torchvision ``ResNet``: stem ``conv1/bn1/relu/maxpool``, stages ``layer1..layer4`` of
  ``BasicBlock`` (``conv1 bn1 relu conv2 bn2``) or ``Bottleneck`` (``conv1..conv3``,
  ``bn1..bn3``, stride on conv2), ``downsample = Sequential(conv1x1, bn)``, ``avgpool``, ``fc``.
- timm ``ResNet``: the same stage and norm names, plus ``act1/act2(/act3)``, ``drop_block``,
  ``aa``, ``se`` (``None`` or a module applied after the last norm) and ``drop_path``; the head is
  ``global_pool`` + ``fc``.
- mmdet ``ResNet`` with GCNet's ``ContextBlock`` (``stage_with_gcb``): the torchvision names plus
  ``self.context_block`` in each bottleneck of the chosen stages, applied after ``bn3``; no head,
  it returns the stage outputs. A detector holds it as ``.backbone``, so saved keys look like
  ``backbone.layer2.0.context_block.conv_mask.weight``.

Every forward is written so that ``torch.jit.script`` compiles it, as the originals do.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import Tensor, nn

RESNET18 = ("basic", (2, 2, 2, 2))
RESNET34 = ("basic", (3, 4, 6, 3))
RESNET50 = ("bottleneck", (3, 4, 6, 3))
RESNET101 = ("bottleneck", (3, 4, 23, 3))


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(_conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


# ----------------------------------------------------------------------------- torchvision
class TVBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(inplanes, planes, stride)
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TVBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes * 4, stride)
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


def _stages(module: nn.Module, unit: type, layers: Sequence[int], width: int) -> int:
    inplanes = width
    for i, n in enumerate(layers):
        planes = width * 2**i
        units = []
        for j in range(n):
            units.append(unit(inplanes, planes, stride=2 if (i > 0 and j == 0) else 1))
            inplanes = planes * unit.expansion
        setattr(module, f"layer{i + 1}", nn.Sequential(*units))
    return inplanes


class TorchvisionResNet(nn.Module):
    """torchvision's ``ResNet`` layout (``resnet18``: ``TorchvisionResNet('basic', (2,2,2,2))``)."""

    def __init__(
        self,
        block: str = "bottleneck",
        layers: Sequence[int] = (3, 4, 6, 3),
        width: int = 64,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        unit = {"basic": TVBasicBlock, "bottleneck": TVBottleneck}[block]
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        out_channels = _stages(self, unit, layers, width)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(out_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------------------------- timm
class TimmBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.drop_block = nn.Identity()
        self.act1 = nn.ReLU(inplace=True)
        self.aa = nn.Identity()
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se: nn.Module | None = None
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes, stride)
        self.drop_path: nn.Module | None = None

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.aa(self.act1(self.drop_block(self.bn1(self.conv1(x)))))
        x = self.bn2(self.conv2(x))
        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        x += shortcut
        return self.act2(x)


class TimmBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.drop_block = nn.Identity()
        self.act2 = nn.ReLU(inplace=True)
        self.aa = nn.Identity()
        self.conv3 = _conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.se: nn.Module | None = None
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes * 4, stride)
        self.drop_path: nn.Module | None = None

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.aa(self.act2(self.drop_block(self.bn2(self.conv2(x)))))
        x = self.bn3(self.conv3(x))
        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        x += shortcut
        return self.act3(x)


class TimmResNet(nn.Module):
    """timm's ``ResNet`` layout (``resnet50``: ``TimmResNet('bottleneck', (3,4,6,3))``)."""

    def __init__(
        self,
        block: str = "bottleneck",
        layers: Sequence[int] = (3, 4, 6, 3),
        width: int = 64,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        unit = {"basic": TimmBasicBlock, "bottleneck": TimmBottleneck}[block]
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.num_features = _stages(self, unit, layers, width)
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.global_pool(self.forward_features(x)))


# -------------------------------------------------------------------------- mmdet + GCNet
class MMDetGCBottleneck(nn.Module):
    """mmdet's ``Bottleneck`` (style='pytorch') with GCNet's ``self.context_block`` after bn3."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, gcb_ratio: float | None = None
    ) -> None:
        super().__init__()
        from mmcv.cnn import ContextBlock

        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes * 4, stride)
        self.with_gcb = gcb_ratio is not None
        if self.with_gcb:
            self.context_block = ContextBlock(planes * 4, ratio=gcb_ratio)

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.with_gcb:
            out = self.context_block(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class MMDetGCResNet(nn.Module):
    """mmdet's ``ResNet`` backbone with ``gcb=dict(ratio=r)`` on the stages flagged in
    ``stage_with_gcb`` (GCNet's c3-c5 = ``(False, True, True, True)``); returns the four stage
    outputs, as a backbone does."""

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 3),
        width: int = 64,
        gcb_ratio: float = 1 / 16,
        stage_with_gcb: Tuple[bool, bool, bool, bool] = (False, True, True, True),
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = width
        for i, n in enumerate(layers):
            planes = width * 2**i
            ratio = gcb_ratio if stage_with_gcb[i] else None
            units = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                units.append(MMDetGCBottleneck(inplanes, planes, stride, gcb_ratio=ratio))
                inplanes = planes * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*units))

    def forward(self, x: Tensor) -> List[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs


class MMDetDetector(nn.Module):
    """A stand-in detector: ``backbone`` + a ``neck`` conv, so saved keys carry ``backbone.``."""

    def __init__(self, backbone: MMDetGCResNet, out_channels: int = 8) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = nn.Conv2d(backbone.layer4[-1].conv3.out_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.neck(self.backbone(x)[-1])


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and BatchNorm buffer random, well-scaled values (in place).

    Zero-initialised convs (GC's last conv) become non-zero, BatchNorm running statistics
    become non-trivial; the scales keep activations of a deep ResNet in a sane range.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.25)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / fan_in**0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model
