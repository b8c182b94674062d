"""Bad input raises a clear ValueError/TypeError that states what was expected and what came in.

Every message is checked for both halves: the expectation (e.g. "4-D input (B, C, H, W)") and
the received value (e.g. "got 3-D with shape (8, 5, 5)"). Nothing broadcasts silently.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from gclab.nn import (
    AveragePooling,
    Bottleneck,
    GCBlock,
    GlobalContextFramework,
    NonLocal1d,
    NonLocal2d,
    NonLocal3d,
    SEBlock,
    SimplifiedNonLocal2d,
)

C = 8
BLOCKS = {
    "gc": (lambda: GCBlock(C, ratio=1 / 4), 2),
    "gc_avg_mul": (lambda: GCBlock(C, 1 / 4, pooling="avg", fusions=("mul", "add")), 2),
    "se": (lambda: SEBlock(C, ratio=1 / 4), 2),
    "snl": (lambda: SimplifiedNonLocal2d(C), 2),
    "framework": (
        lambda: GlobalContextFramework(C, AveragePooling(), {"mul": Bottleneck(C, 2, False)}),
        2,
    ),
    "nl1d": (lambda: NonLocal1d(C), 1),
    "nl2d": (lambda: NonLocal2d(C), 2),
    "nl3d": (lambda: NonLocal3d(C), 3),
    "nl2d_sub": (lambda: NonLocal2d(C, mode="concatenation", sub_sample=True, norm="bn"), 2),
}
NAMES = {1: "(B, C, L)", 2: "(B, C, H, W)", 3: "(B, C, T, H, W)"}


def good_shape(dims: int, b: int = 2, c: int = C, size: int = 4):
    return (b, c) + (size,) * dims


def raises(exc, *fragments):
    """pytest.raises that also requires every fragment (literal text) in the message."""
    return pytest.raises(exc, match="(?s)" + ".*".join(re.escape(f) for f in fragments))


@pytest.fixture(params=sorted(BLOCKS))
def block_and_dims(request):
    make, dims = BLOCKS[request.param]
    return make().eval(), dims


def test_good_input_passes(block_and_dims):
    block, dims = block_and_dims
    x = torch.randn(*good_shape(dims))
    assert block(x).shape == x.shape


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("delta", [-2, -1, 1])
def test_wrong_number_of_dims(block_and_dims, delta):
    block, dims = block_and_dims
    shape = good_shape(dims)
    shape = shape[: len(shape) + delta] if delta < 0 else shape + (3,) * delta
    with raises(ValueError, f"{dims + 2}-D input {NAMES[dims]}", f"got {len(shape)}-D",
                str(tuple(shape))):
        block(torch.randn(*shape))


def test_unbatched_input_does_not_broadcast(block_and_dims):
    """A (C, *spatial) tensor is not silently taken as a batch of C maps with C' channels."""
    block, dims = block_and_dims
    x = torch.randn(*good_shape(dims)[1:])
    with raises(ValueError, f"{dims + 2}-D input", f"got {dims + 1}-D"):
        block(x)


def test_a_2d_batch_into_a_1d_block_is_refused():
    with raises(ValueError, "3-D input (B, C, L)", "got 4-D"):
        NonLocal1d(C)(torch.randn(2, C, 4, 4))
    with raises(ValueError, "5-D input (B, C, T, H, W)", "got 4-D"):
        NonLocal3d(C)(torch.randn(2, C, 4, 4))


@pytest.mark.parametrize("channels", [1, C - 1, C + 1, 2 * C])
def test_channel_count_must_match(block_and_dims, channels):
    block, dims = block_and_dims
    shape = good_shape(dims, c=channels)
    with raises(ValueError, f"in_channels={C}", f"{channels} channels", str(shape)):
        block(torch.randn(*shape))


# an empty batch (B = 0) is supported, as in mmcv/timm: tests/test_nn_robustness.py
@pytest.mark.parametrize("which", ["first", "last"])
def test_empty_input(block_and_dims, which):
    block, dims = block_and_dims
    shape = list(good_shape(dims))
    shape[{"batch": 0, "first": 2, "last": -1}[which]] = 0
    with raises(ValueError, f"non-empty input {NAMES[dims]}", str(tuple(shape))):
        block(torch.empty(*shape))


