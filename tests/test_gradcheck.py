"""The numerical gradient checker (gclab.numpy.gradcheck), and every backward checked with it.

1. The checker itself against functions whose gradients are known in closed form
   (x^2, sin, matmul, the softmax Jacobian diag(y) - y y^T, a dict of parameters), and
   ``rel_error`` against CS231n's definition on hand-computed values.
2. Each op's ``<op>_backward`` against ``numerical_gradient`` of its ``<op>_forward``
   (float64, h = 1e-5: centred differences are accurate to ~1e-9 here; we require 1e-7).
3. Each block's backward on a tiny input, against numerical gradients of its forward
   (independent of torch; the torch comparison is in test_numpy_blocks.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from gclab.numpy import (
    gc_block,
    non_local,
    numerical_gradient,
    numerical_gradient_params,
    ops,
    rel_error,
    se_block,
    snl_block,
)
from gclab.vocab import NON_LOCAL_MODES

TOL = 1e-7  # centred differences, h=1e-5, float64, smooth functions of O(1) inputs


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ------------------------------------------------------------------ the checker itself
def test_rel_error_is_cs231n_definition():
    a = np.array([1.0, 2.0, 0.0, -3.0])
    b = np.array([1.0, 2.2, 1e-10, -3.0])
    # |2 - 2.2| / 4.2 = 0.047619...; |0 - 1e-10| / max(1e-8, 1e-10) = 0.01
    assert rel_error(a, b) == pytest.approx(0.2 / 4.2, rel=1e-12)
    assert rel_error(a[2:], b[2:]) == pytest.approx(1e-2, rel=1e-9)
    assert rel_error(a, a) == 0.0
    assert rel_error(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0
    assert rel_error(np.array(1.0), np.array(-1.0)) == 1.0  # opposite signs: the maximum


def test_rel_error_refuses_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        rel_error(np.zeros(3), np.zeros((3, 1)))


def test_numerical_gradient_of_square_is_2x(rng):
    x = rng.standard_normal((3, 4))
    assert rel_error(numerical_gradient(lambda a: np.sum(a**2), x), 2 * x) < 1e-9


def test_numerical_gradient_of_sin_with_upstream(rng):
    x = rng.standard_normal((2, 5))
    df = rng.standard_normal((2, 5))
    assert rel_error(numerical_gradient(np.sin, x, df), np.cos(x) * df) < 1e-8


def test_numerical_gradient_of_matmul(rng):
    w, x = rng.standard_normal((3, 4)), rng.standard_normal((4, 5))
    df = rng.standard_normal((3, 5))
    # d/dW sum((W X) * dF) = dF X^T ; d/dX = W^T dF
    assert rel_error(numerical_gradient(lambda a: a @ x, w, df), df @ x.T) < 1e-8
    assert rel_error(numerical_gradient(lambda a: w @ a, x, df), w.T @ df) < 1e-8


def test_numerical_gradient_of_softmax_matches_jacobian(rng):
    x, df = rng.standard_normal(6), rng.standard_normal(6)

    def softmax(v):
        e = np.exp(v - v.max())
        return e / e.sum()

    y = softmax(x)
    jacobian = np.diag(y) - np.outer(y, y)  # dy_i/dx_j
    assert rel_error(numerical_gradient(softmax, x, df), jacobian.T @ df) < 1e-8


def test_numerical_gradient_restores_x_and_handles_scalars(rng):
    x = rng.standard_normal((2, 3))
    before = x.copy()
    numerical_gradient(lambda a: float(np.prod(a)), x)
    assert np.array_equal(x, before)


def test_numerical_gradient_params_on_a_linear_map(rng):
    params = {"w": rng.standard_normal((2, 3)), "b": rng.standard_normal(2), "n": np.array(3)}
    x, df = rng.standard_normal(3), rng.standard_normal(2)
    grads = numerical_gradient_params(lambda p: p["w"] @ x + p["b"], params, df)
    assert set(grads) == {"w", "b"}  # the integer entry is not a parameter
    assert rel_error(grads["w"], np.outer(df, x)) < 1e-8
    assert rel_error(grads["b"], df) < 1e-8
    with pytest.raises(ValueError, match="'nope'"):
        numerical_gradient_params(lambda p: p["b"], params, keys=["nope"])


def test_numerical_gradient_detects_a_wrong_gradient(rng):
    x = rng.standard_normal(5)
    num = numerical_gradient(lambda a: np.sum(a**3), x)
    assert rel_error(num, 3 * x**2) < 1e-8
    assert rel_error(num, 2 * x**2) > 1e-2  # a wrong derivative is caught


def test_numerical_gradient_input_errors():
    with pytest.raises(TypeError, match="floating-point"):
        numerical_gradient(np.sum, np.arange(3))
    with pytest.raises(ValueError, match="shape of f"):
        numerical_gradient(np.sin, np.zeros(3), df=np.ones(4))


# ------------------------------------------------------------------ every op's backward
def _check_op(forward, backward, inputs, argnums, rng, tol=TOL):
    """Compare backward's gradients of sum(forward(*inputs) * dout) with numerical ones."""
    out, cache = forward(*inputs)
    dout = rng.standard_normal(out.shape)
    grads = backward(dout, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    for k in argnums:
        def f(_, k=k):
            return forward(*inputs)[0]

        num = numerical_gradient(f, inputs[k], dout)
        assert grads[k].shape == inputs[k].shape
        assert rel_error(grads[k], num) < tol, f"input {k}: rel error {rel_error(grads[k], num)}"


@pytest.mark.parametrize("spatial", [(), (5,), (3, 4), (2, 3, 2)])
@pytest.mark.parametrize("bias", [True, False])
def test_conv1x1_backward(spatial, bias, rng):
    x = rng.standard_normal((2, 3) + spatial)
    w = rng.standard_normal((4, 3) + (1,) * len(spatial))
    b = rng.standard_normal(4) if bias else None
    _check_op(ops.conv1x1_forward, ops.conv1x1_backward, (x, w, b), (0, 1, 2) if bias else (0, 1),
              rng)
    if not bias:
        cache = ops.conv1x1_forward(x, w)[1]
        assert ops.conv1x1_backward(np.ones((2, 4) + spatial), cache)[2] is None


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_backward(axis, rng):
    x = rng.standard_normal((3, 4, 5))
    _check_op(lambda a: ops.softmax_forward(a, axis), ops.softmax_backward, (x,), (0,), rng)


@pytest.mark.parametrize("axes", [(1, 2, 3), (1,), (2, 3)])
def test_layer_norm_backward(axes, rng):
    x = rng.standard_normal((2, 3, 4, 2))
    shape = tuple(x.shape[a] for a in axes)
    g, b = rng.standard_normal(shape), rng.standard_normal(shape)

    def fwd(x, g, b):
        return ops.layer_norm_forward(x, g, b, axes)

    _check_op(fwd, ops.layer_norm_backward, (x, g, b), (0, 1, 2), rng)


def test_relu_and_sigmoid_backward(rng):
    x = rng.standard_normal((3, 7))
    x[np.abs(x) < 1e-3] = 0.5  # stay away from ReLU's kink
    _check_op(ops.relu_forward, ops.relu_backward, (x,), (0,), rng)
    _check_op(ops.sigmoid_forward, ops.sigmoid_backward, (x * 4,), (0,), rng)


@pytest.mark.parametrize("spatial", [(5,), (3, 4), (2, 1, 3)])
def test_pooling_backward(spatial, rng):
    x = rng.standard_normal((2, 3) + spatial)
    _check_op(ops.global_avg_pool_forward, ops.global_avg_pool_backward, (x,), (0,), rng)
    n = int(np.prod(spatial))
    for logits in (rng.standard_normal((2, n)), rng.standard_normal((2, 1) + spatial)):
        _check_op(ops.attention_pool_forward, ops.attention_pool_backward, (x, logits), (0, 1),
                  rng)


@pytest.mark.parametrize("spatial", [(7,), (5, 4), (2, 5, 3)])
def test_max_pool_backward(spatial, rng):
    x = rng.permutation(np.arange(2 * 3 * int(np.prod(spatial)), dtype=float))  # distinct values
    x = x.reshape((2, 3) + spatial) * 0.1
    _check_op(ops.max_pool_forward, ops.max_pool_backward, (x,), (0,), rng)


def test_batch_norm_eval_backward(rng):
    x = rng.standard_normal((2, 3, 4, 2))
    g, b, m = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal(3)
    v = rng.random(3) + 0.5
    _check_op(lambda *a: ops.batch_norm_eval_forward(*a, m, v), ops.batch_norm_eval_backward,
              (x, g, b), (0, 1, 2), rng)


# ------------------------------------------------------------------ every block's backward
def _random_params(shapes, rng):
    return {k: rng.standard_normal(s) * 0.5 for k, s in shapes.items()}


def _bottleneck(prefix, c, p, ln=True):
    s = {prefix + "0.weight": (p, c, 1, 1), prefix + "0.bias": (p,),
         prefix + "3.weight": (c, p, 1, 1), prefix + "3.bias": (c,)}
    if ln:
        s.update({prefix + "1.weight": (p, 1, 1), prefix + "1.bias": (p, 1, 1)})
    return s


def _check_block(module, x, params, rng, **config):
    out, cache = module.forward(x, params, **config)
    dout = rng.standard_normal(out.shape)
    dx, dparams = module.backward(dout, cache)

    def f(_):
        return module.forward(x, params, **config)[0]

    assert rel_error(dx, numerical_gradient(f, x, dout)) < TOL
    num = numerical_gradient_params(lambda p: module.forward(x, p, **config)[0], params, dout)
    assert set(dparams) == set(num)
    for k in num:
        assert rel_error(dparams[k], num[k]) < TOL or np.abs(dparams[k] - num[k]).max() < 1e-9, k


@pytest.mark.parametrize("pooling", ["att", "avg"])
def test_gc_block_backward_numerically(pooling, rng):
    c, p = 4, 2
    shapes = {**_bottleneck("transform.add.", c, p), **_bottleneck("transform.mul.", c, p)}
    if pooling == "att":
        shapes.update({"context_modeling.conv_mask.weight": (1, c, 1, 1),
                       "context_modeling.conv_mask.bias": (1,)})
    x = rng.standard_normal((2, c, 3, 2))
    _check_block(gc_block, x, _random_params(shapes, rng), rng, pooling=pooling,
                 fusions=("add", "mul"))


def test_se_and_snl_backward_numerically(rng):
    c = 4
    x = rng.standard_normal((2, c, 2, 3))
    _check_block(se_block, x, _random_params(_bottleneck("transform.mul.", c, 2, False), rng), rng)
    snl = {"context_modeling.conv_mask.weight": (1, c, 1, 1), "context_modeling.conv_mask.bias":
           (1,), "transform.add.weight": (c, c, 1, 1), "transform.add.bias": (c,)}
    _check_block(snl_block, x, _random_params(snl, rng), rng)


@pytest.mark.parametrize("mode", NON_LOCAL_MODES)
@pytest.mark.parametrize("norm", [None, "bn"])
def test_non_local_backward_numerically(mode, norm, rng):
    c, ci = 4, 2
    shapes = {"g.weight": (ci, c, 1, 1), "g.bias": (ci,), "conv_out.weight": (c, ci, 1, 1)}
    if mode != "gaussian":
        shapes.update({"theta.weight": (ci, c, 1, 1), "theta.bias": (ci,),
                       "phi.weight": (ci, c, 1, 1), "phi.bias": (ci,)})
    if mode == "concatenation":
        shapes["concat_project.weight"] = (1, 2 * ci, 1, 1)
    if norm is None:
        shapes["conv_out.bias"] = (c,)
    else:
        shapes.update({"norm.weight": (c,), "norm.bias": (c,)})
    params = _random_params(shapes, rng)
    if norm == "bn":  # running statistics are buffers, not parameters
        params["norm.running_mean"] = rng.standard_normal(c)
        params["norm.running_var"] = rng.random(c) + 0.5
    x = rng.standard_normal((2, c, 4, 3))
    out, cache = non_local.forward(x, params, mode=mode, sub_sample=True, norm=norm)
    dout = rng.standard_normal(out.shape)
    dx, dparams = non_local.backward(dout, cache)

    def f(_):
        return non_local.forward(x, params, mode=mode, sub_sample=True, norm=norm)[0]

    assert rel_error(dx, numerical_gradient(f, x, dout)) < 1e-6  # max-pool/ReLU kinks: looser
    trainable = [k for k in params if "running" not in k]
    num = numerical_gradient_params(
        lambda p: non_local.forward(x, p, mode=mode, sub_sample=True, norm=norm)[0], params,
        dout, keys=trainable,
    )
    assert set(dparams) == set(trainable)
    for k in trainable:
        close = rel_error(dparams[k], num[k]) < 1e-6
        assert close or np.abs(dparams[k] - num[k]).max() < 1e-9, k
