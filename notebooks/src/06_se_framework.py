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
# # Lesson 6 — Squeeze-and-Excitation and the three-step framework
#
# **Expected time:** about 45 minutes. **Runs in:** under 30 s on a laptop CPU.
#
# **You will be able to**
# 1. write the Squeeze-and-Excitation (SE) block and read its *squeeze*, *excitation* and *scale*
#    as **context modelling**, **transform** and **fusion**;
# 2. implement SE in NumPy and check it against `gclab.nn.SEBlock`;
# 3. assemble SE, SNL and GC from the same parts with `gclab.nn.GlobalContextFramework`;
# 4. show that a GC block with average pooling, *mul* fusion and no LayerNorm **is** an SE block:
#    same `state_dict`, same output;
# 5. tell, for each block, which choice of part it makes and what that costs.
#
# **Assumes:** lessons 4 and 5 (attention pooling, the bottleneck transform, add/mul fusion,
# parameter and FLOP counting); `torch.nn` basics.
#
# Exercises are checked by `check("se.<name>", ...)`; `hint("se.<name>", level)` gives a hint at
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

import gclab.numpy as gnp
from gclab.course import diagrams, figures
from gclab.exercises import check, hint
from gclab.exercises.lessons import nb06_se_framework as ref  # gclab's answers
from gclab.exercises.fallback import use_or_fallback
from gclab.nn import AttentionPooling, AveragePooling, Bottleneck, GCBlock
from gclab.nn import GlobalContextFramework, SEBlock, SimplifiedNonLocal2d

# %% [markdown]
# **At a glance:** all four blocks of the course, SE last, drawn by `gclab.course.diagrams` in one visual language: the
# tensor shape on every arrow, and the three steps shaded the same way in every block —
# **context modelling** (blue), **transform** (orange), **fusion** (green).

# %%
diagrams.blocks("nl", "snl", "gc", "se");

# %% [markdown]
# ## 1. SE in one equation
#
# Hu et al. (2018) added to every ResNet bottleneck a block that looks at the whole image and
# re-weights the channels:
#
# $$
# z_i = x_i \odot \sigma\Big(W_2\,\mathrm{ReLU}\big(W_1 \underbrace{\tfrac{1}{N}
#       \textstyle\sum_{j=1}^{N} x_j}_{\text{squeeze}}\big)\Big),
# \qquad W_1 \in \mathbb{R}^{C/r \times C},\; W_2 \in \mathbb{R}^{C \times C/r}.
# $$
#
# * **squeeze**: average the feature map into one vector per image;
# * **excitation**: a bottleneck ($C \to C/r \to C$, ReLU in between) and a sigmoid give one
#   gate in $(0, 1)$ per channel;
# * **scale**: multiply every position of channel $c$ by its gate.
#
# These are the three steps of lessons 4 and 5 under other names. Every block of this course is
#
# $$
# z = F\big(x,\ \delta(\ \text{context modelling}(x)\ )\big):
# \quad \textbf{context modelling} \to \textbf{transform}\ \delta \to \textbf{fusion}\ F .
# $$

# %%
figures.framework_table()

# %% [markdown]
# The columns are interchangeable parts. `gclab.nn.framework` holds one class per part —
# `AttentionPooling(C)` and `AveragePooling()` for context modelling, `Bottleneck(C, P,
# layer_norm=...)` (or any module mapping `(B, C, 1, 1)` to `(B, C, 1, 1)`) for the transform —
# and `fusion(x, add, mul)`; `GlobalContextFramework` plugs any choice together. We first build
# SE's three parts in NumPy, then reassemble all three blocks from the library's parts.
#
# ## 2. Squeeze = context modelling by average pooling
#
# $c = \frac{1}{N}\sum_j x_j$ is attention pooling with the uniform weights $\alpha_j = 1/N$.
# Lesson 4 met it as an NL block whose $\theta$ is entirely zero; here it is an `AttentionPooling`
# whose $W_k$ is zero (every logit equal, so the softmax is uniform):

