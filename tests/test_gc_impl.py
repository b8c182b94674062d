"""GCBlock, SEBlock and SimplifiedNonLocal2d take ``impl='auto'|'explicit'|'fused'``.

Truth: the explicit path (the three steps as written, tested against mmcv and NumPy elsewhere)
and autograd's gradients of it. The fused path must give the same output and gradients for
every option (pooling, fusions, LayerNorm), ``'auto'`` must pick the fused path exactly where
it can run, the parameters must not depend on the path, and a bad or impossible ``impl`` must
say what was expected and what came in.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from _tol import tol

from gclab.nn import (
    AveragePooling,
    Bottleneck,
    GCBlock,
    GlobalContextFramework,
    SEBlock,
    SimplifiedNonLocal2d,
)

C = 8
FUSED = "GlobalContextFunctionBackward"
GC_FUSIONS = (("add",), ("mul",), ("mul", "add"))
CASES = {
    **{
        f"gc-{p}-{'+'.join(f)}-{'ln' if ln else 'noln'}": (
            GCBlock, dict(in_channels=C, ratio=1 / 4, pooling=p, fusions=f, layer_norm=ln))
        for p, f, ln in itertools.product(("att", "avg"), GC_FUSIONS, (True, False))
    },
    "se": (SEBlock, dict(in_channels=C, ratio=1 / 4)),
    "snl": (SimplifiedNonLocal2d, dict(in_channels=C)),
}


def _build(name: str, impl: str) -> torch.nn.Module:
    cls, kw = CASES[name]
    block = cls(**kw, impl=impl).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # no zero-initialised branch: every parameter gets a gradient
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return block


def _run(block, x, g):
    x = x.detach().clone().requires_grad_()
    out = block(x)
    kind = type(out.grad_fn).__name__
    out.backward(g)
    grads = {n: p.grad.clone() for n, p in block.named_parameters()}
    return out.detach(), x.grad, grads, kind


@pytest.mark.parametrize("name", list(CASES))
def test_the_three_impls_agree_with_autograd_of_the_explicit_path(name):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, C, 5, 7, generator=gen, dtype=torch.float64)
    g = torch.randn(3, C, 5, 7, generator=gen, dtype=torch.float64)
    ref_out, ref_dx, ref_dp, ref_kind = _run(_build(name, "explicit"), x, g)
    assert ref_kind != FUSED  # autograd of the three steps
    # one bar for all: every value sums at most N pooled terms through C-channel convs, each
    # no larger than the largest quantity in play (a result may be far smaller than its terms:
    # conv_mask.bias's gradient is 0, LayerNorm's backward cancels)
    n_terms = 5 * 7 * C * C
    size = max(t.abs().max().item() for t in [ref_out, ref_dx, *ref_dp.values()])
    bar = tol(n_terms, size, "float64")
    for impl in ("fused", "auto"):
        out, dx, dp, kind = _run(_build(name, impl), x, g)
        assert kind == FUSED, (impl, kind)
        for got, want, what in [(out, ref_out, "output"), (dx, ref_dx, "dx"),
                                *((dp[k], ref_dp[k], k) for k in ref_dp)]:
            torch.testing.assert_close(got, want, rtol=0, atol=bar, msg=f"{impl}: {what}")


@pytest.mark.parametrize("name", ["gc-att-mul+add-ln", "se", "snl"])
def test_auto_is_fused_in_training_and_explicit_elsewhere(name):
    x = torch.randn(2, C, 4, 4, dtype=torch.float64)
    auto, explicit = _build(name, "auto"), _build(name, "explicit")
    assert type(auto(x).grad_fn).__name__ == FUSED  # parameters require grad
    assert type(explicit(x).grad_fn).__name__ != FUSED
    with torch.no_grad():
        assert auto(x).grad_fn is None
    cl = x.to(memory_format=torch.channels_last)
    assert type(auto(cl).grad_fn).__name__ != FUSED
    assert type(_build(name, "fused")(cl).grad_fn).__name__ == FUSED  # fused: always
    torch.testing.assert_close(_build(name, "fused")(cl), explicit(x))


@pytest.mark.parametrize("name", ["gc-avg-add-ln", "se", "snl"])
def test_state_dict_is_the_same_whatever_the_impl(name):
    dicts = {impl: _build(name, impl).state_dict() for impl in ("auto", "explicit", "fused")}
    ref = dicts["explicit"]
    for impl, sd in dicts.items():
        assert list(sd) == list(ref), impl
        assert all(torch.equal(sd[k], ref[k]) for k in ref), impl
    cls, kw = CASES[name]
    other = cls(**kw, impl="fused").double()
    other.load_state_dict(ref, strict=True)  # weights move between paths unchanged


@pytest.mark.parametrize("cls,kw", [(GCBlock, {"ratio": 1 / 4}), (SEBlock, {"ratio": 1 / 4}),
                                    (SimplifiedNonLocal2d, {})])
@pytest.mark.parametrize("impl", ["fast", "Fused", "", None, True])
def test_a_bad_impl_says_what_was_expected_and_what_came_in(cls, kw, impl):
    with pytest.raises(ValueError) as info:
        cls(C, impl=impl, **kw)
    msg = str(info.value)
    assert "impl must be one of ['auto', 'explicit', 'fused']" in msg and repr(impl) in msg
    block = cls(C, **kw)
    block.impl = impl  # a plain attribute: a typo set later is caught at the next call
    with pytest.raises(ValueError, match=r"impl must be one of .*'fused'.*got " + repr(impl)):
        block(torch.randn(1, C, 2, 2))


def test_fused_refuses_what_it_cannot_fuse():
    class Doubled(AveragePooling):
        def forward(self, x):
            return 2 * super().forward(x)

    with pytest.raises(ValueError, match="impl='fused' cannot run here: the context modelling "
                                         "is Doubled.*impl='auto'.*'explicit'"):
        GlobalContextFramework(C, Doubled(), {"add": Bottleneck(C, 2)}, impl="fused")
    custom = GlobalContextFramework(C, Doubled(), {"add": Bottleneck(C, 2)})
    custom.impl = "fused"
    with pytest.raises(ValueError, match="the context modelling is Doubled"):
        custom(torch.randn(1, C, 2, 2))
    gc = GCBlock(C, 1 / 4, impl="fused")
    x = torch.randn(1, C, 3, 3)
    with pytest.raises(ValueError, match=r"impl='fused' .*attention map .*return_attention"):
        gc(x, return_attention=True)
    with pytest.raises(ValueError, match="impl='fused' cannot run here: .*torch.jit.trace"):
        torch.jit.trace(gc, x)
    scripted = torch.jit.script(gc)
    with pytest.raises(Exception, match="impl='fused' .*TorchScript"):
        scripted(x)


def test_fused_runs_under_no_grad_and_explicit_allows_double_backward():
    gc = _build("gc-att-mul+add-ln", "fused")
    x = torch.randn(2, C, 3, 3, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        torch.testing.assert_close(gc(x), _build("gc-att-mul+add-ln", "explicit")(x))
    explicit = _build("gc-att-mul+add-ln", "explicit")
    (gx,) = torch.autograd.grad(explicit(x).square().sum(), x, create_graph=True)
    gx.sum().backward()  # second order through the explicit steps
    assert x.grad is not None and x.grad.abs().sum() > 0
