"""impl='auto' of the Non-local blocks: the explicit (N, N') matrix only for few keys in eager
mode (N' <= 5 C_i in the softmax modes, N' <= C_i in dot product and concatenation: rules
measured with scripts/nl_paths.py, see the class docstring), the fast path otherwise and under
tracing (dot product from N >= 2C: its Gram form); every path gives the same values."""

from __future__ import annotations

import pytest
import torch

from gclab.nn import NonLocal1d, NonLocal2d


def _paths(nl, x):
    seen = []
    explicit, fast, gram = nl.context_modeling, nl.fast_context_modeling, nl.fast_dot_product
    nl.context_modeling = lambda t: (seen.append("matrix"), explicit(t))[1]
    nl.fast_context_modeling = lambda t: (seen.append("fast"), fast(t))[1]
    nl.fast_dot_product = lambda t: (seen.append("gram"), gram(t))[1]
    try:
        out = nl(x)
    finally:
        del nl.context_modeling, nl.fast_context_modeling, nl.fast_dot_product
    return seen, out


@pytest.mark.parametrize(
    "cls,mode,shape,sub,want",
    [  # C = 8, C_i = 4
        (NonLocal2d, "embedded_gaussian", (2, 8, 4, 5), False, "matrix"),  # N' = 20 = 5 C_i
        (NonLocal2d, "embedded_gaussian", (2, 8, 3, 7), False, "fast"),  # N' = 21
        (NonLocal2d, "gaussian", (2, 8, 4, 5), False, "matrix"),
        (NonLocal2d, "gaussian", (2, 8, 3, 7), False, "fast"),
        (NonLocal2d, "embedded_gaussian", (2, 8, 8, 10), True, "matrix"),  # pooled: 4 * 5
        (NonLocal2d, "embedded_gaussian", (2, 8, 9, 10), True, "matrix"),  # (9 // 2) * 5 = 20
        (NonLocal2d, "embedded_gaussian", (2, 8, 10, 10), True, "fast"),  # 25
        (NonLocal1d, "embedded_gaussian", (2, 8, 40), True, "matrix"),  # 1-D pools L: 20
        (NonLocal1d, "embedded_gaussian", (2, 8, 42), True, "fast"),  # 21
        (NonLocal2d, "dot_product", (2, 8, 2, 2), False, "matrix"),  # N' = 4 = C_i
        (NonLocal2d, "dot_product", (2, 8, 3, 2), False, "fast"),  # 6 > C_i, N < 2C
        (NonLocal2d, "dot_product", (2, 8, 4, 4), False, "gram"),  # N = 16 = 2C
        (NonLocal2d, "dot_product", (2, 8, 8, 8), True, "fast"),  # pooled: no Gram form
        (NonLocal2d, "concatenation", (2, 8, 2, 2), False, "matrix"),
        (NonLocal2d, "concatenation", (2, 8, 3, 2), False, "fast"),
    ],
)
def test_auto_takes_the_matrix_only_for_few_keys(cls, mode, shape, sub, want):
    nl = cls(8, reduction=2, mode=mode, sub_sample=sub).double()
    for p in nl.parameters():  # conv_out is zero at init: make the block a real map
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(shape, dtype=torch.float64)
    seen, out = _paths(nl, x)
    assert seen == [want]
    nl.impl = "explicit"
    ref = nl(x)
    assert (out - x).abs().max() > 1e-3
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_auto_stays_fast_under_tracing():
    nl = NonLocal2d(8, reduction=2)
    x = torch.randn(1, 8, 2, 2)
    traced = torch.jit.trace(nl, x)
    assert "softmax" not in str(traced.graph)  # SDPA, not the explicit softmax of logits
    torch.testing.assert_close(traced(x), nl(x))