# %%
# NBVAL_CHECK_OUTPUT
x = torch.randn(2, 16, 5, 7)
att = AttentionPooling(16)
with torch.no_grad():
    att.conv_mask.weight.zero_()
    print("AttentionPooling with W_k = 0 == AveragePooling:",
          torch.allclose(att(x), AveragePooling()(x), atol=1e-6))

# %% [markdown]
# **Exercise `se.squeeze`.** `squeeze(x)`: `(B, C, H, W)` → `(B, C, 1, 1)`, the average over all
# positions.

# %%
def squeeze(x):
    """SE's context modelling: global average pooling, (B, C, H, W) -> (B, C, 1, 1)."""
    # exercise se.squeeze: the mean over the spatial axes, kept as size-1 axes
    ### BEGIN SOLUTION
    return x.mean(axis=(2, 3), keepdims=True)
    ### END SOLUTION


# %%
check("se.squeeze", squeeze)

# %% [markdown]
# ## 3. Excitation = transform, then a sigmoid
#
# SE's transform is lesson 5's bottleneck **without** LayerNorm: conv $C \to C/r$, ReLU, conv
# $C/r \to C$ (`gclab.nn.Bottleneck(C, P, layer_norm=False)`, whose index 1 is an
# `nn.Identity`, so its keys are `0.*` and `3.*`). Then a sigmoid turns each channel's value
# into a gate $s_c \in (0, 1)$. Sigmoid, not softmax: the channels do not compete for a fixed
# budget; several can be kept at once, and the gates need not sum to 1.
#
# **Exercise `se.excitation`.** `excitation(context, params)`: `context (B, C, 1, 1)`, `params`
# with keys `0.weight (P, C, 1, 1)`, `0.bias (P,)`, `3.weight (C, P, 1, 1)`, `3.bias (C,)` →
# the gates `(B, C, 1, 1)`. `gnp.ops.conv1x1(x, weight, bias)` does the convs.

# %%
def excitation(context, params):
    """SE's transform + sigmoid: gates (B, C, 1, 1) in (0, 1)."""
    # exercise se.excitation: conv, ReLU, conv, sigmoid
    ### BEGIN SOLUTION
    h = np.maximum(gnp.ops.conv1x1(context, params["0.weight"], params["0.bias"]), 0.0)
    s = gnp.ops.conv1x1(h, params["3.weight"], params["3.bias"])
    return 1.0 / (1.0 + np.exp(-s))
    ### END SOLUTION


# %%
check("se.excitation", excitation)

# %% [markdown]
# ## 4. Scale = fusion by multiplication
#
# **Exercise `se.forward`.** `se_block(x, params)` with `params` an `SEBlock`'s `state_dict` as
# float64 arrays (keys `transform.mul.0.*` and `transform.mul.3.*`) → `(B, C, H, W)`.

# %%
def se_block(x, params):
    """SE block: squeeze -> excitation -> scale."""
    # exercise se.forward: context modelling -> transform -> fusion (mul)
    ### BEGIN SOLUTION
    prefix = "transform.mul."
    sub = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
    return x * excitation(squeeze(x), sub)
    ### END SOLUTION


# %%
check("se.forward", se_block)

# %% [markdown]
# Against the library block (random weights; SE keeps PyTorch's default init, it is not the
# identity at the start):

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
se = SEBlock(32, ratio=1 / 8).double()
x = np.random.default_rng(0).standard_normal((2, 32, 6, 9))
with torch.no_grad():
    theirs = se(torch.from_numpy(x)).numpy()
ours = use_or_fallback(se_block, ref.ref_se_forward, "se_block")(x, gnp.params_from_torch(se))
print("NumPy == gclab.nn:", np.allclose(ours, theirs, rtol=1e-10))

