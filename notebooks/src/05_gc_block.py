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
# # Lesson 5 — The Global Context block: bottleneck, LayerNorm, fusion, and what it costs
#
# **Expected time:** about 60 minutes. **Runs in:** under 30 s on a laptop CPU.
#
# **You will be able to**
# 1. turn the Simplified NL block into the Global Context (GC) block by replacing its $C \times C$
#    transform with a bottleneck of ratio $r$;
# 2. implement LayerNorm over $(C/r, 1, 1)$ and explain why the bottleneck needs it (and why not
#    BatchNorm);
# 3. implement both fusions, *add* and *mul*, in the right order;
# 4. build the block in NumPy and as an `nn.Module` with `gclab`'s parameter names;
# 5. count its parameters ($2C^2/r + 2C + 3C/r + 1$) and its FLOPs with
#    `torch.utils.flop_counter.FlopCounterMode`, and compare the cost curves of NL, SNL, GC and
#    SE as $C$ and $H \times W$ grow.
#
# **Assumes:** lesson 4 (attention pooling, the SNL block, the three steps); what a ReLU and a
# normalisation layer do; `torch.nn` basics (`Module`, `Conv2d`, `state_dict`).
#
# Exercises are checked by `check("gc.<name>", ...)`; `hint("gc.<name>", level)` gives a hint at
# level 1 (concept), 2 (shapes) or 3 (pseudo-code).
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
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import gclab.numpy as gnp
from gclab.course import diagrams, figures
from gclab.exercises import check, hint
from gclab.exercises.lessons import nb05_gc_block as ref  # gclab's answers
from gclab.exercises.fallback import use_or_fallback
from gclab.nn import AttentionPooling, Bottleneck, GCBlock, NonLocal2d, SEBlock
from gclab.nn import SimplifiedNonLocal2d

# %% [markdown]
# **At a glance:** SNL (lesson 4) and the Global Context block this lesson builds, drawn by `gclab.course.diagrams` in one visual language: the
# tensor shape on every arrow, and the three steps shaded the same way in every block —
# **context modelling** (blue), **transform** (orange), **fusion** (green).

# %%
diagrams.blocks("snl", "gc");

# %% [markdown]
# ## 1. Where SNL spends its parameters
#
# Lesson 4 ended with SNL's cost: $C^2 + 2C + 1$ parameters, almost all of them in $W_v$, a full
# $C \times C$ matrix applied to **one** context vector per image. A ResNet stage with
# $C = 1024$ pays a million parameters per block for that. The GC block replaces $W_v$ by a
# *bottleneck*: squeeze to $C/r$ channels, then expand back ($r = 16$ in the paper):
#
# $$
# z_i = x_i + W_{v2}\,\mathrm{ReLU}\Big(\mathrm{LN}\big(W_{v1} \textstyle\sum_{j=1}^{N}
#       \alpha_j x_j\big)\Big),
# \qquad \alpha_j = \frac{e^{W_k x_j}}{\sum_m e^{W_k x_m}},
# $$
#
# with $W_{v1} \in \mathbb{R}^{C/r \times C}$ and $W_{v2} \in \mathbb{R}^{C \times C/r}$ (1×1 convs
# with biases). The three steps keep their names:
#
# | step | GC block | code (`gclab.nn.GCBlock`) |
# |---|---|---|
# | **context modelling** | $c = \sum_j \alpha_j x_j$ (as in SNL) | `context_modeling` = `AttentionPooling(C)` |
# | **transform** | $\delta(c) = W_{v2}\,\mathrm{ReLU}(\mathrm{LN}(W_{v1} c))$ | `transform["add"]` = `Bottleneck(C, C/r)` |
# | **fusion** | $z_i = x_i + \delta(c)$ (*add*) or $x_i \odot \sigma(\delta(c))$ (*mul*) | `fusion` |
#
# The transform's weights go from $C^2$ to $2C^2/r$: 8× fewer at $r = 16$.

