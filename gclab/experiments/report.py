"""The report of ``gclab reproduce``: the paper's comparisons, their statistics, tables, figures.

Reads what :mod:`gclab.experiments.reproduce` trained (rows of ``ablation.csv``, validation
curves, attention maps) and writes the rest: ``ablation.csv`` again with the per-run metrics of
the converged protocol (:func:`derive`: learned, steps to 90 % / 95 % of the ceiling),
``comparisons.csv`` (per comparison of :data:`COMPARISONS`, task and difficulty, one row per
metric of :data:`METRICS`: accuracy among the seeds that learned with its 95 % Welch interval,
the learned share with Fisher's exact test, the steps to 90 % with an exact Mann-Whitney test;
:func:`compare`), ``ablation.md`` and the figures (``ablation.png``, ``curves.png``,
``attention_blocks.png``, ``attention_nl.png``). Lesson 7 prints its tables with
:func:`accuracy_lines` and :func:`comparison_lines`. Example (two models,
all learned, GC reaching 90 % of the ceiling later on every seed; four seeds each: with three
the smallest possible p is 1/20, never below 0.05; with four it is 1/70)::

    >>> rows = [{"task": "t", "difficulty": "", "model": m, "seed": s, "accuracy": a,
    ...          "learned": True, "steps_to_90": st, "flat": True, "block_flops": 1}
    ...         for m, runs in (("gc_r16", ((0.97, 900), (0.96, 800), (0.97, 700), (0.96, 600))),
    ...                         ("nl", ((0.96, 300), (0.97, 200), (0.97, 250), (0.96, 350))))
    ...         for s, (a, st) in enumerate(runs)]
    >>> {c["metric"]: c["verdict"] for c in compare(rows) if c["comparison"] == "GC vs NL"}
    {'accuracy': 'reproduced', 'learned_share': 'not decidable', 'steps_to_90': 'reversed'}
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import torch

from gclab.experiments import analysis, stats
from gclab.experiments.models import SmallResNet

#: validation images per evaluation of a row that does not say (the plans' default)
EVAL_IMAGES = 256
#: a task level whose ceiling is less than this above chance was learned by no model
MIN_CEILING_GAIN = 0.1
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
    "task", "difficulty", "model", "seed", "accuracy", "val_accuracy", "chance", "steps",
    "stop_step", "max_steps", "capped", "flat", "eval_images", "block_params", "block_flops",
    "latency_ms", "block_latency_ms", "model_params", "model_flops", "train_seconds",
    "cpu_seconds", "final_loss", "dist_input", "dist_output", "dist_attention",
    "entropy_attention", "dist_attention_centered", "mean_map_accuracy",
)
#: what :func:`derive` adds to every row of ablation.csv once all runs are in
DERIVED_COLUMNS = ("ceiling", "learned", "steps_to_90", "steps_to_95")
#: the metrics a comparison is decided on (one row of comparisons.csv each)
METRICS = ("accuracy", "learned_share", "steps_to_90")
COMPARISON_COLUMNS = ("comparison", "task", "difficulty", "metric", "difference", "ci_low",
                      "ci_high", "p_value", "verdict", "paper_claim", "first", "second",
                      "first_mean", "second_mean", "n_first", "n_second", "flops_ratio")
CURVE_COLUMNS = ("task", "difficulty", "model", "seed", "step", "accuracy")



# --------------------------------------------------------------------------- comparisons
def _key(row: Dict[str, Any]) -> Tuple[str, str]:
    return str(row["task"]), str(row["difficulty"])


def _run_key(row: Dict[str, Any]) -> Tuple[str, str, str, int]:
    return str(row["task"]), str(row["difficulty"]), str(row["model"]), int(row["seed"])


def _truth(v: Any) -> bool:
    return str(v).strip().lower() in ("true", "1", "yes")


def derive(rows: List[Dict[str, Any]], curves: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Every row plus ``ceiling``, ``learned``, ``steps_to_90`` and ``steps_to_95``.

    Per (task, difficulty): the ceiling is the best model's median final validation accuracy
    (:func:`stats.ceiling`); a run learned when its final validation accuracy is at least
    halfway from chance to the ceiling; ``steps_to_90`` is the first step of its validation
    curve at 90 % of the way from chance to the ceiling (``inf``: never, censored).
    ``flat`` is recomputed from the curve (:func:`stats.is_flat`, ``eval_images`` images per
    evaluation, 256 when the row does not say). Rows without a validation accuracy (older
    files) use the test accuracy.
    """
    by_run: Dict[Tuple, List[Tuple[int, float]]] = {}
    for c in curves:
        by_run.setdefault(_run_key(c), []).append((int(c["step"]), float(c["accuracy"])))
    out = []
    for task, diff in dict.fromkeys(_key(r) for r in rows):
        sub = [r for r in rows if _key(r) == (task, diff)]
        val = {r["model"]: [] for r in sub}
        for r in sub:
            val[r["model"]].append(_val(r))
        top = stats.ceiling(val)
        for r in sub:
            chance = float(r["chance"])
            curve = sorted(by_run.get(_run_key(r), []))
            # a level that no model learned (ceiling within 0.1 of chance) has no learners
            some = top - chance >= MIN_CEILING_GAIN
            new = dict(r, ceiling=round(top, 4),
                       learned=some and stats.learned(_val(r), chance, top))
            if curve:  # the convergence check, recomputed from the curve (stats.is_flat)
                new["flat"] = stats.is_flat(curve, int(r.get("eval_images") or EVAL_IMAGES))
            for name, share in stats.LEVELS.items():
                new[name] = (stats.steps_to(curve, stats.level(chance, top, share)) if some
                             else math.inf)
            out.append(new)
    return out


