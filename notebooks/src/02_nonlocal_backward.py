# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 2 — The Non-local backward pass, gradient checking, and the same block in PyTorch
#
# **Expected time:** about 75 minutes. **Runs in:** under 40 s on a laptop CPU.
#
# **You will be able to**
# 1. check any gradient numerically with centred differences and CS231n's relative error, and
#    say what size of error to expect;
# 2. derive and implement the backward pass of the softmax (its Jacobian), of a batched matrix
#    product and of a 1×1 convolution;
# 3. chain them through the attention into the backward pass of the whole Non-local block,
#    CS231n style: `forward` returns a cache, `backward(dout, cache)` returns the gradients;
# 4. load a PyTorch `NonLocal2d`'s weights into NumPy and show that both give the same output
#    and the same gradients;
# 5. measure how much a Python double loop costs against the vectorised block.
#
# **Assumes:** lesson 1 (the NL forward: **context modelling → transform → fusion**); the chain
# rule; what a gradient with respect to an array means (an array of the same shape).
#
# **How the exercises work.** Code between the markers is yours to write. After each exercise,
# `check("<id>", your_function)` runs your code and a reference (from `gclab.numpy` or torch
# autograd) on several random shapes and seeds, compares them by relative error, says which
# checks ran and, when it can, which common mistake your output matches. Stuck?
# `hint("<id>", level=1)` (levels 1–3 go from concept to shapes to pseudo-code).
#
# Notation: for a scalar loss $L$ and any array $a$, $\partial a$ stands for
# $\partial L / \partial a$, an array shaped like $a$. A layer's backward receives
# $\partial\,\text{out}$ (`dout`) and returns $\partial\,\text{in}$.
#
# **Run All** in your copy runs until the first cell that needs an answer you have not written
# yet (a value exercise, or a cell that uses your function on its own): the stub's
# `NotImplementedError` stops it there. Checks of unfinished exercises just say "not yet
# implemented", and cells that only demonstrate run on gclab's implementation until yours is
# done, and say so ("(your ... is not done yet: using gclab's)").

# %%
import math
import os
import platform

import numpy as np
import torch

import gclab.numpy as gnp
from gclab.course import figures
from gclab.exercises import catalog, check, hint
from gclab.exercises.lessons import nb02_nonlocal_backward as ref  # gclab's answers
from gclab.exercises.fallback import use_or_fallback
from gclab.nn import NonLocal2d

catalog(notebook="02_nonlocal_backward")

# %% [markdown]
# ## 1. How do we know a gradient is right? Check it numerically
#
# A backward pass is easy to get *almost* right. The cure is to compare it with a numerical
# estimate. Make the loss a scalar by weighting the output with a random upstream gradient
# $\partial f$: $L(x) = \sum f(x) \odot \partial f$. Then for every entry $x_k$, the **centred
# difference**
#
# $$
# \frac{\partial L}{\partial x_k} \approx \frac{L(x + h e_k) - L(x - h e_k)}{2h}
# $$
#
# has an error $O(h^2)$ (the one-sided $(L(x+h e_k) - L(x))/h$ has $O(h)$). We compare the two
# gradients with CS231n's **relative error**, element by element,
#
# $$
# \mathrm{err}(a, b) = \max_k \frac{|a_k - b_k|}{\max(10^{-8},\ |a_k| + |b_k|)} .
# $$
#
# What to expect in float64 with $h = 10^{-5}$: below $10^{-7}$ is right; $10^{-4}$ is
# suspicious (unless a ReLU kink is nearby); above $10^{-2}$ is wrong.
#
# **Exercise `nlgrad.rel_error`.** Return one float.

# %%
def rel_error(a, b):
    """max_k |a_k - b_k| / max(1e-8, |a_k| + |b_k|)."""
    # exercise nlgrad.rel_error: element-wise ratio, then the max, as a float
    ### BEGIN SOLUTION
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))
    ### END SOLUTION


