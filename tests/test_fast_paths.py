"""The fast paths compute what the explicit paths compute, without the (N, N') matrix.

Truth: the explicit Non-local path (``impl='explicit'``, itself tested against mmcv in
test_nn_parity_mmcv.py) and autograd's gradients of it; for GC/SE/SNL, the same block on the
same values in NCHW layout. Tolerances: tests/_tol.py's rounding bar in the tensors' dtype, from
the number of terms summed and the size of the quantity (not from one machine's output).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from _tol import dtype_name, tol
from torch.utils._python_dispatch import TorchDispatchMode

from gclab.experiments import bench, bench_core, bench_groups
from gclab.nn import (
    GCBlock,
    NonLocal1d,
    NonLocal2d,
    NonLocal3d,
    SEBlock,
    SimplifiedNonLocal2d,
)
from gclab.vocab import NON_LOCAL_MODES as MODES

C = 6
SHAPES = {  # spatial sizes with even pooled dims and an odd one left over (3-D keeps T)
    NonLocal1d: (2, C, 10),
    NonLocal2d: (2, C, 6, 4),
    NonLocal3d: (2, C, 3, 4, 2),
}


def _bars(ref_out, ref_dx, ref_dp, n_terms, dtype):
    """Bars per tensor: tol(K, max |tensor|) in the tensors' dtype (tests/_tol.py). A bias
    gradient sums the same terms as its weight's gradient with x (|x| ~ 1 here) replaced by 1,
    so it takes the larger of the two scales (phi.bias is exactly 0 in exact arithmetic:
    softmax is shift-invariant)."""
    def scale(t):
        return t.abs().max().item()

    kind = dtype_name(dtype)
    bars = {"output": tol(n_terms, scale(ref_out), kind),
            "d input": tol(n_terms, scale(ref_dx), kind)}
    for name, g in ref_dp.items():
        twin = ref_dp.get(name[: -len("bias")] + "weight", g) if name.endswith("bias") else g
        bars[f"d {name}"] = tol(n_terms, max(scale(g), scale(twin)), kind)
    return bars


def _randomise(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Weights ~ N(0, 1/fan_in), so no term vanishes (conv_out is zero at init) and the
    outputs are O(1); BatchNorm gets non-trivial affine parameters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) / math.sqrt(fan_in))
    return module


def _run(module, x, grad):
    for p in module.parameters():
        p.grad = None
    x = x.detach().clone().requires_grad_()
    out = module(x)
    out.backward(grad)
    grads = {n: p.grad.detach().clone() for n, p in module.named_parameters()}
    return out.detach(), x.grad.detach(), grads


def _assert_same(a, b, tol, what):
    # normwise: the same absolute bar for every element (rtol=0), see tests/_tol.py
    torch.testing.assert_close(a, b, rtol=0, atol=tol, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("sub_sample", [False, True], ids=["full", "sub"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cls", [NonLocal1d, NonLocal2d, NonLocal3d], ids=["1d", "2d", "3d"])
def test_fast_equals_explicit_forward_and_gradients(cls, mode, sub_sample, dtype):
    shape = SHAPES[cls]
    explicit = _randomise(cls(C, reduction=2, mode=mode, sub_sample=sub_sample), 1)
    explicit = explicit.to(dtype)
    explicit.impl = "explicit"
    fast = copy.deepcopy(explicit)
    fast.impl = "fast"
    g = torch.Generator().manual_seed(2)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    grad = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)

    out_e, dx_e, dp_e = _run(explicit, x, grad)
    out_f, dx_f, dp_f = _run(fast, x, grad)
    b, n, n_keys = explicit(x, return_attention=True)[1].shape
    # K: a parameter gradient sums B·N positions of (N' attention terms, each through a softmax
    # backward's N'-term row sum) of (C-channel convs, twice): K <= B·N·N'^2·C^2 for every tensor
    bars = _bars(out_e, dx_e, dp_e, b * n * n_keys**2 * C**2, dtype)
    assert out_e.abs().max() > 0.1 and (out_e - x).abs().max() > 0.1  # a real, non-identity map
    _assert_same(out_f, out_e, bars["output"], "output")
    _assert_same(dx_f, dx_e, bars["d input"], "d input")
    assert dp_f.keys() == dp_e.keys()
    for name in dp_e:
        assert dp_e[name].abs().max() > 0 or name == "phi.bias", name  # gradients reach it
        _assert_same(dp_f[name], dp_e[name], bars[f"d {name}"], f"d {name}")


@pytest.mark.parametrize("mode", MODES)
def test_fast_path_with_batchnorm_and_no_scale(mode):
    # norm='bn' in training mode (batch statistics) and use_scale=False
    explicit = _randomise(NonLocal2d(C, mode=mode, use_scale=False, norm="bn"), 3).double()
    explicit.impl = "explicit"
    fast = copy.deepcopy(explicit)
    fast.impl = "auto"
    x = torch.randn(3, C, 5, 4, dtype=torch.float64)
    grad = torch.randn_like(x)
    for a, b in zip(_run(fast, x, grad)[:2], _run(explicit, x, grad)[:2]):
        _assert_same(a, b, 1e-10, mode)


def test_auto_uses_explicit_path_only_for_attention():
    nl = _randomise(NonLocal2d(C, mode="embedded_gaussian"), 4).double()
    x = torch.randn(2, C, 4, 4, dtype=torch.float64)
    out, attn = nl(x, return_attention=True)
    assert attn.shape == (2, 16, 16)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 16, dtype=torch.float64))
    _assert_same(nl(x), out, 1e-10, "auto without attention")
    nl.impl = "fast"
    with pytest.raises(ValueError, match="return_attention"):
        nl(x, return_attention=True)
    with pytest.raises(ValueError, match="impl"):
        NonLocal2d(C, impl="flash")
    nl.impl = "Fast"  # a typo set on the attribute is caught at the next call
    with pytest.raises(ValueError, match="impl"):
        nl(x)


def test_concatenation_ties_do_not_change_the_output():
    # a_i + b_j == 0 exactly: the term is ReLU(0) = 0 however the fast path counts the tie
    nl = NonLocal1d(2, reduction=1, mode="concatenation").double()
    with torch.no_grad():
        for conv in (nl.theta, nl.phi, nl.g):
            conv.weight.copy_(torch.eye(2).reshape(2, 2, 1))
            conv.bias.zero_()
        nl.concat_project.weight.copy_(torch.tensor([1.0, 0.0, 1.0, 0.0]).reshape(1, 4, 1, 1))
        nl.conv_out.weight.copy_(torch.eye(2).reshape(2, 2, 1))
    # a_i = x_0i, b_j = x_0j: with values +-1 many pairs sum to exactly 0
    x = torch.tensor([[[1.0, -1.0, 1.0, -1.0, 2.0, -2.0], [0.5, 1.0, -1.0, 2.0, 0.0, 3.0]]],
                     dtype=torch.float64)
    nl.impl = "explicit"
    want = nl(x)
    nl.impl = "fast"
    _assert_same(nl(x), want, 1e-12, "ties")


# ------------------------------------------------------------------------ no (N, N') tensor
class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any aten op returns (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.largest = 0
        self.op = ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() > self.largest:
                self.largest, self.op = t.numel(), str(func)
        return out


@pytest.mark.parametrize("sub_sample", [False, True], ids=["full", "sub"])
@pytest.mark.parametrize("mode", MODES)
def test_fast_path_never_builds_an_n_by_n_tensor(mode, sub_sample):
    b, h, w = 1, 32, 32
    n = h * w
    n_keys = n // 4 if sub_sample else n
    nl = NonLocal2d(8, mode=mode, sub_sample=sub_sample)
    _randomise(nl, 5)
    x = torch.randn(b, 8, h, w, requires_grad=True)
    for impl, expect_big in (("explicit", True), ("fast", False)):
        nl.impl = impl
        with _LargestTensor() as spy:
            nl(x).sum().backward()
        if expect_big:  # the spy sees the explicit path's (B, N, N') matrix
            assert spy.largest >= b * n * n_keys, (impl, spy.largest)
        else:  # nothing bigger than a few (B, N, C) tensors
            assert spy.largest <= 4 * b * n * 8, (spy.op, spy.largest)
            assert 4 * spy.largest <= b * n * n_keys


def test_fast_embedded_gaussian_memory_stays_linear_at_64x64():
    # N = 4096: one (N, N) float32 matrix is 64 MiB; the fast path's peak stays far below it
    nl = NonLocal2d(16)
    _randomise(nl, 6)
    x = torch.randn(1, 16, 64, 64, requires_grad=True)
    grad = torch.randn_like(x)
    peak = bench_core.peak_bytes(bench_core.fwd_bwd_step(nl, x, grad))
    nxn = 4096 * 4096 * 4
    assert 0 < peak < nxn / 8, peak / 2**20


# ------------------------------------------------------------------ GC / SE / SNL layouts
@pytest.mark.parametrize(
    "build",
    [
        lambda: GCBlock(16, ratio=1 / 4),
        lambda: GCBlock(16, ratio=1 / 4, fusions=("add", "mul")),
        lambda: GCBlock(16, ratio=1 / 4, pooling="avg", fusions=("mul",)),
        lambda: SEBlock(16, ratio=1 / 4),
        lambda: SimplifiedNonLocal2d(16),
        lambda: NonLocal2d(16, mode="embedded_gaussian", sub_sample=True),
        lambda: NonLocal2d(16, mode="concatenation"),
    ],
    ids=["gc-add", "gc-add-mul", "gc-avg-mul", "se", "snl", "nl-emb-sub", "nl-concat"],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_channels_last_gives_the_same_result(build, dtype):
    block = _randomise(build(), 7).to(dtype)
    x = torch.randn(2, 16, 6, 8, dtype=torch.float64).to(dtype)
    grad = torch.randn_like(x)
    xl = x.contiguous(memory_format=torch.channels_last)
    gl = grad.contiguous(memory_format=torch.channels_last)
    out, dx, dp = _run(block, x, grad)
    out_l, dx_l, dp_l = _run(block, xl, gl)
    b, c, h, w = x.shape
    # K: a GC mask gradient sums B·N positions, through the softmax's N-term row sum, of the
    # context's C-channel transform (twice) and dadd's N-term sum: B·N^3·C^2 bounds every block
    # here (NL: B·N·N'^2·C^2 with N' <= N)
    bars = _bars(out, dx, dp, b * (h * w) ** 3 * c**2, dtype)
    _assert_same(out_l, out, bars["output"], "output")
    _assert_same(dx_l, dx, bars["d input"], "d input")
    for name in dp:
        _assert_same(dp_l[name], dp[name], bars[f"d {name}"], f"d {name}")
    if not isinstance(block, NonLocal2d):  # fusion writes the output in x's layout
        assert out_l.is_contiguous(memory_format=torch.channels_last)
        assert out.is_contiguous()


def test_fusion_matches_its_formula():
    from gclab.nn import fusion

    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    add, mul = torch.randn(2, 3, 1, 1, dtype=torch.float64), torch.randn(2, 3, 1, 1).double()
    sig = 1 / (1 + torch.exp(-mul))
    for got, want in (
        (fusion(x, add=add, mul=mul), x * sig + add),
        (fusion(x, mul=mul), x * sig),
        (fusion(x, add=add), x + add),
        (fusion(x), x),
    ):
        _assert_same(got, want, 1e-12, "fusion")


# ----------------------------------------------------------------------------- benchmark
def test_benchmark_smoke_runs_end_to_end(tmp_path, capsys):
    assert bench.main(["--smoke", "--out", str(tmp_path), "--no-plot"]) == 0
    printed = capsys.readouterr().out
    assert "| group | size |" in printed and "gclab/this time" in printed
    for group in ("nl_embedded", "nl_dot", "gc", "se", "gc_forward", "numpy_nl"):
        assert f"| {group} |" in printed, group
    assert "timm" in printed  # timm, or the labelled timm-style stand-in
    assert any(s in printed for s in ("| MET |", "| NOT MET |"))
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert lines[0].startswith("group,impl,batch,channels,height,width,time_ms")
    assert len(lines) > 10
    assert (tmp_path / "machine.json").exists()


def test_peak_bytes_sees_a_known_allocation():
    def alloc():
        a = torch.empty(4 << 20, dtype=torch.uint8)  # 4 MiB, freed at return
        b = torch.empty(1 << 20, dtype=torch.uint8)
        return a, b

    assert (5 << 20) <= bench_core.peak_bytes(alloc) < (6 << 20)


def test_timm_style_se_is_squeeze_excite():
    se = _randomise(bench_groups.TimmStyleSE(8, 2), 8).double()
    ours = SEBlock(8, ratio=1 / 4).double()
    with torch.no_grad():
        for src, dst in ((se.fc1, ours.transform["mul"][0]), (se.fc2, ours.transform["mul"][3])):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    _assert_same(se(x), ours(x), 1e-12, "timm-style SE")



@pytest.mark.parametrize("norm", [None, "bn"])
@pytest.mark.parametrize("cls", [NonLocal1d, NonLocal2d, NonLocal3d], ids=["1d", "2d", "3d"])
def test_dot_product_as_one_linear_map_of_x(cls, norm):
    """fast_dot_product (z = x + A x + a, A from the Gram matrix of x) equals the explicit
    (N, N) path and the factorised theta (phi^T g) path, output and every gradient, with
    non-zero biases everywhere; it is what 'auto' runs in eager mode for dot_product."""
    shape = {NonLocal1d: (2, C, 14), NonLocal2d: (2, C, 5, 4), NonLocal3d: (2, C, 2, 3, 3)}[cls]
    explicit = _randomise(cls(C, mode="dot_product", norm=norm, impl="explicit"), 5).double()
    gram = copy.deepcopy(explicit)
    gram.impl = "auto"
    factorised = copy.deepcopy(explicit)
    factorised.impl = "fast"
    factorised._gram_path = lambda x: False  # the (theta, phi, g) token path
    x = torch.randn(shape, dtype=torch.float64)
    grad = torch.randn(shape, dtype=torch.float64)
    calls = []
    real = gram.fast_dot_product
    gram.fast_dot_product = lambda t: calls.append(t.shape) or real(t)
    got = _run(gram, x, grad)
    assert calls == [x.shape]  # N >= 2 C: 'auto' took the Gram form
    for ref in (_run(explicit, x, grad), _run(factorised, x, grad)):
        _assert_same(got[0], ref[0], 1e-11, "output")
        _assert_same(got[1], ref[1], 1e-11, "d input")
        assert got[2].keys() == ref[2].keys()
        for name in ref[2]:
            _assert_same(got[2][name], ref[2][name], 1e-10, f"d {name}")


def test_dot_product_gram_path_conditions():
    """The Gram form only where it is exact and cheap: not with sub-sampling (max-pool does
    not commute with W_phi), not when C > 2 C_i, not under autocast or tracing; an empty batch
    still works."""
    x = torch.randn(2, 8, 4, 4)
    assert NonLocal2d(8, mode="dot_product")._gram_path(x)
    assert not NonLocal2d(8, mode="dot_product")._gram_path(x[:, :, :3, :5])  # N < 2 C
    assert not NonLocal2d(8, mode="dot_product", sub_sample=True)._gram_path(x)
    assert not NonLocal2d(8, mode="dot_product", reduction=4)._gram_path(x)
    assert not NonLocal2d(8, mode="embedded_gaussian")._gram_path(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not NonLocal2d(8, mode="dot_product")._gram_path(x)
    nl = _randomise(NonLocal2d(8, mode="dot_product"), 6)
    empty = torch.zeros(0, 8, 4, 4, requires_grad=True)
    out = nl(empty)
    out.sum().backward()
    assert out.shape == empty.shape and empty.grad.shape == empty.shape
