"""Measured routes (gclab.nn.fast.routes): with the switch on, impl='auto' times the explicit
matrix and the fast path once per configuration and keeps the faster. Checked with a stub
clock (the route that the stub times say is faster is taken, then and on later calls),
against the explicit route's outputs and gradients (derived float32 bars, tests/_tol.py),
for side effects (no .grad accumulated, BatchNorm's statistics restored), and that tracing,
scripting, large maps and the default (switch off) never measure."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from _tol import tol

from gclab.nn import NonLocal2d
from gclab.nn.fast import routes
from gclab.nn.fast.routes import (
    choose_route,
    clear_route_table,
    measured_routes,
    measured_routes_enabled,
    route_table,
    set_measured_routes,
)

C = 8  # C_i = 4


@pytest.fixture(autouse=True)
def _fresh_table():
    clear_route_table()
    set_measured_routes(False)
    yield
    clear_route_table()
    set_measured_routes(False)


class StubClock:
    """A clock that moves only when a stubbed route runs."""

    def __init__(self):
        self.now = 0.0
        self.reads = 0

    def __call__(self):
        self.reads += 1
        return self.now


def _stub(nl, clock, cost):
    """Make each route of ``nl`` advance ``clock`` by ``cost[route]`` seconds; returns the
    list of routes run, in order."""
    seen = []
    real = {"explicit": nl.context_modeling, "fast": nl.fast_context_modeling,
            "gram": nl.fast_dot_product}

    def wrap(name, kind):
        def run(t):
            seen.append(kind)
            clock.now += cost[kind]
            return real[name](t)
        return run

    nl.context_modeling = wrap("explicit", "explicit")
    nl.fast_context_modeling = wrap("fast", "fast")
    nl.fast_dot_product = wrap("gram", "fast")
    return seen


def _randomised(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
    return module


def _fwd_bwd(nl, x, grad):
    for p in nl.parameters():
        p.grad = None
    x = x.detach().clone().requires_grad_()
    out = nl(x)
    out.backward(grad)
    return out.detach(), x.grad, {n: p.grad.clone() for n, p in nl.named_parameters()}


@pytest.mark.parametrize("mode,hw", [
    ("embedded_gaussian", (4, 5)),  # N' = 20 <= 5 C_i: the rule says explicit
    ("embedded_gaussian", (6, 6)),  # N' = 36 > 5 C_i: the rule says fast
    ("dot_product", (2, 4)),  # N' = 8 > C_i, N < 2C: fast is the factorised route
    ("dot_product", (4, 4)),  # N = 16 = 2C: fast is the Gram route
])
@pytest.mark.parametrize("faster", ["explicit", "fast"])
def test_the_stub_clock_decides_and_the_choice_is_kept(monkeypatch, mode, hw, faster):
    clock = StubClock()
    monkeypatch.setattr(routes, "clock", clock)
    nl = _randomised(NonLocal2d(C, mode=mode))
    seen = _stub(nl, clock, {faster: 0.1, ({"explicit", "fast"} - {faster}).pop(): 0.3})
    x = torch.randn(2, C, *hw, requires_grad=True)
    with measured_routes():
        nl(x)
        timed = len(seen)
        assert timed == 2 * (routes.REPEATS + 1) + 1  # warm-up + repeats each, then the call
        assert seen[-1] == faster
        (entry,) = route_table().values()
        assert entry["route"] == faster
        assert entry["ms"][faster] == pytest.approx(100.0)
        reads = clock.reads
        nl(x)  # the same configuration: no timing, the kept route
        assert seen[timed:] == [faster] and clock.reads == reads
        nl(torch.randn(3, C, *hw))  # another batch size (and no grad needed): measured again
        assert len(route_table()) == 2


@pytest.mark.parametrize("cost,rounds", [
    (0.1, routes.REPEATS),  # 5 rounds make 0.5 s >= MIN_SECONDS
    (0.01, 25),  # 25 rounds of 0.01 s make MIN_SECONDS
    (1e-6, routes.MAX_REPEATS),  # never MIN_SECONDS: capped
])
def test_fast_routes_are_timed_until_min_seconds(monkeypatch, cost, rounds):
    clock = StubClock()
    monkeypatch.setattr(routes, "clock", clock)
    monkeypatch.setattr(routes, "MIN_SECONDS", 0.25)
    nl = NonLocal2d(C)
    seen = _stub(nl, clock, {"explicit": cost, "fast": 2 * cost})
    with measured_routes():
        nl(torch.randn(1, C, 2, 2))
    assert len(seen) == 2 * (rounds + 1) + 1  # a warm-up and the rounds each, then the call


def test_a_tie_keeps_the_size_rule(monkeypatch):
    clock = StubClock()
    monkeypatch.setattr(routes, "clock", clock)
    for hw, rule in (((4, 5), "explicit"), ((6, 6), "fast")):
        nl = NonLocal2d(C)
        seen = _stub(nl, clock, {"explicit": 0.1, "fast": 0.1})
        with measured_routes():
            nl(torch.randn(2, C, *hw))
        assert seen[-1] == rule


@pytest.mark.parametrize("faster", ["explicit", "fast"])
@pytest.mark.parametrize("mode", ["embedded_gaussian", "dot_product"])
def test_measured_route_equals_the_explicit_route(monkeypatch, mode, faster):
    # float32, norm='bn' in training mode: outputs, every gradient and the running statistics
    # equal the explicit block's after one call, whichever route the stub makes faster
    clock = StubClock()
    monkeypatch.setattr(routes, "clock", clock)
    measured = _randomised(NonLocal2d(C, mode=mode, norm="bn"), 1)
    explicit = copy.deepcopy(measured)
    explicit.impl = "explicit"
    seen = _stub(measured, clock, {faster: 0.1, ({"explicit", "fast"} - {faster}).pop(): 0.2})
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, C, 4, 4, generator=g)
    grad = torch.randn(2, C, 4, 4, generator=g)
    with measured_routes():
        out_m, dx_m, dp_m = _fwd_bwd(measured, x, grad)
    assert seen[-1] == faster
    out_e, dx_e, dp_e = _fwd_bwd(explicit, x, grad)
    assert (out_e - x).abs().max() > 0.1  # a real, non-identity map
    n = n_keys = 16
    k = 2 * n * n_keys**2 * C**2  # as tests/test_fast_paths.py: B N N'^2 C^2 terms at most
    # a bias's gradient sums its weight's terms with x (|x| ~ 1) replaced by 1: the larger
    # scale of the two (g.bias's is 0 in exact arithmetic: BN removes a per-channel constant)
    scale = {name: max(g.abs().max().item(),
                       dp_e.get(name[: -len("bias")] + "weight", g).abs().max().item()
                       if name.endswith("bias") else 0.0) for name, g in dp_e.items()}
    for a, b, what, s in [(out_m, out_e, "output", out_e.abs().max().item()),
                          (dx_m, dx_e, "d input", dx_e.abs().max().item())] + [
            (dp_m[name], dp_e[name], f"d {name}", scale[name]) for name in dp_e]:
        bar = tol(k, s, "float32")
        torch.testing.assert_close(a, b, rtol=0, atol=bar, msg=lambda m, w=what: f"{w}: {m}")
    for name, buf in explicit.named_buffers():  # BN ran once, not 2 * (REPEATS + 1) + 1 times
        torch.testing.assert_close(dict(measured.named_buffers())[name], buf, rtol=0,
                                   atol=tol(k, buf.abs().max().item() + 1, "float32"))


def test_no_grad_calls_are_timed_forward_only(monkeypatch):
    nl = NonLocal2d(C)
    with measured_routes(), torch.no_grad():
        nl(torch.randn(2, C, 4, 5))
    (key,) = route_table()
    assert ", False, (False, None))" in key  # the configuration records: no backward


def test_default_tracing_scripting_export_and_large_maps_never_measure():
    nl = NonLocal2d(C)
    nl(torch.randn(2, C, 4, 4))  # switch off (the default): the size rule
    assert not measured_routes_enabled() and route_table() == {}
    with measured_routes():
        x = torch.randn(1, C, 2, 2)
        traced = torch.jit.trace(nl, x, check_trace=False)  # the check would run eager
        assert "softmax" not in str(traced.graph)  # SDPA: the fast route, not the matrix
        scripted = torch.jit.script(NonLocal2d(C))
        scripted(x)
        traced(x)
        exported = torch.export.export(nl, (x,))  # dynamo: compiling() is true while it traces
        assert "softmax" not in str(exported.graph)
        nl(torch.randn(1, C, 9, 8))  # N' = 72 > 16 C_i = 64: the fast path, unmeasured
        assert route_table() == {}
        nl(torch.randn(1, C, 8, 8))  # N' = 64 = 16 C_i: measured
        assert len(route_table()) == 1


def test_the_switch_and_the_chooser_refuse_bad_input():
    with pytest.raises(TypeError, match="enabled must be True or False, got 'yes'"):
        set_measured_routes("yes")
    with pytest.raises(TypeError, match="enabled must be True or False"):
        with measured_routes(1):
            pass
    assert not measured_routes_enabled()
    x, nl = torch.randn(1, C, 2, 2), NonLocal2d(C)
    with pytest.raises(ValueError, match="at least one route"):
        choose_route(("k",), {}, x, nl)
    with pytest.raises(TypeError, match=r"not callable: \['fast'\]"):
        choose_route(("k",), {"fast": None}, x, nl)
    with measured_routes():
        assert measured_routes_enabled()
        with measured_routes(False):
            assert not measured_routes_enabled()
        assert measured_routes_enabled()


@pytest.mark.parametrize("reentrant", [False, True])
def test_activation_checkpointing_sees_one_call_and_gets_its_gradients(reentrant):
    # under checkpoint's saved-tensor hooks nothing is timed (the hooks would see the timed
    # calls, and checkpoint refuses a recomputation that saves fewer tensors): the size rule,
    # in the forward and the recomputation alike, even once a choice is kept; the gradients
    # equal the plain call's (measured and kept after the checkpointed ones)
    from torch.utils.checkpoint import checkpoint

    nl = _randomised(NonLocal2d(C), 5).double()
    x = torch.randn(2, C, 4, 4, dtype=torch.float64, requires_grad=True)

    def grads(call):
        x.grad = None
        nl.zero_grad()
        call(x).sum().backward()
        return [x.grad.clone()] + [p.grad.clone() for p in nl.parameters()]

    with measured_routes():
        first = grads(lambda t: checkpoint(nl, t, use_reentrant=reentrant))
        if not reentrant:  # reentrant runs its forward under no_grad, without hooks
            assert route_table() == {}
        plain = grads(nl)
        assert len(route_table()) >= 1
        again = grads(lambda t: checkpoint(nl, t, use_reentrant=reentrant))  # a kept choice
    for a, b, c in zip(first, again, plain):
        torch.testing.assert_close(a, c, rtol=0, atol=1e-12)
        torch.testing.assert_close(b, c, rtol=0, atol=1e-12)


def test_flop_counting_counts_the_rule_route_untimed():
    from torch.utils.flop_counter import FlopCounterMode

    nl = NonLocal2d(C)
    x = torch.randn(2, C, 4, 4)  # N' = 16 <= 5 C_i: the rule takes the explicit matrix
    counts = []
    for on in (False, True):
        with measured_routes(on), FlopCounterMode(display=False) as counter:
            nl(x)
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] > 0 and route_table() == {}
