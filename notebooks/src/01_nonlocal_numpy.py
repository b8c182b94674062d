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
# # Lesson 1 — The Non-local block in NumPy: pairwise functions and the forward pass
#
# **Expected time:** about 60 minutes. **Runs in:** under 30 s on a laptop CPU.
#
# **You will be able to**
# 1. write the Non-local (NL) equation and say what each symbol is, with shapes;
# 2. move between a feature map `(B, C, H, W)` and a list of positions `(B, N, C)` without
#    scrambling the pixels;
# 3. implement the four pairwise functions of Wang et al. (2018) — *gaussian*, *embedded gaussian*,
#    *dot product*, *concatenation* — and their normalisation $\mathcal{C}(x)$;
# 4. sub-sample the keys with a 2×2 max-pool, and say what it saves;
# 5. assemble the whole block as **context modelling → transform → fusion** and check it
#    against `gclab`.
#
# **Assumes:** NumPy broadcasting and `reshape`/`transpose`; what a 1×1 convolution computes;
# lesson 0 (a stack of 3×3 convolutions sees only a local window).
#
# **How the exercises work.** Code between the markers is yours to write. After each exercise,
# `check("<id>", your_function)` runs your code and a reference (from `gclab.numpy`) on several
# random shapes and seeds, compares them by relative error, says which checks ran and, when it
# can, which common mistake your output matches. Stuck? `hint("<id>", level=1)` (levels 1–3 go
# from concept to shapes to pseudo-code).
#
# **Run All** in your copy runs until the first cell that needs an answer you have not written
# yet (a value exercise, or a cell that uses your function on its own): the stub's
# `NotImplementedError` stops it there. Checks of unfinished exercises just say "not yet
# implemented", and cells that only demonstrate run on gclab's implementation until yours is
# done, and say so ("(your ... is not done yet: using gclab's)").

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

import gclab.numpy as gnp
from gclab.course import diagrams, figures
from gclab.exercises import catalog, check, hint
from gclab.exercises.lessons import nb01_nonlocal_numpy as ref  # gclab's answers, for demonstrations
from gclab.exercises.fallback import use_or_fallback
from gclab.nn import NonLocal2d

catalog(notebook="01_nonlocal_numpy")

# %% [markdown]
# **At a glance:** the Non-local block, drawn by `gclab.course.diagrams` in one visual language: the
# tensor shape on every arrow, and the three steps shaded the same way in every block —
# **context modelling** (blue), **transform** (orange), **fusion** (green).

# %%
diagrams.blocks("nl");

# %% [markdown]
# ## 1. Every position looks at every other
#
# Lesson 0 showed that convolution is local: to relate two pixels far apart, a CNN must stack
# many layers. The Non-local block relates them in one step. For an input with positions
# $i = 1 \dots N$ (for an image $N = H W$) and features $x_i \in \mathbb{R}^C$:
#
# $$
# y_i = \frac{1}{\mathcal{C}(x)} \sum_{j=1}^{N} f(x_i, x_j)\, g(x_j),
# \qquad
# z_i = W_z\, y_i + x_i .
# $$
#
# * $f(x_i, x_j)$ is a **pairwise function**: how much query $i$ attends to key $j$;
# * $g(x_j) = W_g x_j$ is a 1×1 convolution (the *value*), $C \to C_i$ channels;
# * $\mathcal{C}(x)$ normalises the weights (a softmax's denominator, or simply $N$);
# * $W_z$ is a 1×1 convolution back to $C$ channels, and $+\,x_i$ is a residual connection.
#
# `gclab` names the three steps of every block in this course the same way, in the text and in
# the code:
#
# | step | NL block | code |
# |---|---|---|
# | **context modelling** | $y_i = \frac{1}{\mathcal{C}(x)}\sum_j f(x_i,x_j)\,g(x_j)$ | `context_modeling` |
# | **transform** | $W_z\, y_i$ | `transform` |
# | **fusion** | $z_i = x_i + W_z y_i$ | `fusion` |
#
# Throughout, arrays are `(B, C, H, W)` maps (as in PyTorch) or `(B, N, C)` lists of positions.

