"""The report of ``gclab reproduce``: the paper's comparisons, their statistics, tables, figures.

Reads what :mod:`gclab.experiments.reproduce` trained (rows of ``ablation.csv``, learning curves,
attention maps) and writes the rest: ``comparisons.csv`` (one row per comparison of
:data:`COMPARISONS` per task and difficulty: the difference of mean accuracies over seeds, its
95 % Welch interval and the verdict, :func:`compare`), ``ablation.md`` and the figures
(``ablation.png``, ``curves.png``, ``attention_blocks.png``, ``attention_nl.png``). Lesson 7
prints its tables with :func:`accuracy_lines` and :func:`comparison_lines`. Example::

    >>> rows = [{"task": "t", "difficulty": "", "model": m, "seed": s, "accuracy": a,
    ...          "block_flops": 1}
    ...         for m, accs in (("gc_r16", (0.910, 0.912, 0.911)), ("nl", (0.911, 0.910, 0.912)))
    ...         for s, a in enumerate(accs)]
    >>> [c["verdict"] for c in compare(rows) if c["comparison"] == "GC vs NL"]
    ['reproduced']
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import torch

from gclab.experiments import analysis
from gclab.experiments.models import SmallResNet

#: margin of the non-inferiority claims ("≈"): first may be at most this much worse
MARGIN = 0.02


@dataclass(frozen=True)
class Comparison:
    """One claim of the paper: ``first`` vs ``second``, in the paper's direction."""

    name: str
    first: str
    second: str
    direction: str  # 'greater' (paper: first > second) or 'noninferior' (first ≈ second)
    claim: str


COMPARISONS: Tuple[Comparison, ...] = (
    Comparison("GC vs SE", "gc_r16", "se_r16", "greater",
               "GC > SE: attention pooling + add fusion beat SE's average pooling + "
               "scaling (GCNet, COCO ablation)"),
    Comparison("att vs avg pooling", "gc_r16", "gc_r16_avg", "greater",
               "attention pooling > average pooling (GCNet ablation, a small gain)"),
    Comparison("add vs mul fusion", "gc_r16", "gc_r16_mul", "greater",
               "add fusion > scaling (mul) fusion (GCNet ablation)"),
    Comparison("LayerNorm vs none", "gc_r16", "gc_r16_noln", "greater",
               "LayerNorm in the bottleneck helps: it eases optimisation (GCNet ablation)"),
    Comparison("r4 vs r16", "gc_r4", "gc_r16", "greater",
               "a wider bottleneck is slightly better: r4 38.9 vs r16 38.5 box AP "
               "(GCNet README, Mask R-CNN R50-FPN 1x)"),
    Comparison("SNL vs NL", "snl", "nl", "noninferior",
               "SNL ≈ NL: one query-independent map loses nothing (GCNet)"),
    Comparison("GC vs NL", "gc_r16", "nl", "noninferior",
               "GC ≈ NL (or better) at a fraction of NL's FLOPs (GCNet)"),
    Comparison("GC vs baseline", "gc_r16", "baseline", "greater",
               "a GC block improves on the plain backbone: 37.3 -> 38.5 box AP (GCNet README)"),
)
COLUMNS = (
    "task", "difficulty", "model", "seed", "accuracy", "chance", "block_params", "block_flops",
    "latency_ms", "block_latency_ms", "model_params", "model_flops", "train_seconds",
    "cpu_seconds", "final_loss", "dist_input", "dist_output", "dist_attention",
)
COMPARISON_COLUMNS = ("comparison", "task", "difficulty", "difference", "ci_low", "ci_high",
                      "verdict", "paper_claim", "first", "second", "first_mean",
                      "second_mean", "n_first", "n_second", "flops_ratio")
CURVE_COLUMNS = ("task", "difficulty", "model", "seed", "step", "accuracy")



# --------------------------------------------------------------------------- comparisons
def _key(row: Dict[str, Any]) -> Tuple[str, str]:
    return str(row["task"]), str(row["difficulty"])


