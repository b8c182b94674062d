"""The fused GC/SE/SNL forward + backward (gclab.nn.fast.fused) computes what the plain
formulation computes, passes gradcheck in float64, and runs only where it should (eager
training): TorchScript, tracing, torch.compile and inference take the plain formulation."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from gclab.nn import GCBlock, SEBlock, SimplifiedNonLocal2d
from gclab.nn.fast import fused as _fused
from gclab.nn.framework import AttentionPooling, AveragePooling, Bottleneck

C = 8
CASES = {
    "gc-att-add": lambda: GCBlock(C, 1 / 4),
    "gc-att-mul": lambda: GCBlock(C, 1 / 4, fusions=("mul",)),
    "gc-att-mul+add": lambda: GCBlock(C, 1 / 4, fusions=("mul", "add")),
    "gc-avg-add": lambda: GCBlock(C, 1 / 4, pooling="avg"),
    "gc-avg-mul+add": lambda: GCBlock(C, 1 / 4, pooling="avg", fusions=("mul", "add")),
    "se": lambda: SEBlock(C, 1 / 4),
    "snl": lambda: SimplifiedNonLocal2d(C),
}


def _randomise(m: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return m


def _fwd_bwd(m, x, g, fused: bool):
    m.impl = "auto" if fused else "explicit"
    for p in m.parameters():
        p.grad = None
    x = x.detach().clone().requires_grad_()
    out = m(x)
    kind = type(out.grad_fn).__name__
    out.backward(g)
    m.impl = "auto"
    return out.detach(), x.grad, [p.grad.clone() for p in m.parameters()], kind


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)],
                         ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(CASES))
def test_fused_equals_plain(name, dtype, tol):
    m = _randomise(CASES[name]()).to(dtype)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, C, 5, 7, generator=gen, dtype=torch.float64).to(dtype)
    g = torch.randn(3, C, 5, 7, generator=gen, dtype=torch.float64).to(dtype)
    out_f, dx_f, dp_f, kind_f = _fwd_bwd(m, x, g, True)
    out_p, dx_p, dp_p, kind_p = _fwd_bwd(m, x, g, False)
    assert kind_f == "GlobalContextFunctionBackward" and kind_p != kind_f
    torch.testing.assert_close(out_f, out_p, rtol=tol, atol=tol)
    torch.testing.assert_close(dx_f, dx_p, rtol=tol, atol=tol)
    for a, b in zip(dp_f, dp_p):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck_fused_function_float64(name):
    block = _randomise(CASES[name]()).double()
    pool = block.context_modeling
    weight = bias = None
    if isinstance(pool, AttentionPooling):
        weight, bias = pool.conv_mask.weight, pool.conv_mask.bias
    params = list(block.transform.parameters())
    x = torch.randn(2, C, 3, 4, dtype=torch.float64, requires_grad=True)

    def f(x, weight, bias, *ps):
        # gradcheck perturbs the inputs in place: ps are the transform's own parameters
        return _fused.GlobalContextFunction.apply(x, weight, bias, block.transform, *ps)

    assert gradcheck(f, (x, weight, bias, *params), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_fused_backward_can_run_twice_with_retain_graph():
    m = _randomise(GCBlock(C, 1 / 4, fusions=("mul", "add")))
    x = torch.randn(2, C, 4, 4, requires_grad=True)
    out = m(x)
    out.sum().backward(retain_graph=True)  # an expanded (stride-0) upstream gradient
    first = x.grad.clone()
    out.sum().backward()
    torch.testing.assert_close(x.grad, 2 * first)


def test_only_parameters_need_grad():
    m = _randomise(GCBlock(C, 1 / 4))
    x = torch.randn(2, C, 4, 4)
    out = m(x)
    assert type(out.grad_fn).__name__ == "GlobalContextFunctionBackward"
    out.square().sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_rowdot_equals_mul_sum():
    a, b = torch.randn(300, 1000), torch.randn(300, 1000)
    torch.testing.assert_close(_fused.rowdot(a, b), (a * b).sum(1))


@pytest.mark.parametrize("name", ["gc-att-mul+add", "se"])
def test_plain_path_where_the_function_cannot_go(name):
    m = _randomise(CASES[name]()).eval()
    x = torch.randn(2, C, 4, 4)
    with torch.no_grad():  # inference: no Function, no saved tensors
        assert m(x).grad_fn is None
    xr = x.clone().requires_grad_()
    assert type(m(xr).grad_fn).__name__ == "GlobalContextFunctionBackward"
    cl = xr.detach().to(memory_format=torch.channels_last).requires_grad_()
    assert type(m(cl).grad_fn).__name__ != "GlobalContextFunctionBackward"
    # tracing and scripting record the plain ops (a Python Function cannot be serialised)
    traced = torch.jit.trace(m, xr)
    assert "GlobalContextFunction" not in str(traced.graph)
    torch.testing.assert_close(traced(x), m(x))
    scripted = torch.jit.script(m)
    torch.testing.assert_close(scripted(x), m(x))
    seen = []

    def backend(gm, example_inputs):
        seen.append(str(gm.graph))
        return gm.forward

    compiled = torch.compile(m, backend=backend, fullgraph=True)
    torch.testing.assert_close(compiled(xr), m(x))
    assert seen and all("GlobalContextFunction" not in s for s in seen)


def test_custom_pooling_subclass_takes_the_plain_path():
    class Doubled(AveragePooling):
        def forward(self, x):
            return 2 * super().forward(x)

    from gclab.nn.framework import GlobalContextFramework

    m = GlobalContextFramework(C, Doubled(), {"add": Bottleneck(C, 2, zero_init=False)})
    x = torch.randn(2, C, 4, 4, requires_grad=True)
    assert type(m(x).grad_fn).__name__ != "GlobalContextFunctionBackward"


def test_rowdot_with_two_threads_uses_bigger_chunks_same_values():
    a, b = torch.randn(64, 5000), torch.randn(64, 5000)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        got = _fused.rowdot(a, b)
    finally:
        torch.set_num_threads(saved)
    torch.testing.assert_close(got, (a * b).sum(1))


def test_explicit_gives_the_plain_path_with_double_backward():
    m = _randomise(GCBlock(C, 1 / 4, fusions=("mul", "add"), impl="explicit")).double()
    x = torch.randn(2, C, 3, 3, dtype=torch.float64, requires_grad=True)
    out = m(x)
    assert type(out.grad_fn).__name__ != "GlobalContextFunctionBackward"
    (gx,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
    gx.sum().backward()  # a gradient penalty: second order through the plain ops
    assert x.grad is not None