# %% [markdown]
# ## 2. From a map to a list of positions, and back
#
# The attention is a matrix over positions, so we first flatten the map. Position
# $i = h\,W + w$ (row-major, the way `reshape` reads memory). The trap: `x.reshape(B, N, C)` has
# the right shape but mixes channels and positions. Flatten the spatial dims first, *then* swap
# axes. Every cell below is labelled with the channel `c` and the position `p` it holds, for a
# $3 \times 2 \times 3$ map:

# %%
diagrams.flattening_trap(channels=3, height=2, width=3);

# %% [markdown]
# On the right, each row mixes the channels of *different* positions: the shape is `(N, C)`,
# the content is not a list of positions.
#
# **Exercise `nl.to_positions`.** `(B, C, H, W) → (B, N, C)` with `N = H*W`.

# %%
def to_positions(x):
    """(B, C, H, W) map -> (B, N, C) list of positions, position i = h * W + w."""
    # exercise nl.to_positions: (B, C, H, W) -> (B, N, C), position i = h*W + w
    ### BEGIN SOLUTION
    b, c = x.shape[:2]
    return x.reshape(b, c, -1).transpose(0, 2, 1)
    ### END SOLUTION


# %%
check("nl.to_positions", to_positions)

# %% [markdown]
# **Exercise `nl.to_map`.** The inverse: `(B, N, C)` plus the map size `(H, W)` → `(B, C, H, W)`.
# The checks use maps with $H \ne W$: a reshape to `(W, H)` followed by a transpose gives the
# right shape and the wrong picture.

# %%
def to_map(t, H, W):
    """(B, N, C) list of positions -> (B, C, H, W) map; inverse of ``to_positions``."""
    # exercise nl.to_map: (B, N, C) -> (B, C, H, W), the inverse of to_positions
    ### BEGIN SOLUTION
    b, n, c = t.shape
    return t.transpose(0, 2, 1).reshape(b, c, H, W)
    ### END SOLUTION


# %%
check("nl.to_map", to_map)

# %% [markdown]
# ## 3. A 1×1 convolution is a matrix product
#
# $\theta$, $\phi$, $g$ and $W_z$ are 1×1 convolutions: at every position the same matrix
# $W \in \mathbb{R}^{C_o \times C}$ acts on the feature vector, plus a bias:
# $\;\text{out}[b, :, h, w] = W\,x[b, :, h, w] + \text{bias}$. A PyTorch `Conv2d` stores
# $W$ as `weight` of shape `(C_o, C, 1, 1)`.
#
# **Exercise `nl.conv1x1`.** `conv1x1(x, weight, bias)` with `x (B, C, H, W)`,
# `weight (C_o, C, 1, 1)`, `bias (C_o,)` → `(B, C_o, H, W)`. One `einsum` or matmul, no loops.

# %%
def conv1x1(x, weight, bias):
    """1x1 convolution: x (B, C, H, W), weight (Co, C, 1, 1), bias (Co,) -> (B, Co, H, W)."""
    # exercise nl.conv1x1: W x + b at every position, one einsum or matmul
    ### BEGIN SOLUTION
    w = weight.reshape(weight.shape[0], weight.shape[1])
    return np.einsum("oc,bchw->bohw", w, x) + bias[None, :, None, None]
    ### END SOLUTION


# %%
check("nl.conv1x1", conv1x1)