# %%
check("nlgrad.rel_error", rel_error)

# %% [markdown]
# **Exercise `nlgrad.numerical_gradient`.** `f(x)` returns an array (or a scalar) shaped like
# `df`; return the gradient of $\sum f(x) \odot \partial f$ with respect to `x`, shaped like `x`.
# Perturb `x` in place, one entry at a time, and put every entry back.

# %%
def numerical_gradient(f, x, df, h=1e-5):
    """Centred-difference gradient of sum(f(x) * df) with respect to x."""
    # exercise nlgrad.numerical_gradient: centred differences, one entry at a time
    ### BEGIN SOLUTION
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    while not it.finished:
        k = it.multi_index
        old = x[k]
        x[k] = old + h
        fp = np.array(f(x), dtype=np.float64)
        x[k] = old - h
        fm = np.array(f(x), dtype=np.float64)
        x[k] = old
        grad[k] = np.sum((fp - fm) * df) / (2 * h)
        it.iternext()
    return grad
    ### END SOLUTION


# %%
check("nlgrad.numerical_gradient", numerical_gradient)

# %% [markdown]
# ## 2. The softmax backward: a Jacobian you never build
#
# Let $p = \mathrm{softmax}(s)$ over one row of $N'$ logits,
# $p_j = e^{s_j} / \sum_k e^{s_k}$. Every $p_j$ depends on every $s_k$, so the derivative is an
# $N' \times N'$ matrix, the Jacobian $J_{jk} = \partial p_j / \partial s_k$.
#
# What the checks of this lesson can and cannot see: they compare your numbers with the
# reference's on float inputs, so they cannot tell a derived backward from one that
# `torch.autograd` computed for you. The derivation on paper is the exercise; the gradient
# checks in this lesson test the numbers, and the worked derivation after each check lets you
# compare your steps.
#
# **Exercise `nlgrad.softmax_jacobian`** (derive it on paper first). Differentiate $p_j$ with
# respect to $s_k$, separately for $k = j$ and for $k \ne j$, and write both cases with $p$
# alone. Then implement `softmax_jacobian(p)`: `p` is `(..., N')`, the result `(..., N', N')`.
# Check your answer against a property you can predict: a constant added to a row of logits does
# not change the softmax, so what must every row of $J$ sum to?

# %%
def softmax_jacobian(p):
    """The Jacobian (..., N, N), entry (j, k) the derivative of p_j with respect to s_k."""
    # exercise nlgrad.softmax_jacobian: derive the two cases (k = j and k != j), then build J
    ### BEGIN SOLUTION
    eye = np.eye(p.shape[-1])
    return p[..., :, None] * eye - p[..., :, None] * p[..., None, :]
    ### END SOLUTION


# %%
check("nlgrad.softmax_jacobian", softmax_jacobian)

# %% [markdown]
# <details><summary>Worked derivation (open after your check passes)</summary>
#
# With $Z = \sum_k e^{s_k}$ and the quotient rule: for $k = j$,
# $\partial p_j / \partial s_j = (e^{s_j} Z - e^{s_j} e^{s_j}) / Z^2 = p_j - p_j^2$; for
# $k \ne j$, only $Z$ depends on $s_k$: $\partial p_j / \partial s_k = -e^{s_j} e^{s_k} / Z^2
# = -p_j p_k$. Both at once:
#
# $$
# \frac{\partial p_j}{\partial s_k} = p_j(\delta_{jk} - p_k),
# \qquad J = \mathrm{diag}(p) - p\,p^\top .
# $$
#
# Every row sums to $p_j - p_j \sum_k p_k = 0$.
# </details>
#
# **Exercise `nlgrad.softmax_backward`.** The backward pass needs $\partial s$ from $\partial p$
# (`dout`), and building $J$ for every row of an $N \times N'$ attention would cost
# $N \cdot N'^2$ memory. Use the structure of your $J$ (a diagonal part and an outer product,
# and $J$ is symmetric) to write $\partial s = J\,\partial p$ with element-wise operations and
# one reduction per row. `p` is the softmax output over the last axis, `dout` the upstream
# gradient (same shape).

