# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 0 — Long-range dependency and receptive fields
#
# A convolution is **local**: a $3\times3$ kernel mixes each pixel with its 8 neighbours. To relate
# two pixels far apart, a CNN stacks layers, and the hope is that the stack "sees" the whole image.
# In this lesson you measure how far a stack of convolutions really sees — first on paper (the
# *theoretical* receptive field), then with autograd (the *effective* receptive field of Luo et
# al., 2016) — and find that the answer is much shorter than the paper answer. That gap is the
# motivation of the whole course: Non-local, GC and SE blocks give every position a direct path to
# every other one.
#
# **Learning objectives.** After this lesson you can
# 1. compute the theoretical receptive field (TRF) of any stack of convolutions and poolings;
# 2. measure the effective receptive field (ERF) of a network with one backward pass;
# 3. explain why the ERF grows like $\sqrt{L}$ while the TRF grows like $L$, and what that means
#    for long-range dependencies.
#
# **Expected time:** 30–40 minutes. **Runs in:** under 40 s on a laptop CPU.
#
# **Assumes:** NumPy arrays, what a 2-D convolution computes (kernel, stride, padding), and
# PyTorch basics (`nn.Conv2d`, `torch.autograd.grad`).
#
# **How the exercises work.** Code between the markers is yours to write. Each exercise ends with
# `check("<id>", your_function)`: it runs your code and a reference on several random shapes and
# seeds, compares them by relative error, and tells you which checks ran and, when it can, which
# mistake your output matches. Stuck? `hint("<id>", level=1)` (levels 1–3 go from concept to
# shapes to pseudo-code).
#
# **Run All** in your copy runs until the first cell that needs an answer you have not written
# yet (a value exercise, or a cell that uses your function on its own): the stub's
# `NotImplementedError` stops it there. Checks of unfinished exercises just say "not yet
# implemented", and cells that only demonstrate run on gclab's implementation until yours is
# done, and say so ("(your ... is not done yet: using gclab's)").

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from gclab.course import figures
from gclab.exercises import catalog, check, hint
from gclab.exercises.lessons import nb00_receptive_fields as ref  # gclab's answers, for the figures
from gclab.exercises.fallback import use_or_fallback
from gclab.exercises.lessons.nb00_receptive_fields import conv_stack

torch.manual_seed(0)
catalog(notebook="00_receptive_fields")

# %% [markdown]
# ## 1. The theoretical receptive field
#
# The receptive field of an output unit is the set of input pixels that *can* influence it. Take
# $L$ layers; layer $l$ has kernel size $k_l$ and stride $s_l$. Two facts to build on:
#
# * a layer with kernel $k$ widens the field by $k - 1$ *steps* of its input;
# * one step at the input of layer $l$ is as wide, in input pixels, as the *jump* $j_l$: how far
#   apart two neighbouring units of that layer's input are. Before the first layer it is 1 pixel;
#   every stride multiplies it.
#
# **Exercise `rf.theoretical`** (derive first). Start from one pixel ($r_0 = 1$) and write how
# $r$ and $j$ change through layer $l$; turn that into a loop. Test your rule by hand: three
# stride-1 $3\times3$ convs see 7 pixels; with stride 2 everywhere, 15.

# %%
# exercise rf.theoretical: return r_L for lists of kernel sizes and strides (one int)
def theoretical_rf(kernels, strides):
    ### BEGIN SOLUTION
    r, jump = 1, 1
    for k, s in zip(kernels, strides):
        r += (k - 1) * jump
        jump *= s
    return r
    ### END SOLUTION


check("rf.theoretical", theoretical_rf)

# %% [markdown]
# <details><summary>Worked derivation (open after your check passes)</summary>
#
# Layer $l$ adds $k_l - 1$ steps of width $j_l = \prod_{i<l} s_i$, so
#
# $$ r_L \;=\; 1 + \sum_{l=1}^{L} (k_l - 1)\, \prod_{i=1}^{l-1} s_i . $$
#
# The $1$ is the centre pixel itself. For $L$ stride-1 $3\times3$ convs, $r_L = 2L + 1$: linear
# in depth.
# </details>
#
# A quick table (this cell's output is compared in CI, so it must stay exactly the same):
# three $3\times3$ convs, then the first stage of a ResNet (a $7\times7$ stride-2 conv and a
# $3\times3$ stride-2 max-pool) followed by $3\times3$ convs.

