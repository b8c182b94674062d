r"""The Squeeze-and-Excitation (SE) block (Hu et al., 2018) as a global-context block."""

from __future__ import annotations

import torch
from torch import Tensor

from ..vocab import bottleneck_width, check_int
from .framework import AveragePooling, Bottleneck, DeviceLike, GlobalContextFramework


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

    Args:
        in_channels: C.
        ratio: the width as a fraction in (0, 1], ``planes = int(C * ratio)`` (default 1/16).
        planes: the width P itself, instead of ``ratio`` (e.g. timm's rounded ``rd_channels``);
            passing both is an error unless they agree.
        impl: ``'auto'`` (default), ``'explicit'`` or ``'fused'``: the three steps as written,
            or as one autograd Function with a hand-written backward (see
            :class:`~gclab.nn.framework.GlobalContextFramework`, "Paths").
        device, dtype: where and in which float type to create the parameters (torch.nn's
            convention; ``device='meta'``, then ``to_empty`` and :meth:`reset_parameters`).

    Parameters: :math:`(CP + P) + (PC + C) = 2CP + P + C`.
    Shapes: x (B, C, H, W) -> (B, C, H, W).

    Example::

        >>> se = SEBlock(64, ratio=1/16)
        >>> se(torch.randn(2, 64, 8, 8)).shape
        torch.Size([2, 64, 8, 8])
        >>> SEBlock(64, planes=8).planes  # timm's SEModule(64): rd_channels = 8
        8
    """

    def __init__(
        self,
        in_channels: int,
        ratio: float | None = None,
        planes: int | None = None,
        impl: str = "auto",
        device: DeviceLike = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        check_int("in_channels", in_channels)
        width = bottleneck_width(in_channels, ratio, planes)
        excitation = Bottleneck(
            in_channels, width, layer_norm=False, zero_init=False, device=device, dtype=dtype
        )
        super().__init__(in_channels, AveragePooling(), {"mul": excitation}, impl=impl)
        if ratio is None:  # what mmcv's ContextBlock would be given for this width
            ratio = 1 / 16 if planes is None else planes / in_channels
        self.ratio = ratio
        self.planes = width

    def gate(self, x: Tensor) -> Tensor:
        r"""The excitation gates :math:`\sigma(\cdot)` in (0, 1): (B, C, H, W) -> (B, C, 1, 1)."""
        return torch.sigmoid(self.transform["mul"](self.context_modeling(x)))

    def extra_repr(self) -> str:
        exact = self.planes == int(self.in_channels * self.ratio)
        extra = "" if exact else f", planes={self.planes}"
        return f"in_channels={self.in_channels}, ratio={self.ratio:g}{extra}"
