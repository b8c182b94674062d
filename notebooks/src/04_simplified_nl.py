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
# # Lesson 4 — The Simplified Non-local block: one attention map for every query
#
# **Expected time:** about 45 minutes. **Runs in:** under 30 s on a laptop CPU.
#
# **You will be able to**
# 1. derive the Simplified NL (SNL) block from the Non-local block, starting from the
#    observation of lesson 3 that its attention maps hardly depend on the query;
# 2. say why moving $W_v$ out of the sum is exact, not an approximation;
# 3. implement the SNL block in NumPy as **context modelling → transform → fusion** and check it
#    against `gclab.nn.SimplifiedNonLocal2d`;
# 4. name the exact conditions under which an NL block *is* an SNL block, and convert one into
#    the other;
# 5. count its parameters and FLOPs, and say what the simplification saves.
#
# **Assumes:** lessons 1–3 (the NL equation, softmax, 1×1 convolutions as matrix products, the
# query-independent maps of a trained NL); NumPy `reshape`/`einsum`.
#
# Exercises are checked by `check("snl.<name>", your_function)`; `hint("snl.<name>", level)`
# gives a hint at level 1 (concept), 2 (shapes) or 3 (pseudo-code).
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
from gclab.exercises import check, hint
from gclab.exercises.lessons import nb04_simplified_nl as ref  # gclab's answers
from gclab.exercises.fallback import use_or_fallback
from gclab.nn import AttentionPooling, NonLocal2d, SimplifiedNonLocal2d

torch.set_default_dtype(torch.float64)  # this lesson compares NumPy and PyTorch in float64

# %% [markdown]
# **At a glance:** NL, and the Simplified NL block this lesson derives from it, drawn by `gclab.course.diagrams` in one visual language: the
# tensor shape on every arrow, and the three steps shaded the same way in every block —
# **context modelling** (blue), **transform** (orange), **fusion** (green).

# %%
diagrams.blocks("nl", "snl");

# %% [markdown]
# ## 1. From NL to SNL in three lines of algebra
#
# The embedded-Gaussian NL block (lesson 1) computes, for every query position $i$ (the
# $1/\sqrt{C_i}$ scale of the logits is left out here; it comes back in section 5),
#
# $$
# z_i = x_i + W_z \sum_{j=1}^{N}
#   \underbrace{\frac{\exp\big(\theta(x_i)^\top \phi(x_j)\big)}
#                    {\sum_m \exp\big(\theta(x_i)^\top \phi(x_m)\big)}}_{\text{depends on } i
#   \text{ and } j}\; W_g x_j .
# $$
#
# Lesson 3 looked inside a trained NL and found that the maps of different queries are nearly
# the same: the cosine distance between the rows of the attention matrix is close to zero. So
# **drop the query**: give every position the *same* weights, computed from the key alone by a
# 1×1 convolution $W_k$ (a $C \to 1$ projection):
#
# $$
# z_i = x_i + W_z \sum_{j=1}^{N} \frac{\exp(W_k x_j)}{\sum_m \exp(W_k x_m)}\, W_g x_j .
# $$
#
# Now nothing inside the sum depends on $i$, and $W_z W_g$ are two linear maps in a row. Pull
# them out of the sum and merge them into one $C \times C$ matrix $W_v = W_z W_g$:
#
# $$
# \boxed{\; z_i = x_i + W_v \sum_{j=1}^{N} \alpha_j\, x_j, \qquad
# \alpha_j = \frac{\exp(W_k x_j)}{\sum_{m=1}^{N} \exp(W_k x_m)} \;}
# $$
#
# This is the Simplified NL block of the GCNet paper. Read it as the three steps `gclab` uses
# for every block:
#
# | step | SNL | code |
# |---|---|---|
# | **context modelling** | $c = \sum_j \alpha_j x_j$ — attention pooling, one vector per image | `context_modeling` (`AttentionPooling`) |
# | **transform** | $W_v c + b_v$ — one 1×1 conv $C \to C$ | `transform["add"]` |
# | **fusion** | $z_i = x_i + W_v c + b_v$ — the *same* vector added at every position | `fusion` |
#
# The sum is computed **once per image** instead of once per query: the $N \times N$ attention
# matrix of NL becomes a single row of $N$ weights.

