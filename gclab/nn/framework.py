r"""The three-step global-context framework of the GCNet paper, as reusable pieces.

Every block in gclab is

.. math::

    z = F\bigl(x,\; \delta\bigl(\mathrm{context\_modeling}(x)\bigr)\bigr)

1. **context modelling** pools the feature map into one global context vector
   (:class:`AttentionPooling` as in SNL/GC, :class:`AveragePooling` as in SE);
2. **transform** turns the context into channel-wise terms
   (:class:`Bottleneck` with or without LayerNorm, or one 1x1 conv as in SNL);
3. **fusion** merges them into every position (:func:`fusion`: ``mul`` then ``add``).

:class:`GlobalContextFramework` composes any choice of the three, so SE, SNL and GC are
three instances of one module (see the class docstring).
"""

from __future__ import annotations

from typing import Dict, Mapping, Tuple, Union

import torch
from torch import Tensor, nn

from ..vocab import FUSIONS, check_bool, check_choice, check_eps, check_int
from ._checks import check_input
from .fast import fused
from .mmcv.keys import accept_context_block_keys

DeviceLike = Union[torch.device, str, int, None]  # what torch.nn modules take as device=
# which computation ``forward`` uses (see :class:`GlobalContextFramework`, "Paths")
IMPLS = ("auto", "explicit", "fused")