# %% [markdown]
# ## 5. One framework, three blocks
#
# Here is `GlobalContextFramework`'s `forward`, in words (read `gclab/nn/framework.py` for the
# code): `context = self.context_modeling(x)`; one term per entry of the `transform` dict,
# `terms[name] = transform[name](context)`; `fusion(x, add=terms.get("add"),
# mul=terms.get("mul"))`. The named blocks are nothing but subclasses that pick the parts. Build
# all three from parts and compare with the named classes: the `state_dict`s have the same keys
# (so one loads into the other with `strict=True`), and the outputs are equal.

# %%
C, P = 64, 4
assembled = {
    "SNL": GlobalContextFramework(C, AttentionPooling(C), {"add": nn.Conv2d(C, C, 1)}),
    "GC": GlobalContextFramework(C, AttentionPooling(C), {"add": Bottleneck(C, P)}),
    "SE": GlobalContextFramework(
        C, AveragePooling(), {"mul": Bottleneck(C, P, layer_norm=False, zero_init=False)}
    ),
}
named = {"SNL": SimplifiedNonLocal2d(C), "GC": GCBlock(C, 1 / 16), "SE": SEBlock(C, 1 / 16)}

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
x = torch.randn(2, C, 7, 9)
for k in named:
    for p in named[k].parameters():
        nn.init.normal_(p, std=0.2)  # random weights, so that no block is the identity
    assembled[k].load_state_dict(named[k].state_dict(), strict=True)
    with torch.no_grad():
        same = torch.equal(assembled[k](x), named[k](x))
    print(f"{k:4s} keys: {list(named[k].state_dict())[:3]} ...  same output: {same}")

# %% [markdown]
# **Exercise `se.assemble`.** Write `make_se(in_channels, ratio)` that returns an SE block
# **assembled from the framework's parts** (not `SEBlock` itself): pick SE's context modelling,
# its transform (with `planes` = `in_channels` times `ratio`, rounded down; think about the LayerNorm and the
# initialisation) and its fusion. The check loads a random `SEBlock`'s `state_dict` into your
# module with `strict=True` and compares outputs.

# %%
def make_se(in_channels, ratio=1 / 16):
    """SE as GlobalContextFramework(C, <context modelling>, {<fusion>: <transform>})."""
    # exercise se.assemble: one part per step
    ### BEGIN SOLUTION
    planes = int(in_channels * ratio)
    excite = Bottleneck(in_channels, planes, layer_norm=False, zero_init=False)
    return GlobalContextFramework(in_channels, AveragePooling(), {"mul": excite})
    ### END SOLUTION


# %%
check("se.assemble", make_se)

# %% [markdown]
# ## 6. GC with average pooling, *mul* fusion and no LayerNorm **is** SE
#
# `GCBlock` exposes the three choices as arguments: `pooling="att" | "avg"`,
# `fusions=("add",) | ("mul",) | ("add", "mul")`, `layer_norm=True | False`. Set them to SE's
# choices and the two classes are the same function with the same parameters. Not "similar":
# the SE block's `state_dict` loads into the GC block strictly, and the outputs are equal to
# the last bit.

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
se = SEBlock(256, ratio=1 / 16)
gc_as_se = GCBlock(256, ratio=1 / 16, pooling="avg", fusions=("mul",), layer_norm=False)
print("same keys and shapes:",
      {k: tuple(v.shape) for k, v in se.state_dict().items()}
      == {k: tuple(v.shape) for k, v in gc_as_se.state_dict().items()})
gc_as_se.load_state_dict(se.state_dict(), strict=True)
x = torch.randn(2, 256, 14, 10)
with torch.no_grad():
    print("same output:", torch.equal(gc_as_se(x), se(x)))
print(list(se.state_dict()))