# %% [markdown]
# ### Seeing it on an image
#
# Take a photograph (shipped with scikit-learn), down-sampled to $54 \times 80$, and use its RGB
# values as a 3-channel feature map. On the left, the maps of a Gaussian NL
# ($\mathrm{softmax}_j(\beta\, x_i^\top x_j)$) for three queries (the stars): each query looks
# at different places. On the right, the SNL map for $W_k = (6, 6, 6)$ ("how bright is this
# pixel?"): one map, shared by the three queries and by every other one. The Gaussian NL on raw
# colours *uses* its freedom to look somewhere else for every query; lesson 3 found that trained
# NL blocks hardly do, and SNL gives that freedom up.

# %%
figures.nl_vs_snl_maps(queries=[(5, 40), (30, 30), (45, 70)])

# %% [markdown]
# ## 2. Context modelling, part 1: the attention map
#
# $\alpha_j = \mathrm{softmax}_j(W_k x_j + b_k)$ over the $N = HW$ positions. $W_k$ is a 1×1
# convolution $C \to 1$: a vector `w_k` of shape `(C,)` and a scalar bias `b_k`. Positions are
# flattened row-major, $j = h\,W + w$, as in lesson 1.
#
# **Exercise `snl.attention`.** `attention_weights(x, w_k, b_k)`: `x (B, C, H, W)` →
# `alpha (B, N)`, every row summing to 1. (The checks use $H \ne W$ and $B > 1$.)

# %%
def attention_weights(x, w_k, b_k):
    """alpha (B, N): softmax over the N = H*W positions of w_k . x_j + b_k."""
    # exercise snl.attention: softmax over positions of the 1x1 conv C -> 1
    ### BEGIN SOLUTION
    b, c = x.shape[:2]
    logits = np.einsum("c,bcn->bn", w_k, x.reshape(b, c, -1)) + b_k
    logits = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)
    ### END SOLUTION


# %%
check("snl.attention", attention_weights)

# %% [markdown]
# ## 3. Context modelling, part 2: attention pooling
#
# The context is one vector per image, the features averaged with the weights $\alpha$:
# $c = \sum_j \alpha_j x_j \in \mathbb{R}^C$. `gclab` keeps it as a `(B, C, 1, 1)` map so that it
# broadcasts over every position later.
#
# **Exercise `snl.pool`.** `attention_pool(x, alpha)`: `x (B, C, H, W)`, `alpha (B, N)` →
# `(B, C, 1, 1)`.

# %%
def attention_pool(x, alpha):
    """context (B, C, 1, 1) = sum_j alpha_j x_j."""
    # exercise snl.pool: the weighted sum of the features over positions
    ### BEGIN SOLUTION
    b, c = x.shape[:2]
    return np.einsum("bcn,bn->bc", x.reshape(b, c, -1), alpha).reshape(b, c, 1, 1)
    ### END SOLUTION


# %%
check("snl.pool", attention_pool)

# %% [markdown]
# ### Why moving $W_v$ outside the sum is exact
#
# In NL the value transform sits *inside* the sum: $\sum_j \alpha_j (W_v x_j + b_v)$. Because
# the weights sum to one,
#
# $$
# \sum_j \alpha_j (W_v x_j + b_v) = W_v \Big(\sum_j \alpha_j x_j\Big) + b_v \sum_j \alpha_j
# = W_v c + b_v .
# $$
#
# Same number, but $C^2$ multiply-adds once per image instead of once per position. A numerical
# check with random numbers (no learner code involved):

