"""The NumPy building ops (gclab.numpy.ops) against PyTorch's own functions.

Every forward equals the torch function (float64, rel error <= 1e-12 unless stated), every
backward equals torch autograd; edge cases: +-1e4 logits, |x| = 1000 in the sigmoid, odd
sizes in max-pool (floor), ties in max-pool (the gradient goes where torch sends it), 1x1
maps; bad input raises a clear error. Backward against numerical gradients: test_gradcheck.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gclab.numpy import ops, rel_error


@pytest.fixture
def rng():
    return np.random.default_rng(1)


def t(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def autograd(fn, inputs, dout):
    """Torch gradients of sum(fn(*inputs) * dout) w.r.t. every input."""
    ts = [t(a, grad=True) for a in inputs]
    fn(*ts).backward(t(dout))
    return [x.grad.numpy() for x in ts]


# ------------------------------------------------------------------ 1x1 conv
@pytest.mark.parametrize("spatial", [(7,), (5, 3), (1, 1), (2, 3, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_conv1x1_equals_torch_conv(spatial, bias, rng):
    x = rng.standard_normal((2, 3) + spatial)
    w = rng.standard_normal((5, 3) + (1,) * len(spatial))
    b = rng.standard_normal(5) if bias else None
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(spatial)]
    out, cache = ops.conv1x1_forward(x, w, b)
    ref = conv(t(x), t(w), None if b is None else t(b))
    assert out.shape == tuple(ref.shape)
    assert rel_error(out, ref.numpy()) < 1e-12
    assert np.array_equal(ops.conv1x1(x, w, b), out)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = ops.conv1x1_backward(dout, cache)
    if bias:
        ref_grads = autograd(lambda x, w, b: conv(x, w, b), [x, w, b], dout)
        assert rel_error(db, ref_grads[2]) < 1e-12
    else:
        ref_grads = autograd(lambda x, w: conv(x, w), [x, w], dout)
        assert db is None
    assert rel_error(dx, ref_grads[0]) < 1e-12 and rel_error(dw, ref_grads[1]) < 1e-12


def test_conv1x1_errors(rng):
    x = rng.standard_normal((2, 3, 4, 4))
    with pytest.raises(ValueError, match="3"):  # channel mismatch names both counts
        ops.conv1x1(x, rng.standard_normal((5, 4, 1, 1)))
    with pytest.raises(ValueError, match=r"\(Co, Ci, 1"):
        ops.conv1x1(x, rng.standard_normal((5, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"\(5,\)"):
        ops.conv1x1(x, rng.standard_normal((5, 3, 1, 1)), rng.standard_normal(4))
    with pytest.raises(TypeError, match="floating-point"):
        ops.conv1x1(np.ones((2, 3, 4, 4), dtype=np.int64), rng.standard_normal((5, 3, 1, 1)))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        ops.conv1x1(torch.ones(2, 3, 4, 4), rng.standard_normal((5, 3, 1, 1)))


# ------------------------------------------------------------------ softmax
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_softmax_equals_torch(axis, rng):
    x = rng.standard_normal((3, 4, 5)) * 3
    y, cache = ops.softmax_forward(x, axis)
    assert rel_error(y, torch.softmax(t(x), dim=axis).numpy()) < 1e-12
    assert np.allclose(y.sum(axis=axis), 1.0, atol=1e-14, rtol=0)
    dout = rng.standard_normal(x.shape)
    ref = autograd(lambda a: torch.softmax(a, dim=axis), [x], dout)[0]
    assert rel_error(ops.softmax_backward(dout, cache), ref) < 1e-10


def test_softmax_is_finite_for_huge_logits():
    x = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4], [1e4, 1e4, -5.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = ops.softmax(x, axis=1)
    assert np.isfinite(y).all()
    assert np.allclose(y, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0]], atol=1e-15)


# ------------------------------------------------------------------ layer norm
@pytest.mark.parametrize("axes", [(1, 2, 3), (3,), (2, 3), (1,), (0, 2)])
def test_layer_norm_equals_torch(axes, rng):
    x = rng.standard_normal((2, 3, 4, 5)) * 2 + 1
    shape = tuple(x.shape[a] for a in axes)
    g, b = rng.standard_normal(shape), rng.standard_normal(shape)
    y, cache = ops.layer_norm_forward(x, g, b, axes)
    # torch normalises trailing dims: move the axes to the end, normalise, move them back
    rest = [a for a in range(4) if a not in axes]
    perm = rest + list(axes)
    inv = list(np.argsort(perm))

    def ref_fn(x, g, b):
        return F.layer_norm(x.permute(*perm), shape, g, b, eps=1e-5).permute(*inv)

    assert rel_error(y, ref_fn(t(x), t(g), t(b)).detach().numpy()) < 1e-12
    dout = rng.standard_normal(x.shape)
    for mine, ref in zip(ops.layer_norm_backward(dout, cache), autograd(ref_fn, [x, g, b], dout)):
        assert rel_error(mine, ref) < 1e-10


def test_layer_norm_default_axes_are_trailing_and_errors(rng):
    x = rng.standard_normal((2, 6, 1, 1))  # GC's bottleneck activations (B, P, 1, 1)
    g, b = rng.standard_normal((6, 1, 1)), rng.standard_normal((6, 1, 1))
    ref = F.layer_norm(t(x), (6, 1, 1), t(g), t(b)).numpy()
    assert rel_error(ops.layer_norm(x, g, b), ref) < 1e-12
    assert rel_error(ops.layer_norm(x, g, b, axes=(1, 2, 3)), ref) < 1e-12
    with pytest.raises(ValueError, match="normalised shape"):
        ops.layer_norm(x, np.ones(5), np.zeros(5), axes=(1,))
    with pytest.raises(ValueError, match="beta"):
        ops.layer_norm(x, g, np.zeros(6))


# ------------------------------------------------------------------ relu, sigmoid
def test_relu_and_sigmoid_equal_torch(rng):
    x = rng.standard_normal((4, 5)) * 5
    x[0, :3] = 0.0  # ReLU's gradient at 0 is 0 in torch
    dout = rng.standard_normal(x.shape)
    for fwd, bwd, ref in ((ops.relu_forward, ops.relu_backward, torch.relu),
                          (ops.sigmoid_forward, ops.sigmoid_backward, torch.sigmoid)):
        y, cache = fwd(x)
        assert rel_error(y, ref(t(x)).detach().numpy()) < 1e-12
        assert rel_error(bwd(dout, cache), autograd(ref, [x], dout)[0]) < 1e-12


def test_sigmoid_is_stable_for_large_inputs():
    x = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    with np.errstate(over="raise", invalid="raise"):  # no overflow (underflow to 0 is fine)
        y = ops.sigmoid(x)
    assert rel_error(y, torch.sigmoid(t(x)).numpy()) < 1e-12
    assert y[0] == 0.0 and y[-1] == 1.0 and y[2] == 0.5
    assert ops.sigmoid(x.astype(np.float32)).dtype == np.float32


# ------------------------------------------------------------------ pooling
@pytest.mark.parametrize("spatial", [(5,), (3, 4), (1, 1), (2, 3, 2)])
def test_global_avg_pool_equals_torch(spatial, rng):
    x = rng.standard_normal((2, 3) + spatial)
    pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
    ref = pool[len(spatial)]
    y, cache = ops.global_avg_pool_forward(x)
    assert rel_error(y, ref(t(x), 1).numpy()) < 1e-12
    dout = rng.standard_normal(y.shape)
    assert rel_error(ops.global_avg_pool_backward(dout, cache),
                     autograd(lambda a: ref(a, 1), [x], dout)[0]) < 1e-12


@pytest.mark.parametrize("spatial", [(3, 4), (1, 1), (7, 1)])
def test_attention_pool_equals_formula(spatial, rng):
    x = rng.standard_normal((2, 3) + spatial)
    logits = rng.standard_normal((2, 1) + spatial)

    def ref(x, logits):  # context = x @ softmax(logits), written with torch
        alpha = torch.softmax(logits.reshape(2, -1), dim=1)
        return torch.bmm(x.reshape(2, 3, -1), alpha.unsqueeze(2)).reshape(2, 3, 1, 1)

    c, cache = ops.attention_pool_forward(x, logits)
    assert rel_error(c, ref(t(x), t(logits)).numpy()) < 1e-12
    assert np.allclose(cache[1].sum(axis=1), 1.0)  # the weights alpha (B, N)
    assert rel_error(ops.attention_pool(x, logits.reshape(2, -1)), c) == 0.0
    dout = rng.standard_normal(c.shape)
    dx, dlogits = ops.attention_pool_backward(dout, cache)
    rx, rl = autograd(ref, [x, logits], dout)
    assert rel_error(dx, rx) < 1e-12 and rel_error(dlogits, rl) < 1e-10
    assert dlogits.shape == logits.shape
    with pytest.raises(ValueError, match="logits"):
        ops.attention_pool(x, rng.standard_normal((2, 5)))


@pytest.mark.parametrize(
    "spatial", [(7,), (8,), (5, 7), (4, 4), (2, 3), (3, 5, 5), (2, 4, 3), (1, 2, 2)]
)
def test_max_pool_equals_torch_with_floor(spatial, rng):
    x = rng.standard_normal((2, 3) + spatial)
    d = len(spatial)
    ref = {1: lambda a: F.max_pool1d(a, 2), 2: lambda a: F.max_pool2d(a, (2, 2)),
           3: lambda a: F.max_pool3d(a, (1, 2, 2))}[d]
    y, cache = ops.max_pool_forward(x)
    assert y.shape == tuple(ref(t(x)).shape)  # floor: odd sizes drop the last row/col
    assert np.array_equal(y, ref(t(x)).numpy())
    dout = rng.standard_normal(y.shape)
    assert np.array_equal(ops.max_pool_backward(dout, cache), autograd(ref, [x], dout)[0])


@pytest.mark.parametrize("spatial", [(6,), (4, 6), (2, 4, 4)])
def test_max_pool_ties_route_gradient_like_torch(spatial, rng):
    x = rng.integers(0, 2, size=(2, 2) + spatial).astype(float)  # many equal maxima
    d = len(spatial)
    ref = {1: lambda a: F.max_pool1d(a, 2), 2: lambda a: F.max_pool2d(a, 2),
           3: lambda a: F.max_pool3d(a, (1, 2, 2))}[d]
    y, cache = ops.max_pool_forward(x)
    dout = rng.standard_normal(y.shape)
    dx = ops.max_pool_backward(dout, cache)
    assert np.array_equal(dx, autograd(ref, [x], dout)[0])
    assert np.count_nonzero(dx) == y.size  # exactly one position per window


def test_max_pool_custom_kernel_and_errors(rng):
    x = rng.standard_normal((1, 2, 6, 6))
    assert np.array_equal(ops.max_pool(x, (3, 2)), F.max_pool2d(t(x), (3, 2)).numpy())
    with pytest.raises(ValueError, match="larger than the input"):
        ops.max_pool(rng.standard_normal((1, 2, 1, 4)))
    with pytest.raises(ValueError, match="kernel"):
        ops.max_pool(x, (2,))


# ------------------------------------------------------------------ batch norm (eval)
@pytest.mark.parametrize("spatial", [(5,), (3, 4), (2, 2, 3)])
def test_batch_norm_eval_equals_torch(spatial, rng):
    c = 3
    x = rng.standard_normal((2, c) + spatial)
    g, b, m = rng.standard_normal(c), rng.standard_normal(c), rng.standard_normal(c)
    v = rng.random(c) + 0.1

    def ref(x, g, b):
        return F.batch_norm(x, t(m), t(v), g, b, training=False, eps=1e-5)

    y, cache = ops.batch_norm_eval_forward(x, g, b, m, v)
    assert rel_error(y, ref(t(x), t(g), t(b)).detach().numpy()) < 1e-12
    dout = rng.standard_normal(x.shape)
    for mine, theirs in zip(ops.batch_norm_eval_backward(dout, cache),
                            autograd(ref, [x, g, b], dout)):
        assert rel_error(mine, theirs) < 1e-12
    with pytest.raises(ValueError, match="running_var"):
        ops.batch_norm_eval(x, g, b, m, np.ones(c + 1))