# %% [markdown]
# ## 2. LayerNorm over $(C/r, 1, 1)$
#
# A two-layer bottleneck is harder to optimise than one linear map: the hidden vector
# $h = W_{v1} c$ takes whatever scale the context has, and that scale changes from image to
# image and from stage to stage. The GCNet authors put a LayerNorm on $h$, before the ReLU, to
# ease the optimisation of the two-layer bottleneck (and it acts as a regulariser). For each
# image *separately*,
#
# $$
# \mathrm{LN}(h) = \gamma \odot \frac{h - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta,
# \qquad \mu = \frac{1}{P}\sum_{p=1}^{P} h_p,\quad \sigma^2 = \frac{1}{P}\sum_{p=1}^{P} (h_p - \mu)^2,
# $$
#
# where $P = C/r$, $\epsilon = 10^{-5}$ and $\gamma, \beta \in \mathbb{R}^{P}$. In PyTorch the
# hidden vector is a `(B, P, 1, 1)` map, so the layer is `nn.LayerNorm([P, 1, 1])`: normalise over
# the last three axes, never over the batch. Why not BatchNorm? It would normalise each channel
# *across the images of the batch*: the output of one image would depend on the others, and
# detection trains with 2 images per GPU. The two, on the bottleneck's `(B, P, 1, 1)` tensor:

# %%
diagrams.norm_axes(batch=4, planes=8);

# %% [markdown]
# What the normalisation buys, on one bottleneck: the hidden vector that reaches the ReLU and the
# second conv has the same scale whatever the context's scale.

# %%
torch.manual_seed(0)
with_ln = Bottleneck(256, 16)  # conv C -> P, LayerNorm([P, 1, 1]), ReLU, conv P -> C
ctx = torch.randn(4, 256, 1, 1)
with torch.no_grad():
    for scale in (0.01, 1.0, 100.0):
        h = with_ln[0](scale * ctx)  # W_v1 c: scales with the context
        print(f"context x {scale:>6}: std of W_v1 c = {h.std():8.3f}   after LN = "
              f"{with_ln[1](h).std():.3f}")

# %% [markdown]
# **Exercise `gc.layer_norm`.** `layer_norm(t, gamma, beta)`: `t (B, P, 1, 1)`, `gamma` and `beta`
# `(P, 1, 1)`, $\epsilon = 10^{-5}$ → `(B, P, 1, 1)`. Use the biased variance (divide by $P$), as
# PyTorch does.

# %%
def layer_norm(t, gamma, beta):
    """LayerNorm over (P, 1, 1): each sample normalised on its own, then gamma * t_hat + beta."""
    # exercise gc.layer_norm: each sample's mean and variance, over all but the batch axis
    ### BEGIN SOLUTION
    mu = t.mean(axis=(1, 2, 3), keepdims=True)
    var = t.var(axis=(1, 2, 3), keepdims=True)
    return gamma * (t - mu) / np.sqrt(var + 1e-5) + beta
    ### END SOLUTION


# %%
check("gc.layer_norm", layer_norm)

# %% [markdown]
# ## 3. The bottleneck transform
#
# `gclab.nn.Bottleneck` is an `nn.Sequential` of four layers; the two convs and the LayerNorm
# hold the parameters, so its `state_dict` keys are `0.*` (conv $C \to P$), `1.*` (LayerNorm
# $\gamma$, $\beta$, shape `(P, 1, 1)`), `3.*` (conv $P \to C$); index 2 is the ReLU. (These are
# mmcv's `channel_add_conv.{0,1,3}` keys.)
#
# **Exercise `gc.transform`.** `bottleneck(context, params)`: `context (B, C, 1, 1)` and such a
# dict → `(B, C, 1, 1)`. Use `gnp.ops.conv1x1(x, weight, bias)` for the convs and your
# `layer_norm`.

# %%
def bottleneck(context, params):
    """conv C->P, LayerNorm over (P, 1, 1), ReLU, conv P->C on a (B, C, 1, 1) context."""
    # exercise gc.transform: conv, LayerNorm, ReLU, conv with the keys 0.*, 1.*, 3.*
    ### BEGIN SOLUTION
    h = gnp.ops.conv1x1(context, params["0.weight"], params["0.bias"])
    h = np.maximum(layer_norm(h, params["1.weight"], params["1.bias"]), 0.0)
    return gnp.ops.conv1x1(h, params["3.weight"], params["3.bias"])
    ### END SOLUTION


