r"""FLOP formulas that ``torch.utils.flop_counter.FlopCounterMode`` lacks for gclab's paths.

On CPU, ``scaled_dot_product_attention`` (the fast path of the (embedded) Gaussian Non-local
blocks) dispatches to ``aten._scaled_dot_product_flash_attention_for_cpu`` and its backward,
which torch's counter has no formula for: a ``FlopCounterMode`` around a default NL block
silently dropped the attention (822 instead of 900.8 MFLOPs for one block at ResNet-50 res4,
224x224). :func:`register` adds torch's own SDPA formulas for the CPU ops, so every path counts
the same forward FLOPs (:math:`2 N N' C_q + 2 N N' C_v` per sample and head). The backward
counts what the kernel computes: five N x N' products, one more than the explicit path's
four (the flash kernel recomputes :math:`QK^\top` instead of keeping the matrix).

It runs when :mod:`gclab.nn` is imported and is idempotent; it never replaces a formula torch
already has (a later torch that adds its own keeps it).

Example::

    >>> from torch.utils.flop_counter import FlopCounterMode
    >>> q = torch.randn(1, 1, 64, 8)
    >>> with FlopCounterMode(display=False) as fc:
    ...     _ = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    >>> fc.get_total_flops()  # two 64 x 64 x 8 matmuls
    131072
"""

from __future__ import annotations

import torch


def register() -> bool:
    """Register the CPU flash-attention formulas; True if anything was added."""
    try:
        from torch.utils import flop_counter as fc
    except ImportError:  # a torch without the counter: nothing to register
        return False
    aten = torch.ops.aten
    added = False
    pairs = (
        ("_scaled_dot_product_flash_attention_for_cpu", fc.sdpa_flop_count, False),
        ("_scaled_dot_product_flash_attention_for_cpu_backward", fc.sdpa_backward_flop_count,
         True),
    )
    for name, count, backward in pairs:
        op = getattr(aten, name, None)
        if op is None or op in fc.flop_registry:
            continue
        if backward:
            def formula(grad_out_shape, query_shape, key_shape, value_shape, *args,
                        out_shape=None, _count=count, **kwargs) -> int:
                return _count(grad_out_shape, query_shape, key_shape, value_shape)
        else:
            def formula(query_shape, key_shape, value_shape, *args, out_shape=None,
                        _count=count, **kwargs) -> int:
                return _count(query_shape, key_shape, value_shape)
        fc.register_flop_formula(op)(formula)
        added = True
    return added


register()
