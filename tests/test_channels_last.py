"""A channels-last input (B, *spatial, C), as NumPy images, PIL or TensorFlow give, gets an
error that names the permute (PyTorch) or transpose (NumPy) to apply, and that fix works."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gclab.numpy as gnp
from gclab.nn import GCBlock, NonLocal1d, NonLocal2d, NonLocal3d, SEBlock, SimplifiedNonLocal2d

C = 8
BLOCKS = [
    (lambda: GCBlock(C, ratio=1 / 4), (2, 5, 6, C)),
    (lambda: SEBlock(C, ratio=1 / 4), (2, 5, 6, C)),
    (lambda: SimplifiedNonLocal2d(C), (2, 5, 6, C)),
    (lambda: NonLocal1d(C), (2, 5, C)),
    (lambda: NonLocal2d(C), (2, 5, 6, C)),
    (lambda: NonLocal3d(C), (1, 2, 3, 4, C)),
]


@pytest.mark.parametrize("make, shape", BLOCKS)
def test_channels_last_error_names_the_permute_that_fixes_it(make, shape):
    block, x = make().eval(), torch.randn(shape)
    with pytest.raises(ValueError, match=r"channels-last") as err:
        block(x)
    order = tuple(int(i) for i in str(err.value).split("x.permute(")[1].split(")")[0].split(","))
    assert block(x.permute(order)).shape == x.permute(order).shape


def test_a_plain_channel_mismatch_does_not_suggest_a_permute():
    with pytest.raises(ValueError) as err:
        GCBlock(C, ratio=1 / 4)(torch.randn(2, C + 1, 5, 6))
    assert "permute" not in str(err.value) and f"in_channels={C}" in str(err.value)


def test_numpy_channels_last_error_names_the_transpose():
    gc = GCBlock(C, ratio=1 / 4)
    params, config = gnp.params_from_torch(gc), gnp.config_from_torch(gc)
    x = np.random.default_rng(0).standard_normal((2, 5, 6, C))
    with pytest.raises(ValueError, match=r"x\.transpose\(0, 3, 1, 2\)"):
        gnp.gc_block.forward(x, params, **config)
    out, _ = gnp.gc_block.forward(x.transpose(0, 3, 1, 2), params, **config)
    assert out.shape == (2, C, 5, 6)