# %%
def softmax_backward(dout, p):
    """ds for p = softmax(s) over the last axis; dout and p (..., N')."""
    # exercise nlgrad.softmax_backward: J times dout, without building J
    ### BEGIN SOLUTION
    return p * (dout - (dout * p).sum(axis=-1, keepdims=True))
    ### END SOLUTION


# %%
check("nlgrad.softmax_backward", softmax_backward)

# %% [markdown]
# <details><summary>Worked derivation (open after your check passes)</summary>
#
# $J$ is symmetric, so the chain rule gives $\partial s = J^\top \partial p = J\,\partial p$:
#
# $$
# \partial s = \mathrm{diag}(p)\,\partial p - p\,(p^\top \partial p)
# = p \odot \big(\partial p - \langle \partial p, p\rangle\big) ,
# $$
#
# with one inner product $\langle \partial p, p\rangle$ per row. Every row of $\partial s$ sums
# to zero, because adding a constant to a row of logits does not change the softmax.
# </details>
#
# Your two tools agree with each other — the way you would check a new layer, with nothing but
# NumPy (this cell uses your `numerical_gradient`, `softmax_backward` and `rel_error`):

# %%
# NBVAL_CHECK_OUTPUT
rng = np.random.default_rng(0)
s, dp = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
num = numerical_gradient(gnp.ops.softmax, s.copy(), dp)
err = rel_error(softmax_backward(dp, gnp.ops.softmax(s)), num)
print("softmax backward vs centred differences: rel. error < 1e-7:", err < 1e-7)

# %% [markdown]
# ## 3. The matrix product backward: let the shapes guide you
#
# For $C = AB$ with $A$ of shape $(N, K)$ and $B$ of shape $(K, M)$,
# $C_{ij} = \sum_k A_{ik} B_{kj}$. Take the scalar loss $L$ with upstream gradient
# $\partial C$ $(N \times M)$.
#
# **Exercise `nlgrad.matmul_backward`** (derive it first). Write $\partial L / \partial A_{ik}$
# and $\partial L / \partial B_{kj}$ as sums over the other index, and recognise each as a
# matrix product. The shapes are your check: $\partial A$ must be $N \times K$ and $\partial B$
# $K \times M$. In the NL block the products are batched, `(B, N, K)` times `(B, K, M)`:
# transpose only the last two axes (NumPy's `.T` reverses every axis, the batch axis too).
# Return `(da, db)`.

# %%
def matmul_backward(dout, a, b):
    """Backward of the batched product c of a (B, N, K) and b (B, K, M); dout (B, N, M)."""
    # exercise nlgrad.matmul_backward: return (da, db); derive them from one entry of c
    ### BEGIN SOLUTION
    return dout @ b.transpose(0, 2, 1), a.transpose(0, 2, 1) @ dout
    ### END SOLUTION


# %%
check("nlgrad.matmul_backward", matmul_backward)

# %% [markdown]
# <details><summary>Worked derivation (open after your check passes)</summary>
#
# $\partial L / \partial A_{ik} = \sum_j \partial C_{ij}\, B_{kj}$ and
# $\partial L / \partial B_{kj} = \sum_i A_{ik}\, \partial C_{ij}$, that is
#
# $$
# \partial A = \partial C\, B^\top \quad (N \times M \cdot M \times K),
# \qquad
# \partial B = A^\top\, \partial C \quad (K \times N \cdot N \times M).
# $$
#
# If you forget which side the transpose goes on, the shapes leave only one possibility.
# </details>
#
# **Exercise `nlgrad.dot_product_backward`.** Lesson 1's dot-product pairwise function is
# $f = \theta_x \phi_x / N'$ with $N'$ the number of keys ($\theta_x$: `(B, N, C_i)`,
# $\phi_x$: `(B, C_i, N')`; with sub-sampling $N' \ne N$). Derive its backward from the two
# rules you have and return `(dtheta_x, dphi_x)`.