# %%
check("gc.transform", bottleneck)

# %% [markdown]
# ## 4. Fusion: add or multiply
#
# The transform gives one vector per image; fusion spreads it over every position. Two ways:
#
# * **add** ($z_i = x_i + \delta_{add}(c)$): shift every position by the same global feature,
#   as NL and SNL do;
# * **mul** ($z_i = x_i \odot \sigma(\delta_{mul}(c))$): rescale every channel by a gate in
#   $(0, 1)$, as SE does (lesson 6).
#
# With both, `gclab` (like mmcv) multiplies first, then adds:
# $z_i = x_i \odot \sigma(\delta_{mul}(c)) + \delta_{add}(c)$. The paper's default, and the better
# one in its ablation on COCO, is *add*.
#
# **Exercise `gc.fusion`.** `fuse(x, add=None, mul=None)`: `x (B, C, H, W)`; `add`, `mul`
# `(B, C, 1, 1)` or `None`.

# %%
def fuse(x, add=None, mul=None):
    """z = x * sigmoid(mul) + add, multiplication first; either term may be None."""
    # exercise gc.fusion: mul (through a sigmoid) first, then add
    ### BEGIN SOLUTION
    out = x
    if mul is not None:
        out = out * (1.0 / (1.0 + np.exp(-mul)))
    if add is not None:
        out = out + add
    return out
    ### END SOLUTION


# %%
check("gc.fusion", fuse)

# %% [markdown]
# ### The fusion's backward
#
# Both terms are one vector per image, broadcast over all $H \times W$ positions. What does a
# broadcast do to gradients?
#
# **Exercise `gc.add_fusion_backward`** (derive it). For $z = x + \text{add}$ with `add`
# `(B, C, 1, 1)`, return `(dx, dadd)` from `dout (B, C, H, W)`.

# %%
def add_fusion_backward(dout):
    """(dx, dadd) of z = x + add, add (B, C, 1, 1) broadcast over H and W."""
    # exercise gc.add_fusion_backward: what does a broadcast become in the backward?
    ### BEGIN SOLUTION
    return dout.copy(), dout.sum(axis=(2, 3), keepdims=True)
    ### END SOLUTION


# %%
check("gc.add_fusion_backward", add_fusion_backward)

# %% [markdown]
# **Exercise `gc.mul_fusion_backward`** (derive it). For $z = x \odot \sigma(m)$ with `m`
# `(B, C, 1, 1)`, return `(dx, dm)` from `dout`, `x` and `m`. You will need the derivative of
# the sigmoid; write it with $\sigma$ itself.

# %%
def mul_fusion_backward(dout, x, m):
    """(dx, dm) of z = x * sigmoid(m), m (B, C, 1, 1) broadcast over H and W."""
    # exercise gc.mul_fusion_backward: element-wise for x; collected over positions for m
    ### BEGIN SOLUTION
    g = 1.0 / (1.0 + np.exp(-m))
    return dout * g, (dout * x).sum(axis=(2, 3), keepdims=True) * g * (1 - g)
    ### END SOLUTION


# %%
check("gc.mul_fusion_backward", mul_fusion_backward)

# %% [markdown]
# That check compares numbers: it cannot see whether you derived $\partial m$ or let
# `torch.autograd` compute it. The derivation itself is the sigmoid's derivative.
#
# **Exercise `gc.sigmoid_grad`** (derive it). Write $\sigma'(m)$ as a function of the gate
# $g = \sigma(m)$ alone. One case evaluates your expression at values no gate takes ($g$
# outside $[0, 1]$, where no $m$ exists): a derived expression in $g$ still gives a number
# there, a derivative computed through $m$ (autograd, finite differences) cannot.

# %%
def sigmoid_grad(g):
    """d sigmoid(m) / dm, written with the gate g = sigmoid(m) only."""
    # exercise gc.sigmoid_grad: arithmetic on g only
    ### BEGIN SOLUTION
    return g * (1 - g)
    ### END SOLUTION


# %%
check("gc.sigmoid_grad", sigmoid_grad)

