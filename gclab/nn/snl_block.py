r"""The Simplified Non-local (SNL) block of the GCNet paper."""

from __future__ import annotations

import torch
from torch import nn

from ..vocab import check_int
from .framework import AttentionPooling, DeviceLike, GlobalContextFramework


class SimplifiedNonLocal2d(GlobalContextFramework):
    r"""Simplified Non-local block: one query-independent attention map for all positions.

    .. math::

        z_i = x_i + W_v \sum_{j=1}^{N} \frac{\exp(W_k x_j)}{\sum_m \exp(W_k x_m)}\, x_j

    Context modelling = :class:`AttentionPooling` (``W_k`` = ``conv_mask``, 1x1 conv C -> 1),
    transform = ``W_v``, one 1x1 conv C -> C with bias (``transform.add``), fusion = ``add``.
    ``W_v`` starts at zero, so the block is the identity at init.
    Parameters: :math:`(C + 1) + (C^2 + C) = C^2 + 2C + 1` (1,050,625 at C = 1024).
    ``device``/``dtype``: where and in which float type to create them (torch.nn's convention;
    ``device='meta'``, then ``to_empty`` and :meth:`reset_parameters`). ``impl``: ``'auto'``
    (default), ``'explicit'`` or ``'fused'``, the three steps as written or as one autograd
    Function (:class:`~gclab.nn.framework.GlobalContextFramework`, "Paths").

    Shapes: x (B, C, H, W) -> (B, C, H, W); with ``return_attention=True`` also (B, N, N).

    Example::

        >>> snl = SimplifiedNonLocal2d(64)
        >>> out, attn = snl(torch.randn(2, 64, 8, 8), return_attention=True)
        >>> attn.shape  # every one of the 64 query rows is the same map
        torch.Size([2, 64, 64])
    """

    def __init__(
        self,
        in_channels: int,
        impl: str = "auto",
        device: DeviceLike = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        check_int("in_channels", in_channels)
        kw = {"device": device, "dtype": dtype}
        w_v = nn.Conv2d(in_channels, in_channels, kernel_size=1, **kw)
        nn.init.zeros_(w_v.weight)
        nn.init.zeros_(w_v.bias)
        super().__init__(
            in_channels, AttentionPooling(in_channels, **kw), {"add": w_v}, impl=impl
        )

    def reset_parameters(self) -> None:
        """Initialise again as at construction: ``conv_mask`` kaiming-normal, ``W_v`` zero."""
        self.context_modeling.reset_parameters()
        nn.init.zeros_(self.transform["add"].weight)
        nn.init.zeros_(self.transform["add"].bias)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}"