def _val(row: Dict[str, Any]) -> float:
    v = row.get("val_accuracy", "")
    return float(v) if v not in ("", None) else float(row["accuracy"])


def _converged(row: Dict[str, Any]) -> bool:
    """A run whose accuracy may decide a comparison: the last quarter of its validation
    curve is flat within its noise (:func:`stats.is_flat`), whether it stopped early or not."""
    return _truth(row.get("flat", True))


def _median(v: List[float]) -> float:
    return statistics.median(v) if v else math.nan


def _num(v: float) -> Any:
    return "" if math.isnan(v) else (v if math.isinf(v) else round(v, 4))


def _compare_accuracy(a: List[Dict], b: List[Dict], c: Comparison, margin: float) -> Dict:
    """Welch interval of test accuracy among the seeds that learned and converged."""
    xa = [float(r["accuracy"]) for r in a if _truth(r["learned"]) and _converged(r)]
    xb = [float(r["accuracy"]) for r in b if _truth(r["learned"]) and _converged(r)]
    if len(xa) < 2 or len(xb) < 2:
        d = (statistics.fmean(xa) - statistics.fmean(xb)) if xa and xb else math.nan
        lo = hi = math.nan
    else:
        d, lo, hi = analysis.welch_interval(xa, xb)
    return {"difference": _num(d), "ci_low": _num(lo), "ci_high": _num(hi), "p_value": "",
            "verdict": analysis.verdict(lo, hi, c.direction, margin),
            "first_mean": _num(statistics.fmean(xa)) if xa else "",
            "second_mean": _num(statistics.fmean(xb)) if xb else "",
            "n_first": len(xa), "n_second": len(xb)}


def _compare_share(a: List[Dict], b: List[Dict]) -> Dict:
    """Fisher's exact test on the share of seeds that learned."""
    ka, kb = sum(_truth(r["learned"]) for r in a), sum(_truth(r["learned"]) for r in b)
    p_more, p_less = stats.fisher_test(ka, len(a), kb, len(b))
    return {"difference": round(ka / len(a) - kb / len(b), 4), "ci_low": "", "ci_high": "",
            "p_value": round(min(p_more, p_less), 4),
            "verdict": stats.one_sided_verdict(p_more, p_less),
            "first_mean": round(ka / len(a), 4), "second_mean": round(kb / len(b), 4),
            "n_first": len(a), "n_second": len(b)}


def _compare_steps(a: List[Dict], b: List[Dict], metric: str) -> Dict:
    """Exact one-sided Mann-Whitney test on steps to the level (censored runs: inf)."""
    sa, sb = [float(r[metric]) for r in a], [float(r[metric]) for r in b]
    ma, mb = _median(sa), _median(sb)
    if all(math.isinf(v) for v in sa + sb):
        verdict, p = "not decidable", math.nan
    else:
        p_fast, p_slow = stats.rank_test(sa, sb)
        verdict, p = stats.one_sided_verdict(p_fast, p_slow), min(p_fast, p_slow)
    d = ma - mb if not (math.isinf(ma) and math.isinf(mb)) else math.nan
    return {"difference": _num(d), "ci_low": "", "ci_high": "", "p_value": _num(p),
            "verdict": verdict, "first_mean": _num(ma), "second_mean": _num(mb),
            "n_first": len(sa), "n_second": len(sb)}