# %%
def dot_product_backward(dattn, theta_x, phi_x):
    """(dtheta_x, dphi_x) of the dot-product attention; dattn (B, N, N')."""
    # exercise nlgrad.dot_product_backward: chain the division and the product
    ### BEGIN SOLUTION
    return matmul_backward(dattn / phi_x.shape[-1], theta_x, phi_x)
    ### END SOLUTION


# %%
check("nlgrad.dot_product_backward", dot_product_backward)

# %% [markdown]
# <details><summary>Worked derivation (open after your check passes)</summary>
#
# Dividing by the constant $N'$ is linear, so its backward divides the upstream gradient by
# $N'$; then the product rule of this section:
# $\partial\theta_x = (\partial f / N')\,\phi_x^\top$ and
# $\partial\phi_x = \theta_x^\top (\partial f / N')$. Dividing by $N$ (the queries) instead
# is the classic slip; it only shows when the keys are sub-sampled.
# </details>
#
# ## 4. The 1×1 convolution backward
#
# Per position $p$ and batch item $b$: $\text{out}_{b,:,p} = W x_{b,:,p} + \text{bias}$. The
# same $W$ and bias serve *every* $(b, p)$.
#
# **Exercise `nlgrad.conv1x1_backward`** (derive it first: apply the matrix-product rule at one
# position, then ask what happens to a parameter used at many positions). `x (B, C, H, W)`,
# `weight (C_o, C, 1, 1)`, `dout (B, C_o, H, W)` → `(dx, dweight, dbias)`, shaped like `x`,
# `weight` and `(C_o,)`.

# %%
def conv1x1_backward(dout, x, weight):
    """Backward of out = conv1x1(x, weight, bias): (dx, dweight, dbias)."""
    # exercise nlgrad.conv1x1_backward: return (dx, dweight, dbias)
    ### BEGIN SOLUTION
    b, c = x.shape[:2]
    w2 = weight.reshape(weight.shape[0], c)
    df = dout.reshape(b, dout.shape[1], -1)  # (B, Co, N)
    xf = x.reshape(b, c, -1)  # (B, C, N)
    dx = (w2.T @ df).reshape(x.shape)
    dw = np.einsum("bon,bcn->oc", df, xf).reshape(weight.shape)
    return dx, dw, df.sum(axis=(0, 2))
    ### END SOLUTION


# %%
check("nlgrad.conv1x1_backward", conv1x1_backward)

# %% [markdown]
# <details><summary>Worked derivation (open after your check passes)</summary>
#
# At one $(b, p)$ the layer is a matrix-vector product, so $\partial x_{b,:,p} = W^\top
# \partial\text{out}_{b,:,p}$. A shared parameter receives the sum of the gradients of all its
# uses:
#
# $$
# \partial x_{b,:,p} = W^\top \partial\text{out}_{b,:,p}, \qquad
# \partial W = \sum_{b,p} \partial\text{out}_{b,:,p}\; x_{b,:,p}^\top, \qquad
# \partial\,\text{bias} = \sum_{b,p} \partial\text{out}_{b,:,p} .
# $$
# </details>
#
# ## 5. The chain rule through the attention
#
# The embedded gaussian computes, with $s = \sqrt{C_i}$ (or 1 without `use_scale`),
#
# $$
# u = \theta_x \phi_x, \qquad \ell = u / s, \qquad A = \mathrm{softmax}_j(\ell)
# \qquad (\theta_x: B \times N \times C_i,\ \phi_x: B \times C_i \times N') .
# $$
#
# **Exercise `nlgrad.scale_backward`.** Start with the middle step, $\ell = u / s$, for a
# scalar $s$. Derive $\partial u$ and $\partial s$ (the scale is fixed in the NL block, but a
# learnable temperature would need $\partial s$) and return `(du, ds)`, `ds` one float.

