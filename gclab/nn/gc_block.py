r"""The Global Context (GC) block of GCNet (Cao et al., 2019)."""

from __future__ import annotations

from typing import Iterable, Union

import torch
from torch import nn

from ..vocab import (
    POOLINGS,
    bottleneck_width,
    check_bool,
    check_choice,
    check_eps,
    check_int,
    parse_fusions,
)
from .framework import (
    AttentionPooling,
    AveragePooling,
    Bottleneck,
    DeviceLike,
    GlobalContextFramework,
)


class GCBlock(GlobalContextFramework):
    r"""Global Context block: attention pooling, a LayerNorm bottleneck, broadcast fusion.

    .. math::

        z_i = x_i + W_{v2}\,\mathrm{ReLU}\Bigl(\mathrm{LN}\bigl(W_{v1}
              \textstyle\sum_{j=1}^{N} \frac{e^{W_k x_j}}{\sum_m e^{W_k x_m}}\, x_j\bigr)\Bigr)

    (add fusion; ``mul`` fusion multiplies by the sigmoid of its own bottleneck instead, and
    runs before ``add`` when both are used).

    Args:
        in_channels: C.
        ratio: bottleneck width as a fraction in (0, 1], ``planes = int(C * ratio)``; the
            paper's r16 is ``1/16`` (the default), r4 is ``1/4``.
        planes: the bottleneck width P itself, instead of ``ratio`` (``int`` truncates, so
            ``ratio=P/C`` can give P - 1, e.g. ``int(100 * 0.29) = 28``). Passing both is an
            error unless they agree.
        pooling: ``'att'`` (attention pooling, :math:`W_k` = ``conv_mask``) or ``'avg'``.
        fusions: non-empty subset of ``('add', 'mul')`` (mmcv's ``'channel_add'`` and
            ``'channel_mul'`` are accepted too).
        layer_norm: keep the LayerNorm in the bottleneck (``False`` for the ablation).
        eps: the LayerNorm's epsilon, 1e-5 as torch and mmcv (timm's ``GlobalContext``: 1e-6).
        impl: ``'auto'`` (default), ``'explicit'`` or ``'fused'``: the three steps as written,
            or as one autograd Function with a hand-written backward (see
            :class:`~gclab.nn.framework.GlobalContextFramework`, "Paths").
        device, dtype: where and in which float type to create the parameters, as torch.nn's
            own modules (``device='meta'`` builds without storage; then ``to_empty(device=...)``
            and :meth:`reset_parameters`).

    Parameters, for P = ``planes`` and F fusion branches: :math:`(C + 1)` for ``conv_mask``
    (``'att'`` only) plus, per branch, :math:`(CP + P) + 2P + (PC + C) = 2CP + 3P + C` (the
    :math:`2P` of the LayerNorm only with ``layer_norm``).
    Init as mmcv's ``ContextBlock``: ``conv_mask`` kaiming-normal (fan_in), the last conv of
    every branch zero, so the block is the identity with ``add`` (and ``0.5 x`` with ``mul``).
    A state_dict saved by mmcv's ``ContextBlock`` loads with ``load_state_dict(strict=True)``.

    Shapes: x (B, C, H, W) -> (B, C, H, W); with ``return_attention=True`` also the attention
    (B, N, N), N = H*W: one row of weights shared by every query.

    Example::

        >>> gc = GCBlock(256, ratio=1/16)
        >>> x = torch.randn(2, 256, 14, 14)
        >>> torch.equal(gc(x), x)  # identity at init
        True
        >>> ln = GCBlock(64, planes=5, eps=1e-6).transform["add"][1]  # explicit width, timm's eps
        >>> ln.normalized_shape, ln.eps
        ((5, 1, 1), 1e-06)
    """

    def __init__(
        self,
        in_channels: int,
        ratio: float | None = None,
        pooling: str = "att",
        fusions: Union[str, Iterable[str]] = ("add",),
        layer_norm: bool = True,
        planes: int | None = None,
        eps: float = 1e-5,
        impl: str = "auto",
        device: DeviceLike = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        check_int("in_channels", in_channels)
        check_choice("pooling", pooling, POOLINGS)
        check_bool("layer_norm", layer_norm)
        eps = check_eps("eps", eps)
        fusions = parse_fusions(fusions)
        width = bottleneck_width(in_channels, ratio, planes)
        kw = {"device": device, "dtype": dtype}
        if pooling == "att":
            context_modeling: nn.Module = AttentionPooling(in_channels, **kw)
        else:
            context_modeling = AveragePooling()
        transform = {
            f: Bottleneck(in_channels, width, layer_norm=layer_norm, eps=eps, **kw)
            for f in fusions
        }
        super().__init__(in_channels, context_modeling, transform, impl=impl)
        if ratio is None:  # what mmcv's ContextBlock would be given for this width
            ratio = 1 / 16 if planes is None else planes / in_channels
        self.ratio = ratio
        self.planes = width
        self.pooling = pooling
        self.layer_norm = layer_norm
        self.eps = eps

    def extra_repr(self) -> str:
        # in_channels, ratio, pooling, fusions, layer_norm; planes/eps where they say more
        exact = self.planes == int(self.in_channels * self.ratio)
        extra = "" if exact else f", planes={self.planes}"
        extra += "" if self.eps == 1e-5 else f", eps={self.eps:g}"
        return (
            f"in_channels={self.in_channels}, ratio={self.ratio:g}, pooling={self.pooling!r}, "
            f"fusions={self.fusions}, layer_norm={self.layer_norm}{extra}"
        )

