r"""Looking inside trained models: attention maps, query independence, parameters, FLOPs, latency.

The query-independence statistic follows the GCNet paper's analysis: for one NL block and one
image, take the N positions of the block's input :math:`x_i`, its output before fusion
:math:`o_i = W_z y_i` and its attention maps :math:`a_i = f(x_i, \cdot)/\mathcal{C}` (one row
of the N x N' attention per query i), and average the cosine distance

.. math::

    d(u, v) = 1 - \frac{u^\top v}{\lVert u\rVert\,\lVert v\rVert}

over all pairs of different positions :math:`i \ne j` (then over images). The paper found
attention-map and output distances near 0 while input distances are large: every query ends up
with (almost) the same global context.

Example::

    >>> import torch
    >>> cosine_distance(torch.tensor([[1., 0.]]), torch.tensor([[0., 1.]]))
    tensor([1.])
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from typing import Dict, Iterable, List, Sequence, Tuple

import torch
from torch import Tensor, nn

from gclab.nn import GCBlock, NonLocal2d, SEBlock, SimplifiedNonLocal2d
from gclab.nn.framework import GlobalContextFramework

BLOCK_TYPES = (NonLocal2d, SimplifiedNonLocal2d, GCBlock, SEBlock, GlobalContextFramework)


# --------------------------------------------------------------------------- capture
def find_blocks(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """[(qualified name, module)] of every NL/SNL/GC/SE block inside ``model``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, BLOCK_TYPES)]


@torch.no_grad()
def capture(model: nn.Module, x: Tensor, block: nn.Module) -> Tuple[Tensor, Tensor]:
    """Run ``model(x)`` in eval mode and return ``block``'s (input, output), both (B, C, H, W)."""
    seen: Dict[str, Tensor] = {}

    def hook(_m, args, out):
        seen["in"], seen["out"] = args[0].detach(), out.detach()

    handle = block.register_forward_hook(hook)
    try:
        model.eval()
        model(x)
    finally:
        handle.remove()
    if "in" not in seen:
        raise ValueError("the block was not called by model(x); is it part of the model?")
    return seen["in"], seen["out"]


@torch.no_grad()
def block_internals(block: nn.Module, x: Tensor) -> Dict[str, Tensor]:
    r"""Attention (B, N, N'), and the output before fusion (B, C, H, W) of a block on input x.

    NL: attention :math:`f(x_i, x_j)/\mathcal{C}` and ``transform(y)`` (:math:`W_z y`);
    SNL/GC/SE: the shared weights alpha expanded to (B, N, N), and what the transform hands to
    fusion, broadcast to every position: the ``add`` term and/or the ``mul`` gate
    :math:`\sigma(\delta_{mul}(c))` (stacked along channels when both are used).
    """
    if isinstance(block, NonLocal2d):
        y, attention = block.context_modeling(x)
        return {"attention": attention, "output": block.transform(y)}
    if isinstance(block, GlobalContextFramework):
        context, alpha = block.context_modeling.forward_with_attention(x)
        n = alpha.shape[1]
        terms = [block.transform["add"](context)] if "add" in block.fusions else []
        if "mul" in block.fusions:
            terms.append(torch.sigmoid(block.transform["mul"](context)))
        term = torch.cat(terms, dim=1)  # (B, C or 2C, 1, 1): the same for every position
        return {"attention": alpha.unsqueeze(1).expand(alpha.shape[0], n, n),
                "output": term.expand(-1, -1, *x.shape[2:])}
    raise TypeError(f"expected a NonLocal2d or a GlobalContextFramework, got {type(block)}")


# --------------------------------------------------------------------------- statistics
def cosine_distance(u: Tensor, v: Tensor, eps: float = 1e-12) -> Tensor:
    r""":math:`1 - \cos(u, v)` along the last dim; shapes (..., D) -> (...).

    A zero vector has no direction: by convention its cosine with anything is 0, so its
    distance is 1 (a dead block whose attention rows are all 0 therefore scores 1, which means
    "undefined", not "query-dependent").
    """
    if u.shape != v.shape:
        raise ValueError(f"u and v must have the same shape, got {tuple(u.shape)}, "
                         f"{tuple(v.shape)}")
    num = (u * v).sum(-1)
    den = u.norm(dim=-1) * v.norm(dim=-1)
    return 1.0 - num / den.clamp_min(eps)