# %% [markdown]
# ## 4. The softmax, stable
#
# Two pairwise functions normalise with a softmax over the keys $j$:
#
# $$
# \frac{f(x_i, x_j)}{\mathcal{C}(x)} = \frac{e^{s_{ij}}}{\sum_{k} e^{s_{ik}}}
# = \frac{e^{s_{ij} - m_i}}{\sum_{k} e^{s_{ik} - m_i}},\qquad m_i = \max_k s_{ik}.
# $$
#
# Subtracting the row maximum changes nothing mathematically and keeps `exp` from overflowing:
# logits of 1000 are common once features are large. Each *row* (one query) must sum to 1, so
# the softmax runs over the **last** axis of a `(B, N, N')` score matrix.
#
# **Exercise `nl.softmax`.** Softmax over the last axis of any array; finite for logits of
# $\pm 10^4$.

# %%
def softmax(z):
    """Numerically stable softmax over the last axis."""
    # exercise nl.softmax: subtract the row max, exponentiate, normalise over the last axis
    ### BEGIN SOLUTION
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
    ### END SOLUTION


# %%
check("nl.softmax", softmax)

# %% [markdown]
# ## 5. Four pairwise functions
#
# All four take the embedded queries `theta_x (B, N, C_i)` and keys `phi_x (B, C_i, N')` (a
# key axis last, ready for a matrix product) and return the normalised weights
# $f(x_i, x_j)/\mathcal{C}(x)$ as a `(B, N, N')` matrix. $N'$ is the number of keys; it equals
# $N$ unless the keys are sub-sampled (section 6).
#
# | pairwise function | $f(x_i, x_j)$ | $\mathcal{C}(x)$ |
# |---|---|---|
# | gaussian | $e^{x_i^\top x_j}$ | $\sum_j f(x_i, x_j)$ |
# | embedded gaussian | $e^{\theta(x_i)^\top \phi(x_j)}$ (here $/\sqrt{C_i}$, see below) | $\sum_j f(x_i, x_j)$ |
# | dot product | $\theta(x_i)^\top \phi(x_j)$ | $N'$ |
# | concatenation | $\mathrm{ReLU}\big(w_f^\top [\theta(x_i); \phi(x_j)]\big)$ | $N'$ |
#
# The **gaussian** uses the raw features ($\theta = \phi = $ identity): it is a softmax of
# plain dot products, shown here with your `softmax`:

# %%
def gaussian(theta_x, phi_x):
    """Gaussian pairwise function: softmax_j(x_i . x_j); theta_x (B,N,C), phi_x (B,C,N')."""
    return softmax(theta_x @ phi_x)


# %% [markdown]
# The **embedded gaussian** embeds first. Wang et al. (2018) define it as
# $e^{\theta(x_i)^\top \phi(x_j)}$, with no scale; the $1/\sqrt{C_i}$ is an *option* of the
# official code and of mmcv's `NonLocal2d` (`use_scale=True`, the default there and in `gclab`),
# borrowed from scaled dot-product attention: a dot product of $C_i$ unit-variance terms has
# standard deviation $\sqrt{C_i}$, and large logits saturate the softmax. An old mmdetection
# release *multiplied* by $\sqrt{C_i}$ instead — the checks know that one too.
#
# **Exercise `nl.embedded_gaussian`.** With `use_scale=False`, no division.

# %%
def embedded_gaussian(theta_x, phi_x, use_scale=True):
    """softmax_j(theta_i . phi_j / sqrt(Ci)): theta_x (B,N,Ci), phi_x (B,Ci,N') -> (B,N,N')."""
    # exercise nl.embedded_gaussian: logits, / sqrt(Ci) if use_scale, softmax
    ### BEGIN SOLUTION
    logits = theta_x @ phi_x
    if use_scale:
        logits = logits / np.sqrt(theta_x.shape[-1])
    return softmax(logits)
    ### END SOLUTION


# %%
check("nl.embedded_gaussian", embedded_gaussian)

# %% [markdown]
# The **dot product** drops the softmax: the weights are the raw similarities, normalised by the
# number of keys $N'$ so that the scale of $y$ does not grow with the image. Rows no longer sum to
# 1 and weights can be negative.
#
# **Exercise `nl.dot_product`.** (The checks use $N' \ne N$: divide by the right one.)