def compare(rows: List[Dict[str, Any]], comparisons: Sequence[Comparison] = COMPARISONS,
            margin: float = MARGIN) -> List[Dict[str, Any]]:
    """One row of comparisons.csv per comparison per (task, difficulty) where both models ran.

    ``difference`` = mean accuracy of ``first`` - mean of ``second`` over seeds, with its 95 %
    Welch interval (:func:`analysis.welch_interval`) and the verdict
    (:func:`analysis.verdict`, in the paper's direction).
    """
    out = []
    groups = list(dict.fromkeys(_key(r) for r in rows))
    for task, diff in groups:
        sub = [r for r in rows if _key(r) == (task, diff)]
        for c in comparisons:
            a = [float(r["accuracy"]) for r in sub if r["model"] == c.first]
            b = [float(r["accuracy"]) for r in sub if r["model"] == c.second]
            if not a or not b:
                continue
            d, lo, hi = analysis.welch_interval(a, b)
            fa = next(float(r["block_flops"]) for r in sub if r["model"] == c.first)
            fb = next(float(r["block_flops"]) for r in sub if r["model"] == c.second)
            out.append({
                "comparison": c.name, "task": task, "difficulty": diff,
                "difference": round(d, 4),
                "ci_low": "" if math.isnan(lo) else round(lo, 4),
                "ci_high": "" if math.isnan(hi) else round(hi, 4),
                "verdict": analysis.verdict(lo, hi, c.direction, margin),
                "paper_claim": c.claim, "first": c.first, "second": c.second,
                "first_mean": round(sum(a) / len(a), 4),
                "second_mean": round(sum(b) / len(b), 4), "n_first": len(a),
                "n_second": len(b), "flops_ratio": round(fa / fb, 4) if fb else "",
            })
    return out


def write_csv(path: Path, rows: List[Dict[str, Any]], columns: Sequence[str]) -> None:
    with Path(path).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def _label(task: str, diff: Any) -> str:
    return task if diff in ("", None) else f"{task} (difficulty {diff})"