def mean_pairwise_cosine_distance(vectors: Tensor) -> Tensor:
    r"""Mean of :math:`1 - \cos(v_i, v_j)` over ordered pairs :math:`i \ne j`.

    vectors: (B, N, D) (N vectors per image) -> (B,). Needs N >= 2. Zero vectors count as
    distance 1 from everything (see :func:`cosine_distance`).
    """
    if vectors.dim() != 3 or vectors.shape[1] < 2:
        raise ValueError(f"expected (B, N, D) with N >= 2, got {tuple(vectors.shape)}")
    unit = vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = unit @ unit.transpose(1, 2)  # (B, N, N)
    n = vectors.shape[1]
    off = cos.sum((1, 2)) - cos.diagonal(dim1=1, dim2=2).sum(1)
    return 1.0 - off / (n * (n - 1))


@torch.no_grad()
def query_independence(model: nn.Module, x: Tensor, block: nn.Module | None = None
                       ) -> Dict[str, float]:
    r"""The GCNet statistic for one block of a trained model, averaged over the images x.

    Returns ``{"input": ..., "output": ..., "attention": ...}``: the mean pairwise cosine
    distance between positions of the block's input :math:`x_i` (C-vectors), its output before
    fusion :math:`o_i` (C-vectors) and its attention maps :math:`a_i` (N'-vectors).
    ``block`` defaults to the model's first NL block.
    """
    if block is None:
        nls = [m for _, m in find_blocks(model) if isinstance(m, NonLocal2d)]
        if not nls:
            raise ValueError("model has no NonLocal2d block; pass block= explicitly")
        block = nls[0]
    inp, _ = capture(model, x, block)
    parts = block_internals(block, inp)
    b, c = inp.shape[:2]
    stats = {
        "input": mean_pairwise_cosine_distance(inp.reshape(b, c, -1).transpose(1, 2)),
        "output": mean_pairwise_cosine_distance(
            parts["output"].reshape(b, c, -1).transpose(1, 2)),
        "attention": mean_pairwise_cosine_distance(parts["attention"]),
    }
    return {k: float(v.mean()) for k, v in stats.items()}


@torch.no_grad()
def attention_shape_statistics(model: nn.Module, x: Tensor, block: nn.Module
                               ) -> Dict[str, float]:
    r"""What the cosine-distance statistic cannot see: how peaked the maps are.

    Returns ``{"entropy": ..., "centered": ...}`` over the images x: the mean entropy of an
    attention row divided by :math:`\log N'` (1: the uniform map, which an untrained NL
    gives for every query; 0: all weight on one position), and the mean pairwise cosine
    distance between rows after subtracting the uniform row :math:`1/N'` (a learned shared
    map scores near 0; uniform rows plus small query-dependent noise, as at initialisation,
    score near 1). Only for blocks whose rows are distributions (softmax modes, SNL, GC);
    NL's dot-product and concatenation modes normalise by N, not softmax: their rows are
    renormalised to sum to 1 first. A dead block (every weight 0; images with a dead row are
    left out) has no distribution: both are nan.
    """
    inp, _ = capture(model, x, block)
    att = block_internals(block, inp)["attention"].clamp_min(0)
    n_keys = att.shape[-1]
    total = att.sum(-1, keepdim=True)
    alive = total[..., 0] > 1e-12  # (B, N): rows with some weight
    if not bool(alive.all(dim=1).any()):
        nan = float("nan")  # a dead block (every weight 0): no distribution to describe
        return {"entropy": nan, "centered": nan}
    keep = alive.all(dim=1)  # images whose every row has weight
    p = (att / total.clamp_min(1e-12))[keep]
    ent = -(p * p.clamp_min(1e-12).log()).sum(-1) / torch.log(torch.tensor(float(n_keys)))
    centered = mean_pairwise_cosine_distance(p - 1.0 / n_keys)
    return {"entropy": float(ent.mean()), "centered": float(centered.mean())}


@torch.no_grad()
def dead_attention_share(model: nn.Module, x: Tensor, block: nn.Module) -> float:
    r"""Share of the attention rows of ``block`` on the images x (one row per image and
    query) whose every weight is exactly 0.

    Only NL's unnormalised modes can give such rows: concatenation's
    :math:`\mathrm{ReLU}(w_\theta^\top\theta_i + w_\phi^\top\phi_j)` is 0 for every
    key once the sum is negative for every pair, and then no gradient reaches
    :math:`w, \theta, \phi` again (the ReLU passes none), so the rows stay 0 for good. A
    block whose share is 1 is **dead** on these images: :math:`y_i = 0`, its output before
    fusion is the constant :math:`W_z 0 + b` at every position whatever the input, and its
    attention statistics describe nothing (the cosine statistic scores a zero row 1 by the
    zero-vector convention, :func:`attention_shape_statistics` gives nan). A softmax row sums
    to 1: SNL, GC and the softmax modes of NL score 0.
    """
    inp, _ = capture(model, x, block)
    att = block_internals(block, inp)["attention"]
    return float((att.abs().amax(dim=-1) == 0).float().mean())