# %%
def dot_product(theta_x, phi_x):
    """theta_i . phi_j / N': theta_x (B,N,Ci), phi_x (B,Ci,N') -> (B,N,N')."""
    # exercise nl.dot_product: every query-key dot product, normalised by the number of keys
    ### BEGIN SOLUTION
    return theta_x @ phi_x / phi_x.shape[-1]
    ### END SOLUTION


# %%
check("nl.dot_product", dot_product)

# %% [markdown]
# The **concatenation** form (from relation networks) concatenates $\theta(x_i)$ and $\phi(x_j)$
# and projects the $2C_i$ vector to one number with a weight $w_f \in \mathbb{R}^{2C_i}$, then
# applies a ReLU and divides by $N'$. Building the `(B, N, N', 2C_i)` concatenation is wasteful:
# split $w_f = [w_\theta; w_\phi]$, and
# $w_f^\top[\theta_i; \phi_j] = w_\theta^\top \theta_i + w_\phi^\top \phi_j$ — a `(B, N, 1)` column
# plus a `(B, 1, N')` row, broadcast.
#
# **Exercise `nl.concatenation`.** `w` has shape `(2 C_i,)`: the first half multiplies $\theta$.

# %%
def concatenation(theta_x, phi_x, w):
    """Concatenation pairwise function: theta_x (B, N, Ci), phi_x (B, Ci, N'), w (2Ci,) -> (B, N, N')."""
    # exercise nl.concatenation: ReLU(w_theta . theta_i + w_phi . phi_j) / N', broadcast
    ### BEGIN SOLUTION
    ci = theta_x.shape[-1]
    a = theta_x @ w[:ci]  # (B, N)
    b = np.einsum("bcn,c->bn", phi_x, w[ci:])  # (B, N')
    return np.maximum(a[:, :, None] + b[:, None, :], 0.0) / phi_x.shape[-1]
    ### END SOLUTION


# %%
check("nl.concatenation", concatenation)

# %% [markdown]
# ### What the normalisation does
#
# The softmax forms make every row a probability distribution over the keys: $y_i$ is a
# *weighted average* of the values. The $1/N'$ forms make it a scaled sum. A quick look at one
# random input (rounded, so the printout is stable):

# %%
# NBVAL_CHECK_OUTPUT
rng = np.random.default_rng(0)
th, ph = rng.standard_normal((1, 6, 4)), rng.standard_normal((1, 4, 6))
w_f = rng.standard_normal(8)
pairs = {"gaussian": (gaussian, gnp.non_local.gaussian),  # yours, and gclab's until yours runs
         "embedded_gaussian": (embedded_gaussian, ref.ref_embedded_gaussian),
         "dot_product": (dot_product, ref.ref_dot_product),
         "concatenation": (concatenation, ref.ref_concatenation)}
for name, (mine, gclabs) in pairs.items():
    f = use_or_fallback(mine, gclabs, name)
    a = f(th, ph, w_f) if name == "concatenation" else f(th, ph)
    print(f"{name:18s} row sums {np.round(a.sum(-1)[0], 3)}  min weight {a.min():+.3f}")

# %% [markdown]
# ## 6. Sub-sampling the keys
#
# The attention matrix has $N \cdot N'$ entries: for a 56×56 map that is almost ten million per
# image. The NL paper sub-samples $\phi$ and $g$ (the keys and values, *after* their 1×1 convs)
# with a 2×2 max-pool, so $N' = \lfloor H/2 \rfloor \lfloor W/2 \rfloor \approx N/4$. The queries
# keep full resolution, so the output keeps the input's shape.

# %%
# NBVAL_CHECK_OUTPUT
for side in (14, 28, 56):
    n = side * side
    print(f"{side}x{side}: N*N = {n * n:>10,d} entries ({4 * n * n / 2**20:6.1f} MiB in float32),"
          f" with sub-sampling {n * (n // 4):>9,d}")