# %% [markdown]
# <details><summary>Worked derivation (open after your check passes)</summary>
#
# A broadcast copies one value to $HW$ places, so in the backward the $HW$ gradients are
# **summed** back into it: $\partial x = \partial z$ and
# $\partial\,\text{add}_{b,c} = \sum_{h,w} \partial z_{b,c,h,w}$. For the product,
# $\partial x = \partial z \odot \sigma(m)$ and, with $\sigma'(m) = \sigma(m)(1 - \sigma(m))$,
#
# $$
# \partial m_{b,c} = \sigma(m_{b,c})\big(1 - \sigma(m_{b,c})\big)
# \sum_{h,w} \partial z_{b,c,h,w}\, x_{b,c,h,w} .
# $$
#
# At initialisation ($m = 0$) the gate's gradient is $\tfrac14 \sum \partial z \odot x$: a
# zero-initialised *mul* branch still learns. So does an *add* branch: only its last conv is
# zero, and $\partial\,\text{add}$ does not depend on it.
# </details>
#
# The initialisation follows from the fusion. `GCBlock` zeroes the last conv of every branch
# (weight *and* bias), so $\delta(c) = 0$ at the start of training: an *add* block is exactly the
# identity (a GC block can be dropped into a pre-trained network without changing it), a *mul*
# block halves its input ($\sigma(0) = \tfrac12$).

# %%
# NBVAL_CHECK_OUTPUT
x = torch.randn(2, 64, 7, 9)
with torch.no_grad():
    print("add at init: z == x    ", torch.equal(GCBlock(64, 1 / 16, fusions=("add",))(x), x))
    print("mul at init: z == x / 2", torch.equal(GCBlock(64, 1 / 16, fusions=("mul",))(x), x / 2))

# %% [markdown]
# ## 5. The GC block in NumPy
#
# **Exercise `gc.forward`.** `gc_block(x, params)` where `params` is a `GCBlock`'s `state_dict`
# as float64 arrays: `context_modeling.conv_mask.weight (1, C, 1, 1)` and `.bias (1,)`, and one
# bottleneck per fusion present, under `transform.add.` and/or `transform.mul.`. For the
# context modelling use `gnp.ops.attention_pool` (lesson 4's attention pooling;
# `logits` of shape `(B, 1, H, W)` are fine); then your `bottleneck` and `fuse`.

# %%
def gc_block(x, params):
    """GC block: attention pooling -> one bottleneck per fusion in params -> fusion."""
    # exercise gc.forward: context modelling -> transform -> fusion
    ### BEGIN SOLUTION
    logits = gnp.ops.conv1x1(
        x, params["context_modeling.conv_mask.weight"], params["context_modeling.conv_mask.bias"]
    )
    context = gnp.ops.attention_pool(x, logits)  # (B, C, 1, 1)
    terms = {}
    for f in ("add", "mul"):
        prefix = f"transform.{f}."
        if prefix + "0.weight" in params:
            sub = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
            terms[f] = bottleneck(context, sub)
    return fuse(x, **terms)
    ### END SOLUTION


# %%
check("gc.forward", gc_block)

# %% [markdown]
# The same weights in PyTorch. `GCBlock` starts as the identity, so we randomise it first; then
# `gnp.params_from_torch` hands its `state_dict` to your function.

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
gc = GCBlock(32, ratio=1 / 8, fusions=("add", "mul")).double()
for p in gc.parameters():
    nn.init.normal_(p, std=0.3)
x = np.random.default_rng(0).standard_normal((2, 32, 6, 9))
with torch.no_grad():
    theirs = gc(torch.from_numpy(x)).numpy()
ours = use_or_fallback(gc_block, ref.ref_gc_forward, "gc_block")(x, gnp.params_from_torch(gc))
print("NumPy == gclab.nn:", np.allclose(ours, theirs, rtol=1e-10))