# %%
# NBVAL_CHECK_OUTPUT
rng = np.random.default_rng(0)
x = rng.standard_normal((6, 35))  # C = 6 channels, N = 35 positions
alpha = gnp.ops.softmax(rng.standard_normal(35))
w_v, b_v = rng.standard_normal((6, 6)), rng.standard_normal(6)
inside = ((w_v @ x + b_v[:, None]) * alpha).sum(axis=1)  # W_v at every position, then pool
outside = w_v @ (x @ alpha) + b_v  # pool first, then W_v once
print("equal up to rounding:", np.allclose(inside, outside, rtol=1e-12, atol=1e-12))

# %% [markdown]
# ## 4. The whole block: transform and fusion
#
# **Exercise `snl.forward`.** `simplified_nonlocal(x, w_k, b_k, w_v, b_v)` with `w_v (C, C)` and
# `b_v (C,)` returns $z$, `(B, C, H, W)`. Reuse your two functions; the fusion is an addition
# that broadcasts the `(B, C, 1, 1)` term over all positions.

# %%
def simplified_nonlocal(x, w_k, b_k, w_v, b_v):
    """SNL block (context modelling, transform, fusion): x (B, C, H, W) -> (B, C, H, W)."""
    # exercise snl.forward: context modelling -> transform -> fusion
    ### BEGIN SOLUTION
    context = attention_pool(x, attention_weights(x, w_k, b_k))[:, :, 0, 0]  # (B, C)
    term = context @ w_v.T + b_v  # transform, (B, C)
    return x + term[:, :, None, None]  # fusion
    ### END SOLUTION


# %%
check("snl.forward", simplified_nonlocal)

# %% [markdown]
# Now the library block. `gclab.nn.SimplifiedNonLocal2d` stores $W_k$ as
# `context_modeling.conv_mask` and $W_v$ as `transform.add` (both 1×1 convs).
# `gnp.params_from_torch` turns its `state_dict` into float64 arrays with the same keys. At init
# $W_v = 0$ (the block starts as the identity), so give it random weights first.

# %%
torch.manual_seed(0)
snl = SimplifiedNonLocal2d(8)
for p in snl.parameters():
    torch.nn.init.normal_(p, std=0.5)
P = gnp.params_from_torch(snl)
print({k: v.shape for k, v in P.items()})

# %%
# NBVAL_CHECK_OUTPUT
x = np.random.default_rng(1).standard_normal((2, 8, 5, 7))
ours = use_or_fallback(simplified_nonlocal, ref.ref_forward, "simplified_nonlocal")(
    x,
    P["context_modeling.conv_mask.weight"].reshape(8),
    P["context_modeling.conv_mask.bias"][0],
    P["transform.add.weight"][:, :, 0, 0],
    P["transform.add.bias"],
)
with torch.no_grad():
    theirs, attn = snl(torch.from_numpy(x), return_attention=True)
print("NumPy == gclab.nn:", np.allclose(ours, theirs.numpy(), rtol=1e-10, atol=1e-12))
print("attention", tuple(attn.shape), "- every query row identical:",
      bool((attn == attn[:, :1, :]).all()))

# %% [markdown]
# `return_attention=True` gives the `(B, N, N)` matrix NL would have, for comparison with
# lesson 3: all $N$ rows are the same row $\alpha$ (an expanded view, no copy).
#
# ## 5. When is an NL block an SNL block?
#
# SNL is NL with the query taken out of the attention. So an NL block is *exactly* an SNL block
# whenever its logits $\theta(x_i)^\top \phi(x_j)$ do not depend on $i$. The simplest way: set
# $\theta$'s **weight** to zero. Then $\theta(x_i) = b_\theta$ for every query, and the logit
# $\theta(x_i)^\top \phi(x_j) / \sqrt{C_i}$ (the $1/\sqrt{C_i}$ is the embedded Gaussian's
# scale, lesson 1) depends on the key $j$ only. Let us see it with `gclab.nn.NonLocal2d`:

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
nl = NonLocal2d(8, reduction=2)  # embedded gaussian, C_i = 4
for p in nl.parameters():
    torch.nn.init.normal_(p, std=0.5)