# %%
# NBVAL_CHECK_OUTPUT
trf = use_or_fallback(theoretical_rf, ref.theoretical_rf, "theoretical_rf")  # yours once done
for depth in (1, 2, 3, 5, 10):
    plain = trf([3] * depth, [1] * depth)
    stem = trf([7, 3] + [3] * depth, [2, 2] + [1] * depth)
    print(f"{depth:2d} 3x3 convs: TRF {plain:3d} pixels; after a ResNet stem: {stem:3d} pixels")

# %% [markdown]
# Strides multiply the growth: after the stem every $3\times3$ conv adds $2 \times 4 = 8$ pixels.
# How deep must a plain stride-1 stack be to cover a whole image?
#
# **Exercise `rf.layers_to_cover`.** Write the field of $L$ stride-1 layers of kernel $k$ (your
# rule above, with every stride 1), and solve for the smallest $L$ whose field reaches `size`
# pixels. Mind sizes that no whole number of layers hits exactly.

# %%
# exercise rf.layers_to_cover: smallest depth L whose TRF covers `size` pixels (one int)
def layers_to_cover(size, kernel=3):
    ### BEGIN SOLUTION
    return math.ceil((size - 1) / (kernel - 1))
    ### END SOLUTION


check("rf.layers_to_cover", layers_to_cover)

# %% [markdown]
# <details><summary>Worked derivation (open after your check passes)</summary>
#
# $$ L^\star = \min\{L : 1 + L(k-1) \ge \text{size}\} = \left\lceil \frac{\text{size} - 1}{k - 1}
# \right\rceil $$
# </details>
#
# For a $224\times224$ image that is 112 stride-1 $3\times3$ layers. On paper, a deep enough
# network sees everything. The next sections ask how much of that field is *used*.
#
# ## 2. The effective receptive field, in 1-D, by hand
#
# Luo et al. (2016) define the **effective receptive field** (ERF) of an output unit $y_\star$ as the
# magnitude of its gradient with respect to each input pixel,
#
# $$ \mathrm{ERF}(i) \;\propto\; \left| \frac{\partial y_\star}{\partial x_i} \right| . $$
#
# Take a 1-D stack of convolutions whose weights are all ones. Back-propagating through one layer
# spreads each gradient uniformly over $k$ inputs, so the gradient after $L$ layers is the
# $L$-fold convolution of a box of width $k$ with itself — a discrete bell curve. By the central
# limit theorem it approaches a Gaussian whose variance is $L$ times the variance of one box:
# its **width grows like $\sqrt{L}$**. (You will derive that variance right after building the
# curve.)

# %%
# exercise rf.erf_1d: the normalised ERF of `depth` all-ones 1-D convs of width `kernel`
def erf_1d(depth, kernel=3):
    ### BEGIN SOLUTION
    g = np.ones(1)
    for _ in range(depth):
        g = np.convolve(g, np.ones(kernel))
    return g / g.sum()
    ### END SOLUTION


check("rf.erf_1d", erf_1d)

# %% [markdown]
# **Exercise `rf.erf_variance`** (derive it). One all-ones layer of width $k$ spreads a gradient
# evenly over $k$ neighbouring offsets centred on 0 ($-1, 0, 1$ for $k = 3$). What is the
# variance of that distribution, as a function of $k$? What is it after `depth` layers?
# Return it as a float, then compare it with the variance of your `erf_1d` array.
# The check compares numbers, so on small sizes it cannot tell a formula from a variance
# measured on an array; its last case (depth $10^9$, $k = 10^{12} + 1$) is too large for any
# array, so only the derived closed form passes it.

# %%
# exercise rf.erf_variance: the variance (in pixels squared) of the 1-D ERF, in closed form
def erf_variance(depth, kernel=3):
    ### BEGIN SOLUTION
    return depth * (kernel**2 - 1) / 12
    ### END SOLUTION


check("rf.erf_variance", erf_variance)