class AttentionPooling(nn.Module):
    r"""Context modelling by attention pooling (the SNL and GC blocks).

    .. math::

        \alpha_j = \frac{\exp(W_k x_j)}{\sum_m \exp(W_k x_m)}, \qquad
        \mathrm{context} = \sum_{j=1}^{N} \alpha_j\, x_j

    ``W_k`` is ``conv_mask``, a 1x1 conv C -> 1 with bias, kaiming-normal (fan_in) initialised.
    The weights :math:`\alpha` do not depend on any query position.

    Shapes: x (B, C, H, W) -> context (B, C, 1, 1); attention (B, N) with N = H*W.
    ``device``/``dtype`` are passed to the conv, as torch.nn's own modules take them.

    Example::

        >>> pool = AttentionPooling(64)
        >>> context, alpha = pool.forward_with_attention(torch.randn(2, 64, 7, 7))
        >>> context.shape, alpha.shape
        (torch.Size([2, 64, 1, 1]), torch.Size([2, 49]))
    """

    def __init__(
        self,
        in_channels: int,
        device: DeviceLike = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels)
        self.conv_mask = nn.Conv2d(in_channels, 1, kernel_size=1, device=device, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.conv_mask.bias)

    def attention(self, x: Tensor) -> Tensor:
        """The attention weights alpha, (B, C, H, W) -> (B, N); each row sums to 1."""
        # W_k x as one batched (1, C) @ (C, N) product: the 1x1 conv C -> 1 without a conv
        # kernel or a copy (x.flatten(2) is a view in NCHW and channels_last layouts alike;
        # flatten, not reshape(b, c, -1), so that an empty batch B = 0 works)
        b, c = x.shape[0], x.shape[1]
        w = self.conv_mask.weight.reshape(1, 1, c).expand(b, 1, c)
        logits = torch.bmm(w, x.flatten(2)).flatten(1)  # (B, N)
        bias = self.conv_mask.bias
        if bias is not None:
            logits = logits + bias
        return torch.softmax(logits, dim=1)

    def forward_with_attention(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """(context (B, C, 1, 1), alpha (B, N))."""
        b, c = x.shape[0], x.shape[1]
        alpha = self.attention(x)  # (B, N)
        # context_c = sum_j alpha_j x_cj : one batched (1, N) @ (N, C) product (x^T is a view);
        # this orientation keeps both its gradients row-times-matrix products (fast BLAS)
        x_t = x.flatten(2).transpose(1, 2)  # (B, N, C)
        context = torch.bmm(alpha.unsqueeze(1), x_t).reshape(b, c, 1, 1)
        return context, alpha

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_attention(x)[0]


class AveragePooling(nn.Module):
    r"""Context modelling by global average pooling (SE's *squeeze*).

    .. math::  \mathrm{context} = \frac{1}{N} \sum_{j=1}^{N} x_j

    It is attention pooling with uniform weights :math:`\alpha_j = 1/N`, which is what
    ``forward_with_attention`` returns. Shapes: (B, C, H, W) -> (B, C, 1, 1); attention (B, N).

    Example::

        >>> context, alpha = AveragePooling().forward_with_attention(torch.ones(2, 8, 3, 5))
        >>> context.shape, alpha[0, :3]
        (torch.Size([2, 8, 1, 1]), tensor([0.0667, 0.0667, 0.0667]))
    """

    def forward_with_attention(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """(context (B, C, 1, 1), alpha (B, N)) with alpha = 1/N everywhere."""
        n = x.shape[2] * x.shape[3]
        alpha = torch.full((x.shape[0], n), 1.0 / n, dtype=x.dtype, device=x.device)
        return self.forward(x), alpha

    def forward(self, x: Tensor) -> Tensor:
        # sum * (1/N) rather than mean: the gradient of sum is an expanded view, while mean's
        # backward writes a full-size (B, C, H, W) tensor
        return x.sum(dim=(2, 3), keepdim=True) * (1.0 / (x.shape[2] * x.shape[3]))


class Bottleneck(nn.Sequential):
    r"""Transform: 1x1 conv C -> P, LayerNorm over (P, 1, 1), ReLU, 1x1 conv P -> C.

    .. math::  \delta(c) = W_{v2}\,\mathrm{ReLU}(\mathrm{LN}(W_{v1} c))

    Indices 0, 1, 3 hold the parameters, as in mmcv's ``channel_add_conv``. With
    ``layer_norm=False`` index 1 is an ``nn.Identity`` (SE's *excitation* before its sigmoid).
    With ``zero_init=True`` (GC) the last conv starts at zero, weight and bias, so an ``add``
    fusion starts as the identity; ``zero_init=False`` (SE) keeps PyTorch's default init.

    ``eps`` is the LayerNorm's epsilon (1e-5 as torch and mmcv; timm's GlobalContext uses
    1e-6). ``device``/``dtype`` are passed to every layer, as torch.nn's modules take them.

    Shapes: (B, C, 1, 1) -> (B, C, 1, 1).

    Example::

        >>> t = Bottleneck(64, 4)  # GC r16: C=64 -> P=4 -> C
        >>> t(torch.randn(2, 64, 1, 1)).abs().max()  # zero-initialised last conv
        tensor(0., grad_fn=<MaxBackward1>)
    """

    def __init__(
        self,
        in_channels: int,
        planes: int,
        layer_norm: bool = True,
        zero_init: bool = True,
        eps: float = 1e-5,
        device: DeviceLike = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        check_int("in_channels", in_channels)
        check_int("planes", planes)
        check_bool("layer_norm", layer_norm)
        check_bool("zero_init", zero_init)
        check_eps("eps", eps)
        kw = {"device": device, "dtype": dtype}
        super().__init__(
            nn.Conv2d(in_channels, planes, kernel_size=1, **kw),
            nn.LayerNorm([planes, 1, 1], eps=eps, **kw) if layer_norm else nn.Identity(),
            nn.ReLU(),
            nn.Conv2d(planes, in_channels, kernel_size=1, **kw),
        )
        self.zero_init = zero_init
        if zero_init:
            self.zero_init_last()

    def reset_parameters(self) -> None:
        """Initialise again as at construction (torch's default conv init, LayerNorm 1 and 0,
        the last conv zero with ``zero_init``); e.g. after ``to_empty`` from the meta device."""
        for m in self:
            if isinstance(m, (nn.Conv2d, nn.LayerNorm)):
                m.reset_parameters()
        if self.zero_init:
            self.zero_init_last()

    def zero_init_last(self) -> None:
        nn.init.zeros_(self[3].weight)
        nn.init.zeros_(self[3].bias)


def fusion(x: Tensor, add: Tensor | None = None, mul: Tensor | None = None) -> Tensor:
    r"""Fusion: :math:`z = x \odot \sigma(\mathrm{mul}) + \mathrm{add}`, multiplication first.

    ``add``/``mul`` have shape (B, C, 1, 1) and broadcast over every position of x (B, C, H, W);
    either may be ``None`` (that branch is skipped). Returns (B, C, H, W).

    Example::

        >>> x = torch.ones(1, 2, 3, 3)
        >>> z = fusion(x, add=torch.ones(1, 2, 1, 1), mul=torch.zeros(1, 2, 1, 1))
        >>> z[0, :, 0, 0]  # 1 * sigmoid(0) + 1
        tensor([1.5000, 1.5000])
    """
    # one pass over x whatever the branches (addcmul when both), in x's memory layout
    if mul is not None:
        if add is not None:
            return torch.addcmul(add, x, torch.sigmoid(mul))
        return x * torch.sigmoid(mul)
    if add is not None:
        return x + add
    return x


class GlobalContextFramework(nn.Module):
    r"""Context modelling -> transform -> fusion, with any pieces you choose.

    .. math::

        z_i = x_i \odot \sigma\bigl(\delta_{mul}(c)\bigr) + \delta_{add}(c), \qquad
        c = \mathrm{context\_modeling}(x)

    Args:
        in_channels: C, the channels of the input.
        context_modeling: a module mapping (B, C, H, W) to (B, C, 1, 1) with a
            ``forward_with_attention`` method that also returns the weights (B, N)
            (:class:`AttentionPooling` or :class:`AveragePooling`).
        transform: ``{"add": module, "mul": module}`` (either or both); each maps the context
            (B, C, 1, 1) to (B, C, 1, 1).
        impl: ``'auto'`` (default), ``'explicit'`` or ``'fused'``: how :meth:`forward`
            computes z (the plain attribute ``self.impl`` may be changed at any time).

    The named blocks are instances of it::

        SE  = GlobalContextFramework(
            C, AveragePooling(), {"mul": Bottleneck(C, C // 16, layer_norm=False, zero_init=False)}
        )
        SNL = GlobalContextFramework(C, AttentionPooling(C), {"add": nn.Conv2d(C, C, 1)})
        GC  = GlobalContextFramework(C, AttentionPooling(C), {"add": Bottleneck(C, C // 16)})

    ``forward(x, return_attention=True)`` also returns the attention matrix (B, N, N): the same
    row, the weights alpha over key positions, for every query (an expanded view, no copy).

    **Paths.** ``'explicit'`` runs the three steps as written, and autograd differentiates them.
    ``'fused'`` runs them as one ``torch.autograd.Function`` with a hand-written backward
    (:mod:`gclab.nn.fast.fused`: the backward writes one full-size tensor, dx), which needs the
    stock context modelling (:class:`AttentionPooling` or :class:`AveragePooling`), eager mode
    (no TorchScript, tracing, ``torch.compile`` or ``torch.export``) and no attention output,
    and whose backward is first-order (a double backward, e.g. a gradient penalty, needs
    ``'explicit'``); where it cannot run it raises. ``'auto'`` takes the fused path in eager
    training (autograd recording, something requiring grad, a contiguous input, the stock
    poolings, no ``return_attention``) and the explicit one otherwise (inference, channels_last,
    exporting). The paths agree to rounding (tests/test_gc_impl.py).

    Shapes: x (B, C, H, W) -> (B, C, H, W).

    Example::

        >>> snl = GlobalContextFramework(16, AttentionPooling(16), {"add": nn.Conv2d(16, 16, 1)})
        >>> out, attention = snl(torch.randn(2, 16, 4, 4), return_attention=True)
        >>> out.shape, attention.shape
        (torch.Size([2, 16, 4, 4]), torch.Size([2, 16, 16]))
    """

    spatial_dims = 2
    __jit_unused_properties__ = ["fusions"]  # Tuple[str, ...] is not a TorchScript type

    def __init__(
        self,
        in_channels: int,
        context_modeling: nn.Module,
        transform: Mapping[str, nn.Module],
        impl: str = "auto",
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels)
        self.impl = check_choice("impl", impl, IMPLS)
        if not isinstance(transform, Mapping) or len(transform) == 0:
            raise ValueError(
                f"transform must be a non-empty mapping with keys in {FUSIONS}, got {transform!r}"
            )
        unknown = [k for k in transform if k not in FUSIONS]
        if unknown:
            raise ValueError(f"unknown fusion {unknown}: the fusions are {list(FUSIONS)}")
        self.context_modeling = context_modeling
        # keep a fixed order (mul before add) so state_dict keys are stable
        self.transform = nn.ModuleDict({k: transform[k] for k in FUSIONS if k in transform})
        # state_dicts saved by mmcv's ContextBlock load directly (see gclab.nn.mmcv.convert)
        self.register_load_state_dict_pre_hook(accept_context_block_keys)
        if impl == "fused" and not self._stock_pooling():
            raise ValueError(_fused_refusal(self._pooling_reason()))

    @property
    def fusions(self) -> Tuple[str, ...]:
        return tuple(self.transform.keys())

    def reset_parameters(self) -> None:
        """Initialise every piece again as at construction (``reset_parameters`` of the context
        modelling and of each transform); e.g. after ``to_empty`` from the meta device."""
        for m in [self.context_modeling] + list(self.transform.values()):
            reset = getattr(m, "reset_parameters", None)
            if reset is not None:
                reset()

    def forward(
        self, x: Tensor, return_attention: bool = False
    ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        if not torch.jit.is_scripting():
            check_input(x, self.in_channels, self.spatial_dims, type(self).__name__, self)
            check_bool("return_attention", return_attention)
            check_choice("impl", self.impl, IMPLS)  # a plain attribute: catch typos set later
            if self._takes_fused(x, return_attention):
                return self._fused_forward(x)
        elif self.impl == "fused":
            raise RuntimeError(
                "impl='fused' runs a Python autograd.Function, which TorchScript cannot compile; "
                "set impl='auto' or 'explicit' before torch.jit.script"
            )
        # 1. context modelling: (B, C, H, W) -> (B, C, 1, 1), weights alpha (B, N)
        if return_attention:
            context, alpha = self.context_modeling.forward_with_attention(x)
        else:
            context, alpha = self.context_modeling(x), x.new_empty(0)
        # 2. transform: one term per fusion branch, each (B, C, 1, 1)
        terms: Dict[str, Tensor] = {}
        for name, t in self.transform.items():
            terms[name] = t(context)
        # 3. fusion: multiply first, then add, broadcast over all positions
        out = fusion(x, add=terms.get("add"), mul=terms.get("mul"))
        if return_attention:
            n = alpha.shape[1]
            return out, alpha.unsqueeze(1).expand(alpha.shape[0], n, n)
        return out

    @torch.jit.unused
    def _takes_fused(self, x: Tensor, return_attention: bool) -> bool:
        # the class docstring's "Paths": explicit never, fused always (or an error), auto in
        # eager training with the stock poolings
        if self.impl == "explicit":
            return False
        if self.impl == "auto":
            return (not return_attention and self._stock_pooling()
                    and fused.usable(x, [self.context_modeling, self.transform]))
        reason = None
        if not self._stock_pooling():
            reason = self._pooling_reason()
        elif return_attention:
            reason = "the fused Function never builds the attention map (return_attention=True)"
        elif torch.jit.is_tracing() or fused.compiling():
            reason = ("the fused path is a Python autograd.Function, which torch.jit.trace, "
                      "torch.compile and torch.export do not record")
        elif x.is_sparse:
            reason = "the input is a sparse tensor"
        if reason is not None:
            raise ValueError(_fused_refusal(reason))
        return True

    @torch.jit.unused
    def _stock_pooling(self) -> bool:
        kind = type(self.context_modeling)
        return kind is AttentionPooling or kind is AveragePooling

    @torch.jit.unused
    def _pooling_reason(self) -> str:
        return (f"the context modelling is {type(self.context_modeling).__name__}, and the fused "
                f"Function computes AttentionPooling or AveragePooling only")

    @torch.jit.unused
    def _fused_forward(self, x: Tensor) -> Tensor:
        pool = self.context_modeling
        if isinstance(pool, AttentionPooling):
            mask = pool.conv_mask
            return fused.global_context(x, mask.weight, mask.bias, self.transform)
        return fused.global_context(x, None, None, self.transform)


def _fused_refusal(reason: str) -> str:
    return (f"impl='fused' cannot run here: {reason}; use impl='auto' (fused where it can "
            f"run) or impl='explicit'")
