"""Numerics of gclab.nn: gradients, dtypes, extreme logits, and the scale of the attention.

- ``torch.autograd.gradcheck`` (float64, central differences against autograd) passes for
  every block, pooling, fusion and Non-local mode (+ sub_sample, + BatchNorm in eval mode),
  with respect to the input AND every parameter;
- float32 agrees with float64; a bfloat16 forward on CPU runs, stays finite and stays within
  a stated tolerance of float32 (tolerances: tests/_tol.py, from the error analysis);
- softmax stays finite, and still sums to 1, with logits of +-1e4;
- the attention maps equal the paper formulas computed here by hand from the raw weights, in
  particular embedded_gaussian divides by sqrt(C_i) (the old mmdetection bug multiplied).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from _tol import f32_tol, tol
from torch.autograd import gradcheck
from torch.func import functional_call

from gclab.nn import (
    GCBlock,
    NonLocal1d,
    NonLocal2d,
    NonLocal3d,
    SEBlock,
    SimplifiedNonLocal2d,
)

MODES = ("gaussian", "embedded_gaussian", "dot_product", "concatenation")
NL_CLS = {1: NonLocal1d, 2: NonLocal2d, 3: NonLocal3d}
NL_SHAPE = {1: (2, 4, 6), 2: (2, 4, 4, 3), 3: (1, 4, 2, 4, 2)}
GC_FUSIONS = (("add",), ("mul",), ("mul", "add"))


def _gc_cases():
    for pooling, fusions, ln in itertools.product(("att", "avg"), GC_FUSIONS, (True, False)):
        name = f"gc-{pooling}-{'+'.join(fusions)}-{'ln' if ln else 'noln'}"
        yield name, (lambda p=pooling, f=fusions, n=ln: GCBlock(8, 1 / 4, p, f, n)), (2, 8, 3, 4)
    yield "se", (lambda: SEBlock(8, 1 / 4)), (2, 8, 3, 4)
    yield "snl", (lambda: SimplifiedNonLocal2d(4)), (2, 4, 3, 3)


def _nl_cases():
    """Every mode x sub_sample x norm, on both paths (explicit attention matrix, fast)."""
    for dims, mode, sub, norm, impl in itertools.product(
        (1, 2, 3), MODES, (False, True), (None, "bn"), ("explicit", "fast")
    ):
        name = f"nl{dims}d-{mode}-{'sub' if sub else 'full'}-{norm}-{impl}"
        yield name, (
            lambda d=dims, m=mode, s=sub, n=norm, i=impl: NL_CLS[d](
                4, mode=m, sub_sample=s, norm=n, impl=i
            )
        ), NL_SHAPE[dims]


ALL_CASES = list(_gc_cases()) + list(_nl_cases())


def _params(case):
    return pytest.param(case[1], case[2], id=case[0])


# --------------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("make,shape", [_params(c) for c in ALL_CASES])
def test_gradcheck_float64_input_and_parameters(make, shape, randomize):
    block = randomize(make().double(), std=0.5, seed=3).eval()
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in block.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in block.named_parameters()]
    buffers = dict(block.named_buffers())

    def f(x, *ps):
        return functional_call(block, {**dict(zip(names, ps)), **buffers}, (x,))

    # fast mode compares random projections u^T J v of the numerical and analytical Jacobians
    # (all entries are covered at once); the full Jacobian per case would take seconds.
    # float64, eps=1e-6: truncation ~eps^2·|f'''| and rounding ~2^-53·|f|/eps ~ 1e-10, under 1e-6
    assert gradcheck(f, (x, *params), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


# --------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("make,shape", [_params(c) for c in ALL_CASES])
def test_float32_agrees_with_float64(make, shape, randomize):
    block = randomize(make(), seed=4).eval()
    x = torch.randn(*shape)
    out32 = block(x)
    out64 = block.double()(x.double())
    assert out32.dtype == torch.float32
    # float32 against float64 truth: NL sums N keys of C-term logits through two C-channel convs,
    # GC pools N positions of a C-term mask through C -> P -> C: K = N·C^3 (tests/_tol.py)
    c, n = shape[1], math.prod(shape[2:])
    bar = f32_tol(n * c**3, max(1.0, out64.abs().max().item()))
    torch.testing.assert_close(out32.double(), out64, atol=bar, rtol=0)


# bfloat16 keeps 8 significant bits (unit roundoff u = 2^-8 ~ 3.9e-3). CPU kernels accumulate
# in float32 and round once per op output, and rounding a layer's inputs or weights moves a
# K-term sum by ~sqrt(K)·u·s = u·|sum|: so count roundings, not terms. The longest path here
# (input, conv weights, logits, softmax, context, bottleneck conv, LayerNorm, ReLU, conv,
# fusion) rounds L = 10 times: tol(L, max(1, |ref|), "bfloat16") = 10·sqrt(10)·u ~ 0.12 relative.
# (0.02 was what one machine allowed; its measured worst case was 5.2e-3.)
BF16_ROUNDINGS = 10


@pytest.mark.parametrize("make,shape", [_params(c) for c in ALL_CASES])
def test_bfloat16_forward_on_cpu(make, shape, randomize):
    block = randomize(make(), seed=5).eval()
    torch.manual_seed(1)
    x = torch.randn(*shape)
    ref = block(x)
    out = block.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out).all()
    err = (out.float() - ref).abs().max().item()
    bar = tol(BF16_ROUNDINGS, max(1.0, ref.abs().max().item()), "bfloat16")
    assert err <= bar, f"bf16 error {err:.3g} > {bar:.3g}"


# --------------------------------------------------------------------------- extreme logits
def _assert_rows_are_a_distribution(attention: torch.Tensor) -> None:
    assert torch.isfinite(attention).all()
    assert (attention >= 0).all()
    ones = torch.ones(attention.shape[:-1], dtype=attention.dtype)
    # float32, N probabilities <= 1 summing to 1: the shared normaliser, each division and this
    # sum each add ~sqrt(N)·u: 3·sqrt(N)·u = sqrt(9N)·u, ×10 (tests/_tol.py)
    bar = f32_tol(9 * attention.shape[-1])
    torch.testing.assert_close(attention.sum(-1), ones, atol=bar, rtol=0)


@pytest.mark.parametrize("make", [lambda: GCBlock(4, 1 / 2), lambda: SimplifiedNonLocal2d(4)],
                         ids=["gc", "snl"])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_attention_pooling_with_logits_of_1e4(make, sign, randomize):
    block = randomize(make(), seed=6)
    torch.manual_seed(2)
    x = torch.rand(2, 4, 5, 5) * 2 - 1  # channel 0 in [-1, 1]
    with torch.no_grad():
        block.context_modeling.conv_mask.weight.zero_()
        block.context_modeling.conv_mask.weight[0, 0] = sign * 1e4
        block.context_modeling.conv_mask.bias.zero_()
    logits = block.context_modeling.conv_mask(x).flatten(1)
    assert logits.abs().max() > 9e3  # the test really is extreme
    out, attention = block(x, return_attention=True)
    assert torch.isfinite(out).all()
    _assert_rows_are_a_distribution(attention)
    # it equals the softmax computed stably here, in float64
    expected = torch.softmax(logits.double(), dim=1)
    # the logits are one product each (one non-zero weight, zero bias), so every kernel rounds
    # them alike; the softmax adds ~3·sqrt(N)·u to probabilities <= 1 (as above)
    bar = f32_tol(9 * attention.shape[-1])
    torch.testing.assert_close(attention[:, 0].double(), expected, atol=bar, rtol=0)
    # and with so sharp a softmax the context is (almost) the arg-max position's features
    best = logits.argmax(dim=1)
    assert torch.equal(attention[:, 0].argmax(dim=1), best)


@pytest.mark.parametrize("mode", ["gaussian", "embedded_gaussian"])
@pytest.mark.parametrize("dims", (1, 2, 3))
def test_non_local_softmax_with_logits_of_1e4(mode, dims, randomize):
    block = randomize(NL_CLS[dims](4, mode=mode), seed=7)
    torch.manual_seed(3)
    x = torch.randn(*NL_SHAPE[dims])
    if mode == "gaussian":
        x = x * 60  # x_i . x_j up to ~ 1e4
    else:
        with torch.no_grad():  # theta, phi = 70 * (the first C_i channels of x)
            for conv in (block.theta, block.phi):
                conv.weight.zero_()
                conv.bias.zero_()
                for k in range(block.inter_channels):
                    conv.weight.view(block.inter_channels, -1)[k, k] = 70.0
    theta_x, phi_x, _ = block.embed(x)
    logits = torch.bmm(theta_x, phi_x)
    assert logits.abs().max() > 5e3
    out, attention = block(x, return_attention=True)
    assert torch.isfinite(out).all()
    _assert_rows_are_a_distribution(attention)


def test_softmax_with_logits_of_1e4_in_bfloat16(randomize):
    block = randomize(GCBlock(4, 1 / 2), seed=8)
    with torch.no_grad():
        block.context_modeling.conv_mask.weight.zero_()
        block.context_modeling.conv_mask.weight[0, 0] = 1e4
    block = block.to(torch.bfloat16)
    x = (torch.rand(1, 4, 4, 4) * 2 - 1).to(torch.bfloat16)
    out, attention = block(x, return_attention=True)
    assert torch.isfinite(out).all() and torch.isfinite(attention).all()
    # bfloat16 worst case: every p_i rounded thrice (exp, normaliser, division), relative u = 2^-8
    # each, all errors aligned: |sum - 1| <= 3u·sum = 1.2e-2 (a tolerance of 2e-2)
    assert abs(attention[0, 0].float().sum().item() - 1) < 2e-2


# --------------------------------------------------------------------------- formulas by hand
def _conv1x1(x: torch.Tensor, conv) -> torch.Tensor:
    """A 1x1 conv from its raw weight and bias, (B, C, *S) -> (B, C', N)."""
    w = conv.weight.reshape(conv.weight.shape[0], -1)
    b = conv.bias if conv.bias is not None else torch.zeros(w.shape[0], dtype=x.dtype)
    return torch.einsum("oc,bcn->bon", w, x.flatten(2)) + b[None, :, None]


def _maxpool_keys(t: torch.Tensor, spatial: tuple, dims: int) -> torch.Tensor:
    """(B, C, N) -> (B, C, N') after the 2x max-pool of mmcv (time is not pooled in 3-D)."""
    b, c = t.shape[:2]
    t = t.reshape(b, c, *spatial)
    if dims == 1:
        t = t[..., : spatial[0] // 2 * 2].reshape(b, c, -1, 2).amax(-1)
    elif dims == 2:
        h, w = spatial[0] // 2, spatial[1] // 2
        t = t[..., : 2 * h, : 2 * w].reshape(b, c, h, 2, w, 2).amax((3, 5))
    else:
        h, w = spatial[1] // 2, spatial[2] // 2
        t = t[..., : 2 * h, : 2 * w].reshape(b, c, spatial[0], h, 2, w, 2).amax((4, 6))
    return t.reshape(b, c, -1)


@pytest.mark.parametrize("sub_sample", [False, True])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dims", (1, 2, 3))
def test_attention_equals_the_paper_formula(dims, mode, sub_sample, randomize):
    torch.manual_seed(4)
    block = randomize(NL_CLS[dims](8, mode=mode, sub_sample=sub_sample).double(), seed=9)
    x = torch.randn(*((2, 8) + NL_SHAPE[dims][2:]), dtype=torch.float64)
    spatial = tuple(x.shape[2:])
    if mode == "gaussian":
        theta, phi = x.flatten(2), x.flatten(2)
    else:
        theta, phi = _conv1x1(x, block.theta), _conv1x1(x, block.phi)
    if sub_sample:
        phi = _maxpool_keys(phi, spatial, dims)
    n_keys = phi.shape[-1]
    dot = torch.einsum("bci,bcj->bij", theta, phi)
    ci = block.inter_channels
    if mode == "gaussian":
        expected = torch.softmax(dot, -1)
    elif mode == "embedded_gaussian":
        expected = torch.softmax(dot / math.sqrt(ci), -1)
    elif mode == "dot_product":
        expected = dot / n_keys
    else:
        w = block.concat_project.weight.reshape(-1)
        pair = (torch.einsum("c,bci->bi", w[:ci], theta)[:, :, None]
                + torch.einsum("c,bcj->bj", w[ci:], phi)[:, None, :])
        expected = torch.relu(pair) / n_keys
    out, attention = block(x, return_attention=True)
    assert attention.shape == expected.shape
    assert torch.allclose(attention, expected, atol=1e-12, rtol=1e-10)
    # y = attention @ g(x) (keys sub-sampled likewise), z = x + W_z y
    g = _conv1x1(x, block.g)
    if sub_sample:
        g = _maxpool_keys(g, spatial, dims)
    y = torch.einsum("bij,bcj->bci", expected, g)
    z = x.flatten(2) + _conv1x1(y, block.conv_out)
    assert torch.allclose(out.flatten(2), z, atol=1e-12)


def test_embedded_gaussian_divides_by_sqrt_of_inter_channels(randomize):
    """The historical mmdetection bug multiplied the logits by sqrt(C_i) instead of dividing
    (fixed in mmdetection PR #1528); timm scales by the full C. Ours is softmax(θᵀφ/√C_i)."""
    torch.manual_seed(5)
    block = randomize(NonLocal2d(16, reduction=2).double(), std=0.3, seed=10)
    ci = block.inter_channels
    assert ci == 8
    x = torch.randn(2, 16, 4, 5, dtype=torch.float64)
    theta, phi = _conv1x1(x, block.theta), _conv1x1(x, block.phi)
    dot = torch.einsum("bci,bcj->bij", theta, phi)
    _, attention = block(x, return_attention=True)
    correct = torch.softmax(dot / math.sqrt(ci), -1)
    assert torch.allclose(attention, correct, atol=1e-12)
    for wrong in (dot * math.sqrt(ci), dot, dot / math.sqrt(16)):
        assert (attention - torch.softmax(wrong, -1)).abs().max() > 1e-3
    # use_scale=False drops the division, as in mmcv
    block.use_scale = False
    _, unscaled = block(x, return_attention=True)
    assert torch.allclose(unscaled, torch.softmax(dot, -1), atol=1e-12)


@pytest.mark.parametrize("pooling", ["att", "avg"])
def test_gc_attention_pooling_by_hand(pooling, randomize):
    """context = sum_j softmax_j(W_k x_j) x_j (att) or the mean (avg), then the bottleneck."""
    block = randomize(GCBlock(8, 1 / 4, pooling=pooling), seed=11).double()
    x = torch.randn(2, 8, 3, 5, dtype=torch.float64)
    flat = x.flatten(2)
    if pooling == "att":
        alpha = torch.softmax(_conv1x1(x, block.context_modeling.conv_mask)[:, 0], -1)
    else:
        alpha = torch.full((2, 15), 1 / 15, dtype=torch.float64)
    context = torch.einsum("bcn,bn->bc", flat, alpha)
    t = block.transform["add"]
    h = context @ t[0].weight.reshape(2, 8).T + t[0].bias
    h = (h - h.mean(1, keepdim=True)) / torch.sqrt(h.var(1, unbiased=False, keepdim=True) + 1e-5)
    h = torch.relu(h * t[1].weight.reshape(2) + t[1].bias.reshape(2))
    add = h @ t[3].weight.reshape(8, 2).T + t[3].bias
    out, attention = block(x, return_attention=True)
    assert torch.allclose(out, x + add[:, :, None, None], atol=1e-12)
    assert torch.allclose(attention[:, 0], alpha, atol=1e-12)