# --------------------------------------------------------------------------- dtypes and types
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool,
                                   torch.complex64])
def test_non_float_tensors(block_and_dims, dtype):
    block, dims = block_and_dims
    x = torch.ones(*good_shape(dims), dtype=dtype)
    with raises(TypeError, "floating-point tensor", f"got {dtype}"):
        block(x)


@pytest.mark.parametrize(
    "make_x,got",
    [
        (lambda s: np.ones(s, dtype=np.float32), "ndarray"),
        (lambda s: np.ones(s).tolist(), "list"),
        (lambda s: 1.0, "float"),
        (lambda s: None, "NoneType"),
    ],
    ids=["ndarray", "list", "scalar", "None"],
)
def test_non_tensor_input(block_and_dims, make_x, got):
    block, dims = block_and_dims
    with raises(TypeError, "expects a torch.Tensor", f"got {got}"):
        block(make_x(good_shape(dims)))


# --------------------------------------------------------------------------- constructor options
def test_unknown_mode():
    with raises(ValueError, "mode must be one of", "'embedded_gaussian'", "got 'softmax'"):
        NonLocal2d(C, mode="softmax")
    with raises(ValueError, "mode must be one of", "got 'Gaussian'"):
        NonLocal1d(C, mode="Gaussian")  # case matters, as in mmcv


@pytest.mark.parametrize("impl", ["slow", "Fast", None])
def test_unknown_impl(impl):
    with raises(ValueError, "impl must be one of", "'explicit'", f"got {impl!r}"):
        NonLocal2d(C, impl=impl)


@pytest.mark.parametrize("norm", ["gn", "BN", "batchnorm", 1])
def test_unknown_norm(norm):
    with raises(ValueError, "norm must be one of ['bn']", f"got {norm!r}"):
        NonLocal3d(C, norm=norm)


@pytest.mark.parametrize("pooling", ["max", "ATT", "", None])
def test_unknown_pooling(pooling):
    with raises(ValueError, "pooling must be one of ['att', 'avg']", f"got {pooling!r}"):
        GCBlock(C, 1 / 4, pooling=pooling)


@pytest.mark.parametrize("fusions", [("cat",), ("add", "concat"), "scale", (1,)])
def test_unknown_fusion(fusions):
    with raises(ValueError, "fusion must be one of ['add', 'mul']", "got"):
        GCBlock(C, 1 / 4, fusions=fusions)


@pytest.mark.parametrize("fusions", [(), []])
def test_empty_fusions(fusions):
    with raises(ValueError, "at least one of 'add', 'mul'", "got an empty"):
        GCBlock(C, 1 / 4, fusions=fusions)


@pytest.mark.parametrize("fusions", [("add", "add"), ("mul", "channel_mul"), ("add", "mul", "add")])
def test_duplicated_fusion(fusions):
    with raises(ValueError, "listed twice", repr(tuple(fusions))):
        GCBlock(C, 1 / 4, fusions=fusions)


def test_fusions_must_be_iterable():
    with raises(TypeError, "fusions must be a tuple such as ('add',)", "got None"):
        GCBlock(C, 1 / 4, fusions=None)


def test_layer_norm_must_be_a_bool():
    with raises(TypeError, "layer_norm must be True or False", "got str ('no')"):
        GCBlock(C, 1 / 4, layer_norm="no")


@pytest.mark.parametrize("flag", ["use_scale", "sub_sample"])
def test_non_local_flags_must_be_bools(flag):
    # bool('no') is True: a string must not silently switch the option on
    with raises(TypeError, f"{flag} must be True or False", "got str ('no')"):
        NonLocal2d(C, **{flag: "no"})


@pytest.mark.parametrize("cls", [GCBlock, SEBlock])
@pytest.mark.parametrize("ratio", [0, 0.0, -1 / 16, -4, math.nan, math.inf, -math.inf])
def test_ratio_must_be_finite_and_positive(cls, ratio):
    with raises(ValueError, "ratio must be a finite number > 0", f"got {ratio}"):
        cls(C, ratio=ratio)


