"""The figures of ``gclab reproduce``: accuracies per seed, validation curves, attention maps."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List

import torch

from gclab.experiments import analysis, stats
from gclab.experiments.comparisons import group_key, is_true, run_key, task_label
from gclab.experiments.models import SmallResNet


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: figures are drawn this many inches wide at FIG_DPI; shown 800 px wide in a notebook, a
#: font of f points is then f * 800 / (72 * FIG_WIDTH) px tall (8 px from 5.8 points on)
FIG_WIDTH, FIG_DPI = 8.0, 110
#: the smallest font of any figure (points): 9 * 800 / (72 * 8) = 12.5 px at 800 px wide
SMALLEST_FONT = 9


def plot_table(rows: List[Dict[str, Any]], path: Path) -> None:
    """Test accuracy of every seed per model, one panel per (task, difficulty), panels
    stacked: a filled dot for a seed that learned, an open one for a seed that did not; the
    bar is the mean of the seeds that learned; chance as a dashed line."""
    plt = _plt()
    groups = list(dict.fromkeys(group_key(r) for r in rows))
    fig, axes = plt.subplots(len(groups), 1, figsize=(FIG_WIDTH, 3.4 * len(groups)),
                             squeeze=False, layout="constrained")
    for ax, (task, diff) in zip(axes[:, 0], groups):
        sub = [r for r in rows if group_key(r) == (task, diff)]
        models = list(dict.fromkeys(r["model"] for r in sub))
        for i, m in enumerate(models):
            rs = [r for r in sub if r["model"] == m]
            good = [float(r["accuracy"]) for r in rs if is_true(r.get("learned", True))]
            bad = [float(r["accuracy"]) for r in rs if not is_true(r.get("learned", True))]
            if good:
                ax.bar(i, sum(good) / len(good), color="C0" if m.startswith("gc") else "C7",
                       alpha=0.7)
            if good:  # (an empty line drawn with clip_on=False breaks the layout)
                ax.plot([i] * len(good), good, "ko", ms=5, clip_on=False, zorder=3)
            if bad:
                ax.plot([i] * len(bad), bad, "o", mfc="white", mec="k", ms=5, clip_on=False,
                        zorder=3)
        ax.axhline(float(sub[0]["chance"]), color="r", ls="--", lw=1, label="chance")
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, rotation=30, ha="right", fontsize=SMALLEST_FONT + 1)
        lo = min(float(r["accuracy"]) for r in sub)
        ax.set_ylim(min(0.4, lo - 0.03), 1.03)
        ax.set_ylabel("test accuracy", fontsize=SMALLEST_FONT + 1)
        ax.tick_params(labelsize=SMALLEST_FONT + 1)
        ax.set_title(f"{task_label(task, diff)}: bar = mean of the seeds that learned; "
                     "open dot = a seed that did not", fontsize=SMALLEST_FONT + 1)
        ax.set_xlim(-0.6, len(models) - 0.4)
        ax.legend(fontsize=SMALLEST_FONT, loc="lower right")
    fig.savefig(path, dpi=FIG_DPI)
    plt.close(fig)


def plot_curves(curves: List[Dict[str, Any]], path: Path,
                rows: List[Dict[str, Any]] | None = None) -> None:
    """Validation accuracy vs training steps, one small panel per model (every seed a line,
    capped runs dashed) and one block of panels per (task, difficulty), three panels a row;
    with derived ``rows`` the 90 % level of :func:`derive` is drawn."""
    plt = _plt()
    groups = list(dict.fromkeys(group_key(r) for r in curves))
    panels = [(g, m) for g in groups
              for m in dict.fromkeys(r["model"] for r in curves if group_key(r) == g)]
    ncols = 3
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(FIG_WIDTH, 2.3 * nrows), squeeze=False,
                             sharey=True)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    capped = {run_key(r) for r in rows or [] if is_true(r.get("capped", False))}
    levels, bottom = {}, 0.4  # the axis starts below every task's chance (0.1 on digitkeys)
    for r in rows or []:
        chance, top = float(r["chance"]), float(r["ceiling"])
        levels[group_key(r)] = stats.level(chance, top, stats.LEVELS["steps_to_90"])
        bottom = min(bottom, chance - 0.05)
    for ax, (g, m) in zip(axes.flat, panels):
        sub = [r for r in curves if group_key(r) == g and r["model"] == m]
        for k, seed in enumerate(dict.fromkeys(int(r["seed"]) for r in sub)):
            pts = sorted((int(r["step"]), float(r["accuracy"])) for r in sub
                         if int(r["seed"]) == seed)
            ls = "--" if (g[0], g[1], m, seed) in capped else "-"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], ls, color=f"C{k % 10}", lw=1.2)
        if g in levels:
            ax.axhline(levels[g], color="k", lw=0.8, ls=":")
        ax.set_title(f"{m} ({task_label(*g)})", fontsize=SMALLEST_FONT)
        ax.set_ylim(max(bottom, 0.0), 1.02)
        ax.tick_params(labelsize=SMALLEST_FONT)
    for ax in axes[-1]:
        ax.set_xlabel("training step", fontsize=SMALLEST_FONT)
    for ax in axes[:, 0]:
        ax.set_ylabel("val accuracy", fontsize=SMALLEST_FONT)
    fig.suptitle("validation curves, one line per seed (dashed: capped at the maximum); "
                 "dotted: 90 % of the way from chance to the ceiling", fontsize=SMALLEST_FONT)
    fig.tight_layout()
    fig.savefig(path, dpi=FIG_DPI)
    plt.close(fig)


def plot_block_attention(maps: List[Dict[str, Any]], path: Path) -> None:
    """Attention of NL (one query, a star), SNL and GC (their one map) over a test image, one
    panel a row (each map a 16 x 64 strip, drawn the full figure width)."""
    plt = _plt()
    import numpy as np

    panels = list(maps)
    fig, axes = plt.subplots(len(panels), 1, figsize=(FIG_WIDTH, 1.9 * len(panels) + 0.3),
                             squeeze=False)
    for ax, m in zip(axes[:, 0], panels):
        ax.set_xticks([])
        ax.set_yticks([])
        img, att = np.asarray(m["image"]), np.asarray(m["map"])
        hh, ww = img.shape
        h, w = att.shape
        up = np.kron(att, np.ones((hh // h, ww // w)))
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.imshow(up, cmap="inferno", alpha=0.55)
        if m.get("query") is not None:
            r, c = m["query"]
            ax.plot((c + 0.5) * ww / w - 0.5, (r + 0.5) * hh / h - 0.5, "c*", ms=22,
                    mec="k", mew=1.5)
        ax.set_title(f"{m['model']} on {task_label(m['task'], str(m['difficulty']))}"
                     + (" (query: the star)" if m.get("query") is not None else
                        " (one map for all queries)"), fontsize=SMALLEST_FONT + 2)
    fig.tight_layout()
    fig.savefig(path, dpi=FIG_DPI)
    plt.close(fig)


def plot_nl_attention(model: SmallResNet, xte: torch.Tensor, path: Path) -> None:
    """Attention maps of the trained NL model for 4 queries on 2 test images."""
    plt = _plt()
    queries = [(0, 0), (1, 5), (2, 10), (3, 15)]
    fig, axes = plt.subplots(len(queries), 2, figsize=(11, 1.4 * len(queries) + 0.5),
                             squeeze=False)
    for col, k in enumerate((0, 1)):
        maps, size = analysis.attention_maps(model, xte[k : k + 1], queries)
        analysis.plot_attention(xte[k : k + 1], maps, queries, size, axes=list(axes[:, col]),
                                title=f"test image {k}: NL attention per query (star)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