# %% [markdown]
# **Exercise `nl.max_pool2x2`.** `(B, C, H, W) → (B, C, H//2, W//2)`, the maximum of each 2×2
# window; an odd last row or column is dropped (as `torch.nn.functional.max_pool2d(x, 2)`).
# No loops: which reshape of the (cropped) map gives every window two axes of its own?

# %%
def max_pool2x2(x):
    """2x2 max-pool with stride 2 over the last two axes; odd edges dropped."""
    # exercise nl.max_pool2x2: crop to even sizes, one reshape, a max over the window axes
    ### BEGIN SOLUTION
    b, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, :, : 2 * h2, : 2 * w2].reshape(b, c, h2, 2, w2, 2).max(axis=(3, 5))
    ### END SOLUTION


# %%
check("nl.max_pool2x2", max_pool2x2)

# %% [markdown]
# ## 7. Step 1, context modelling
#
# Now put the pieces together. The parameters are a dict with the same keys as the PyTorch
# block's `state_dict`: `g.weight (C_i, C, 1, 1)`, `g.bias`, `theta.*`, `phi.*` (not in gaussian
# mode), `concat_project.weight (1, 2C_i, 1, 1)` (concatenation only), `conv_out.weight
# (C, C_i, 1, 1)`, `conv_out.bias`.
#
# 1. embed: the three 1×1 convs $\theta$, $\phi$, $g$ of `x`; $\phi$ and $g$ max-pooled when
#    `sub_sample`; $\theta$ as positions `(B, N, C_i)`, $\phi$ as `(B, C_i, N')`, $g$ as
#    `(B, N', C_i)`. In gaussian mode $\theta$ and $\phi$ are the input itself.
# 2. compare: the pairwise function of the mode gives the attention, `(B, N, N')`;
# 3. aggregate: every query's weighted sum of the $g$ vectors, `(B, N, C_i)`, back to a
#    `(B, C_i, H, W)` map.
#
# **Exercise `nl.context_modeling`.** Return `(y, attention)`.

# %%
def context_modeling(x, params, mode="embedded_gaussian", use_scale=True, sub_sample=False):
    """NL step 1 (context modelling): x (B, C, H, W) -> y (B, Ci, H, W), attention (B, N, N')."""
    # exercise nl.context_modeling: embed, pairwise function, aggregate the g vectors
    ### BEGIN SOLUTION
    B, C, H, W = x.shape
    pool = max_pool2x2 if sub_sample else (lambda t: t)
    g = pool(conv1x1(x, params["g.weight"], params["g.bias"]))
    if mode == "gaussian":
        theta_x, phi = to_positions(x), pool(x)
    else:
        theta_x = to_positions(conv1x1(x, params["theta.weight"], params["theta.bias"]))
        phi = pool(conv1x1(x, params["phi.weight"], params["phi.bias"]))
    phi_x = phi.reshape(B, phi.shape[1], -1)  # (B, Ci, N')
    g_x = to_positions(g)  # (B, N', Ci)
    if mode == "gaussian":
        attention = gaussian(theta_x, phi_x)
    elif mode == "embedded_gaussian":
        attention = embedded_gaussian(theta_x, phi_x, use_scale)
    elif mode == "dot_product":
        attention = dot_product(theta_x, phi_x)
    else:
        attention = concatenation(theta_x, phi_x, params["concat_project.weight"].reshape(-1))
    y = to_map(attention @ g_x, H, W)
    return y, attention
    ### END SOLUTION


# %%
check("nl.context_modeling", context_modeling)

# %% [markdown]
# ## 8. Steps 2 and 3: transform and fusion
#
# **Transform** maps $y$ back to $C$ channels with $W_z$ (`conv_out`, a 1×1 convolution).
# **Fusion** adds the result to the input: $z = x + W_z y$. `conv_out` is initialised to zero, so
# a fresh block is the identity and can be inserted into a pre-trained network without
# disturbing it — *if* the residual is there.
#
# **Exercise `nl.forward`.** The whole block: context modelling → transform → fusion.