# %% [markdown]
# ## 6. The GC block as an `nn.Module`
#
# **Exercise `gc.module`.** Write `GCAdd(in_channels, ratio)`, the GC block with *add* fusion,
# whose `state_dict` has exactly `GCBlock`'s keys: `context_modeling.conv_mask.*` and
# `transform.add.{0,1,3}.*`, with `planes` = `in_channels` times `ratio`, rounded down. Use `AttentionPooling`
# (lesson 4's context modelling, in `gclab.nn`) and `nn.ModuleDict` / `nn.Sequential`. The check
# builds your module, loads random weights from a `GCBlock` into it (strictly: the names and
# shapes must match) and compares the outputs. Initialisation does not matter for the check.

# %%
class GCAdd(nn.Module):
    """GC block with add fusion, GCBlock-compatible parameter names."""

    def __init__(self, in_channels, ratio=1 / 16):
        super().__init__()
        # exercise gc.module: context_modeling and transform (a ModuleDict with key "add")
        ### BEGIN SOLUTION
        planes = int(in_channels * ratio)
        self.context_modeling = AttentionPooling(in_channels)
        self.transform = nn.ModuleDict({"add": nn.Sequential(
            nn.Conv2d(in_channels, planes, 1),
            nn.LayerNorm([planes, 1, 1]),
            nn.ReLU(),
            nn.Conv2d(planes, in_channels, 1),
        )})
        ### END SOLUTION

    def forward(self, x):
        # exercise gc.module: the three steps in PyTorch
        ### BEGIN SOLUTION
        return x + self.transform["add"](self.context_modeling(x))
        ### END SOLUTION


# %%
check("gc.module", GCAdd)

# %% [markdown]
# ## 7. Counting parameters
#
# Add up the learnable tensors of one *add* block with $P = C/r$:
#
# | piece | weights | biases / affine |
# |---|---|---|
# | $W_k$ (`conv_mask`, $C \to 1$) | $C$ | $1$ |
# | $W_{v1}$ (conv $C \to P$) | $C P$ | $P$ |
# | LayerNorm | | $2P$ ($\gamma$, $\beta$) |
# | $W_{v2}$ (conv $P \to C$) | $P C$ | $C$ |
#
# $$ \text{total} = \frac{2C^2}{r} + 2C + \frac{3C}{r} + 1 .$$
#
# **Exercise `gc.params`.** Now a block with **both** fusions, `GCBlock(1024, 1/16,
# fusions=("add", "mul"))`: how many parameters (an `int`; compute it from the table, do not
# count a module)? Which pieces are shared, and which does each fusion need for itself?

# %%
# exercise gc.params: an int, one GC r16 block with fusions ("add", "mul") at C = 1024
### BEGIN SOLUTION
C, P = 1024, 1024 // 16
branch = (C * P + P) + 2 * P + (P * C + C)  # conv C->P, LayerNorm, conv P->C
gc_params = (C + 1) + 2 * branch  # one shared W_k, one bottleneck per fusion
### END SOLUTION
check("gc.params", gc_params)

# %% [markdown]
# PyTorch agrees with the one-branch formula, and the formula adds up over a ResNet-50 with a GC r16 block in
# every bottleneck of stages c3–c5 (4, 6 and 3 bottlenecks with 512, 1024 and 2048 output
# channels; the GCNet paper's setting), and with $r = 4$:

# %%
# NBVAL_CHECK_OUTPUT
def n_params(m):
    return sum(p.numel() for p in m.parameters())


def formula(c, r):
    return 2 * c * c // r + 2 * c + 3 * c // r + 1


print(f"GCBlock(1024, 1/16): {n_params(GCBlock(1024, 1 / 16)):,} (formula {formula(1024, 16):,})")
for r in (16, 4):
    total = sum(n * formula(c, r) for c, n in ((512, 4), (1024, 6), (2048, 3)))
    print(f"ResNet-50 c3-c5, r{r}: {total:,} extra parameters")

# %% [markdown]
# ## 8. Counting FLOPs with `FlopCounterMode`
#
# `torch.utils.flop_counter.FlopCounterMode` records every matrix product and convolution run
# inside its `with` block and counts **2 FLOPs per multiply-add**; element-wise work (softmax,
# LayerNorm, ReLU, the final addition) counts zero. On the `meta` device tensors have shapes but
# no data, so even an $N \times N$ attention matrix for a large map costs nothing to "run".
#
# **Exercise `gc.flops`.** How many FLOPs does `FlopCounterMode` count for `GCBlock(256, 1/16)`
# on an input of shape `(1, 256, 14, 20)`? Work it out with pen and paper (which ops are matrix
# products, and of which sizes?), then check with the counter below.

