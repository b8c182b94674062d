r"""The Global Context (GC) block of GCNet (Cao et al., 2019)."""

from __future__ import annotations

from typing import Iterable, Union

from ._checks import bottleneck_width, check_bool, check_choice, check_int
from .framework import FUSIONS, AttentionPooling, AveragePooling, Bottleneck, GlobalContextFramework

POOLINGS = ("att", "avg")
_FUSION_ALIASES = {"channel_add": "add", "channel_mul": "mul"}  # mmcv's names


def parse_fusions(fusions: Union[str, Iterable[str]]) -> tuple:
    """Normalise ``fusions`` to a non-empty tuple drawn from ('add', 'mul')."""
    if isinstance(fusions, str):
        fusions = (fusions,)
    try:
        names = tuple(fusions)
    except TypeError:
        raise TypeError(f"fusions must be a tuple such as ('add',), got {fusions!r}") from None
    if not names:
        raise ValueError("fusions must name at least one of 'add', 'mul', got an empty tuple")
    out = []
    for f in names:
        f = _FUSION_ALIASES.get(f, f) if isinstance(f, str) else f
        check_choice("fusion", f, FUSIONS)
        if f in out:
            raise ValueError(f"fusion {f!r} is listed twice in {names!r}")
        out.append(f)
    return tuple(out)


class GCBlock(GlobalContextFramework):
    r"""Global Context block: attention pooling, a LayerNorm bottleneck, broadcast fusion.

    .. math::

        z_i = x_i + W_{v2}\,\mathrm{ReLU}\Bigl(\mathrm{LN}\bigl(W_{v1}
              \textstyle\sum_{j=1}^{N} \frac{e^{W_k x_j}}{\sum_m e^{W_k x_m}}\, x_j\bigr)\Bigr)

    (add fusion; ``mul`` fusion multiplies by the sigmoid of its own bottleneck instead, and
    runs before ``add`` when both are used).

    Args:
        in_channels: C.
        ratio: bottleneck width as a fraction, ``planes = int(C * ratio)``; the paper's r16 is
            ``1/16``, r4 is ``1/4``.
        pooling: ``'att'`` (attention pooling, :math:`W_k` = ``conv_mask``) or ``'avg'``.
        fusions: non-empty subset of ``('add', 'mul')`` (mmcv's ``'channel_add'`` and
            ``'channel_mul'`` are accepted too).
        layer_norm: keep the LayerNorm in the bottleneck (``False`` for the ablation).

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
    """

    def __init__(
        self,
        in_channels: int,
        ratio: float = 1 / 16,
        pooling: str = "att",
        fusions: Union[str, Iterable[str]] = ("add",),
        layer_norm: bool = True,
    ) -> None:
        check_int("in_channels", in_channels)
        check_choice("pooling", pooling, POOLINGS)
        check_bool("layer_norm", layer_norm)
        fusions = parse_fusions(fusions)
        planes = bottleneck_width(in_channels, ratio)
        context_modeling = AttentionPooling(in_channels) if pooling == "att" else AveragePooling()
        transform = {f: Bottleneck(in_channels, planes, layer_norm=layer_norm) for f in fusions}
        super().__init__(in_channels, context_modeling, transform)
        self.ratio = ratio
        self.planes = planes
        self.pooling = pooling
        self.layer_norm = layer_norm

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, ratio={self.ratio:g}, pooling={self.pooling!r}, "
            f"fusions={self.fusions}, layer_norm={self.layer_norm}"
        )


__all__ = ["GCBlock", "parse_fusions", "POOLINGS"]