def compare(rows: List[Dict[str, Any]], comparisons: Sequence[Comparison] = COMPARISONS,
            margin: float = MARGIN, curves: List[Dict[str, Any]] | None = None
            ) -> List[Dict[str, Any]]:
    """Rows of comparisons.csv: per (task, difficulty) where both models ran, per comparison,
    one row per metric of :data:`METRICS`.

    ``accuracy``: difference of mean test accuracy among the seeds that learned (and whose
    curve converged), 95 % Welch interval (:func:`analysis.welch_interval`), verdict in the
    paper's direction (:func:`analysis.verdict`; fewer than 2 such seeds on a side: not
    decidable). ``learned_share``: difference of the shares of seeds that learned, Fisher's
    exact test (one-sided, p in ``p_value``). ``steps_to_90``: difference of the median steps
    to 90 % of the way from chance to the ceiling, exact one-sided Mann-Whitney test with
    censored runs counted as slowest (fewer steps is better; medians are ``inf`` when most
    seeds never got there). Rows without ``learned`` are first passed through :func:`derive`
    (with ``curves``).
    """
    if rows and "learned" not in rows[0]:
        rows = derive(rows, curves or [])
    out = []
    for task, diff in dict.fromkeys(_key(r) for r in rows):
        sub = [r for r in rows if _key(r) == (task, diff)]
        for c in comparisons:
            a = [r for r in sub if r["model"] == c.first]
            b = [r for r in sub if r["model"] == c.second]
            if not a or not b:
                continue
            fa, fb = float(a[0]["block_flops"]), float(b[0]["block_flops"])
            base = {"comparison": c.name, "task": task, "difficulty": diff,
                    "paper_claim": c.claim, "first": c.first, "second": c.second,
                    "flops_ratio": round(fa / fb, 4) if fb else ""}
            for metric in METRICS:
                if metric == "accuracy":
                    res = _compare_accuracy(a, b, c, margin)
                elif metric == "learned_share":
                    res = _compare_share(a, b)
                else:
                    res = _compare_steps(a, b, metric)
                out.append({**base, "metric": metric, **res})
    return out


def write_csv(path: Path, rows: List[Dict[str, Any]], columns: Sequence[str]) -> None:
    with Path(path).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def task_label(task: str, diff: Any) -> str:
    return task if diff in ("", None) else f"{task} (difficulty {diff})"


def _steps_text(v: Any) -> str:
    x = float(v)
    return "never" if math.isinf(x) else f"{x:.0f}"