# %% [markdown]
# <details><summary>Worked derivation (open after your check passes)</summary>
#
# One box puts probability $1/k$ on the offsets $-m, \dots, m$ with $k = 2m + 1$ (for even
# $k$ the offsets are half-integers; the result is the same). Its mean is 0 and its variance
# $\sigma_k^2 = \frac{1}{k}\sum_i i^2 = \frac{k^2 - 1}{12}$ (the discrete uniform; a
# continuous box of width $k$ would give $k^2/12$). Convolving distributions adds independent
# offsets, and variances of independent offsets add: after $L$ layers the variance is
# $L\,\sigma_k^2 = L (k^2 - 1)/12$, so the width grows like $\sqrt{L}$.
# </details>

# %%
box_erf = use_or_fallback(erf_1d, ref.erf_1d, "erf_1d")  # yours once done
fig, ax = plt.subplots(figsize=(7, 3))
for depth in (1, 2, 4, 8, 16):
    g = box_erf(depth)
    offsets = np.arange(len(g)) - len(g) // 2
    ax.plot(offsets, g, marker=".", label=f"L = {depth}")
ax.set(xlabel="input offset from the centre pixel", ylabel="ERF weight",
       title="1-D ERF of L box filters: the TRF grows by 2 per layer, the bulk much slower")
ax.legend()
plt.show()

# %% [markdown]
# ## 3. The effective receptive field of a real network, with autograd
#
# For a 2-D network $y = f(x)$ with $x \in \mathbb{R}^{1\times C\times H\times W}$, pick the
# centre output $y_\star = \sum_{c} y_{c, \lfloor H/2\rfloor, \lfloor W/2\rfloor}$ (summed over the
# output channels $c$) and compute
#
# $$ \mathrm{ERF}(i, j) \;=\; \frac{\sum_{c} |\partial y_\star / \partial x_{c,i,j}|}
# {\sum_{c,i',j'} |\partial y_\star / \partial x_{c,i',j'}|} . $$
#
# One backward pass gives the whole map. Note the gradient is taken with respect to the
# **input**, not the weights, and of **one** output, not the sum of all outputs.