@pytest.mark.parametrize("cls", [GCBlock, SEBlock])
@pytest.mark.parametrize("ratio", ["1/16", True, torch.tensor(0.25)])  # None: the default
def test_ratio_must_be_a_number(cls, ratio):
    with raises(TypeError, "ratio must be a float such as 1/16", "got"):
        cls(C, ratio=ratio)


@pytest.mark.parametrize("cls", [GCBlock, SEBlock])
@pytest.mark.parametrize("channels,ratio", [(8, 1 / 16), (15, 1 / 16), (3, 0.25), (1, 0.5)])
def test_ratio_giving_a_zero_width_bottleneck(cls, channels, ratio):
    with raises(ValueError, "zero-width bottleneck", f"in_channels={channels}",
                f"ratio >= 1/{channels}"):
        cls(channels, ratio=ratio)


def test_smallest_valid_ratio_is_accepted():
    assert GCBlock(16, ratio=1 / 16).planes == 1
    assert SEBlock(15, ratio=1 / 15).planes == 1


@pytest.mark.parametrize(
    "make",
    [GCBlock, SEBlock, SimplifiedNonLocal2d, NonLocal1d, NonLocal2d, NonLocal3d],
    ids=lambda c: c.__name__,
)
@pytest.mark.parametrize("channels,exc,got", [(0, ValueError, "got 0"), (-3, ValueError, "got -3"),
                                              (8.0, TypeError, "got float"),
                                              (True, TypeError, "got bool"),
                                              ("8", TypeError, "got str")])
def test_in_channels_must_be_a_positive_int(make, channels, exc, got):
    with raises(exc, "in_channels must be", got):
        make(channels)


@pytest.mark.parametrize("reduction,exc", [(0, ValueError), (-2, ValueError), (2.0, TypeError)])
def test_reduction_must_be_a_positive_int(reduction, exc):
    with raises(exc, "reduction must be", "got"):
        NonLocal2d(C, reduction=reduction)


def test_framework_transform_must_name_known_fusions():
    with raises(ValueError, "non-empty mapping", "got {}"):
        GlobalContextFramework(C, AveragePooling(), {})
    with raises(ValueError, "unknown fusion ['scale']", "['mul', 'add']"):
        GlobalContextFramework(C, AveragePooling(), {"scale": torch.nn.Identity()})


# --------------------------------------------------------------------------- sub-sampling
@pytest.mark.parametrize(
    "cls,shape",
    [
        (NonLocal1d, (2, C, 1)),
        (NonLocal2d, (2, C, 1, 1)),
        (NonLocal2d, (1, C, 1, 5)),
        (NonLocal2d, (1, C, 6, 1)),
        (NonLocal3d, (1, C, 3, 1, 1)),
        (NonLocal3d, (1, C, 2, 1, 4)),
        (NonLocal3d, (1, C, 2, 4, 1)),
    ],
)
@pytest.mark.parametrize("mode", ["gaussian", "embedded_gaussian", "concatenation"])
def test_sub_sample_needs_every_pooled_dim_at_least_2(cls, shape, mode):
    block = cls(C, mode=mode, sub_sample=True)
    with raises(ValueError, f"{cls.__name__}(sub_sample=True)", "must be >= 2", str(shape)):
        block(torch.randn(*shape))
    # the same map without sub-sampling is fine (and the identity at init)
    x = torch.randn(*shape)
    assert torch.equal(cls(C, mode=mode)(x), x)


def test_sub_sample_3d_keeps_time_so_one_frame_is_fine():
    """mmcv pools 3-D inputs with kernel (1, 2, 2): T = 1 is valid, H or W = 1 is not."""
    x = torch.randn(1, C, 1, 2, 3)
    out, attention = NonLocal3d(C, sub_sample=True)(x, return_attention=True)
    assert out.shape == x.shape
    assert attention.shape == (1, 1 * 2 * 3, 1 * 1 * 1)


@pytest.mark.parametrize("size", [2, 3, 5])
def test_sub_sample_on_small_odd_maps_floors_like_max_pool(size):
    x = torch.randn(1, C, size, size + 1)
    _, attention = NonLocal2d(C, sub_sample=True)(x, return_attention=True)
    assert attention.shape == (1, size * (size + 1), (size // 2) * ((size + 1) // 2))