def model_summary(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per (task, difficulty, model) of derived rows: seeds, learned share, test accuracy of
    the seeds that learned (mean, std), median steps to 90 % and 95 %, capped runs."""
    out = []
    for task, diff in dict.fromkeys(_key(r) for r in rows):
        sub = [r for r in rows if _key(r) == (task, diff)]
        for model in dict.fromkeys(r["model"] for r in sub):
            rs = [r for r in sub if r["model"] == model]
            acc = [float(r["accuracy"]) for r in rs if _truth(r["learned"])]
            m, sd = analysis.summarize(acc) if acc else (math.nan, math.nan)
            out.append({
                "task": task, "difficulty": diff, "model": model, "n": len(rs),
                "learned": sum(_truth(r["learned"]) for r in rs), "acc_learned": m,
                "acc_learned_sd": sd, "acc_all": [float(r["accuracy"]) for r in rs],
                "steps_to_90": [float(r["steps_to_90"]) for r in rs],
                "steps_to_95": [float(r["steps_to_95"]) for r in rs],
                "capped": sum(_truth(r.get("capped", False)) for r in rs),
                "ceiling": float(rs[0]["ceiling"]), "chance": float(rs[0]["chance"]),
                "block_params": int(rs[0]["block_params"]),
                "block_flops": int(rs[0]["block_flops"]),
            })
    return out


def write_markdown(rows: List[Dict[str, Any]], comparisons: List[Dict[str, Any]], path: Path,
                   machine: Dict[str, Any]) -> str:
    """Per task: where each model converges and how fast it gets there; then the comparisons
    per metric. ``rows`` are derived rows (:func:`derive`). Returns the text."""
    lines = ["# Ablation table (laptop scale, converged runs)", ""]
    for part in machine.get("parts", [machine]):
        lines.append(f"Generated by `{part['command']}` on {part['cpu']} "
                     f"({part['jobs']} process(es) x {part['threads']} torch thread(s)), "
                     f"{part['date']}; {part['wall_minutes']:.1f} min wall, "
                     f"{part['cpu_minutes']:.1f} min CPU, 1-min load "
                     f"{part.get('load_average_1min_mean_during_run')} on average.")
    lines += ["", "`learned`: seeds whose final validation "
              "accuracy got halfway from chance to the ceiling; `accuracy`: test accuracy of "
              "those seeds (mean ± std); `steps to 90 %`: per seed, first validation "
              "evaluation at 90 % of the way from chance to the ceiling (never: censored).", ""]
    for group in dict.fromkeys(_key(r) for r in rows):
        summ = [m for m in model_summary(rows) if (m["task"], m["difficulty"]) == group]
        lines += [f"## {task_label(*group)} (chance {summ[0]['chance']:.2f}, ceiling "
                  f"{summ[0]['ceiling']:.3f})", "",
                  "| model | learned | accuracy (learned) | every seed | steps to 90 % | "
                  "steps to 95 % | capped | block params | block kFLOPs |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for m in summ:
            acc = ("–" if math.isnan(m["acc_learned"]) else
                   f"{m['acc_learned']:.3f} ± {m['acc_learned_sd']:.3f}")
            lines.append(
                f"| {m['model']} | {m['learned']}/{m['n']} | {acc} | "
                + " ".join(f"{v:.3f}" for v in m["acc_all"]) + " | "
                + " ".join(_steps_text(v) for v in m["steps_to_90"]) + " | "
                + " ".join(_steps_text(v) for v in m["steps_to_95"])
                + f" | {m['capped']} | {m['block_params']:,} | {m['block_flops'] / 1e3:.1f} |")
        lines.append("")
    if comparisons:
        lines += ["## Comparisons", "",
                  "accuracy: difference of mean test accuracy among learned seeds, 95 % Welch "
                  "interval; learned_share: difference of shares, one-sided Fisher p; "
                  "steps_to_90: difference of median steps, one-sided exact Mann-Whitney p "
                  "(censored runs slowest).", "",
                  "| comparison | task | metric | difference | 95 % CI / p | verdict | "
                  "first | second | paper |", "|---|---|---|---|---|---|---|---|---|"]
        for c in comparisons:
            lines.append(f"| {c['comparison']} | {task_label(c['task'], c['difficulty'])} | "
                         f"{c['metric']} | {_fmt_diff(c)} | {_fmt_ci(c)} | {c['verdict']} | "
                         f"{_fmt_side(c, 'first')} | {_fmt_side(c, 'second')} | "
                         f"{c['paper_claim']} |")
        lines.append("")
    text = "\n".join(lines)
    Path(path).write_text(text)
    return text


def _fmt_diff(c: Dict[str, Any]) -> str:
    d = c["difference"]
    if d in ("", None):
        return "–"
    d = float(d)
    if math.isinf(d):
        return "+never" if d > 0 else "-never"
    return f"{d:+.0f}" if c["metric"].startswith("steps") else f"{d:+.3f}"


def _fmt_ci(c: Dict[str, Any]) -> str:
    if c["ci_low"] not in ("", None):
        return f"[{float(c['ci_low']):+.3f}, {float(c['ci_high']):+.3f}]"
    if c["p_value"] not in ("", None):
        return f"p = {float(c['p_value']):.3f}"
    return "–"


def _fmt_side(c: Dict[str, Any], side: str) -> str:
    v, n = c[f"{side}_mean"], c[f"n_{side}"]
    if v in ("", None):
        return f"– (n={n})"
    v = float(v)
    if c["metric"] == "learned_share":
        return f"{round(v * int(n))}/{n}"
    if c["metric"].startswith("steps"):
        return f"{_steps_text(v)} (median of {n})"
    return f"{v:.3f} (n={n})"


def accuracy_lines(rows: List[Dict[str, Any]]) -> List[str]:
    """Text table per (task, difficulty) and model of derived rows: learned share, test
    accuracy of the learned seeds, every seed's accuracy and steps to 90 %."""
    lines = []
    summ = model_summary(rows)
    for group in dict.fromkeys((m["task"], m["difficulty"]) for m in summ):
        ms = [m for m in summ if (m["task"], m["difficulty"]) == group]
        lines.append(f"{task_label(*group)}  (chance {ms[0]['chance']:.2f}, ceiling "
                     f"{ms[0]['ceiling']:.3f})")
        lines.append(f"  {'model':<13}{'learned':>8}  {'acc (learned)':<15} "
                     f"{'steps to 90 % per seed':<32} test accuracy per seed")
        for m in ms:
            acc = ("–" if math.isnan(m["acc_learned"]) else
                   f"{m['acc_learned']:.3f} ± {m['acc_learned_sd']:.3f}")
            steps = " ".join(_steps_text(v) for v in m["steps_to_90"])
            lines.append(f"  {m['model']:<13}{m['learned']:>5}/{m['n']:<2}  {acc:<15} "
                         f"{steps:<32} " + " ".join(f"{v:.3f}" for v in m["acc_all"]))
    return lines


def comparison_lines(comparisons: List[Dict[str, Any]], task: str | None = None,
                     metric: str | None = None) -> List[str]:
    """Text table of comparisons.csv rows: metric, difference, interval or p, verdict."""
    lines = [f"{'comparison':<19}{'level':>6} {'metric':<14}{'diff':>8}{'95 % CI / p':>19}  "
             f"{'verdict':<14} first / second"]
    for c in comparisons:
        if (task is not None and c["task"] != task) or (metric and c["metric"] != metric):
            continue
        lines.append(f"{c['comparison']:<19}{str(c['difficulty']):>6} {c['metric']:<14}"
                     f"{_fmt_diff(c):>8}{_fmt_ci(c):>19}  {c['verdict']:<14} "
                     f"{_fmt_side(c, 'first')} / {_fmt_side(c, 'second')}")
    return lines


def verdict_lines(comparisons: List[Dict[str, Any]], task: str | None = None) -> List[str]:
    """One sentence per comparison (and task level): the paper's claim, then each metric's
    numbers and verdict, generated from comparisons.csv rows (lesson 7 prints them)."""
    lines = []
    keys = dict.fromkeys((c["comparison"], c["task"], str(c["difficulty"])) for c in comparisons
                         if task is None or c["task"] == task)
    for name, t, d in keys:
        rs = {c["metric"]: c for c in comparisons
              if (c["comparison"], c["task"], str(c["difficulty"])) == (name, t, d)}
        claim = str(next(iter(rs.values()))["paper_claim"]).split(":")[0].split(" (")[0]
        parts = []
        for metric, what in (("accuracy", "accuracy among the seeds that learned"),
                             ("learned_share", "share of seeds that learned"),
                             ("steps_to_90", "steps to 90 % of the ceiling (median)")):
            c = rs.get(metric)
            if c is None:
                continue
            parts.append(f"{what}: {_fmt_side(c, 'first')} vs {_fmt_side(c, 'second')}, "
                         f"{_fmt_diff(c)} ({_fmt_ci(c)}) -> {c['verdict']}")
        lines.append(f"{name} on {task_label(t, d)} (paper: {claim}):\n    "
                     + ";\n    ".join(parts))
    return lines


def claims_markdown(comparisons: List[Dict[str, Any]], task: str) -> List[str]:
    """A markdown table, one row per comparison on ``task``, one column per metric: the two
    sides, the difference with its interval or p, and the verdict (docs and README)."""
    lines = ["| comparison (paper) | accuracy of the seeds that learned | share that learned | "
             "steps to 90 % (median) |", "|---|---|---|---|"]
    names = dict.fromkeys(c["comparison"] for c in comparisons if c["task"] == task)
    for name in names:
        rs = {c["metric"]: c for c in comparisons if c["task"] == task
              and c["comparison"] == name}
        claim = str(next(iter(rs.values()))["paper_claim"]).split(":")[0].split(" (")[0]
        cells = []
        for metric in METRICS:
            c = rs.get(metric)
            cells.append("–" if c is None else
                         f"{_fmt_side(c, 'first')} vs {_fmt_side(c, 'second')}: "
                         f"{_fmt_diff(c)} ({_fmt_ci(c)}), **{c['verdict']}**")
        lines.append(f"| {name} ({claim}) | " + " | ".join(cells) + " |")
    return lines


def curve_matrix(curves: List[Dict[str, Any]], task: str, model: str, steps: Sequence[int]):
    """The validation curves of ``model`` on ``task`` as an array (seeds, len(steps)), each
    continued at its last value after its run stopped (a stopped run stays where it
    converged). ``curves``: rows of curves.csv."""
    import numpy as np

    runs: Dict[str, Dict[int, float]] = {}
    for r in curves:
        if r["task"] == task and r["model"] == model:
            runs.setdefault(str(r["seed"]), {})[int(r["step"])] = float(r["accuracy"])
    if not runs:
        raise ValueError(f"no curve of model {model!r} on task {task!r}")
    out = []
    for pts in runs.values():
        end = max(pts)
        out.append([pts.get(int(s), pts[end]) if s <= end else pts[end] for s in steps])
    return np.array(out)


# --------------------------------------------------------------------------- figures
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
    groups = list(dict.fromkeys(_key(r) for r in rows))
    fig, axes = plt.subplots(len(groups), 1, figsize=(FIG_WIDTH, 3.4 * len(groups)),
                             squeeze=False, layout="constrained")
    for ax, (task, diff) in zip(axes[:, 0], groups):
        sub = [r for r in rows if _key(r) == (task, diff)]
        models = list(dict.fromkeys(r["model"] for r in sub))
        for i, m in enumerate(models):
            rs = [r for r in sub if r["model"] == m]
            good = [float(r["accuracy"]) for r in rs if _truth(r.get("learned", True))]
            bad = [float(r["accuracy"]) for r in rs if not _truth(r.get("learned", True))]
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
    groups = list(dict.fromkeys(_key(r) for r in curves))
    panels = [(g, m) for g in groups
              for m in dict.fromkeys(r["model"] for r in curves if _key(r) == g)]
    ncols = 3
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(FIG_WIDTH, 2.3 * nrows), squeeze=False,
                             sharey=True)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    capped = {_run_key(r) for r in rows or [] if _truth(r.get("capped", False))}
    levels = {}
    for r in rows or []:
        chance, top = float(r["chance"]), float(r["ceiling"])
        levels[_key(r)] = stats.level(chance, top, stats.LEVELS["steps_to_90"])
    for ax, (g, m) in zip(axes.flat, panels):
        sub = [r for r in curves if _key(r) == g and r["model"] == m]
        for k, seed in enumerate(dict.fromkeys(int(r["seed"]) for r in sub)):
            pts = sorted((int(r["step"]), float(r["accuracy"])) for r in sub
                         if int(r["seed"]) == seed)
            ls = "--" if (g[0], g[1], m, seed) in capped else "-"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], ls, color=f"C{k % 10}", lw=1.2)
        if g in levels:
            ax.axhline(levels[g], color="k", lw=0.8, ls=":")
        ax.set_title(f"{m} ({task_label(*g)})", fontsize=SMALLEST_FONT)
        ax.set_ylim(0.4, 1.02)
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