x_t = torch.randn(1, 8, 5, 7)
with torch.no_grad():
    _, a_full = nl(x_t, return_attention=True)
    nl.theta.weight.zero_()  # keep theta's bias
    _, a_zero = nl(x_t, return_attention=True)
spread = lambda a: (a - a[:, :1, :]).abs().max().item()  # noqa: E731 - largest row difference
print(f"theta on:         rows differ by up to {spread(a_full):.3f}")
print(f"theta.weight = 0: every row the same (to 1e-12): {spread(a_zero) < 1e-12}")

# %% [markdown]
# **Exercise `snl.from_nonlocal`** (derive it first). Expand the NL logit with
# $\theta(x_i) = b_\theta$ and $\phi(x_j) = W_\phi x_j + b_\phi$ and read off SNL's $w_k$ and
# $b_k$. Then expand NL's output term $W_z\big(\sum_j \alpha_j\, g(x_j)\big) + b_z$ with
# $g(x_j) = W_g x_j + b_g$, use that the weights sum to one (section 3), and read off $W_v$ and
# $b_v$.
#
# Then implement it. `nonlocal_to_snl(nl_params)` takes the `state_dict` of an
# embedded-Gaussian `NonLocal2d` with `theta.weight == 0` (float64 arrays; conv weights
# `(C_out, C_in, 1, 1)`) and returns the `state_dict` of the `SimplifiedNonLocal2d` that computes
# the same output, with keys `context_modeling.conv_mask.weight (1, C, 1, 1)`,
# `context_modeling.conv_mask.bias (1,)`, `transform.add.weight (C, C, 1, 1)`,
# `transform.add.bias (C,)`. Make the logits equal too, constant included (the softmax would
# forgive any other constant $b_k$, the check does not).

# %%
def nonlocal_to_snl(nl_params):
    """SNL state_dict computing what an NL block with theta.weight == 0 computes."""
    # exercise snl.from_nonlocal: read the SNL weights off the NL forward with theta's weight at 0
    ### BEGIN SOLUTION
    sq = lambda k: nl_params[k][:, :, 0, 0]  # noqa: E731 - (C_out, C_in)
    w_phi, w_g, w_z = sq("phi.weight"), sq("g.weight"), sq("conv_out.weight")
    ci, c = w_phi.shape
    b_theta, s = nl_params["theta.bias"], np.sqrt(ci)
    return {
        "context_modeling.conv_mask.weight": (w_phi.T @ b_theta / s).reshape(1, c, 1, 1),
        "context_modeling.conv_mask.bias": np.array([b_theta @ nl_params["phi.bias"] / s]),
        "transform.add.weight": (w_z @ w_g).reshape(c, c, 1, 1),
        "transform.add.bias": w_z @ nl_params["g.bias"] + nl_params["conv_out.bias"],
    }
    ### END SOLUTION


# %%
check("snl.from_nonlocal", nonlocal_to_snl)

# %% [markdown]
# <details><summary>Worked derivation (open after your check passes)</summary>
#
# $$
# \frac{\theta(x_i)^\top \phi(x_j)}{\sqrt{C_i}}
# = \underbrace{\frac{b_\theta^\top W_\phi}{\sqrt{C_i}}}_{w_k^\top} x_j
# + \underbrace{\frac{b_\theta^\top b_\phi}{\sqrt{C_i}}}_{b_k} ,
# \qquad
# W_z\Big(\sum_j \alpha_j (W_g x_j + b_g)\Big) + b_z = (W_z W_g)\,c + (W_z b_g + b_z) ,
# $$
#
# so $W_v = W_z W_g$ and $b_v = W_z b_g + b_z$.
# </details>
#
# The check also loads your parameters into `SimplifiedNonLocal2d` and compares its output with
# the NL block's. A second special case is worth one sentence: if **all** of $\theta$ is zero
# (weight and bias), every logit is $0$, the weights are uniform, $\alpha_j = 1/N$, and the
# context is the plain average of the features. Hold on to that: it is the *squeeze* of the SE
# block (lesson 6).
#
# ## 6. What the simplification saves
#
# NL (reduction 2, $C_i = C/2$) has four 1×1 convs: $\theta, \phi, g$ ($C \to C/2$) and $W_z$
# ($C/2 \to C$), each with a bias. SNL has $W_k$ ($C \to 1$) and $W_v$ ($C \to C$), with biases.
#
# **Exercise `snl.param_count`** (derive it). Write the number of parameters of one SNL block
# as a formula in $C$, from the shapes of $W_k$ and $W_v$ (do not count a module), and
# implement it. Does your polynomial factor? The check compares numbers, so on small $C$ it
# cannot tell a formula from a count of a built module; its last case ($C = 10^9$, about
# $10^{18}$ weights) is too large to build, so only the derived formula passes it.

