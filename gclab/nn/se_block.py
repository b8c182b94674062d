r"""The Squeeze-and-Excitation (SE) block (Hu et al., 2018) as a global-context block."""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import bottleneck_width, check_int
from .framework import AveragePooling, Bottleneck, GlobalContextFramework


class SEBlock(GlobalContextFramework):
    r"""Squeeze-and-Excitation: squeeze (average pool), excitation (bottleneck, sigmoid), scale.

    .. math::

        z_i = x_i \odot \sigma\Bigl(W_2\,\mathrm{ReLU}\bigl(W_1 \tfrac{1}{N}
              \textstyle\sum_{j=1}^{N} x_j\bigr)\Bigr)

    In the framework's words: context modelling = :class:`AveragePooling`, transform =
    :class:`Bottleneck` without LayerNorm (1x1 convs C -> int(C * ratio) -> C, with bias),
    fusion = ``mul``. So ``SEBlock(C, r)`` computes exactly what
    ``GCBlock(C, r, pooling='avg', fusions=('mul',), layer_norm=False)`` computes, and their
    state_dicts have the same keys (``transform.mul.0.*``, ``transform.mul.3.*``).

    Both convs keep PyTorch's default init (as the original SE), so it is not the identity.

    Shapes: x (B, C, H, W) -> (B, C, H, W).

    Example::

        >>> se = SEBlock(64, ratio=1/16)
        >>> se(torch.randn(2, 64, 8, 8)).shape
        torch.Size([2, 64, 8, 8])
    """

    def __init__(self, in_channels: int, ratio: float = 1 / 16) -> None:
        check_int("in_channels", in_channels)
        planes = bottleneck_width(in_channels, ratio)
        excitation = Bottleneck(in_channels, planes, layer_norm=False, zero_init=False)
        super().__init__(in_channels, AveragePooling(), {"mul": excitation})
        self.ratio = ratio
        self.planes = planes

    def gate(self, x: Tensor) -> Tensor:
        r"""The excitation gates :math:`\sigma(\cdot)` in (0, 1): (B, C, H, W) -> (B, C, 1, 1)."""
        return torch.sigmoid(self.transform["mul"](self.context_modeling(x)))

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, ratio={self.ratio:g}"