def write_markdown(rows: List[Dict[str, Any]], comparisons: List[Dict[str, Any]], path: Path,
                   machine: Dict[str, Any]) -> str:
    """Means +- std (over seeds) per task and model, then the comparisons; returns the text."""
    lines = ["# Ablation table (laptop scale)", "",
             f"Generated by `{machine['command']}` on {machine['cpu']} "
             f"({machine['jobs']} process(es) x {machine['threads']} torch thread(s)), "
             f"{machine['date']}; {machine['wall_minutes']:.1f} min wall, "
             f"{machine['cpu_minutes']:.1f} min CPU. Mean ± std over the seeds.", ""]
    for task, diff in dict.fromkeys(_key(r) for r in rows):
        sub = [r for r in rows if _key(r) == (task, diff)]
        lines += [f"## {_label(task, diff)} (chance {float(sub[0]['chance']):.2f})", "",
                  "| model | accuracy | seeds | block params | block kFLOPs | "
                  "attention dist | output dist | input dist | n |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for model in dict.fromkeys(r["model"] for r in sub):
            rs = [r for r in sub if r["model"] == model]
            m, s = analysis.summarize(float(r["accuracy"]) for r in rs)

            def dist(key: str, rs=rs) -> str:
                vals = [float(r[key]) for r in rs if r[key] != ""]
                if not vals:
                    return "–"
                mu, sd = analysis.summarize(vals)
                return f"{mu:.3f} ± {sd:.3f}"

            seeds = " ".join(f"{float(r['accuracy']):.3f}" for r in rs)
            lines.append(
                f"| {model} | {m:.3f} ± {s:.3f} | {seeds} | {int(rs[0]['block_params']):,} | "
                f"{int(rs[0]['block_flops']) / 1e3:.1f} | {dist('dist_attention')} | "
                f"{dist('dist_output')} | {dist('dist_input')} | {len(rs)} |")
        lines.append("")
    if comparisons:
        lines += ["## Comparisons (difference of mean accuracy, 95 % Welch interval)", "",
                  "| comparison | task | difference | 95 % CI | verdict | paper |",
                  "|---|---|---|---|---|---|"]
        for c in comparisons:
            ci = (f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]" if c["ci_low"] != "" else "–")
            lines.append(f"| {c['comparison']} | {_label(c['task'], c['difficulty'])} | "
                         f"{c['difference']:+.3f} | {ci} | {c['verdict']} | "
                         f"{c['paper_claim']} |")
        lines.append("")
    text = "\n".join(lines)
    Path(path).write_text(text)
    return text


def accuracy_lines(rows: List[Dict[str, Any]]) -> List[str]:
    """Text table of the runs: per (task, difficulty) and model, mean ± std and every seed."""
    lines = []
    for task, diff in dict.fromkeys(_key(r) for r in rows):
        sub = [r for r in rows if _key(r) == (task, diff)]
        lines.append(f"{_label(task, diff)}  (chance {float(sub[0]['chance']):.2f})")
        for model in dict.fromkeys(r["model"] for r in sub):
            values = [float(r["accuracy"]) for r in sub if r["model"] == model]
            m, s = analysis.summarize(values)
            lines.append(f"  {model:<17} {m:.3f} ± {s:.3f}   seeds: "
                         + " ".join(f"{v:.3f}" for v in values))
    return lines


def comparison_lines(comparisons: List[Dict[str, Any]], task: str | None = None) -> List[str]:
    """Text table of comparisons.csv rows: difference, 95 % interval, verdict, the paper."""
    lines = [f"{'comparison':<19}{'level':>6}{'diff':>8}{'95 % CI':>18}  {'verdict':<14} paper"]
    for c in comparisons:
        if task is not None and c["task"] != task:
            continue
        lo, hi = c["ci_low"], c["ci_high"]
        ci = "–" if lo in ("", None) else f"[{float(lo):+.3f}, {float(hi):+.3f}]"
        claim = str(c["paper_claim"]).split(":")[0].split(" (")[0]
        lines.append(f"{c['comparison']:<19}{str(c['difficulty']):>6}"
                     f"{float(c['difference']):>+8.3f}{ci:>18}  {c['verdict']:<14} {claim}")
    return lines


# --------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_table(rows: List[Dict[str, Any]], path: Path) -> None:
    """Accuracy per model (mean bar and every seed as a dot) per task and difficulty, chance as
    a line. The y axis reaches above 1 so that seeds at 1.0 are drawn whole."""
    plt = _plt()
    groups = list(dict.fromkeys(_key(r) for r in rows))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 3.8), squeeze=False)
    for ax, (task, diff) in zip(axes[0], groups):
        sub = [r for r in rows if _key(r) == (task, diff)]
        models = list(dict.fromkeys(r["model"] for r in sub))
        for i, m in enumerate(models):
            accs = [float(r["accuracy"]) for r in sub if r["model"] == m]
            ax.bar(i, sum(accs) / len(accs), color="C0" if m.startswith("gc") else "C7",
                   alpha=0.8)
            ax.plot([i] * len(accs), accs, "k.", ms=5, clip_on=False, zorder=3)
        ax.axhline(float(sub[0]["chance"]), color="r", ls="--", lw=1, label="chance")
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, rotation=60, ha="right", fontsize=8)
        lo = min(float(r["accuracy"]) for r in sub)
        ax.set_ylim(min(0.4, lo - 0.03), 1.03)
        ax.set_ylabel("test accuracy")
        ax.set_title(_label(task, diff), fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(curves: List[Dict[str, Any]], path: Path) -> None:
    """Test accuracy vs training steps: the mean over seeds (line) and min..max (band), one
    panel per (task, difficulty)."""
    import numpy as np

    plt = _plt()
    groups = list(dict.fromkeys(_key(r) for r in curves))
    ncols = min(2, max(1, len(groups)))  # two panels a row: the levels of one task side by side
    nrows = math.ceil(max(1, len(groups)) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.0 * ncols, 3.8 * nrows), squeeze=False)
    for ax in axes.flat[len(groups):]:
        ax.axis("off")
    for ax, (task, diff) in zip(axes.flat, groups):
        sub = [r for r in curves if _key(r) == (task, diff)]
        models = list(dict.fromkeys(r["model"] for r in sub))
        for k, m in enumerate(models):
            steps = sorted({int(r["step"]) for r in sub if r["model"] == m})
            seeds = sorted({int(r["seed"]) for r in sub if r["model"] == m})
            acc = np.array([[next(float(r["accuracy"]) for r in sub if r["model"] == m
                                  and int(r["seed"]) == s and int(r["step"]) == st)
                             for st in steps] for s in seeds])
            color = f"C{k % 10}"
            ls = "-" if k < 10 else "--"
            ax.plot(steps, acc.mean(0), color=color, ls=ls, lw=1.4, label=m)
            ax.fill_between(steps, acc.min(0), acc.max(0), color=color, alpha=0.12, lw=0)
        ax.set_xlabel("training step")
        ax.set_ylabel("test accuracy (held-out subset)")
        ax.set_title(f"{_label(task, diff)}: mean over seeds, band = min..max", fontsize=9)
        ax.set_ylim(0.4, 1.02)
        ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_block_attention(maps: List[Dict[str, Any]], path: Path) -> None:
    """Attention of NL (one query, a star), SNL and GC (their one map) over a test image, one
    row per (task, difficulty)."""
    plt = _plt()
    import numpy as np

    groups = list(dict.fromkeys((m["task"], str(m["difficulty"])) for m in maps))
    models = list(dict.fromkeys(m["model"] for m in maps))
    fig, axes = plt.subplots(len(groups), len(models),
                             figsize=(4.2 * len(models), 1.5 * len(groups) + 0.6),
                             squeeze=False)
    for i, g in enumerate(groups):
        for j, name in enumerate(models):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            found = [m for m in maps if (m["task"], str(m["difficulty"])) == g
                     and m["model"] == name]
            if not found:
                ax.axis("off")  # this (task, difficulty) has no map of this column
                continue
            m = found[0]
            img, att = np.asarray(m["image"]), np.asarray(m["map"])
            hh, ww = img.shape
            h, w = att.shape
            up = np.kron(att, np.ones((hh // h, ww // w)))
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            ax.imshow(up, cmap="inferno", alpha=0.55)
            if m.get("query") is not None:
                r, c = m["query"]
                ax.plot((c + 0.5) * ww / w - 0.5, (r + 0.5) * hh / h - 0.5, "c*", ms=10,
                        mec="k")
            ax.set_title(f"{name} on {_label(*g)}"
                         + (" (query: star)" if m.get("query") is not None else
                            " (one map for all queries)"), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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


def read_csv(path: Path) -> List[Dict[str, Any]]:
    """Rows of a csv written by :func:`main` (numbers stay strings except accuracy etc.)."""
    with Path(path).open() as f:
        return list(csv.DictReader(f))


def summarize_results(out: Path) -> List[Dict[str, Any]]:
    """From the files a run wrote (ablation.csv, curves.csv, attention_maps.json,
    machine.json): comparisons.csv, ablation.md and the figures. Returns the comparisons."""
    out = Path(out)
    rows = read_csv(out / "ablation.csv")
    comparisons = compare(rows)
    write_csv(out / "comparisons.csv", comparisons, COMPARISON_COLUMNS)
    machine = json.loads((out / "machine.json").read_text())
    write_markdown(rows, comparisons, out / "ablation.md", machine)
    plot_table(rows, out / "ablation.png")
    curves = read_csv(out / "curves.csv")
    if curves:
        plot_curves(curves, out / "curves.png")
    if (out / "attention_maps.json").exists():
        plot_block_attention(json.loads((out / "attention_maps.json").read_text()),
                             out / "attention_blocks.png")
    return comparisons