# %%
def scale_backward(dout, u, s):
    """(du, ds) of out = u / s with a scalar s."""
    # exercise nlgrad.scale_backward: one element first, then sum what s collects
    ### BEGIN SOLUTION
    return dout / s, float(-np.sum(dout * u) / s**2)
    ### END SOLUTION


# %%
check("nlgrad.scale_backward", scale_backward)

# %% [markdown]
# <details><summary>Worked derivation (open after your check passes)</summary>
#
# $\partial \ell_k / \partial u_k = 1/s$, so $\partial u = \partial\ell / s$; and
# $\partial \ell_k / \partial s = -u_k / s^2$ for every $k$, so
# $\partial s = -\sum_k \partial\ell_k\, u_k / s^2$. The $1/s$ of the forward comes back in the
# backward: forget it and the gradient is $\sqrt{C_i}$ times too large — a gradient check
# catches this at once.
# </details>
#
# **Exercise `nlgrad.embedded_gaussian_backward`.** Now chain the three steps in reverse order,
# reusing your `softmax_backward`, the $\partial u$ part of `scale_backward` and
# `matmul_backward`; `attention` is the forward's output (from the cache).

# %%
def embedded_gaussian_backward(dattn, theta_x, phi_x, attention, use_scale=True):
    """(dtheta_x, dphi_x) of the embedded-gaussian attention (forward in the markdown above)."""
    # exercise nlgrad.embedded_gaussian_backward: softmax backward, the scale, matmul backward
    ### BEGIN SOLUTION
    dlogits = softmax_backward(dattn, attention)
    if use_scale:
        dlogits = dlogits / math.sqrt(theta_x.shape[-1])
    return matmul_backward(dlogits, theta_x, phi_x)
    ### END SOLUTION


# %%
check("nlgrad.embedded_gaussian_backward", embedded_gaussian_backward)

# %% [markdown]
# <details><summary>Worked derivation (open after your check passes)</summary>
#
# One rule per line, in the reverse order of the forward:
#
# $$
# \partial \ell = A \odot \big(\partial A - \langle \partial A, A \rangle_j\big),
# \qquad \partial u = \partial\ell / s,
# \qquad
# \partial \theta_x = \partial u\ \phi_x^\top,
# \qquad
# \partial \phi_x = \theta_x^\top\, \partial u .
# $$
# </details>
#
# ### Sub-sampling: the max-pool backward
#
# With `sub_sample=True` lesson 1's block max-pools $\phi$ and $g$ over $2 \times 2$ windows
# (odd sizes: the last row or column is dropped). The backward block below does not use it, but
# every sub-sampled NL does.
#
# **Exercise `nlgrad.maxpool_backward`** (derive it first: what is the derivative of
# $\max(a, b, c, d)$ with respect to each of its four inputs?). `dout (B, C, H//2, W//2)`,
# `x (B, C, H, W)` (the pool's input) → `dx` shaped like `x`.

# %%
def maxpool_backward(dout, x):
    """dx of the 2x2, stride-2 max pool of x (odd last row/column dropped)."""
    # exercise nlgrad.maxpool_backward: route each window's gradient to its winner
    ### BEGIN SOLUTION
    b, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    win = x[:, :, : 2 * h2, : 2 * w2].reshape(b, c, h2, 2, w2, 2)
    mask = win == win.max(axis=(3, 5), keepdims=True)
    dx = np.zeros_like(x)
    dx[:, :, : 2 * h2, : 2 * w2] = (mask * dout[:, :, :, None, :, None]).reshape(
        b, c, 2 * h2, 2 * w2)
    return dx
    ### END SOLUTION


