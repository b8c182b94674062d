"""The figures and demonstrations of the lessons, so that a lesson's cell is one short call.

A lesson keeps the code it teaches; the plotting (and the bookkeeping around a measurement)
lives here, one function per figure, named after what it shows. Everything is deterministic
(fixed seeds) and runs on a CPU in seconds. See ``gclab.course.diagrams`` for the block diagrams.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Mapping, Sequence, Tuple

import numpy as np

__all__ = [
    "cost_curves",
    "erf_compare",
    "erf_grid",
    "erf_growth",
    "framework_table",
    "gaussian_attention_demo",
    "nl_vs_snl_maps",
    "plot_timings",
    "time_loop_vs_vectorised",
]


# ----------------------------------------------------------------------------- lesson 0
def erf_grid(erfs: Mapping[int, np.ndarray], size: int,
             theoretical_rf: Callable[[Sequence[int], Sequence[int]], int]) -> None:
    """One ERF map per depth, the TRF of that depth drawn as a dashed square."""
    import matplotlib.pyplot as plt

    depths = list(erfs)
    fig, axes = plt.subplots(1, len(depths), figsize=(15, 2.9))
    for ax, depth in zip(np.atleast_1d(axes), depths):
        ax.imshow(erfs[depth], cmap="magma")
        r = theoretical_rf([3] * depth, [1] * depth)
        c = size // 2
        ax.add_patch(plt.Rectangle((c - r / 2, c - r / 2), r, r, fill=False, ls="--",
                                   color="cyan"))
        ax.set(title=f"L = {depth}, TRF {r}", xticks=[], yticks=[])
    fig.suptitle("ERF of L random 3x3 convs + ReLU (bright = large gradient); dashed: TRF")
    plt.show()


def erf_growth(depths: np.ndarray, trf_radius: np.ndarray, erf_radius: np.ndarray) -> None:
    """Log-log radii of the TRF and the ERF against depth, and their ratio."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
    ax1.loglog(depths, trf_radius, "o-", label="TRF radius $L$ (slope 1)")
    ax1.loglog(depths, erf_radius, "s-", label="ERF radius $\\sigma$ (measured)")
    ax1.loglog(depths, erf_radius[0] * np.sqrt(depths), "k:", label="$\\propto\\sqrt{L}$")
    ax1.set(xlabel="depth L (3x3 convs)", ylabel="pixels", title="How far does the stack see?")
    ax1.legend(fontsize=8)
    ax2.plot(depths, erf_radius / trf_radius, "s-")
    ax2.set(xlabel="depth L", ylabel="ERF radius / TRF radius",
            title="The used fraction of the TRF shrinks")
    plt.tight_layout()
    plt.show()


