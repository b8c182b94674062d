r"""Exercises of lesson 00, long-range dependency and receptive fields (topic ``rf.``).

How far does a stack of convolutions see? Two answers:

* the theoretical receptive field (TRF) of layers with kernels :math:`k_l` and strides
  :math:`s_l`,

  .. math::

      r_L = 1 + \sum_{l=1}^{L} (k_l - 1) \prod_{i=1}^{l-1} s_i ,

  which grows linearly with depth for a stack of 3x3 stride-1 convs (:math:`r_L = 2L + 1`);
* the effective receptive field (ERF, Luo et al. 2016): the magnitude of the gradient of one
  centre output with respect to every input pixel,
  :math:`\mathrm{ERF}(i, j) \propto \bigl|\partial y_{c} / \partial x_{ij}\bigr|`, which is close
  to a Gaussian whose radius grows only like :math:`\sqrt{L}`.

The references here are written independently of the notebook (direct formulas, ``np.convolve``,
``torch.autograd``); every mistake variant is a plausible slip a learner makes.
"""

from __future__ import annotations

import math
from typing import List, Sequence

import numpy as np
import torch
from torch import nn

from gclab.exercises.lessons.common import COUNT, count_is_int
from gclab.exercises.registry import Case, Exercise, Property, register

NOTEBOOK = "00_receptive_fields"

__all__ = [
    "conv_stack",
    "effective_rf",
    "erf_1d",
    "erf_std",
    "growth_exponent",
    "layers_to_cover",
    "theoretical_rf",
]


# --------------------------------------------------------------------------- references
def theoretical_rf(kernels: Sequence[int], strides: Sequence[int]) -> int:
    r"""Theoretical receptive field :math:`r_L = 1 + \sum_l (k_l - 1)\prod_{i<l} s_i`.

    Example: ``theoretical_rf([3, 3, 3], [1, 1, 1]) == 7``.
    """
    if len(kernels) != len(strides):
        raise ValueError(f"need one stride per kernel, got {len(kernels)} and {len(strides)}")
    r, jump = 1, 1
    for k, s in zip(kernels, strides):
        r += (int(k) - 1) * jump
        jump *= int(s)
    return r


def layers_to_cover(size: int, kernel: int = 3) -> int:
    r"""Smallest depth L of stride-1 ``kernel``-convs with :math:`1 + L(k-1) \ge` ``size``.

    Example: ``layers_to_cover(7) == 3``.
    """
    return max(0, math.ceil((int(size) - 1) / (int(kernel) - 1)))


def erf_1d(depth: int, kernel: int = 3) -> np.ndarray:
    """ERF of ``depth`` 1-D convs whose weights are all ones: the ``depth``-fold convolution of
    a box of width ``kernel``, normalised to sum 1; length ``1 + depth*(kernel-1)``.

    Example: ``erf_1d(2) == [1, 2, 3, 2, 1] / 9``.
    """
    g = np.ones(1)
    for _ in range(int(depth)):
        g = np.convolve(g, np.ones(int(kernel)))
    return g / g.sum()


def effective_rf(net: nn.Module, x: torch.Tensor) -> np.ndarray:
    r"""Effective receptive field of the centre output of ``net`` at input ``x`` (1, C, H, W).

    :math:`\mathrm{ERF}_{ij} = \sum_c |\partial (\sum_{c'} y_{c', H//2, W//2}) /
    \partial x_{c,i,j}|`, normalised to sum 1; returns a float64 array (H, W).
    """
    x = x.detach().clone().requires_grad_(True)
    y = net(x)
    h, w = y.shape[-2:]
    (grad,) = torch.autograd.grad(y[0, :, h // 2, w // 2].sum(), x)
    erf = grad.abs().sum(dim=(0, 1))
    return (erf / erf.sum()).detach().numpy().astype(np.float64)


def erf_std(g: np.ndarray) -> float:
    r"""Radius of an ERF map: the RMS distance of its mass from the centre (H//2, W//2).

    :math:`\sigma = \sqrt{\sum_{ij} p_{ij}\,\bigl((i - H/\!/2)^2 + (j - W/\!/2)^2\bigr)}`,
    :math:`p = g / \sum g`.
    """
    g = np.asarray(g, dtype=np.float64)
    h, w = g.shape
    p = g / g.sum()
    i, j = np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2, indexing="ij")
    return float(np.sqrt((p * (i**2 + j**2)).sum()))


def growth_exponent(depths: Sequence[float], sizes: Sequence[float]) -> float:
    r"""Slope a of the least-squares line :math:`\log r = a \log L + b` (size ~ depth^a)."""
    return float(np.polyfit(np.log(depths), np.log(sizes), 1)[0])


def conv_stack(depth: int, channels: int = 1, relu: bool = False, seed: int = 0) -> nn.Module:
    r"""``depth`` 3x3 stride-1 convs (padding 1, bias), float64, each followed by a ReLU when
    ``relu``; weights normal with He's std :math:`\sqrt{2 / (9 C)}`, biases normal with std 0.1.

    Example: ``conv_stack(4, channels=8, relu=True)(torch.randn(1, 8, 32, 32).double())``.
    """
    gen = torch.Generator().manual_seed(int(seed))
    std = math.sqrt(2.0 / (9 * int(channels)))
    layers: List[nn.Module] = []
    for _ in range(int(depth)):
        conv = nn.Conv2d(channels, channels, 3, padding=1).double()
        with torch.no_grad():
            w = torch.randn(conv.weight.shape, generator=gen, dtype=torch.float64)
            conv.weight.copy_(w * std)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen, dtype=torch.float64) * 0.1)
        layers.append(conv)
        if relu:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- mistakes