def read_csv(path: Path) -> List[Dict[str, Any]]:
    """Rows of a csv written by :func:`main` (numbers stay strings except accuracy etc.)."""
    with Path(path).open() as f:
        return list(csv.DictReader(f))


def summarize_results(out: Path) -> List[Dict[str, Any]]:
    """From the files a run wrote (ablation.csv, curves.csv, attention_maps.json,
    machine.json): ablation.csv again with the derived columns (:func:`derive`),
    comparisons.csv, ablation.md and the figures. Returns the comparisons."""
    out = Path(out)
    curves = read_csv(out / "curves.csv")
    rows = derive([{k: r[k] for k in COLUMNS if k in r} for r in read_csv(out / "ablation.csv")],
                  curves)
    write_csv(out / "ablation.csv", rows, COLUMNS + DERIVED_COLUMNS)
    comparisons = compare(rows)
    write_csv(out / "comparisons.csv", comparisons, COMPARISON_COLUMNS)
    machine = json.loads((out / "machine.json").read_text())
    write_markdown(rows, comparisons, out / "ablation.md", machine)
    plot_table(rows, out / "ablation.png")
    if curves:
        plot_curves(curves, out / "curves.png", rows)
    if (out / "attention_maps.json").exists():
        plot_block_attention(json.loads((out / "attention_maps.json").read_text()),
                             out / "attention_blocks.png")
    return comparisons