# %%
check("nlgrad.maxpool_backward", maxpool_backward)

# %% [markdown]
# <details><summary>Worked derivation (open after your check passes)</summary>
#
# $\partial \max(a, b, c, d) / \partial a$ is 1 where $a$ is the largest and 0 elsewhere (ties
# have probability zero with real-valued inputs). So each window's upstream gradient goes,
# unchanged, to the one pixel that won the forward; the other three get 0, and so does the
# dropped odd row or column. Average pooling, by contrast, would send a quarter to each.
# </details>
#
# ## 6. The whole block, CS231n style
#
# Here is the embedded-gaussian NL forward (no sub-sampling, no norm) written so that it keeps
# what the backward needs in a `cache`. The three steps are marked as in `gclab`:
#
# $$
# \underbrace{x \to \theta_x, \phi_x, g_x \to A \to y}_{\text{context modelling}}
# \;\to\; \underbrace{W_z\, y}_{\text{transform}}
# \;\to\; \underbrace{z = x + W_z y}_{\text{fusion}}
# $$

# %%
def to_positions(m):  # (B, C, H, W) -> (B, N, C), as in lesson 1
    return m.reshape(m.shape[0], m.shape[1], -1).transpose(0, 2, 1)


def to_map(t, H, W):  # (B, N, C) -> (B, C, H, W)
    return t.transpose(0, 2, 1).reshape(t.shape[0], t.shape[2], H, W)


# %%
def nonlocal_forward(x, params, use_scale=True):
    """Embedded-gaussian NL block: returns z = x + W_z y and the cache for the backward."""
    B, C, H, W = x.shape
    conv = {n: gnp.ops.conv1x1(x, params[n + ".weight"], params[n + ".bias"])
            for n in ("theta", "phi", "g")}
    theta_x, g_x = to_positions(conv["theta"]), to_positions(conv["g"])  # (B, N, Ci)
    phi_x = conv["phi"].reshape(B, -1, H * W)  # (B, Ci, N)
    s = math.sqrt(theta_x.shape[-1]) if use_scale else 1.0
    attention = gnp.ops.softmax(theta_x @ phi_x / s)  # context modelling ...
    y = to_map(attention @ g_x, H, W)  # ... y (B, Ci, H, W)
    wy = gnp.ops.conv1x1(y, params["conv_out.weight"], params["conv_out.bias"])  # transform
    cache = dict(x=x, params=params, theta_x=theta_x, phi_x=phi_x, g_x=g_x,
                 attention=attention, y=y, use_scale=use_scale)
    return x + wy, cache  # fusion


# %% [markdown]
# **Exercise `nlgrad.block_backward`.** Write `nonlocal_backward(dout, cache)` returning `dx` and
# a dict with a gradient for every parameter key (`theta.weight`, `theta.bias`, `phi.*`, `g.*`,
# `conv_out.*`). Walk the forward backwards with the functions you wrote. Remember that $x$
# feeds four paths ($\theta$, $\phi$, $g$ and the residual): its gradient is their sum.
# The check calls `nonlocal_grads(x, params, dout)`, which runs the forward and then your
# backward.

# %%
def nonlocal_backward(dout, cache):
    """Backward of nonlocal_forward: (dx, {param key: gradient})."""
    # exercise nlgrad.block_backward: walk the forward backwards through the cache
    ### BEGIN SOLUTION
    x, p = cache["x"], cache["params"]
    B, C, H, W = x.shape
    grads = {}
    # transform: W_z y
    dy, grads["conv_out.weight"], grads["conv_out.bias"] = conv1x1_backward(
        dout, cache["y"], p["conv_out.weight"])
    # context modelling: y = attention @ g_x, attention = softmax(theta_x @ phi_x / s)
    dattn, dg_x = matmul_backward(to_positions(dy), cache["attention"], cache["g_x"])
    dtheta_x, dphi_x = embedded_gaussian_backward(
        dattn, cache["theta_x"], cache["phi_x"], cache["attention"], cache["use_scale"])
    dmaps = {"theta": to_map(dtheta_x, H, W), "phi": dphi_x.reshape(B, -1, H, W),
             "g": to_map(dg_x, H, W)}
    # fusion: z = x + W_z y sends dout straight to x; the embeddings add their parts
    dx = dout.copy()
    for n in ("theta", "phi", "g"):
        dxn, grads[n + ".weight"], grads[n + ".bias"] = conv1x1_backward(
            dmaps[n], x, p[n + ".weight"])
        dx = dx + dxn
    return dx, grads
    ### END SOLUTION