@torch.no_grad()
def mean_map_accuracy(model: nn.Module, x: Tensor, y: Tensor, block: nn.Module) -> float:
    r"""Accuracy of ``model`` on (x, y) when the Non-local ``block`` gives every query the
    mean of its N attention maps, :math:`\bar a = \frac1N \sum_i a_i` (per image):
    :math:`z_i = x_i + W_z \sum_j \bar a_j g(x_j)` for every i -- what SNL computes with NL's
    own trained weights. For softmax modes :math:`\bar a` is still a distribution."""
    from gclab.experiments.train import accuracy

    if not isinstance(block, NonLocal2d):
        raise TypeError(f"mean_map_accuracy needs a NonLocal2d, got {type(block).__name__}")

    def shared(_m, args, _out):
        inp = args[0]
        theta_x, phi_x, g_x = block.embed(inp)
        a = block.pairwise(theta_x, phi_x).mean(dim=1, keepdim=True)
        yv = torch.bmm(a, g_x).expand(-1, theta_x.shape[1], -1)
        yv = yv.transpose(1, 2).reshape(inp.shape[0], block.inter_channels, *inp.shape[2:])
        return inp + block.transform(yv)

    handle = block.register_forward_hook(shared)
    try:
        return accuracy(model, x, y)
    finally:
        handle.remove()


# --------------------------------------------------------------------------- attention maps
@torch.no_grad()
def attention_maps(model: nn.Module, image: Tensor, queries: Sequence[Tuple[int, int]],
                   block: nn.Module | None = None) -> Tuple[Tensor, Tuple[int, int]]:
    """Attention maps of ``block`` for query positions (row, col) on the block's feature map.

    image: (1, C, H, W). Returns (maps (Q, h, w), (h, w)) where (h, w) is the block's map size
    (without sub-sampling the keys share it). Each map sums to 1 for softmax modes.
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"image must be (1, C, H, W), got {tuple(image.shape)}")
    if block is None:
        blocks = find_blocks(model)
        if not blocks:
            raise ValueError("model has no attention block")
        block = blocks[0][1]
    inp, _ = capture(model, image, block)
    h, w = inp.shape[2:]
    att = block_internals(block, inp)["attention"][0]  # (N, N')
    kh, kw = (h // 2, w // 2) if getattr(block, "sub_sample", False) else (h, w)
    out = []
    for r, c in queries:
        if not (0 <= r < h and 0 <= c < w):
            raise ValueError(f"query {(r, c)} is outside the {h}x{w} feature map")
        out.append(att[r * w + c].reshape(kh, kw))
    return torch.stack(out), (h, w)


def plot_attention(image: Tensor, maps: Tensor, queries: Sequence[Tuple[int, int]],
                   map_size: Tuple[int, int], title: str = "", axes=None):
    """Draw each attention map, upsampled to the image, over the image; mark its query.

    image: (1, 1, H, W) or (H, W); maps (Q, h', w'). Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import torch.nn.functional as F

    img = image.reshape(image.shape[-2], image.shape[-1]).cpu().numpy()
    hh, ww = img.shape
    q = len(queries)
    if axes is None:
        fig, axes = plt.subplots(q, 1, figsize=(6, 1.3 * q + 0.4), squeeze=False)
        axes = axes[:, 0]
    else:
        fig = axes[0].figure
    h, w = map_size
    for ax, m, (r, c) in zip(axes, maps, queries):
        up = F.interpolate(m[None, None].float(), size=(hh, ww), mode="nearest")[0, 0]
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.imshow(up.cpu().numpy(), cmap="inferno", alpha=0.55)
        ax.plot((c + 0.5) * ww / w - 0.5, (r + 0.5) * hh / h - 0.5, "c*", ms=12, mec="k")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"q={r},{c}", fontsize=8)
    if title:
        axes[0].set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- cost