# %%
# exercise rf.erf: the normalised ERF map (H, W) of the centre output of `net` at input x
def effective_rf(net, x):
    ### BEGIN SOLUTION
    x = x.detach().clone().requires_grad_(True)
    y = net(x)
    h, w = y.shape[-2:]
    (grad,) = torch.autograd.grad(y[0, :, h // 2, w // 2].sum(), x)
    erf = grad.abs().sum(dim=(0, 1))
    return (erf / erf.sum()).numpy()
    ### END SOLUTION


check("rf.erf", effective_rf)

# %% [markdown]
# Now look at the ERF of stacks of random $3\times3$ convs with ReLUs (`conv_stack` builds one:
# 8 channels, He-initialised random weights, float64), averaged over a few random networks and
# inputs as Luo et al. do. The dashed square is the theoretical receptive field.

# %%
SIZE = 61  # input is SIZE x SIZE, large enough for the TRF of 24 layers (49 pixels)
erf_of = use_or_fallback(effective_rf, ref.effective_rf, "effective_rf")  # yours once done


def mean_erf(depth, n_nets=4, channels=8):
    maps = []
    for seed in range(n_nets):
        net = conv_stack(depth, channels, relu=True, seed=seed)
        x = torch.randn(1, channels, SIZE, SIZE, dtype=torch.float64)
        maps.append(erf_of(net, x))
    return np.mean(maps, axis=0)


DEPTHS = [1, 2, 4, 8, 16, 24]
erfs = {depth: mean_erf(depth) for depth in DEPTHS}


# %%
figures.erf_grid(erfs, SIZE, trf)

# %% [markdown]
# The bright region grows, but far more slowly than the dashed square. To put a number on it,
# measure the **radius** of an ERF map: treat the normalised map $p$ as a distribution over
# pixels and take the root-mean-square distance from the centre $(c_i, c_j) = (\lfloor H/2
# \rfloor, \lfloor W/2 \rfloor)$:
#
# $$ \sigma = \sqrt{\sum_{i,j} p_{ij} \left( (i - c_i)^2 + (j - c_j)^2 \right)}, \qquad
# p = g / \textstyle\sum g . $$

# %%
# exercise rf.erf_std: the RMS radius (a float) of a non-negative map g (H, W) around its centre
def erf_std(g):
    ### BEGIN SOLUTION
    h, w = g.shape
    p = g / g.sum()
    i, j = np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2, indexing="ij")
    return float(np.sqrt((p * (i**2 + j**2)).sum()))
    ### END SOLUTION


check("rf.erf_std", erf_std)

# %% [markdown]
# ## 4. Linear versus square-root growth
#
# If a size grows like $r \approx c\,L^{a}$, then $\log r = a \log L + \log c$: a straight line
# of slope $a$ on log-log axes. Fit that slope by least squares.

# %%
# exercise rf.growth_exponent: the slope a of log(sizes) = a log(depths) + b
def growth_exponent(depths, sizes):
    ### BEGIN SOLUTION
    return float(np.polyfit(np.log(depths), np.log(sizes), 1)[0])
    ### END SOLUTION


check("rf.growth_exponent", growth_exponent)

# %%
depths = np.array(DEPTHS, dtype=float)
radius = use_or_fallback(erf_std, ref.erf_std, "erf_std")
slope = use_or_fallback(growth_exponent, ref.growth_exponent, "growth_exponent")
trf_sizes = np.array([trf([3] * d, [1] * d) for d in DEPTHS], dtype=float)
trf_radius = (trf_sizes - 1) / 2  # pixels from the centre to the edge of the TRF: L
erf_radius = np.array([radius(erfs[d]) for d in DEPTHS])
print(f"growth exponent: TRF {slope(depths, trf_radius):.2f}, "
      f"ERF {slope(depths, erf_radius):.2f}")
figures.erf_growth(depths, trf_radius, erf_radius)

# %% [markdown]
# The TRF has slope 1 (linear growth); the measured ERF has a slope well below 1, close to
# $\tfrac12$ — the $\sqrt{L}$ law, which holds exactly for the box filters of section 2 and
# asymptotically for random networks (ReLUs and a few averaged samples bend it a little at small
# depths). Doubling the depth only multiplies the distance a network *effectively* looks by
# about $1.4$, and the fraction of the TRF that matters keeps shrinking. (Luo et al. also show that
# training widens the ERF somewhat, and that strides and dilation help — they multiply the TRF —
# but the Gaussian shape stays.)
#
# ## 5. One global operation sees everything
#
# Compare with a layer that adds a **global context** to every position — here the simplest one,
# the average over all positions (the *context modelling* step of an SE block, which lesson 6
# builds). One such layer connects the centre output to every input pixel directly.

# %%
class GlobalContextAdd(nn.Module):
    """y = conv(x) + mean over all positions of x (broadcast to every position)."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1).double()

    def forward(self, x):
        return self.conv(x) + x.mean(dim=(2, 3), keepdim=True)


# %%
x = torch.randn(1, 2, SIZE, SIZE, dtype=torch.float64)
global_erf = erf_of(GlobalContextAdd(2), x)
figures.erf_compare(erfs[24], global_erf)
print(f"pixels with a non-zero gradient: 24 convs {np.mean(erfs[24] > 0):.0%}, "
      f"one global-context layer {np.mean(global_erf > 0):.0%}")

# %% [markdown]
# After a single layer every input pixel has a non-zero gradient. That is the idea the rest of
# the course develops: **Non-local** blocks (lessons 1–3) compute a weighted global context for
# every position, **Simplified NL** and **GC** (lessons 4–5) share one context across positions
# at a fraction of the cost, and **SE** (lesson 6) turns out to be the same three-step framework
# with average pooling.
#
# ## Summary
# - TRF: $r_L = 1 + \sum_l (k_l - 1)\prod_{i<l} s_i$ — linear in depth for stride-1 stacks.
# - ERF: $|\partial y_{\text{centre}} / \partial x|$, one backward pass; close to a Gaussian whose
#   radius grows like $\sqrt{L}$, so deep conv stacks use a shrinking fraction of their TRF.
# - A global-context operation reaches every position in one layer.
#
# **Check yourself:** which exercises of this lesson did you pass? `catalog("00_receptive_fields")`
# lists them; `gclab grade notebooks/00_receptive_fields.ipynb` grades the whole notebook.