# %%
# exercise gc.flops: an int, the FLOPs FlopCounterMode reports
### BEGIN SOLUTION
C, N, P = 256, 14 * 20, 16
gc_flops = 2 * (C * N + C * N + C * P + P * C)  # conv_mask, x @ alpha, two bottleneck convs
### END SOLUTION
check("gc.flops", gc_flops)


# %%
def flops(block, shape):
    """FLOPs of one forward pass, on the meta device. return_attention=True makes NL compute
    its attention matrix explicitly (a fused attention kernel can be invisible to the counter)."""
    block = block.to("meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        block(torch.empty(*shape, device="meta"), return_attention=True)
    return counter.get_total_flops()


# %%
# NBVAL_CHECK_OUTPUT
print(f"GCBlock(256, 1/16) on (1, 256, 14, 20): {flops(GCBlock(256, 1 / 16), (1, 256, 14, 20)):,}")

# %% [markdown]
# ## 9. Cost curves: NL, SNL, GC and SE
#
# Now all four blocks (SE is lesson 6's: average pooling, a bottleneck without LayerNorm, *mul*
# fusion), measured rather than computed: parameters by PyTorch as $C$ grows, and
# `FlopCounterMode` FLOPs as $C$ grows (on a $14 \times 14$ map) and as the map grows (at
# $C = 256$). NL uses reduction 2 and no sub-sampling; GC and SE use $r = 16$.

# %%
sides = [7, 14, 28, 56, 112]
cost_c, cost_n = figures.cost_curves(flops, n_params, sides=sides)

# %% [markdown]
# Reading the curves:
# * **Parameters** grow as $C^2$ for all four, with different constants: NL $2C^2$, SNL $C^2$,
#   GC and SE $2C^2/16$. GC costs only $C + 1$ (the $W_k$) plus $2C/r$ (the LayerNorm) more
#   than SE.
# * **FLOPs vs N**: NL's slope is 2 (the $N \times N$ attention); SNL's and GC's slope tends to
#   1: their attention pooling is $O(NC)$, and their transform runs once per image, whatever
#   $N$. At small maps SNL pays for its $C \times C$ transform, GC does not.
# * SE's line is flat: its pooling is an average, which `FlopCounterMode` does not count (no
#   matrix product; its true cost, $NC$ additions, is small). What the counter reports for SE
#   is its bottleneck alone, $4C^2/r$.

# %%
# NBVAL_CHECK_OUTPUT
i56 = sides.index(56)
gc56, se56 = cost_n["GC r16"][i56], cost_n["SE r16"][i56]
print(f"at C = 256 on 56x56: NL / GC FLOPs = {cost_n['NL'][i56] / gc56:,.0f}x")
print(f"GC / SE as FlopCounterMode counts (convs and matmuls; not SE's pooling): {gc56 / se56:.0f}x")
se_pool = 56 * 56 * 256  # SE's average pooling: N*C additions, counted as one FLOP each
print(f"GC / SE counting SE's pooling too: {gc56 / (se56 + se_pool):.1f}x")

# %% [markdown]
# ## Summary
# * GC = SNL's context modelling + a bottleneck transform ($C \to C/r \to C$) with LayerNorm
#   over $(C/r, 1, 1)$ before the ReLU + *add* fusion (or *mul*, or both: mul first).
# * LayerNorm normalises each image's hidden vector on its own, which eases the optimisation of
#   the two-layer bottleneck; BatchNorm would mix images of a batch.
# * The last conv of each branch starts at zero: an *add* block is the identity at init.
# * One block has $2C^2/r + 2C + 3C/r + 1$ parameters (133,313 at $C = 1024$, $r = 16$) and about
#   $4NC + 4C^2/r$ FLOPs: linear in the number of positions, like SE, unlike NL.
#
# Next, lesson 6: the SE block, and one framework that builds SE, SNL and GC from the same parts.