# %%
def nonlocal_forward(x, params, mode="embedded_gaussian", use_scale=True, sub_sample=False):
    """The NL block: context modelling, transform W_z, fusion. (B, C, H, W) -> (B, C, H, W)."""
    # exercise nl.forward: context modelling, transform (conv_out), fusion (+ x)
    ### BEGIN SOLUTION
    y, _ = context_modeling(x, params, mode, use_scale, sub_sample)
    return x + conv1x1(y, params["conv_out.weight"], params["conv_out.bias"])
    ### END SOLUTION


# %%
check("nl.forward", nonlocal_forward)

# %% [markdown]
# ## 9. Compare with gclab
#
# `gclab.nn.NonLocal2d` is the PyTorch block (faithful to mmcv), and `gclab.numpy` holds the
# same block written with NumPy. `gnp.params_from_torch` turns a `state_dict` into float64
# arrays with the same keys, so the very same weights run in both worlds. We give the block
# random weights (a fresh one is the identity, which would prove nothing) and compare all four
# modes, with and without sub-sampling, using the relative error
# $\max|a-b| / \max(10^{-8}, |a|+|b|)$.

# %%
def random_block(mode, sub_sample, C=6, seed=0):
    torch.manual_seed(seed)
    block = NonLocal2d(C, mode=mode, sub_sample=sub_sample).double()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.5)
    return block


def rel_error(a, b):
    return np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)))


# %%
# NBVAL_CHECK_OUTPUT
forward = use_or_fallback(nonlocal_forward, ref.ref_forward, "nonlocal_forward")
x = np.random.default_rng(1).standard_normal((2, 6, 5, 7))  # H != W on purpose
for mode in ("gaussian", "embedded_gaussian", "dot_product", "concatenation"):
    for sub in (False, True):
        block = random_block(mode, sub)
        z_torch = block(torch.from_numpy(x)).detach().numpy()
        z_np = forward(x, gnp.params_from_torch(block), mode, True, sub)
        ok = rel_error(z_np, z_torch) < 1e-10
        print(f"{mode:18s} sub_sample={sub!s:5s}  rel. error < 1e-10: {ok}")

# %% [markdown]
# ## 10. What does a query look at?
#
# A picture helps. Take a small image of coloured blobs on a dark background (12×16, so
# $H \ne W$) and use the **gaussian** pairwise function directly on the pixel colours (scaled by 4
# to sharpen the softmax). Each panel shows, for one query pixel (the white cross), its row of
# the attention matrix drawn over the image.

# %%
figures.gaussian_attention_demo(height=12, width=16)  # gclab's gaussian: runs before yours

# %% [markdown]
# The query on the top-left red blob attends just as much to the red blob in the far corner as
# to its own: distance plays no role, only similarity — that is what "non-local" means. The
# background query has small features, hence small logits everywhere: its attention is spread
# thin over the whole image, mildly favouring the bright blobs (the gaussian compares by a dot
# product, which grows with brightness, not only with likeness; each panel's colours are scaled
# to its own maximum). Lesson 3 looks at the maps a *trained* NL learns, and finds something
# surprising: they hardly depend on the query at all.
#
# ## Summary
#
# * The NL block computes $y_i = \frac{1}{\mathcal{C}(x)}\sum_j f(x_i, x_j) g(x_j)$ and
#   $z_i = x_i + W_z y_i$ — **context modelling**, **transform**, **fusion**.
# * Flatten with `reshape(B, C, N)` then transpose; never `reshape(B, N, C)`.
# * Softmax forms (gaussian, embedded gaussian) normalise each row to 1, over the *keys*;
#   dot product and concatenation divide by $N'$.
# * The cost is $N \cdot N'$ in time and memory; sub-sampling the keys divides it by about 4.
#
# Next, lesson 2: the backward pass, checked numerically, and the same block in PyTorch.
