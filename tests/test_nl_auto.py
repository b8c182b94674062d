"""impl='auto' of the Non-local blocks: the explicit (N, N') matrix only when N' <= C_i in eager
mode (a rule measured in gclab bench, see the class docstring), the fast path otherwise and
under tracing; both give the same values."""

from __future__ import annotations

import pytest
import torch

from gclab.nn import NonLocal1d, NonLocal2d


def _paths(nl, x):
    seen = []
    explicit, fast = nl.context_modeling, nl.fast_context_modeling
    nl.context_modeling = lambda t: (seen.append("matrix"), explicit(t))[1]
    nl.fast_context_modeling = lambda t: (seen.append("fast"), fast(t))[1]
    try:
        out = nl(x)
    finally:
        del nl.context_modeling, nl.fast_context_modeling
    return seen, out


@pytest.mark.parametrize(
    "cls,shape,sub,want",
    [
        (NonLocal2d, (2, 8, 2, 2), False, "matrix"),  # N' = 4 = C_i
        (NonLocal2d, (2, 8, 3, 2), False, "fast"),  # N' = 6 > 4
        (NonLocal2d, (2, 8, 4, 4), True, "matrix"),  # keys pooled: N' = 4
        (NonLocal2d, (2, 8, 5, 4), True, "matrix"),  # (5 // 2) * (4 // 2) = 4
        (NonLocal1d, (2, 8, 8), True, "matrix"),  # 1-D pools L only: N' = 4
    ],
)
def test_auto_takes_the_matrix_only_for_few_keys(cls, shape, sub, want):
    nl = cls(8, reduction=2, sub_sample=sub).double()  # C_i = 4
    x = torch.randn(shape, dtype=torch.float64)
    seen, out = _paths(nl, x)
    assert seen == [want]
    nl.impl = "fast" if want == "matrix" else "explicit"
    torch.testing.assert_close(out, nl(x), rtol=1e-10, atol=1e-10)


def test_auto_stays_fast_under_tracing():
    nl = NonLocal2d(8, reduction=2)
    x = torch.randn(1, 8, 2, 2)
    traced = torch.jit.trace(nl, x)
    assert "softmax" not in str(traced.graph)  # SDPA, not the explicit softmax of logits
    torch.testing.assert_close(traced(x), nl(x))