@contextmanager
def _math_attention():
    """Force the MATH SDPA backend so FlopCounterMode sees every matmul of any attention."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        yield
        return
    with sdpa_kernel(SDPBackend.MATH):
        yield


def count_params(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@contextmanager
def _explicit_non_local(module: nn.Module):
    """Run every NonLocal2d of ``module`` on its explicit path (the N x N' attention matrix)."""
    saved = [(m, m.impl) for m in module.modules()
             if isinstance(m, NonLocal2d) and hasattr(m, "impl")]
    try:
        for m, _ in saved:
            m.impl = "explicit"
        yield
    finally:
        for m, impl in saved:
            m.impl = impl


@torch.no_grad()
def count_flops(module: nn.Module, *inputs: Tensor, explicit_nl: bool = True) -> int:
    r"""FLOPs of one forward pass (torch's FlopCounterMode: a multiply-add counts 2).

    Counted under the MATH attention backend, so scaled-dot-product attention shows up as its
    two matmuls. With ``explicit_nl`` (default) every Non-local block runs its explicit path,
    i.e. the cost of NL as the papers define it (an N x N' attention matrix); gclab's fast
    paths for ``dot_product`` and ``concatenation`` need fewer. Element-wise ops (softmax, BN,
    ReLU, adds) are not counted by FlopCounterMode; matmuls, bmm and convolutions are: a 1x1
    conv costs :math:`2 B C_{in} C_{out} H W`.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    try:
        with _math_attention(), FlopCounterMode(display=False) as counter:
            if explicit_nl:
                with _explicit_non_local(module):
                    module(*inputs)
            else:
                module(*inputs)
    finally:
        module.train(was_training)
    return int(counter.get_total_flops())


@torch.no_grad()
def latency_ms(module: nn.Module, *inputs: Tensor, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of one forward pass in milliseconds (eval mode, no grad)."""
    was_training = module.training
    module.eval()
    times = []
    try:
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            module(*inputs)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    finally:
        module.train(was_training)
    return float(statistics.median(times))


@torch.no_grad()
def block_costs(model: nn.Module, x: Tensor, latency: bool = True) -> Dict[str, Dict[str, float]]:
    """Per-block and whole-model cost for input x (B, C, H, W).

    Returns ``{name: {"params", "flops", "latency_ms"}}`` for every block (on the input it sees
    inside the model) and ``"model"`` for the whole network; ``"blocks"`` sums the blocks.
    """
    out: Dict[str, Dict[str, float]] = {}
    total = {"params": 0.0, "flops": 0.0, "latency_ms": 0.0}
    for name, block in find_blocks(model):
        if any(name.startswith(n + ".") for n in out):
            continue  # a block inside a block
        inp, _ = capture(model, x, block)
        cost = {"params": count_params(block), "flops": count_flops(block, inp),
                "latency_ms": latency_ms(block, inp) if latency else float("nan")}
        out[name] = cost
        for k in total:
            total[k] += cost[k]
    out["blocks"] = total
    out["model"] = {"params": count_params(model), "flops": count_flops(model, x),
                    "latency_ms": latency_ms(model, x) if latency else float("nan")}
    return out


def summarize(values: Iterable[float]) -> Tuple[float, float]:
    """(mean, sample std) of ``values``; std is 0 for a single value."""
    v = [float(a) for a in values]
    if not v:
        raise ValueError("summarize needs at least one value")
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


# --------------------------------------------------------------------------- comparisons
#: verdicts of :func:`verdict`
VERDICTS = ("reproduced", "reversed", "not decidable")


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95
                   ) -> Tuple[float, float, float]:
    r"""Difference of means ``mean(a) - mean(b)`` and its Welch confidence interval.

    .. math::

        d = \bar a - \bar b, \quad se = \sqrt{s_a^2/n_a + s_b^2/n_b}, \quad
        \nu = \frac{se^4}{\frac{(s_a^2/n_a)^2}{n_a - 1} + \frac{(s_b^2/n_b)^2}{n_b - 1}},
        \quad d \pm t_{\nu, (1+\text{level})/2}\, se

    (sample variances, Welch-Satterthwaite degrees of freedom; the same interval as
    ``scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(level)``). When both
    samples have no spread (``se = 0``) the interval is the point ``(d, d)``; with fewer than
    two values on a side it is ``(nan, nan)``. Returns ``(d, low, high)``.
    """
    from scipy import stats

    a, b = [float(v) for v in a], [float(v) for v in b]
    if not a or not b:
        raise ValueError("welch_interval needs at least one value in each sample")
    d = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return d, float("nan"), float("nan")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = (va + vb) ** 0.5
    if se == 0:
        return d, d, d
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf((1 + level) / 2, df)) * se
    return d, d - half, d + half


def verdict(low: float, high: float, direction: str = "greater", margin: float = 0.0) -> str:
    """'reproduced', 'reversed' or 'not decidable' for a claim about ``first - second``.

    ``direction='greater'`` (the paper: first > second): reproduced when the interval lies
    above 0, reversed when it lies below 0. ``direction='noninferior'`` (the paper: first is
    as good as second, "≈", at a fraction of the cost): reproduced when the interval lies
    above ``-margin`` (first is at most ``margin`` worse), reversed when it lies below 0
    (first is significantly worse) — checked in that order. Anything else, or a nan
    interval, is not decidable.
    """
    if direction not in ("greater", "noninferior"):
        raise ValueError(f"direction must be 'greater' or 'noninferior', got {direction!r}")
    if low != low or high != high:  # nan
        return "not decidable"
    if direction == "greater":
        if low > 0:
            return "reproduced"
        if high < 0:
            return "reversed"
        return "not decidable"
    if low > -margin:
        return "reproduced"
    if high < 0:
        return "reversed"
    return "not decidable"