def _rf_no_centre(kernels, strides):
    return theoretical_rf(kernels, strides) - 1


def _rf_no_strides(kernels, strides):
    return 1 + sum(int(k) - 1 for k in kernels)


def _rf_own_stride(kernels, strides):
    r, jump = 1, 1
    for k, s in zip(kernels, strides):
        jump *= int(s)
        r += (int(k) - 1) * jump
    return r


def _erf_1d_extra(depth, kernel=3):
    return erf_1d(int(depth) + 1, kernel)


def _erf_1d_unnormalised(depth, kernel=3):
    g = np.ones(1)
    for _ in range(int(depth)):
        g = np.convolve(g, np.ones(int(kernel)))
    return g


def _erf_all_outputs(net, x):
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(x).sum(), x)
    erf = grad.abs().sum(dim=(0, 1))
    return (erf / erf.sum()).detach().numpy()


def _erf_swapped_centre(net, x):
    x = x.detach().clone().requires_grad_(True)
    y = net(x)
    h, w = y.shape[-2:]
    (grad,) = torch.autograd.grad(y[0, :, w // 2, h // 2].sum(), x)
    erf = grad.abs().sum(dim=(0, 1))
    return (erf / erf.sum()).detach().numpy()


def _erf_no_abs(net, x):
    x = x.detach().clone().requires_grad_(True)
    y = net(x)
    h, w = y.shape[-2:]
    (grad,) = torch.autograd.grad(y[0, :, h // 2, w // 2].sum(), x)
    erf = grad.sum(dim=(0, 1))
    return (erf / erf.sum()).detach().numpy()


def _std_variance(g):
    return erf_std(g) ** 2


def _std_unnormalised(g):
    g = np.asarray(g, dtype=np.float64)
    h, w = g.shape
    i, j = np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2, indexing="ij")
    return float(np.sqrt((g * (i**2 + j**2)).sum()))


def _std_corner(g):
    g = np.asarray(g, dtype=np.float64)
    h, w = g.shape
    p = g / g.sum()
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return float(np.sqrt((p * (i**2 + j**2)).sum()))


# --------------------------------------------------------------------------- cases
def _rf_cases(rng: np.random.Generator) -> List[Case]:
    cases = [Case(args=([3, 3, 3], [1, 1, 1]), label="three 3x3 convs")]
    for n in (3, 5):
        kernels = [int(k) for k in rng.choice([3, 5, 7], size=n)]
        strides = [int(s) for s in rng.choice([1, 2], size=n)]
        strides[0] = 2  # a stride before later layers: the product matters
        kernels[1] = 3  # ... and a layer after it that sees the jump
        cases.append(Case(args=(kernels, strides), label=f"{n} layers, kernels {kernels}"))
    return cases


def _cover_cases(rng: np.random.Generator) -> List[Case]:
    return [
        Case(args=(33,), label="size 33"),
        Case(args=(224,), label="size 224"),
        Case(args=(int(rng.integers(10, 200)), 5), label="random size, kernel 5"),
        Case(args=(2 * int(rng.integers(5, 50)) + 1,), label="random odd size"),
    ]


def _erf_1d_cases(rng: np.random.Generator) -> List[Case]:
    return [
        Case(args=(1,), label="depth 1"),
        Case(args=(int(rng.integers(2, 8)),), label="random depth"),
        Case(args=(int(rng.integers(2, 6)), 5), label="random depth, kernel 5"),
    ]


def _erf_cases(rng: np.random.Generator) -> List[Case]:
    cases = []
    # odd and even sizes, H != W, one channel: a centre half a pixel off fails on even maps
    for depth, c, h, w, relu in ((2, 2, 13, 9, False), (3, 3, 11, 16, True),
                                 (2, 1, 12, 10, False)):
        net = conv_stack(depth, c, relu=relu, seed=int(rng.integers(2**31)))
        x = torch.as_tensor(rng.standard_normal((1, c, h, w)))
        cases.append(
            Case(args=(net, x), label=f"{depth} convs{' + ReLU' if relu else ''}, x {h}x{w}")
        )
    return cases


def _std_cases(rng: np.random.Generator) -> List[Case]:
    return [
        Case(args=(rng.random((9, 13)) * 5.0,), label="random 9x13 map"),
        Case(args=(rng.random((8, 12)) * 5.0,), label="random 8x12 map (even sizes)"),
        Case(args=(rng.random((10, 7)) * 5.0,), label="random 10x7 map"),
        Case(args=(np.outer(erf_1d(3), erf_1d(4)) * 3.0,), label="binomial 7x9 map"),
    ]


def _growth_cases(rng: np.random.Generator) -> List[Case]:
    depths = np.arange(1, 9, dtype=np.float64)
    a = float(rng.uniform(0.3, 1.2))
    noise = np.exp(0.05 * rng.standard_normal(depths.shape))
    return [
        Case(args=(depths, 1.0 + 2.0 * depths), label="TRF 1 + 2L"),
        Case(args=(depths, 3.0 * depths**a * noise), label="noisy power law"),
    ]


def _sums_to_one(out, *args, **kwargs):
    total = float(np.sum(out))
    return abs(total - 1.0) < 1e-9, f"sums to {total:.6g}"


def _non_negative(out, *args, **kwargs):
    return bool(np.all(np.asarray(out) >= 0)), "has negative entries"


# --------------------------------------------------------------------------- exercises
register(
    Exercise(
        id="rf.theoretical",
        notebook=NOTEBOOK,
        title="Theoretical receptive field of a conv stack",
        kind="function",
        reference=theoretical_rf,
        cases=_rf_cases,
        rtol=0.0,
        mistakes={
            "off by one: forgot the 1 (the centre pixel itself)": _rf_no_centre,
            "forgot the stride product (strides ignored)": _rf_no_strides,
            "the stride product includes the layer's own stride (use strides of earlier layers)": (
                _rf_own_stride
            ),
        },
        properties=[Property(COUNT, count_is_int)],
        hints=(
            "Each layer widens the field by (k - 1) steps, and one step of layer l is as wide as "
            "the product of the strides of the layers BEFORE it (the 'jump').",
            "Inputs: two lists of ints of the same length L. Output: one int. For kernels [3, 3, "
            "3] with strides [1, 1, 1] the answer is 7; with strides [2, 2, 2] it is 15.",
            "start with a field of 1 pixel and a jump of 1\nwalk the layers in order: widen the "
            "field by (its kernel minus one) jumps,\nthen multiply the jump by its stride\nthe "
            "field after the last layer is the answer",
        ),
    )
)

register(
    Exercise(
        id="rf.layers_to_cover",
        notebook=NOTEBOOK,
        title="How many 3x3 convs to see a whole image",
        kind="function",
        reference=layers_to_cover,
        cases=_cover_cases,
        rtol=0.0,
        mistakes={
            "forgot the centre pixel: solved L (k - 1) >= size instead of 1 + L (k - 1) >= size": (
                lambda size, kernel=3: math.ceil(size / (kernel - 1))
            ),
            "rounded down instead of up (the field is then one step too small)": (
                lambda size, kernel=3: (size - 1) // (kernel - 1)
            ),
        },
        properties=[Property(COUNT, count_is_int)],
        hints=(
            "Invert the field of a stride-1 stack: each layer adds the same number of pixels, so "
            "ask how many such additions it takes to reach the target size.",
            "Input: size (int) and kernel (int, default 3). Output: an int L >= 0; size 1 needs "
            "no layer, and a size that is not reached exactly needs one more layer (round up, not "
            "down).",
            "the pixels still missing are the size minus the one pixel of no layer at all\neach "
            "layer adds (kernel minus one) pixels\ndivide the one by the other and round UP to a "
            "whole number of layers",
        ),
    )
)

register(
    Exercise(
        id="rf.erf_1d",
        notebook=NOTEBOOK,
        title="ERF of a 1-D stack of box filters",
        kind="function",
        reference=erf_1d,
        cases=_erf_1d_cases,
        rtol=1e-10,
        mistakes={
            "one convolution too many (started from the kernel, then convolved depth times)": (
                _erf_1d_extra
            ),
            "not normalised (the weights must sum to 1)": _erf_1d_unnormalised,
        },
        properties=[
            Property("sums to 1", _sums_to_one),
            Property(
                "length equals the theoretical RF",
                lambda out, depth, kernel=3: len(out) == 1 + depth * (kernel - 1),
            ),
        ],
        hints=(
            "Back-propagating through a conv with an all-ones kernel spreads each gradient "
            "uniformly over k inputs; L layers convolve that box with itself L times.",
            "Start from a length-1 array holding 1.0; each full convolution with a length-k box "
            "of ones adds k - 1 entries (depth 2, k 3 gives length 5). Return a float array that "
            "sums to 1.",
            "start from the one-entry array [1]\nrepeat depth times: replace it by its full "
            "convolution with a box of kernel ones\ndivide by its total so that it sums to 1",
        ),
    )
)

register(
    Exercise(
        id="rf.erf",
        notebook=NOTEBOOK,
        title="Effective receptive field by autograd",
        kind="function",
        reference=effective_rf,
        cases=_erf_cases,
        rtol=1e-9,
        mistakes={
            "gradient of the sum of ALL outputs instead of the centre output": _erf_all_outputs,
            "H and W swapped when picking the centre output (use y[0, :, H//2, W//2])": (
                _erf_swapped_centre
            ),
            "forgot the absolute value (positive and negative gradients cancel)": _erf_no_abs,
        },
        properties=[
            Property("sums to 1", _sums_to_one),
            Property("non-negative", _non_negative),
            Property("shape (H, W) of the input", lambda out, net, x: out.shape == x.shape[-2:]),
        ],
        hints=(
            "The ERF is how much each input pixel influences ONE output: the gradient of the "
            "centre output with respect to the input (not the weights), in absolute value.",
            "x is (1, C, H, W) and so is the net's output; the centre output summed over its "
            "channels is one scalar; its gradient with respect to x is (1, C, H, W); sum the "
            "absolute values over batch and channels to get (H, W), then divide by the total. "
            "Return a float64 NumPy array.",
            "make a fresh copy of x that records gradients\nrun the net; pick the output at the "
            "centre row and column (for an even size, the second of the two middle ones), summed "
            "over channels\nask autograd for the gradient of that "
            "scalar with respect to the input copy\nabsolute value, sum over batch and channels, "
            "normalise to total 1, convert to NumPy",
        ),
        time_limit=10.0,
    )
)

register(
    Exercise(
        id="rf.erf_std",
        notebook=NOTEBOOK,
        title="Radius of an ERF map",
        kind="function",
        reference=erf_std,
        cases=_std_cases,
        rtol=1e-10,
        mistakes={
            "forgot the square root (that is the variance, not a radius)": _std_variance,
            "did not normalise the map to sum 1 before weighting the distances": (
                _std_unnormalised
            ),
            "measured distances from the corner (0, 0) instead of the centre": _std_corner,
        },
        hints=(
            "Treat the normalised map as a probability distribution over pixels; its radius is "
            "the root-mean-square distance of that distribution from the centre pixel.",
            "g is (H, W); the centre is pixel (H//2, W//2); build two (H, W) arrays holding every "
            "pixel's row offset and column offset from the centre (a mesh grid in matrix "
            "indexing). One float.",
            "normalise g so that it sums to 1\nfor every pixel: its squared distance from the "
            "centre (row offset squared plus column offset squared), weighted by its "
            "probability\nadd these up and take the square root",
        ),
    )
)

register(
    Exercise(
        id="rf.growth_exponent",
        notebook=NOTEBOOK,
        title="Fit the growth exponent (size ~ depth^a)",
        kind="function",
        reference=growth_exponent,
        cases=_growth_cases,
        rtol=1e-8,
        mistakes={
            "fitted a line on a linear scale (fit log size against log depth)": (
                lambda depths, sizes: float(np.polyfit(depths, sizes, 1)[0])
            ),
            "swapped the axes (fitted log depth against log size)": (
                lambda depths, sizes: float(np.polyfit(np.log(sizes), np.log(depths), 1)[0])
            ),
        },
        hints=(
            "A power law (size proportional to depth to the power a) is a straight line of slope "
            "a when both axes are logarithmic.",
            "depths and sizes are 1-D arrays of the same length; return one float, the slope, not "
            "the intercept.",
            "take the logarithm of both arrays\nfit a straight line (a degree-1 polynomial) of "
            "log size against log depth\nreturn its slope as a float",
        ),
    )
)


# ----------------------------------------------------------------------------- derivations
def erf_variance(depth: int, kernel: int = 3) -> float:
    """Variance (in pixels squared) of the 1-D ERF of ``depth`` all-ones convs of width
    ``kernel``: the sum of ``depth`` independent discrete uniforms on ``kernel`` points."""
    return depth * (kernel**2 - 1) / 12


def _values_variance(depth: int, kernel: int = 3) -> float:
    """The variance of the ERF's values (a mistake): exact where the ERF can be built, and
    beyond that from the local limit theorem, sum of g^2 ~ 1 / (2 sqrt(pi) sigma)."""
    n = depth * (kernel - 1) + 1
    if n <= 10**6:
        return float(np.var(erf_1d(depth, kernel)))
    sigma = math.sqrt(erf_variance(depth, kernel))
    return 1 / (2 * math.sqrt(math.pi) * sigma * n) - 1 / n**2


def _mean_square_from(first: int, kernel: int) -> float:
    """The mean of the squares of the ``kernel`` integers ``first, first + 1, ...``."""
    a, k = first, kernel
    return (k * a * a + a * k * (k - 1) + (k - 1) * k * (2 * k - 1) // 6) / k


def _variance_cases(rng: np.random.Generator) -> List[Case]:
    pairs = [(1, 3), (4, 3), (3, 5), (10, 7), (2, 2), (5, 4)]
    extra = (int(rng.integers(2, 30)), int(rng.integers(2, 9)))
    cases = [Case(args=(d, k), label=f"depth {d}, kernel {k}") for d, k in pairs + [extra]]
    # the derivation itself: no ERF array of this size can be built or enumerated (so every
    # mistake registered here is a closed form too: mistakes run on this case as well)
    cases.append(Case(args=(10**9, 10**12 + 1), label="depth 1e9, kernel 1e12 + 1 (too large "
                      "to convolve or enumerate: only the closed form gets there)",
                      closed_form="at depth 1e9 and kernel 1e12 + 1 neither the ERF (1e21 "
                      "pixels) nor the 1e12 offsets of one layer can be built, convolved or "
                      "looped over"))
    return cases


register(
    Exercise(
        id="rf.erf_variance",
        notebook=NOTEBOOK,
        title="Derive the variance of the 1-D ERF",
        reference=erf_variance,
        cases=_variance_cases,
        rtol=1e-12,
        mistakes={
            "variance of a continuous box of width k (k^2 / 12), not of k discrete points": (
                lambda depth, kernel=3: depth * kernel**2 / 12
            ),
            "one layer's variance: the depth left out": (
                lambda depth, kernel=3: (kernel**2 - 1) / 12
            ),
            "the width (standard deviation) grows linearly: depth squared": (
                lambda depth, kernel=3: depth**2 * (kernel**2 - 1) / 12
            ),
            "integer division (// 12): the variance truncated to a whole number": (
                lambda depth, kernel=3: depth * (kernel**2 - 1) // 12
            ),
            "the variance of the ERF map's values (how its heights spread), not of the offsets": (
                _values_variance
            ),
            "ddof=1 on the k offsets: a sample variance where the k offsets are the whole "
            "population": (
                lambda depth, kernel=3: depth * kernel * (kernel + 1) / 12
            ),
            "the kernel hard-coded to 3 (the formula ignores the kernel argument)": (
                lambda depth, kernel=3: depth * 8 / 12
            ),
            "offsets from -k//2: (-k)//2 rounds down, so the offsets are not centred on 0": (
                lambda depth, kernel=3: depth * _mean_square_from(-kernel // 2, kernel)
            ),
        },
        properties=[Property("a number", lambda out, *a, **k: np.ndim(out) == 0)],
        hints=(
            "Each all-ones layer spreads a gradient uniformly over k neighbouring pixels: one "
            "layer is a discrete uniform distribution of offsets. Convolving distributions adds "
            "independent random offsets, and variances of independent offsets add.",
            "One layer: the offsets are k equally likely values one apart, centred on 0 (for k 3: "
            "-1, 0, 1; for k 2: -1/2, 1/2). Find the variance of that distribution as a "
            "function of k (the mean of the squared offsets, since the mean is 0), then account "
            "for depth layers. One float.",
            "variance of one box: the average of the squared offsets from the centre (the sum of "
            "consecutive squares has a closed form)\nthe depth layers are independent: multiply "
            "by the depth\ncheck your formula against the variance of your erf_1d array",
        ),
    )
)