# %% [markdown]
# Only the initialisation differs: `GCBlock` zeroes the last conv (a *mul* GC block starts at
# $0.5\,x$), `SEBlock` keeps PyTorch's default (as the original SE). So GC and SE differ in
# exactly three choices, one per step: attention vs average pooling, LayerNorm or not, add vs mul
# fusion. Lesson 7 measures which of them matters.
#
# ## 7. What each choice costs
#
# **Exercise `se.param_count`** (derive it). Go through SE's three steps and count the
# parameters of one SE block at $C$ channels with reduction $r$ ($P = C // r$) as a formula;
# then implement it. The check compares numbers, so on small $C$ it cannot tell a formula
# from a count of a built module; its last case ($C = 10^9 + 7$) is too large to build, so
# only the derived formula passes it.

# %%
# exercise se.param_count: the parameters of one SE block (an int)
def se_param_count(channels, reduction=16):
    ### BEGIN SOLUTION
    p = channels // reduction
    return (channels * p + p) + (p * channels + channels)
    ### END SOLUTION


check("se.param_count", se_param_count)

# %% [markdown]
# <details><summary>Worked derivation (open after your check passes)</summary>
#
# Average pooling and the product have no parameters; the bottleneck has a conv $C \to C/r$
# ($C^2/r$ weights, $C/r$ biases) and a conv $C/r \to C$ ($C^2/r$ weights, $C$ biases): in all
# $2C^2/r + C/r + C$. GC adds $W_k$ ($C + 1$) and the LayerNorm ($2C/r$).
# </details>
#
# SE sits after the last BN of **every** ResNet-50 bottleneck: 3, 4, 6 and 3 bottlenecks in the
# four stages, with 256, 512, 1024 and 2048 output channels.
#
# **Exercise `se.params`.** How many parameters does SE r16 add to a ResNet-50 (an `int`)?

# %%
# exercise se.params: an int, the sum over the 16 bottlenecks
### BEGIN SOLUTION
se_resnet50 = sum(n * se_param_count(c, 16) for c, n in
                  ((256, 3), (512, 4), (1024, 6), (2048, 3)))
### END SOLUTION
check("se.params", se_resnet50)

# %% [markdown]
# The SE paper reports about 2.5 million extra parameters for SE-ResNet-50, beyond the about
# 25 million of ResNet-50 itself. The table below
# puts the blocks side by side at $C = 1024$ on a $14 \times 14$ map (PyTorch's parameter count,
# `FlopCounterMode`'s FLOPs as in lesson 5):

# %%
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

table = {  # block: (context modelling, transform, fusion, module)
    "SNL": ("attention", "conv C->C", "add", SimplifiedNonLocal2d(1024)),
    "GC r16": ("attention", "bottleneck + LN", "add", GCBlock(1024, 1 / 16)),
    "SE r16": ("average", "bottleneck", "mul", SEBlock(1024, 1 / 16)),
}

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'block':8s}{'context modelling':>19s}{'transform':>17s}{'fusion':>8s}"
      f"{'params':>11s}{'FLOPs':>12s}")
for name, (cm, tr, fu, m) in table.items():
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        m(torch.zeros(1, 1024, 14, 14))
    n = sum(p.numel() for p in m.parameters())
    print(f"{name:8s}{cm:>19s}{tr:>17s}{fu:>8s}{n:>11,d}{counter.get_total_flops():>12,d}")

# %% [markdown]
# ## Summary
# * SE = **context modelling** by average pooling (squeeze) → **transform** by a bottleneck
#   without LayerNorm, then a sigmoid (excitation) → **fusion** by multiplication (scale).
# * SNL, GC and SE are three choices of parts in one `GlobalContextFramework`; their
#   `state_dict`s have the same layout, so weights move between the named block and the
#   assembled one.
# * `GCBlock(C, r, pooling="avg", fusions=("mul",), layer_norm=False)` **is** `SEBlock(C, r)`:
#   same keys, same output.
# * GC costs $C + 1 + 2C/r$ parameters more than SE per block (the attention's $W_k$ and the
#   LayerNorm), and $O(NC)$ FLOPs for the attention pooling.
#
# Next, lesson 7: the ablation table — which of the three choices actually helps.
