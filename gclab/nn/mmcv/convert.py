"""Load weights saved by mmcv's ``ContextBlock`` and ``NonLocal2d`` (and 1d/3d).

gclab names parameters after the three steps (``context_modeling.conv_mask``,
``transform.add``) and the Non-local paper (``theta``, ``phi``, ``g``, ``conv_out``).
mmcv's names differ; the blocks accept both: a state_dict with mmcv's keys loads with
``load_state_dict(strict=True)`` through a load pre-hook that renames them, also when the
block sits inside a larger model. :func:`from_mmcv` builds the matching gclab block from an
mmcv module and copies its weights.

=================================  ==================================
mmcv ``ContextBlock``              gclab ``GCBlock``
=================================  ==================================
``conv_mask.*``                    ``context_modeling.conv_mask.*``
``channel_add_conv.{0,1,3}.*``     ``transform.add.{0,1,3}.*``
``channel_mul_conv.{0,1,3}.*``     ``transform.mul.{0,1,3}.*``
=================================  ==================================

=================================  ==================================
mmcv ``NonLocal2d``                gclab ``NonLocal2d``
=================================  ==================================
``g.conv.*`` / ``g.0.conv.*``      ``g.*`` (``.0`` when sub-sampled)
``theta.conv.*``                   ``theta.*``
``phi.conv.*`` / ``phi.0.conv.*``  ``phi.*``
``conv_out.conv.*``                ``conv_out.*``
``conv_out.bn.*``                  ``norm.*``
``concat_project.conv.*``          ``concat_project.*``
=================================  ==================================
"""

from __future__ import annotations

from typing import Dict

from torch import nn

from .keys import CONTEXT_BLOCK_KEYS, NON_LOCAL_KEYS, remap_state_dict_keys


def mmcv_to_gclab_state_dict(state_dict: Dict, kind: str) -> Dict:
    """Return a copy of an mmcv ``ContextBlock`` (kind='gc') or ``NonLocal`` (kind='nl')
    state_dict with gclab's key names (the tables above). Tensors are not copied and keep
    their shapes, e.g. ``conv_mask.weight`` (1, C, 1, 1) -> ``context_modeling.conv_mask.weight``;
    the block that loads them maps (B, C, H, W) -> (B, C, H, W).

    Example::

        >>> sd = {"conv_mask.weight": torch.zeros(1, 8, 1, 1), "channel_add_conv.0.bias": None}
        >>> list(mmcv_to_gclab_state_dict(sd, "gc"))
        ['context_modeling.conv_mask.weight', 'transform.add.0.bias']
    """
    table = {"gc": CONTEXT_BLOCK_KEYS, "nl": NON_LOCAL_KEYS}.get(kind)
    if table is None:
        raise ValueError(f"kind must be 'gc' or 'nl', got {kind!r}")
    out = dict(state_dict)
    remap_state_dict_keys(out, "", table)
    return out


def from_mmcv(module: nn.Module) -> nn.Module:
    """Build the gclab block that matches an mmcv ``ContextBlock`` or ``NonLocal1d/2d/3d``
    module and copy its weights (strictly: every tensor must find its place), its train/eval
    mode, device and dtype. The returned block maps (B, C, *spatial) -> (B, C, *spatial) as
    the mmcv module does, e.g. (B, C, H, W) for ``ContextBlock`` and ``NonLocal2d``.

    Example::

        >>> from mmcv.cnn import ContextBlock
        >>> ref = ContextBlock(64, ratio=1/4, fusion_types=('channel_mul',))
        >>> ours = from_mmcv(ref)
        >>> x = torch.randn(2, 64, 5, 5)
        >>> torch.allclose(ours(x), ref(x))
        True
    """
    from ..gc_block import GCBlock
    from ..non_local import NonLocal1d, NonLocal2d, NonLocal3d

    name = type(module).__name__
    if not type(module).__module__.startswith("mmcv"):
        name = "not mmcv"
    if name == "ContextBlock":
        block: nn.Module = GCBlock(
            module.in_channels,
            planes=module.planes,  # = int(C * ratio), whatever the ratio
            pooling=module.pooling_type,
            fusions=tuple(module.fusion_types),
        )
    elif name in ("NonLocal1d", "NonLocal2d", "NonLocal3d"):
        cls = {"NonLocal1d": NonLocal1d, "NonLocal2d": NonLocal2d, "NonLocal3d": NonLocal3d}[name]
        norm_cfg = getattr(module.conv_out, "norm_cfg", None)
        norm = None
        if norm_cfg is not None:
            if not str(norm_cfg.get("type", "")).startswith("BN"):
                raise ValueError(f"only BatchNorm norm_cfg is supported, got {norm_cfg}")
            norm = "bn"
        block = cls(
            module.in_channels,
            reduction=module.reduction,
            mode=module.mode,
            use_scale=module.use_scale,
            sub_sample=module.sub_sample,
            norm=norm,
        )
    else:
        raise TypeError(
            "from_mmcv expects an mmcv ContextBlock or NonLocal1d/2d/3d module, "
            f"got {type(module).__module__}.{name}"
        )
    block.load_state_dict(module.state_dict(), strict=True)
    ref = next(module.parameters())
    block.train(module.training)  # keep train/eval mode (BatchNorm behaves differently)
    return block.to(device=ref.device, dtype=ref.dtype)
