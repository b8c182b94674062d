"""Property tests (hypothesis) over random shapes: 1x1 maps, batch 1, odd sizes, many channels.

- SNL and GC: the attention is the same row for every query, and each row sums to 1;
- Non-local: attention rows sum to 1 in the softmax modes (gaussian, embedded_gaussian);
- zero-init GC (add), SNL and Non-local blocks are exactly the identity;
- SE gates lie strictly in (0, 1), and the block's output is x times its gates.
"""

from __future__ import annotations

import torch
from _tol import f32_tol
from hypothesis import given
from hypothesis import strategies as st

from gclab.nn import (
    GCBlock,
    NonLocal1d,
    NonLocal2d,
    NonLocal3d,
    SEBlock,
    SimplifiedNonLocal2d,
)

NL_CLS = {1: NonLocal1d, 2: NonLocal2d, 3: NonLocal3d}
# max_examples comes from the "gclab" profile in conftest.py (40); each example is tiny

batch = st.integers(1, 3)
channels = st.integers(1, 6)
size = st.integers(1, 7)  # includes 1 (1x1 maps) and odd sizes
seeds = st.integers(0, 2**31 - 1)
scales = st.sampled_from([1e-3, 1.0, 10.0])


def _x(seed: int, shape, scale: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen) * scale


@st.composite
def map_shapes(draw, dims: int = 2, min_size: int = 1):
    spatial = tuple(draw(st.integers(min_size, 7)) for _ in range(dims))
    return (draw(batch), draw(channels)) + spatial


@given(shape=map_shapes(), seed=seeds, scale=scales, which=st.sampled_from(["snl", "gc", "gc-mul"]))
def test_snl_and_gc_attention_is_one_row_for_every_query(shape, seed, scale, which, randomize):
    c = shape[1]
    block = {
        "snl": lambda: SimplifiedNonLocal2d(c),
        "gc": lambda: GCBlock(c, ratio=1.0),
        "gc-mul": lambda: GCBlock(c, ratio=1.0, fusions=("mul", "add"), layer_norm=False),
    }[which]()
    randomize(block, std=1.0, seed=seed % 1000)
    x = _x(seed, shape, scale)
    out, attention = block(x, return_attention=True)
    b, n = shape[0], shape[2] * shape[3]
    assert out.shape == x.shape
    assert attention.shape == (b, n, n)
    # identical for every query: every row equals row 0, bit for bit
    assert torch.equal(attention, attention[:, :1, :].expand(b, n, n))
    assert (attention >= 0).all()
    # N probabilities summing to 1: normaliser, divisions, this sum: ~sqrt(9N)·u, ×10 (_tol.py)
    assert torch.allclose(attention.sum(-1), torch.ones(b, n), atol=f32_tol(9 * n), rtol=0)


@given(shape=map_shapes(), seed=seeds)
def test_avg_pooling_attention_is_uniform(shape, seed):
    block = GCBlock(shape[1], ratio=1.0, pooling="avg")
    _, attention = block(_x(seed, shape), return_attention=True)
    n = shape[2] * shape[3]
    # equal logits: exp(0) = 1, an exact sum n, one rounding of 1/n, as full_like's: bit-equal
    assert torch.allclose(attention, torch.full_like(attention, 1.0 / n))


@st.composite
def nl_configs(draw):
    dims = draw(st.sampled_from([1, 2, 3]))
    sub_sample = draw(st.booleans())
    shape = draw(map_shapes(dims, min_size=2 if sub_sample else 1))
    if sub_sample and dims == 3:  # time is not pooled: one frame is allowed
        shape = shape[:2] + (draw(size),) + shape[3:]
    return dims, sub_sample, shape


@given(config=nl_configs(), mode=st.sampled_from(["gaussian", "embedded_gaussian"]), seed=seeds,
       scale=scales)
def test_non_local_softmax_rows_sum_to_1(config, mode, seed, scale, randomize):
    dims, sub_sample, shape = config
    block = randomize(NL_CLS[dims](shape[1], mode=mode, sub_sample=sub_sample), std=1.0,
                      seed=seed % 1000)
    out, attention = block(_x(seed, shape, scale), return_attention=True)
    n = 1
    for s in shape[2:]:
        n *= s
    assert out.shape == shape
    assert attention.shape[:2] == (shape[0], n)
    assert torch.isfinite(attention).all() and (attention >= 0).all()
    # as above, over N' keys
    n_keys = attention.shape[-1]
    assert torch.allclose(attention.sum(-1), torch.ones(shape[0], n), atol=f32_tol(9 * n_keys),
                          rtol=0)


@given(shape=map_shapes(), seed=seeds, scale=scales,
       which=st.sampled_from(["gc-att", "gc-avg", "gc-noln", "gc-r16", "snl"]))
def test_zero_init_gc_and_snl_are_the_identity(shape, seed, scale, which):
    torch.manual_seed(seed)
    c = shape[1]
    block = {
        "gc-att": lambda: GCBlock(c, ratio=1.0),
        "gc-avg": lambda: GCBlock(c, ratio=1.0, pooling="avg"),
        "gc-noln": lambda: GCBlock(c, ratio=1.0, layer_norm=False),
        "gc-r16": lambda: GCBlock(16 * c, ratio=1 / 16),
        "snl": lambda: SimplifiedNonLocal2d(c),
    }[which]()
    if which == "gc-r16":
        shape = (shape[0], 16 * c) + shape[2:]
    x = _x(seed, shape, scale)
    assert torch.equal(block(x), x)


@given(config=nl_configs(),
       mode=st.sampled_from(["gaussian", "embedded_gaussian", "dot_product", "concatenation"]),
       norm=st.sampled_from([None, "bn"]), seed=seeds, scale=scales)
def test_zero_init_non_local_is_the_identity(config, mode, norm, seed, scale):
    dims, sub_sample, shape = config
    torch.manual_seed(seed)
    block = NL_CLS[dims](shape[1], mode=mode, sub_sample=sub_sample, norm=norm).eval()
    x = _x(seed, shape, scale)
    assert torch.equal(block(x), x)


@given(shape=map_shapes(), seed=seeds, scale=st.sampled_from([1e-3, 1.0, 5.0]),
       r=st.sampled_from([1.0, 0.5, 0.25]))
def test_se_gates_lie_strictly_between_0_and_1(shape, seed, scale, r):
    c = max(shape[1], 4)
    shape = (shape[0], c) + shape[2:]
    torch.manual_seed(seed)
    block = SEBlock(c, ratio=r)
    x = _x(seed, shape, scale)
    gates = block.gate(x)
    assert gates.shape == (shape[0], c, 1, 1)
    assert ((gates > 0) & (gates < 1)).all()
    # and these gates are exactly what the block multiplies x by
    # one elementwise product, the same in both: one rounding of |x·gate| < |x| (tests/_tol.py)
    assert torch.allclose(block(x), x * gates, atol=f32_tol(1, x.abs().max().item()), rtol=0)