def nonlocal_grads(x, params, dout, use_scale=True):
    _, cache = nonlocal_forward(x, params, use_scale)
    return nonlocal_backward(dout, cache)


# %%
check("nlgrad.block_backward", nonlocal_grads)

# %% [markdown]
# ### Gradient check of the whole block
#
# The exercise check compared your backward with `gclab`'s. The independent test is numerical:
# perturb every entry of $x$ and of every parameter, in float64, on a small input
# ($2 \times 4 \times 3 \times 5$, $H \ne W$). We use `gclab.numpy`'s `numerical_gradient`
# (the same algorithm as yours) so the cell does not depend on your earlier answers.

# %%
rng = np.random.default_rng(0)
C = 4
torch.manual_seed(0)
block = NonLocal2d(C).double()
with torch.no_grad():
    for prm in block.parameters():  # random weights: a fresh block is the identity
        prm.normal_(0, 0.5)
params = gnp.params_from_torch(block)  # state_dict -> float64 arrays, same keys
x = rng.standard_normal((2, C, 3, 5))
dout = rng.standard_normal(x.shape)

# %%
grads_of = use_or_fallback(nonlocal_grads, ref.ref_block_grads, "nonlocal_backward")
dx, grads = grads_of(x, params, dout)  # yours once done
numeric = {"x": gnp.numerical_gradient(lambda v: nonlocal_forward(v, params)[0], x.copy(), dout)}
numeric.update(gnp.numerical_gradient_params(lambda p: nonlocal_forward(x, p)[0], params, dout))
analytic = {"x": dx, **grads}
errors = {k: gnp.rel_error(analytic[k], numeric[k]) for k in numeric}
for k, e in errors.items():
    print(f"d{k:16s} rel. error {e:.0e}   largest |gradient| {np.abs(analytic[k]).max():.0e}")
assert max(e for k, e in errors.items() if k != "phi.bias") < 1e-7, "a gradient is wrong"
assert np.abs(analytic["phi.bias"]).max() < 1e-9 and np.abs(numeric["phi.bias"]).max() < 1e-9

# %% [markdown]
# All but one are far below $10^{-7}$ (the cell asserts it). The odd one out, `phi.bias`, is not
# a bug: its true gradient is **exactly zero**. Adding $b_\phi$ to every key shifts query $i$'s
# logits by the same amount $\theta_i^\top b_\phi / s$ for every $j$, and a softmax ignores a
# shift of its row (section 2). Both estimates are rounding noise around 0, and the relative
# error of noise is meaningless (the $10^{-8}$ floor turns noise of $10^{-11}$ into an "error"
# of $10^{-3}$). For a zero gradient, check the absolute size instead — as the last line of the
# cell does.

# %% [markdown]
# Why float64? The centred difference divides a difference of two nearly equal losses by $2h$.
# In float32 (about 7 significant digits) that difference is mostly rounding noise; the same
# check in float32 reports errors many orders of magnitude larger, although the backward is
# right:

# %%
x32, p32 = x.astype(np.float32), {k: v.astype(np.float32) for k, v in params.items()}
dx32, _ = grads_of(x32, p32, dout.astype(np.float32))
num32 = gnp.numerical_gradient(lambda v: nonlocal_forward(v, p32)[0], x32.copy(),
                               dout.astype(np.float32), h=1e-3)
