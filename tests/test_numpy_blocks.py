"""The NumPy blocks (gclab.numpy) against the PyTorch blocks (gclab.nn), same weights.

For every block, mode and option, with randomised (non-zero) weights and BatchNorm running
statistics, in float64:
- forward: output and attention map equal torch's (rel error <= 1e-10);
- backward: dx and the gradient of every trainable parameter equal autograd (<= 1e-8), and
  ``dparams`` has exactly the keys of ``named_parameters()``.
Gradients that are zero in exact arithmetic (softmax is shift-invariant, so the bias of
``conv_mask`` and, in the softmax modes, of ``phi`` get none) are checked to be ~0 in both
worlds instead, since a relative error of two rounding noises means nothing.
Also: odd shapes, 1x1 maps, batch 1; identity at init; the three step functions compose to
the forward and equal torch's steps; the naive loop version equals the vectorised one;
params/config helpers; bad input raises clear errors.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import torch

import gclab.nn as gnn
from gclab.numpy import (
    block_from_torch,
    config_from_torch,
    gc_block,
    non_local,
    non_local_naive,
    params_from_torch,
    rel_error,
    se_block,
    snl_block,
)
from gclab.vocab import NON_LOCAL_MODES

FWD_TOL, BWD_TOL = 1e-10, 1e-8
MODES = NON_LOCAL_MODES
NL_CLS = {1: gnn.NonLocal1d, 2: gnn.NonLocal2d, 3: gnn.NonLocal3d}
NL_SHAPE = {1: (2, 6, 7), 2: (2, 6, 5, 4), 3: (2, 6, 3, 4, 5)}  # odd sizes: pooling floors
GC_FUSIONS = (("add",), ("mul",), ("add", "mul"))


def randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """float64, eval mode, every parameter and BN statistic random (no zero init left)."""
    gen = torch.Generator().manual_seed(seed)
    module = module.double().eval()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=gen, dtype=b.dtype))
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen, dtype=b.dtype) + 0.5)
    return module


def build(case: tuple) -> torch.nn.Module:
    kind, *args = case
    if kind == "gc":
        pooling, fusions, ln = args
        return gnn.GCBlock(8, ratio=1 / 4, pooling=pooling, fusions=fusions, layer_norm=ln)
    if kind == "se":
        return gnn.SEBlock(8, ratio=1 / 4)
    if kind == "snl":
        return gnn.SimplifiedNonLocal2d(8)
    dims, mode, use_scale, sub_sample, norm = args
    return NL_CLS[dims](6, mode=mode, use_scale=use_scale, sub_sample=sub_sample, norm=norm)


def zero_grad_keys(case: tuple) -> set:
    """Parameters whose gradient is exactly 0 mathematically (shift-invariant softmax)."""
    keys = {"context_modeling.conv_mask.bias"}
    if case[0] == "nl" and case[2] in ("gaussian", "embedded_gaussian"):
        keys.add("phi.bias")  # theta_i . (phi_j + b): the same shift for every key j
    return keys


CASES = (
    [("gc", p, f, ln) for p, f, ln in itertools.product(("att", "avg"), GC_FUSIONS, (True, False))]
    + [("se",), ("snl",)]
    + [("nl",) + c for c in itertools.product((1, 2, 3), MODES, (True, False), (False, True),
                                               (None, "bn"))]
)


def case_id(case: tuple) -> str:
    return "-".join("+".join(a) if isinstance(a, tuple) else str(a) for a in case)


@functools.cache
def run_both(case: tuple, shape: tuple = None, seed: int = 0) -> dict:
    """Torch and NumPy forward + backward of one block on one random input."""
    module = randomise(build(case), seed)
    if shape is None:
        shape = NL_SHAPE[case[1]] if case[0] == "nl" else (2, 8, 5, 3)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    dout = rng.standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    out_t, attn_t = module(xt, return_attention=True)  # the explicit path, with the map
    with torch.no_grad():
        out_default = module(torch.tensor(x))  # what a user gets (may take a fast path)
    out_t.backward(torch.tensor(dout))
    blk = block_from_torch(module)
    (out, attn), cache = blk.forward(x, params_from_torch(module), return_attention=True,
                                     **config_from_torch(module))
    dx, dparams = blk.backward(dout, cache)
    return {
        "out": (out, out_t.detach().numpy(), out_default.numpy()),
        "attn": (attn, attn_t.detach().numpy()),
        "dx": (dx, xt.grad.numpy()),
        "dparams": dparams,
        "torch_grads": {k: p.grad.numpy() for k, p in module.named_parameters()},
    }


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward_equals_torch(case):
    r = run_both(case)
    out, out_t, out_default = r["out"]
    assert out.shape == out_t.shape
    assert rel_error(out, out_t) <= FWD_TOL
    assert rel_error(out, out_default) <= FWD_TOL
    attn, attn_t = r["attn"]
    assert attn.shape == attn_t.shape
    assert rel_error(attn, attn_t) <= FWD_TOL


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_backward_equals_autograd(case):
    r = run_both(case)
    assert rel_error(*r["dx"]) <= BWD_TOL
    dparams, theirs = r["dparams"], r["torch_grads"]
    assert set(dparams) == set(theirs)  # one gradient per trainable parameter, same keys
    for key, g in theirs.items():
        assert dparams[key].shape == g.shape, key
        if key in zero_grad_keys(case):
            assert np.abs(g).max() < 1e-12 and np.abs(dparams[key]).max() < 1e-12, key
        else:
            assert rel_error(dparams[key], g) <= BWD_TOL, (key, rel_error(dparams[key], g))


ODD_SHAPES_2D = [(1, 8, 1, 1), (1, 8, 7, 1), (3, 8, 1, 5), (1, 8, 3, 3)]


@pytest.mark.parametrize("shape", ODD_SHAPES_2D, ids=str)
@pytest.mark.parametrize(
    "case", [("gc", "att", ("add", "mul"), True), ("gc", "avg", ("mul",), False), ("se",),
             ("snl",), ("nl", 2, "embedded_gaussian", True, False, None),
             ("nl", 2, "concatenation", True, False, "bn")], ids=case_id,
)
def test_odd_shapes_1x1_maps_batch_1(case, shape):
    if case[0] == "nl":
        shape = (shape[0], 6) + shape[2:]
    r = run_both(case, shape, seed=1)
    assert rel_error(*r["out"][:2]) <= FWD_TOL and rel_error(*r["attn"]) <= FWD_TOL
    assert rel_error(*r["dx"]) <= BWD_TOL
    for key, g in r["torch_grads"].items():
        if key not in zero_grad_keys(case):
            assert rel_error(r["dparams"][key], g) <= BWD_TOL, key


@pytest.mark.parametrize("shape", [(1, 6, 1), (1, 6, 2), (3, 6, 1, 1, 1), (1, 6, 1, 2, 3)],
                         ids=str)
@pytest.mark.parametrize("mode", MODES)
def test_non_local_tiny_maps(shape, mode):
    dims = len(shape) - 2
    sub = shape[2:] == (2,)  # the smallest map that can be sub-sampled
    r = run_both(("nl", dims, mode, True, sub, None), shape, seed=2)
    assert rel_error(*r["out"][:2]) <= FWD_TOL and rel_error(*r["attn"]) <= FWD_TOL
    assert rel_error(*r["dx"]) <= BWD_TOL


# ------------------------------------------------------------------ properties
def test_identity_at_init_and_se_gates():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 8, 4, 5))
    for module in (gnn.GCBlock(8, 1 / 4), gnn.SimplifiedNonLocal2d(8)):
        blk = block_from_torch(module)
        out, _ = blk.forward(x, params_from_torch(module), **config_from_torch(module))
        assert np.array_equal(out, x)
    for mode in MODES:
        nl = gnn.NonLocal2d(8, mode=mode)
        out, _ = non_local.forward(x, params_from_torch(nl), **config_from_torch(nl))
        assert np.array_equal(out, x)
    gates = se_block.gate(x * 50, params_from_torch(randomise(gnn.SEBlock(8, 1 / 4))))
    assert gates.shape == (2, 8, 1, 1) and ((gates > 0) & (gates < 1)).all()


def test_gc_and_snl_attention_is_query_independent_and_sums_to_1():
    x = np.random.default_rng(4).standard_normal((2, 8, 3, 5))
    for module in (randomise(gnn.GCBlock(8, 1 / 4)), randomise(gnn.SimplifiedNonLocal2d(8))):
        (_, attn), _ = block_from_torch(module).forward(
            x, params_from_torch(module), return_attention=True, **config_from_torch(module))
        assert np.array_equal(attn, np.broadcast_to(attn[:, :1], attn.shape))
        assert np.allclose(attn.sum(-1), 1.0, rtol=0, atol=1e-14)


# ------------------------------------------------------------------ the three steps
def test_gc_steps_compose_and_equal_torch_steps():
    gc = randomise(gnn.GCBlock(8, 1 / 4, fusions=("add", "mul")))
    p, x = params_from_torch(gc), np.random.default_rng(5).standard_normal((2, 8, 4, 3))
    context, alpha = gc_block.context_modeling(x, p)
    terms = gc_block.transform(context, p, fusions=("add", "mul"))
    out = gc_block.fusion(x, **terms)
    assert np.array_equal(out, gc_block.forward(x, p, fusions=("add", "mul"))[0])
    with torch.no_grad():
        ct, at = gc.context_modeling.forward_with_attention(torch.tensor(x))
        assert rel_error(context, ct.numpy()) <= FWD_TOL and rel_error(alpha, at.numpy()) <= FWD_TOL
        for f in ("add", "mul"):
            assert rel_error(terms[f], gc.transform[f](ct).numpy()) <= FWD_TOL
        ref = gnn.fusion(torch.tensor(x), torch.tensor(terms["add"]), torch.tensor(terms["mul"]))
    assert rel_error(out, ref.numpy()) <= FWD_TOL


def test_se_and_snl_steps_compose():
    x = np.random.default_rng(6).standard_normal((2, 8, 3, 3))
    se = randomise(gnn.SEBlock(8, 1 / 4))
    p = params_from_torch(se)
    c, alpha = se_block.context_modeling(x, p)
    assert np.allclose(alpha, 1 / 9) and rel_error(c, x.mean(axis=(2, 3), keepdims=True)) < 1e-14
    out = se_block.fusion(x, mul=se_block.transform(c, p))
    assert np.array_equal(out, se_block.forward(x, p)[0])
    snl = randomise(gnn.SimplifiedNonLocal2d(8))
    p = params_from_torch(snl)
    out = snl_block.fusion(x, snl_block.transform(snl_block.context_modeling(x, p)[0], p))
    assert np.array_equal(out, snl_block.forward(x, p)[0])


@pytest.mark.parametrize("mode", MODES)
def test_non_local_steps_compose_and_equal_torch_steps(mode):
    nl = randomise(gnn.NonLocal2d(6, mode=mode, sub_sample=True, norm="bn"))
    p, cfg = params_from_torch(nl), config_from_torch(nl)
    x = np.random.default_rng(7).standard_normal((2, 6, 5, 4))
    y, attn = non_local.context_modeling(x, p, mode=mode, sub_sample=True)
    out = non_local.fusion(x, non_local.transform(y, p, norm="bn"))
    assert np.array_equal(out, non_local.forward(x, p, **cfg)[0])
    with torch.no_grad():
        yt, at = nl.context_modeling(torch.tensor(x))
        assert rel_error(y, yt.numpy()) <= FWD_TOL and rel_error(attn, at.numpy()) <= FWD_TOL
        theta_x, phi_x, _ = nl.embed(torch.tensor(x))
        pair = getattr(non_local, mode)
        args = (theta_x.numpy(), phi_x.numpy())
        if mode == "concatenation":
            args += (p["concat_project.weight"],)
        assert rel_error(pair(*args), getattr(nl, mode)(theta_x, phi_x).numpy()) <= FWD_TOL
        assert rel_error(non_local.transform(y, p, "bn"), nl.transform(yt).numpy()) <= FWD_TOL


# ------------------------------------------------------------------ naive loop version
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape, sub_sample, norm", [
    ((2, 4, 3, 4), False, None), ((1, 4, 5, 4), True, "bn"), ((1, 4, 5), True, None),
    ((1, 4, 1, 2, 4), True, "bn"),
], ids=str)
def test_naive_equals_vectorised(mode, shape, sub_sample, norm):
    use_scale = sub_sample  # both settings of use_scale are covered across the shapes
    nl = randomise(NL_CLS[len(shape) - 2](4, mode=mode, use_scale=use_scale,
                                          sub_sample=sub_sample, norm=norm))
    p, cfg = params_from_torch(nl), config_from_torch(nl)
    x = np.random.default_rng(8).standard_normal(shape)
    out, attn = non_local_naive(x, p, return_attention=True, **cfg)
    (ref, ref_attn), _ = non_local.forward(x, p, return_attention=True, **cfg)
    assert rel_error(out, ref) <= FWD_TOL and rel_error(attn, ref_attn) <= FWD_TOL
    assert np.array_equal(non_local_naive(x, p, **cfg), out)


# ------------------------------------------------------------------ docs
@pytest.mark.parametrize("name", ["__init__", "ops", "gradcheck", "framework", "gc_block",
                                  "se_block", "snl_block", "non_local", "naive"])
def test_docstring_examples_run(name):
    import doctest
    import importlib

    module = importlib.import_module("gclab.numpy" + ("" if name == "__init__" else "." + name))
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0


# ------------------------------------------------------------------ helpers and errors
def test_params_and_config_from_torch():
    nl = gnn.NonLocal3d(6, mode="concatenation", use_scale=False, sub_sample=True, norm="bn")
    p = params_from_torch(nl)
    assert list(p) == list(nl.state_dict())
    for k, v in nl.state_dict().items():
        assert isinstance(p[k], np.ndarray)
        assert p[k].dtype == (np.float64 if v.is_floating_point() else np.int64), k
        assert np.array_equal(p[k], v.double().numpy() if v.is_floating_point() else v.numpy())
    p["g.weight"] += 1  # a copy: the torch weights are untouched
    assert not np.array_equal(p["g.weight"], nl.g.weight.detach().double().numpy())
    assert config_from_torch(nl) == {"mode": "concatenation", "use_scale": False,
                                     "sub_sample": True, "norm": "bn"}
    gc = gnn.GCBlock(16, pooling="avg", fusions=("mul", "add"), layer_norm=False)
    assert config_from_torch(gc) == {"pooling": "avg", "fusions": ("mul", "add"),
                                     "layer_norm": False, "eps": 1e-5}
    assert config_from_torch(gnn.SEBlock(16)) == {} == config_from_torch(
        gnn.SimplifiedNonLocal2d(4))
    assert block_from_torch(gc) is gc_block and block_from_torch(gnn.SEBlock(16)) is se_block
    assert block_from_torch(gnn.SimplifiedNonLocal2d(4)) is snl_block
    assert block_from_torch(gnn.NonLocal1d(4)) is non_local
    assert params_from_torch(gnn.GCBlock(16).float())["transform.add.0.weight"].dtype == np.float64
    with pytest.raises(TypeError, match="Conv2d"):
        config_from_torch(torch.nn.Conv2d(3, 3, 1))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        params_from_torch({"a": 1})


@pytest.fixture(scope="module")
def gc_params():
    return params_from_torch(gnn.GCBlock(8, 1 / 4))


@pytest.fixture(scope="module")
def nl_params():
    return params_from_torch(gnn.NonLocal2d(8))


def test_bad_input_gc(gc_params):
    x = np.zeros((2, 8, 4, 4))
    with pytest.raises(ValueError, match=r"4-D .*\(B, C, H, W\).*3-D"):
        gc_block.forward(np.zeros((2, 8, 4)), gc_params)
    with pytest.raises(ValueError, match="8 input channels.*7 channels"):
        gc_block.forward(np.zeros((2, 7, 4, 4)), gc_params)
    with pytest.raises(TypeError, match="floating-point.*int64"):
        gc_block.forward(np.zeros((2, 8, 4, 4), dtype=np.int64), gc_params)
    with pytest.raises(TypeError, match="numpy.ndarray.*Tensor"):
        gc_block.forward(torch.zeros(2, 8, 4, 4), gc_params)
    with pytest.raises(ValueError, match="empty"):
        gc_block.forward(np.zeros((2, 8, 0, 4)), gc_params)
    missing = {k: v for k, v in gc_params.items() if k != "transform.add.1.weight"}
    with pytest.raises(ValueError, match="'transform.add.1.weight'"):
        gc_block.forward(x, missing)
    # weights and config that do not match: an error, not a silently different block
    with pytest.raises(ValueError, match=r"does not use: \['transform.add.1.bias'"):
        gc_block.forward(x, gc_params, layer_norm=False)
    with pytest.raises(ValueError, match="'transform.mul.0.bias'"):
        gc_block.forward(x, gc_params, fusions=("add", "mul"))
    with pytest.raises(ValueError, match="does not use.*conv_mask"):
        gc_block.forward(x, gc_params, pooling="avg")
    with pytest.raises(ValueError, match="pooling.*'max'"):
        gc_block.forward(x, gc_params, pooling="max")
    with pytest.raises(ValueError, match="fusion.*'sum'"):
        gc_block.forward(x, gc_params, fusions=("sum",))
    with pytest.raises(ValueError, match="at least one"):
        gc_block.forward(x, gc_params, fusions=())
    with pytest.raises(TypeError, match="dict"):
        gc_block.forward(x, [1, 2])
    with pytest.raises(TypeError, match="params_from_torch|numpy.ndarray"):
        gc_block.forward(x, {k: torch.tensor(v) for k, v in gc_params.items()})
    # mmcv's fusion names are accepted, as by the torch block
    assert np.array_equal(gc_block.forward(x, gc_params, fusions=("channel_add",))[0], x)


def test_bad_input_se_snl():
    se, snl = params_from_torch(gnn.SEBlock(8, 1 / 4)), params_from_torch(
        gnn.SimplifiedNonLocal2d(8))
    with pytest.raises(ValueError, match="channels"):
        se_block.forward(np.zeros((1, 4, 2, 2)), se)
    with pytest.raises(ValueError, match="'transform.add.weight'"):
        snl_block.forward(np.zeros((1, 8, 2, 2)), {k: v for k, v in snl.items()
                                                   if k != "transform.add.weight"})
    with pytest.raises(ValueError, match="5-D"):
        snl_block.forward(np.zeros((1, 8, 2, 2, 2)), snl)


def test_bad_input_non_local(nl_params):
    x = np.zeros((2, 8, 4, 4))
    with pytest.raises(ValueError, match="mode.*'cosine'"):
        non_local.forward(x, nl_params, mode="cosine")
    with pytest.raises(ValueError, match="norm.*'gn'"):
        non_local.forward(x, nl_params, norm="gn")
    with pytest.raises(ValueError, match="params are for 4-D inputs"):
        non_local.forward(np.zeros((2, 8, 2, 4, 4)), nl_params)
    with pytest.raises(ValueError, match="8 input channels.*3 channels"):
        non_local.forward(np.zeros((2, 3, 4, 4)), nl_params)
    with pytest.raises(ValueError, match="sub_sample.*>= 2"):
        non_local.forward(np.zeros((2, 8, 1, 1)), nl_params, sub_sample=True)
    with pytest.raises(ValueError, match="'norm.weight'"):
        non_local.forward(x, nl_params, norm="bn")
    with pytest.raises(ValueError, match="'concat_project.weight'"):
        non_local.forward(x, nl_params, mode="concatenation")
    with pytest.raises(ValueError, match="does not use.*phi.bias"):
        non_local.forward(x, nl_params, mode="gaussian")
    bn = params_from_torch(gnn.NonLocal2d(8, norm="bn"))
    with pytest.raises(ValueError, match="does not use.*norm.bias"):
        non_local.forward(x, {**bn, "conv_out.bias": np.zeros(8)})
    with pytest.raises(TypeError, match="floating-point"):
        non_local.forward(np.zeros((2, 8, 4, 4), dtype=bool), nl_params)
    with pytest.raises(ValueError, match="mode"):
        non_local_naive(x, nl_params, mode="cosine")
