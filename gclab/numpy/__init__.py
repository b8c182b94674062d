r"""gclab's blocks from scratch in NumPy: forward/backward pairs with a cache (CS231n style).

Modules
-------
ops          the building ops: ``conv1x1``, ``softmax``, ``layer_norm``, ``relu``, ``sigmoid``,
             ``global_avg_pool``, ``attention_pool``, ``max_pool``, ``batch_norm_eval``, each
             as ``<op>_forward -> (out, cache)`` / ``<op>_backward(dout, cache)`` and plain ``<op>``
gc_block, se_block, snl_block, non_local
             one block each: ``forward(x, params, **config) -> (out, cache)``,
             ``backward(dout, cache) -> (dx, dparams)`` and the three steps
             ``context_modeling``, ``transform``, ``fusion``
naive        ``non_local_naive``: the Non-local forward as an explicit double loop (teaching)
gradcheck    ``numerical_gradient``, ``numerical_gradient_params``, ``rel_error``

``params`` is a PyTorch block's state_dict as float64 arrays with the same keys, so the same
weights run in both worlds::

    >>> import gclab.nn, gclab.numpy as gnp
    >>> gc = gclab.nn.GCBlock(16, ratio=1/4)
    >>> x = np.random.randn(2, 16, 7, 7)
    >>> params, config = gnp.params_from_torch(gc), gnp.config_from_torch(gc)
    >>> out, cache = gnp.gc_block.forward(x, params, **config)
    >>> dx, dparams = gnp.gc_block.backward(np.ones_like(out), cache)
    >>> sorted(dparams) == sorted(k for k, _ in gc.named_parameters())
    True
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Dict

import numpy as np

from . import gc_block, gradcheck, naive, non_local, ops, se_block, snl_block
from .gradcheck import numerical_gradient, numerical_gradient_params, rel_error
from .naive import non_local_naive


def params_from_torch(module: Any) -> Dict[str, np.ndarray]:
    """Float64 NumPy copies of ``module.state_dict()``, same keys.

    Floating-point tensors become float64 arrays; other buffers (``num_batches_tracked``)
    keep their integer dtype. Example: ``params_from_torch(gclab.nn.SEBlock(64))``.
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"params_from_torch expects a torch.nn.Module, got {type(module).__name__}")
    out = {}
    for key, t in module.state_dict().items():
        t = t.detach().cpu()
        out[key] = t.to(torch.float64).numpy().copy() if t.is_floating_point() else t.numpy().copy()
    return out


def _torch_kind(module: Any) -> str:
    import gclab.nn as gnn

    if isinstance(module, gnn.SEBlock):
        return "se"
    if isinstance(module, gnn.GCBlock):
        return "gc"
    if isinstance(module, gnn.SimplifiedNonLocal2d):
        return "snl"
    if isinstance(module, (gnn.NonLocal1d, gnn.NonLocal2d, gnn.NonLocal3d)):
        return "nl"
    raise TypeError(
        "expected a gclab.nn GCBlock, SEBlock, SimplifiedNonLocal2d or NonLocal1d/2d/3d, "
        f"got {type(module).__name__}"
    )


def config_from_torch(module: Any) -> Dict[str, Any]:
    """The keyword arguments of the matching NumPy ``forward`` for a gclab.nn block.

    GCBlock -> ``pooling, fusions, layer_norm, eps`` (the LayerNorm's epsilon); NonLocal ->
    ``mode, use_scale, sub_sample, norm``; SEBlock and SimplifiedNonLocal2d -> ``{}``. For a
    BatchNorm, the NumPy block computes eval mode (running statistics): call ``module.eval()``
    before comparing.
    """
    kind = _torch_kind(module)
    if kind == "gc":
        return {"pooling": module.pooling, "fusions": tuple(module.fusions),
                "layer_norm": module.layer_norm, "eps": module.eps}
    if kind == "nl":
        return {"mode": module.mode, "use_scale": module.use_scale,
                "sub_sample": module.sub_sample, "norm": module.norm_type}
    return {}


def block_from_torch(module: Any) -> ModuleType:
    """The NumPy block module (``gc_block``, ``se_block``, ``snl_block``, ``non_local``)
    matching a gclab.nn block."""
    return {"gc": gc_block, "se": se_block, "snl": snl_block, "nl": non_local}[_torch_kind(module)]


__all__ = [
    "block_from_torch",
    "config_from_torch",
    "gc_block",
    "gradcheck",
    "naive",
    "non_local",
    "non_local_naive",
    "numerical_gradient",
    "numerical_gradient_params",
    "ops",
    "params_from_torch",
    "rel_error",
    "se_block",
    "snl_block",
]
