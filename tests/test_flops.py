"""FlopCounterMode counts the fused CPU attention of the fast Non-local path (gclab.nn.fast.flops):
the same forward FLOPs as the explicit path; in the backward one more N x N' product (the
flash kernel recomputes the scores)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from gclab.nn import NonLocal2d
from gclab.nn.fast import flops


def _count(nl, x, backward=False):
    x = x.clone().requires_grad_(backward)
    with FlopCounterMode(display=False) as fc:
        out = nl(x)
        if backward:
            out.sum().backward()
    return fc.get_total_flops()


@pytest.mark.parametrize("sub_sample", [False, True], ids=["full", "sub"])
def test_fast_attention_counts_like_the_explicit_path(sub_sample):
    c, ci, h, w = 32, 16, 6, 8
    nl = NonLocal2d(c, reduction=2, sub_sample=sub_sample)
    x = torch.randn(2, c, h, w)
    n = h * w
    n_keys = n // 4 if sub_sample else n
    nl.impl = "explicit"
    explicit_fwd, explicit_bwd = _count(nl, x), _count(nl, x, True)
    nl.impl = "fast"
    assert _count(nl, x) == explicit_fwd
    assert _count(nl, x, True) == explicit_bwd + 2 * 2 * n * n_keys * ci
    assert explicit_fwd > 2 * 2 * (3 * c * ci * n + ci * c * n)  # the attention is in it


def test_register_is_idempotent():
    assert flops.register() is False  # already registered at import