print(f"float32, h=1e-3: rel. error of dx {gnp.rel_error(dx32, num32):.0e}")

# %% [markdown]
# ## 7. The same block in PyTorch
#
# `gclab.nn.NonLocal2d` is the PyTorch block (it matches mmcv's). Its `state_dict` *is* the
# `params` dict above: `gnp.params_from_torch(block)` converted it to float64 arrays with the same
# keys. So we can run the same weights in both worlds and let autograd judge our backward.

# %%
# NBVAL_CHECK_OUTPUT
dx, grads = grads_of(x, params, dout)  # yours, as above
xt = torch.from_numpy(x).requires_grad_(True)
zt = block(xt)
zt.backward(torch.from_numpy(dout))
z_np, _ = nonlocal_forward(x, params)
print("forward:  rel. error < 1e-10:", gnp.rel_error(z_np, zt.detach().numpy()) < 1e-10)
print("dx:       rel. error < 1e-8: ", gnp.rel_error(dx, xt.grad.numpy()) < 1e-8)
for name, prm in block.named_parameters():
    g_t = prm.grad.numpy()
    same = gnp.rel_error(grads[name], g_t) < 1e-8 or np.abs(grads[name] - g_t).max() < 1e-12
    print(f"{name:16s} rel. error < 1e-8 (or both ~0):", same)

# %% [markdown]
# ## 8. Why vectorise? Loops against matrices
#
# The paper's sum $y_i = \sum_j f(x_i, x_j) g(x_j) / \mathcal{C}(x)$ reads like a double loop over
# queries $i$ and keys $j$. `gnp.non_local_naive` is exactly that (for teaching);
# `gnp.non_local.forward` does the same work in a few matrix products. Both do $O(N^2)$
# arithmetic, but the loop pays Python's overhead $N^2$ times. We time both on small maps (the
# loop would take minutes on a real 56×56 feature map) and check they agree.

# %%
C_t = 8
timings = figures.time_loop_vs_vectorised(sides=(4, 6, 8, 12), channels=C_t)

# %%
print(f"machine: {platform.machine()}, {os.cpu_count()} CPU core(s) visible, "
      f"{platform.system()}; Python {platform.python_version()}, NumPy {np.__version__}")
for side, (t_loop, t_vec) in timings.items():
    print(f"{side:2d}x{side:<2d} (N = {side * side:3d}): loop {1e3 * t_loop:8.2f} ms, "
          f"vectorised {1e3 * t_vec:6.3f} ms, ratio {t_loop / t_vec:6.0f}x")

figures.plot_timings(timings, C_t)

# %% [markdown]
# The loop loses by a factor that grows with $N$: when this notebook was built (x86_64, 2 CPU
# cores) it went from one or two orders of magnitude at 4×4 to about three at 12×12 — the cell
# above prints the numbers of the machine it last ran on. The vectorised version's own cost
# still grows as $N^2$ — that is the price of non-locality, and the reason for sub-sampling
# (lesson 1) and for the query-independent blocks of lessons 4 and 5.
#
# ## Summary
#
# * Check every backward numerically: centred differences, float64, relative error below
#   $10^{-7}$.
# * Softmax backward: $\partial s = p \odot (\partial p - \langle \partial p, p\rangle)$, over the
#   same axis as the forward; every row of $\partial s$ sums to 0.
# * Matrix product: $\partial A = \partial C B^\top$, $\partial B = A^\top \partial C$ (batched:
#   transpose the last two axes). Shared weights (1×1 conv) sum their gradients over batch and
#   positions.
# * The block's backward is the forward read backwards, through the cache; $x$ collects the
#   gradients of all four paths, including the residual of the **fusion** step.
# * NumPy and PyTorch agree on the same weights, forward and backward.
#
# Next, lesson 3: what a trained NL block actually attends to.