def erf_compare(erf_deep: np.ndarray, erf_global: np.ndarray) -> None:
    """The ERF of a deep conv stack next to that of one conv plus global context (log scale)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
    for ax, erf_map, title in ((axes[0], erf_deep, "24 convs + ReLU"),
                               (axes[1], erf_global, "1 conv + global context")):
        im = ax.imshow(np.log10(erf_map + 1e-12), cmap="magma", vmin=-8, vmax=0)
        ax.set(title=title, xticks=[], yticks=[])
    fig.colorbar(im, ax=axes, label="log10 ERF")
    plt.show()


# ----------------------------------------------------------------------------- lesson 1
def gaussian_attention_demo(height: int = 12, width: int = 16) -> None:
    """Three queries of a toy image and the gaussian NL attention of each (gclab's gaussian):
    a red query attends to both red blobs, however far apart."""
    import matplotlib.pyplot as plt

    from gclab.numpy import non_local

    H, W = height, width
    img = np.zeros((3, H, W)) + 0.05
    img[0, 1:4, 1:4] = 1.0     # red, top left
    img[0, 8:11, 12:15] = 1.0  # red, bottom right: far away, same colour
    img[1, 7:11, 2:6] = 1.0    # green
    img[2, 2:5, 9:13] = 1.0    # blue
    keys = (4 * img[None]).reshape(1, 3, -1)  # (1, C, N)
    attn = non_local.gaussian(keys.transpose(0, 2, 1), keys)[0]  # (N, N)
    queries = [(2, 2), (9, 3), (6, 8)]  # a red blob, the green blob, the background
    fig, axes = plt.subplots(1, 4, figsize=(13, 2.8))
    axes[0].imshow(img.transpose(1, 2, 0))
    axes[0].set_title("image and queries")
    for ax, (r, c) in zip(axes[1:], queries):
        axes[0].plot(c, r, "w+", ms=12, mew=2)
        ax.imshow(img.transpose(1, 2, 0))
        ax.imshow(attn[r * W + c].reshape(H, W), cmap="magma", alpha=0.75)
        ax.plot(c, r, "w+", ms=12, mew=2)
        ax.set_title(f"query ({r}, {c})")
    for ax in axes:
        ax.axis("off")
    plt.tight_layout()
    plt.show()


# ----------------------------------------------------------------------------- lesson 2
def _best_time(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def time_loop_vs_vectorised(sides: Sequence[int] = (4, 6, 8, 12), channels: int = 8,
                            seed: int = 1) -> Dict[int, Tuple[float, float]]:
    """{side: (seconds of the double loop, seconds of the vectorised forward)} of the NL
    forward on side x side maps (best of a few runs), after checking that both agree."""
    import torch
    from tqdm.auto import tqdm

    import gclab.numpy as gnp
    from gclab.nn import NonLocal2d

    torch.manual_seed(seed)
    blk = NonLocal2d(channels).double()
    with torch.no_grad():
        for prm in blk.parameters():
            prm.normal_(0, 0.5)
    p_t = gnp.params_from_torch(blk)
    timings = {}
    for side in tqdm(sides, desc="timing"):
        xs = np.random.default_rng(side).standard_normal((1, channels, side, side))
        loop = gnp.non_local_naive(xs, p_t)
        vec, _ = gnp.non_local.forward(xs, p_t)
        assert gnp.rel_error(loop, vec) < 1e-10, "the two versions disagree"
        timings[side] = (_best_time(lambda xs=xs: gnp.non_local_naive(xs, p_t), 2),
                         _best_time(lambda xs=xs: gnp.non_local.forward(xs, p_t), 20))
    return timings


def plot_timings(timings: Mapping[int, Tuple[float, float]], channels: int) -> None:
    """Bars of loop vs vectorised time per map size (log scale), the ratio above each pair."""
    import matplotlib.pyplot as plt

    labels = [f"{s}x{s}" for s in timings]
    pos = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(pos - 0.2, [1e3 * t for t, _ in timings.values()], 0.4, label="double loop (naive)")
    ax.bar(pos + 0.2, [1e3 * t for _, t in timings.values()], 0.4, label="vectorised")
    for i, (t_loop, t_vec) in enumerate(timings.values()):
        ax.text(i, 1e3 * t_loop * 1.3, f"{t_loop / t_vec:.0f}x", ha="center")
    ax.set_yscale("log")
    ax.set_ylim(top=1e3 * max(t for t, _ in timings.values()) * 8)
    ax.set_xticks(pos, labels)
    ax.set_ylabel("forward time (ms, log scale)")
    ax.set_title(f"NL forward, C = {channels}, batch 1, float64")
    ax.legend(loc="upper left")
    plt.tight_layout()
    plt.show()


# ----------------------------------------------------------------------------- lesson 4
def nl_vs_snl_maps(queries: Sequence[Tuple[int, int]] = ((5, 40), (30, 30), (45, 70))) -> None:
    """On a small photo: the NL attention map of three queries (different), and SNL's single
    map (the same for every query), from a hand-set attention pooling."""
    import matplotlib.pyplot as plt
    import torch
    from sklearn.datasets import load_sample_image

    from gclab.nn import AttentionPooling
    from gclab.numpy import ops

    img = load_sample_image("china.jpg")[::8, ::8] / 255.0  # (54, 80, 3)
    H, W = img.shape[:2]
    feat = torch.tensor((img - img.mean((0, 1))).transpose(2, 0, 1)[None])  # (1, 3, H, W)
    pool = AttentionPooling(3).to(feat.dtype)
    with torch.no_grad():
        pool.conv_mask.weight.fill_(6.0)
        pool.conv_mask.bias.zero_()
        alpha_img = pool.attention(feat)[0].reshape(H, W).numpy()  # (H, W), sums to 1
    xf = feat[0].reshape(3, -1).numpy()  # (C, N)
    fig, axes = plt.subplots(1, 4, figsize=(14, 2.8))
    for ax, (qh, qw) in zip(axes, queries):
        row = ops.softmax(20.0 * xf[:, qh * W + qw] @ xf)  # one query's NL map (N,)
        ax.imshow(img.mean(2), cmap="gray")
        ax.imshow(row.reshape(H, W), cmap="inferno", alpha=0.7)
        ax.plot(qw, qh, "c*", ms=14)
        ax.set_title(f"NL map of query ({qh}, {qw})")
    axes[3].imshow(img.mean(2), cmap="gray")
    axes[3].imshow(alpha_img, cmap="inferno", alpha=0.7)
    axes[3].plot([q[1] for q in queries], [q[0] for q in queries], "c*", ms=14)
    axes[3].set_title("SNL: one map for all queries")
    for ax in axes:
        ax.axis("off")
    plt.tight_layout()
    plt.show()


# ----------------------------------------------------------------------------- lesson 5
def cost_curves(flops: Callable, n_params: Callable,
                channels: Sequence[int] = (64, 128, 256, 512, 1024, 2048),
                sides: Sequence[int] = (7, 14, 28, 56, 112)):
    """Parameters and FLOPs of NL, SNL, GC r16 and SE r16 as C grows (14x14 map) and as the map
    grows (C = 256), measured with the lesson's ``flops(block, shape)`` and ``n_params(block)``
    on the meta device; draws three log-log panels and returns ``(cost_c, cost_n)``."""
    import matplotlib.pyplot as plt
    import torch

    from gclab.nn import GCBlock, NonLocal2d, SEBlock, SimplifiedNonLocal2d

    blocks = {
        "NL": lambda c: NonLocal2d(c, reduction=2),
        "SNL": lambda c: SimplifiedNonLocal2d(c),
        "GC r16": lambda c: GCBlock(c, 1 / 16),
        "SE r16": lambda c: SEBlock(c, 1 / 16),
    }
    with torch.device("meta"):  # build the modules without allocating or initialising weights
        cost_c = {k: [(n_params(f(c)), flops(f(c), (1, c, 14, 14))) for c in channels]
                  for k, f in blocks.items()}
        cost_n = {k: [flops(f(256), (1, 256, s, s)) for s in sides] for k, f in blocks.items()}
    # GC r16 and SE r16 cost nearly the same: each block has its own line style and marker,
    # and the later ones are drawn thinner, so that a curve under another still shows
    style = {"NL": ("-", "o", 2.6, 7), "SNL": ("--", "s", 2.2, 6),
             "GC r16": ("-", "D", 3.0, 8), "SE r16": (":", "x", 1.6, 7)}
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    series = [(channels, [p for p, _ in cost_c[k]], [f for _, f in cost_c[k]],
               [s * s for s in sides], cost_n[k]) for k in blocks]
    for k, (cs, params, fl, ns, fl_n) in zip(blocks, series):
        ls, marker, lw, ms = style[k]
        kw = dict(ls=ls, marker=marker, lw=lw, ms=ms, label=k, mfc="none" if k == "GC r16"
                  else None)
        axes[0].loglog(cs, params, **kw)
        axes[1].loglog(cs, fl, **kw)
        axes[2].loglog(ns, fl_n, **kw)
    axes[0].set(xlabel="channels C", ylabel="parameters", title="parameters vs C\n"
                "(GC r16 ≈ SE r16: the diamonds)")
    axes[1].set(xlabel="channels C", ylabel="FLOPs", title="FLOPs vs C (14×14 map)")
    axes[2].set(xlabel="positions N = H·W", ylabel="FLOPs", title="FLOPs vs N (C = 256)")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=9)
    plt.tight_layout()
    plt.show()
    return cost_c, cost_n


# ----------------------------------------------------------------------------- lesson 6
def framework_table() -> None:
    """SNL, GC and SE as rows of one table: context modelling -> transform -> fusion, with the
    shapes of each step (the colours of ``gclab.course.diagrams``)."""
    import matplotlib.pyplot as plt

    from gclab.course.diagrams import STAGE_COLOURS, STAGES

    rows = {  # block: (context modelling, transform, fusion)
        "SNL": ("attention pooling\nsoftmax(W_k x)", "1x1 conv C->C\n(W_v)", "add\nx + t"),
        "GC": ("attention pooling\nsoftmax(W_k x)", "bottleneck C->C/r->C\nwith LayerNorm",
               "add\nx + t"),
        "SE": ("average pooling\n1/N sum x_j", "bottleneck C->C/r->C\nno LayerNorm",
               "mul\nx * sigmoid(t)"),
    }
    shapes = ["(B,C,H,W) -> (B,C,1,1)", "(B,C,1,1) -> (B,C,1,1)", "x, t -> (B,C,H,W)"]
    fig, ax = plt.subplots(figsize=(12, 4.2))
    for r, (name, parts) in enumerate(rows.items()):
        y = 2 - r
        ax.text(-0.35, y, name, ha="right", va="center", fontsize=13, weight="bold")
        for k, text in enumerate(parts):
            ax.text(1.5 * k + 0.5, y, text, ha="center", va="center", fontsize=10,
                    bbox=dict(boxstyle="round,pad=0.4", fc=STAGE_COLOURS[STAGES[k]]))
            if k < 2:
                ax.annotate("", (1.5 * k + 1.25, y), (1.5 * k + 1.0, y),
                            arrowprops=dict(arrowstyle="->", lw=1.5))
    for k, step in enumerate(STAGES):
        ax.text(1.5 * k + 0.5, 2.75, step, ha="center", fontsize=12, style="italic")
        ax.text(1.5 * k + 0.5, 2.5, shapes[k], ha="center", fontsize=9, color="gray")
    ax.text(-0.2, 2.75, "x  ->", fontsize=12)
    ax.text(4.0, 2.75, "->  z", fontsize=12)
    ax.set(xlim=(-1.0, 4.5), ylim=(-0.6, 3.0))
    ax.axis("off")
    plt.tight_layout()
    plt.show()
