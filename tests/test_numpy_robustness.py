"""The NumPy blocks under awkward inputs: strings where bools belong, an empty batch,
a wrong ``dout`` or cache in backward, the LayerNorm's eps. Truth: the PyTorch blocks (autograd)
on the same params and config."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import gclab.nn as gnn
import gclab.numpy as gnp
from gclab.numpy import gc_block, naive, non_local, se_block, snl_block
from gclab.numpy.framework import bottleneck_forward

C = 8


def raises(exc, *fragments):
    """pytest.raises that also requires every fragment (literal text) in the message."""
    return pytest.raises(exc, match="(?s)" + ".*".join(re.escape(f) for f in fragments))


TORCH_BLOCKS = {
    "gc": lambda: gnn.GCBlock(C, ratio=1 / 4),
    "gc_mul_add": lambda: gnn.GCBlock(C, ratio=1 / 4, fusions=("mul", "add")),
    "gc_avg_noln": lambda: gnn.GCBlock(C, ratio=1 / 4, pooling="avg", layer_norm=False),
    "se": lambda: gnn.SEBlock(C, ratio=1 / 4),
    "snl": lambda: gnn.SimplifiedNonLocal2d(C),
    **{f"nl{d}d_{m}_{s}_{n}": (lambda d=d, m=m, s=s, n=n: getattr(gnn, f"NonLocal{d}d")(
        C, mode=m, sub_sample=s, norm=n))
       for d in (1, 2, 3)
       for m in ("gaussian", "embedded_gaussian", "dot_product", "concatenation")
       for s in (False, True) for n in (None, "bn")},
}


def setup(name, randomize, b=2):
    block = randomize(TORCH_BLOCKS[name]()).double().eval()
    dims = getattr(block, "spatial_dims", 2)
    x = np.random.default_rng(0).standard_normal((b, C) + (4,) * dims)
    return block, gnp.block_from_torch(block), gnp.params_from_torch(block), \
        gnp.config_from_torch(block), x


# ------------------------------------------------------------------ bool options
@pytest.fixture(scope="module")
def nl_params():
    return gnp.params_from_torch(gnn.NonLocal2d(C).double())


@pytest.fixture(scope="module")
def gc_params():
    return gnp.params_from_torch(gnn.GCBlock(C, ratio=1 / 4).double())


X = np.zeros((2, C, 4, 4))


@pytest.mark.parametrize("option", ["use_scale", "sub_sample", "return_attention"])
@pytest.mark.parametrize("value", ["no", "False", 1, None])
def test_non_local_bools(nl_params, option, value):
    with raises(TypeError, f"{option} must be True or False", repr(value)):
        non_local.forward(X, nl_params, **{option: value})
    with raises(TypeError, f"{option} must be True or False", repr(value)):
        naive.non_local_naive(X, nl_params, **{option: value})


def test_non_local_step_functions_check_bools(nl_params):
    with raises(TypeError, "sub_sample must be True or False", "'no'"):
        non_local.embed_forward(X, nl_params, sub_sample="no")
    with raises(TypeError, "use_scale must be True or False", "'no'"):
        non_local.pairwise_forward(np.zeros((1, 3, 2)), np.zeros((1, 2, 3)), use_scale="no")
    with raises(TypeError, "sub_sample must be True or False", "'no'"):
        non_local.context_modeling(X, nl_params, sub_sample="no")


def test_use_scale_no_is_not_silently_true(nl_params):
    # before: "no" is truthy, so the forward ran with use_scale=True and returned a result
    (out_true, _), _ = non_local.forward(X + 1, nl_params, use_scale=True, return_attention=True)
    with pytest.raises(TypeError):
        non_local.forward(X + 1, nl_params, use_scale="no")
    assert np.isfinite(out_true).all()


@pytest.mark.parametrize("option", ["layer_norm", "return_attention"])
@pytest.mark.parametrize("value", ["no", 0, None])
def test_gc_bools(gc_params, option, value):
    with raises(TypeError, f"{option} must be True or False", repr(value)):
        gc_block.forward(X, gc_params, **{option: value})


def test_bottleneck_bool(gc_params):
    with raises(TypeError, "layer_norm must be True or False", "'no'"):
        bottleneck_forward(np.zeros((2, C, 1, 1)), gc_params, "transform.add.", layer_norm="no")


@pytest.mark.parametrize("module,make", [(se_block, lambda: gnn.SEBlock(C, planes=2)),
                                         (snl_block, lambda: gnn.SimplifiedNonLocal2d(C))])
def test_se_snl_return_attention_bool(module, make):
    params = gnp.params_from_torch(make())
    with raises(TypeError, "return_attention must be True or False", "'no'"):
        module.forward(X, params, return_attention="no")


def test_numpy_bools_are_accepted(nl_params):
    out, _ = non_local.forward(X, nl_params, use_scale=np.bool_(False))
    assert out.shape == X.shape


# ------------------------------------------------------------------ empty batch
@pytest.mark.parametrize("name", sorted(TORCH_BLOCKS))
def test_empty_batch_forward_backward_matches_torch(name, randomize):
    block, module, params, config, x = setup(name, randomize, b=0)
    (out, attention), cache = module.forward(x, params, return_attention=True, **config)
    assert out.shape == x.shape
    xt = torch.from_numpy(x).requires_grad_()
    out_t, att_t = block(xt, return_attention=True)
    assert attention.shape == tuple(att_t.shape)
    out_t.sum().backward()
    dx, dparams = module.backward(np.ones_like(out), cache)
    assert dx.shape == x.shape
    trainable = dict(block.named_parameters())
    assert sorted(dparams) == sorted(trainable)
    for k, p in trainable.items():
        # torch's autograd gives exact zeros of the parameter's shape; so must we
        assert dparams[k].shape == tuple(p.shape), k
        assert np.array_equal(dparams[k], p.grad.numpy()) and not dparams[k].any(), k


def test_zero_spatial_size_stays_an_error(gc_params, nl_params):
    for module, params in ((gc_block, gc_params), (non_local, nl_params)):
        with raises(ValueError, "empty input", "(0, 8, 0, 4)", "spatial size must be >= 1"):
            module.forward(np.zeros((0, C, 0, 4)), params)


# ------------------------------------------------------------------ backward's dout and cache
BACKWARD = ["gc", "se", "snl", "nl2d_concatenation_True_bn", "nl3d_gaussian_False_None"]


@pytest.mark.parametrize("name", BACKWARD)
def test_dout_of_the_wrong_shape(name, randomize):
    _, module, params, config, x = setup(name, randomize)
    out, cache = module.forward(x, params, **config)
    for bad in (out[:1], out[..., :1], np.ones(out.shape[:2] + (1,) * (out.ndim - 2)),
                out.reshape(out.shape[0], -1)):
        with raises(ValueError, f"dout must have the output's shape {out.shape}", str(bad.shape)):
            module.backward(bad, cache)


@pytest.mark.parametrize("name", BACKWARD)
def test_dout_that_is_not_an_array(name, randomize):
    _, module, params, config, x = setup(name, randomize)
    out, cache = module.forward(x, params, **config)
    with raises(TypeError, "dout must be a numpy.ndarray", str(out.shape), "list"):
        module.backward(out.tolist(), cache)
    with raises(TypeError, "floating-point", "int64"):
        module.backward(np.ones(out.shape, dtype=np.int64), cache)


@pytest.mark.parametrize("name", BACKWARD)
@pytest.mark.parametrize("cache", [{}, None, [], {"fusion": None}])
def test_cache_that_is_not_the_forwards(name, cache, randomize):
    _, module, params, config, x = setup(name, randomize)
    out, _ = module.forward(x, params, **config)
    with raises(ValueError, "cache must be the cache returned by this block's forward"):
        module.backward(np.ones_like(out), cache)


def test_a_good_backward_still_matches_autograd(randomize):
    block, module, params, config, x = setup("gc_mul_add", randomize)
    out, cache = module.forward(x, params, **config)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    dx, _ = module.backward(dout, cache)
    xt = torch.from_numpy(x).requires_grad_()
    block(xt).backward(torch.from_numpy(dout))
    # float64, ~N * C = 128 terms summed per gradient entry: 1e-10 leaves 10^4 ulps of headroom
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------ LayerNorm eps
def tiny_variance_gc(eps: float, randomize):
    block = randomize(gnn.GCBlock(C, planes=4, eps=eps)).double().eval()
    with torch.no_grad():  # W_v1 c + b has variance ~1e-8 over P: below eps, so eps matters
        block.transform["add"][0].weight.mul_(1e-4)
        block.transform["add"][0].bias.zero_()
    return block


@pytest.mark.parametrize("eps", [1e-6, 1e-3])
def test_eps_is_carried_and_used(eps, randomize):
    block = tiny_variance_gc(eps, randomize)
    config = gnp.config_from_torch(block)
    assert config["eps"] == eps
    x = np.random.default_rng(0).standard_normal((2, C, 4, 4))
    out, cache = gc_block.forward(x, gnp.params_from_torch(block), **config)
    ref = block(torch.from_numpy(x)).detach().numpy()
    # float64 through ~4 ops of C = 8 terms: a few ulps; 1e-10 is loose and still sharp
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)
    other = dict(config, eps=1e-5)
    wrong, _ = gc_block.forward(x, gnp.params_from_torch(block), **other)
    assert np.abs(wrong - ref).max() > 1e-4  # the eps in use is visible in the output
    dx, _ = gc_block.backward(np.ones_like(out), cache)
    xt = torch.from_numpy(x).requires_grad_()
    block(xt).sum().backward()
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("eps,exc", [(0, ValueError), (-1.0, ValueError), (np.nan, ValueError),
                                     ("1e-5", TypeError), (None, TypeError)])
def test_bad_eps(gc_params, eps, exc):
    with raises(exc, "eps must be"):
        gc_block.forward(X, gc_params, eps=eps)