# %%
# exercise snl.param_count: the parameters of one SNL block at C channels (an int)
def snl_param_count(channels):
    ### BEGIN SOLUTION
    return (channels + 1) + (channels * channels + channels)
    ### END SOLUTION


check("snl.param_count", snl_param_count)

# %% [markdown]
# <details><summary>Worked derivation (open after your check passes)</summary>
#
# $W_k$: $C$ weights and 1 bias; $W_v$: $C^2$ weights and $C$ biases. In all
# $C^2 + 2C + 1 = (C + 1)^2$: one more input (the bias acts as a constant input) for each of
# the $C + 1$ outputs.
# </details>
#
# **Exercise `snl.params`.** How many parameters does one SNL block have at $C = 1024$? Then
# compare with PyTorch below.

# %%
# exercise snl.params: an int
### BEGIN SOLUTION
snl_params = snl_param_count(1024)
### END SOLUTION
check("snl.params", snl_params)

# %% [markdown]
# PyTorch's count, for both blocks, and the FLOPs that `torch.utils.flop_counter.FlopCounterMode`
# counts on a $14 \times 20$ map with $C = 256$ (convolutions and matrix products, 2 FLOPs per
# multiply-add; lesson 5 draws the curves):

# %%
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


def flops(module, shape=(1, 256, 14, 20)):
    """FLOPs of one forward pass. return_attention=True makes NL compute its attention matrix
    explicitly (a fused attention kernel can be invisible to FlopCounterMode)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(torch.zeros(shape), return_attention=True)
    return counter.get_total_flops()


# %%
# NBVAL_CHECK_OUTPUT
count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
print(f"params at C=1024: NL {count(NonLocal2d(1024)):,}  SNL {count(SimplifiedNonLocal2d(1024)):,}")
f_nl, f_snl = flops(NonLocal2d(256)), flops(SimplifiedNonLocal2d(256))
print(f"FLOPs at C=256, 14x20: NL {f_nl:,}  SNL {f_snl:,}  ({f_nl / f_snl:.0f}x fewer)")

# %% [markdown]
# SNL halves the parameters and removes the $N^2$ term from the FLOPs: the attention costs
# $O(NC)$ instead of $O(N^2 C)$. But look at where SNL's parameters now sit: almost all in
# $W_v$, a full $C \times C$ matrix applied to a *single* vector per image. Lesson 5 replaces it
# by a cheap bottleneck, and the block becomes the Global Context (GC) block.
#
# ## Summary
# * NL's maps are nearly query-independent (lesson 3); SNL makes that exact: one map
#   $\alpha = \mathrm{softmax}(W_k x)$ for all queries.
# * Because $\sum_j \alpha_j = 1$, the value transform moves outside the sum at no cost:
#   $z_i = x_i + W_v \sum_j \alpha_j x_j + b_v$.
# * Three steps: **context modelling** (attention pooling), **transform** ($W_v$),
#   **fusion** (add the same vector at every position).
# * An NL block whose $\theta$ weight is zero *is* an SNL block; with $\theta \equiv 0$ the
#   pooling becomes a plain average.
# * Cost: $C^2 + 2C + 1$ parameters, $O(NC)$ FLOPs for the context.
