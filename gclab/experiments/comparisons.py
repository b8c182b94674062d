"""The paper's comparisons, decided per metric from the runs of ``gclab reproduce``.

:func:`derive` adds the per-run metrics of the converged protocol to the rows of
``ablation.csv`` (the task's ceiling; whether a seed learned; steps to 90 % / 95 % of the way
from chance to the ceiling); :func:`compare` writes the rows of ``comparisons.csv``: per
comparison of :data:`COMPARISONS`, task and difficulty, one row per metric of
:data:`METRICS` -- accuracy among the seeds that learned with its 95 % Welch interval, the
learned share with Fisher's exact test, the steps to 90 % with an exact Mann-Whitney test, and
the accuracy of every converged run (learned or not) with the same rank test.
The files' columns are defined here. Example (two models, all learned, GC reaching 90 % of the
ceiling later on every seed; four seeds each: with three the smallest possible p is 1/20,
never below 0.05; with four it is 1/70)::

    >>> rows = [{"task": "t", "difficulty": "", "model": m, "seed": s, "accuracy": a,
    ...          "learned": True, "steps_to_90": st, "flat": True, "block_flops": 1}
    ...         for m, runs in (("gc_r16", ((0.97, 900), (0.96, 800), (0.97, 700), (0.96, 600))),
    ...                         ("nl", ((0.96, 300), (0.97, 200), (0.97, 250), (0.96, 350))))
    ...         for s, (a, st) in enumerate(runs)]
    >>> v = {c["metric"]: c["verdict"] for c in compare(rows) if c["comparison"] == "GC vs NL"}
    >>> v["accuracy"], v["learned_share"], v["steps_to_90"]
    ('reproduced', 'not decidable', 'reversed')
    >>> v["accuracy_all"]  # a rank test on where the runs end cannot show '≈', only refute it
    'not decidable'
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from gclab.experiments import analysis, stats

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
    "attention_dead_share", "keys_read",
)
#: what :func:`derive` adds to every row of ablation.csv once all runs are in
DERIVED_COLUMNS = ("ceiling", "learned", "steps_to_90", "steps_to_95")
#: the metrics a comparison is decided on (one row of comparisons.csv each); ``accuracy_all``
#: ranks the final accuracy of every converged run, learned or not: on a graded task (keys
#: read, 0 to 16) most runs sit between chance and the ceiling, below the "learned" line
METRICS = ("accuracy", "learned_share", "steps_to_90", "accuracy_all")
COMPARISON_COLUMNS = ("comparison", "task", "difficulty", "metric", "difference", "ci_low",
                      "ci_high", "p_value", "verdict", "paper_claim", "first", "second",
                      "first_mean", "second_mean", "n_first", "n_second", "flops_ratio")
CURVE_COLUMNS = ("task", "difficulty", "model", "seed", "step", "accuracy")


def group_key(row: Dict[str, Any]) -> Tuple[str, str]:
    """(task, difficulty) of a row, as strings."""
    return str(row["task"]), str(row["difficulty"])


def run_key(row: Dict[str, Any]) -> Tuple[str, str, str, int]:
    """(task, difficulty, model, seed) of a row."""
    return str(row["task"]), str(row["difficulty"]), str(row["model"]), int(row["seed"])


def is_true(v: Any) -> bool:
    """A csv cell read as a bool (``True``, ``1``, ``yes``)."""
    return str(v).strip().lower() in ("true", "1", "yes")


def task_label(task: str, diff: Any) -> str:
    """How a (task, difficulty) is named in tables and figures."""
    return task if diff in ("", None) else f"{task} (difficulty {diff})"


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
        by_run.setdefault(run_key(c), []).append((int(c["step"]), float(c["accuracy"])))
    out = []
    for task, diff in dict.fromkeys(group_key(r) for r in rows):
        sub = [r for r in rows if group_key(r) == (task, diff)]
        val = {r["model"]: [] for r in sub}
        for r in sub:
            val[r["model"]].append(_val(r))
        top = stats.ceiling(val)
        for r in sub:
            chance = float(r["chance"])
            curve = sorted(by_run.get(run_key(r), []))
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
    return is_true(row.get("flat", True))


def _median(v: List[float]) -> float:
    return statistics.median(v) if v else math.nan


def _num(v: float) -> Any:
    return "" if math.isnan(v) else (v if math.isinf(v) else round(v, 4))


def _compare_accuracy(a: List[Dict], b: List[Dict], c: Comparison, margin: float) -> Dict:
    """Welch interval of test accuracy among the seeds that learned and converged."""
    xa = [float(r["accuracy"]) for r in a if is_true(r["learned"]) and _converged(r)]
    xb = [float(r["accuracy"]) for r in b if is_true(r["learned"]) and _converged(r)]
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
    ka, kb = sum(is_true(r["learned"]) for r in a), sum(is_true(r["learned"]) for r in b)
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


def _compare_rank(a: List[Dict], b: List[Dict], c: Comparison) -> Dict:
    """Exact one-sided Mann-Whitney test on the test accuracy of every converged run, learned
    or not (a rank test: it compares where the runs end, without averaging a learned-or-not
    outcome). A '≈' claim can only be reversed this way (the first ranks lower), never shown."""
    xa = [float(r["accuracy"]) for r in a if _converged(r)]
    xb = [float(r["accuracy"]) for r in b if _converged(r)]
    verdict, p, d = "not decidable", math.nan, math.nan
    if xa and xb:
        p_lower, p_higher = stats.rank_test(xa, xb)
        d = _median(xa) - _median(xb)
        if c.direction == "greater":
            verdict, p = stats.one_sided_verdict(p_higher, p_lower), min(p_lower, p_higher)
        else:
            verdict = "reversed" if p_lower < stats.ALPHA else "not decidable"
            p = p_lower
    return {"difference": _num(d), "ci_low": "", "ci_high": "", "p_value": _num(p),
            "verdict": verdict, "first_mean": _num(_median(xa)),
            "second_mean": _num(_median(xb)), "n_first": len(xa), "n_second": len(xb)}


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
    seeds never got there). ``accuracy_all``: difference of the median test accuracy of every
    converged run, learned or not, exact one-sided Mann-Whitney test. Rows without
    ``learned`` are first passed through :func:`derive` (with ``curves``).
    """
    if rows and "learned" not in rows[0]:
        rows = derive(rows, curves or [])
    out = []
    for task, diff in dict.fromkeys(group_key(r) for r in rows):
        sub = [r for r in rows if group_key(r) == (task, diff)]
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
                elif metric == "accuracy_all":
                    res = _compare_rank(a, b, c)
                else:
                    res = _compare_steps(a, b, metric)
                out.append({**base, "metric": metric, **res})
    return out


def write_csv(path: Path, rows: List[Dict[str, Any]], columns: Sequence[str]) -> None:
    with Path(path).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> List[Dict[str, Any]]:
    """Rows of a csv written by :func:`main` (every value a string)."""
    with Path(path).open() as f:
        return list(csv.DictReader(f))


#: the bar a task must meet to separate converged models: the best model's mean test accuracy
#: at most ``best_at_most`` (not saturated), the baseline within ``baseline_within`` of
#: chance, the block models' means spread by at least ``spread_at_least``, at least
#: ``seeds_at_least`` seeds per model, and (``converged``) every run of the best and of the
#: worst block model flat over its last quarter (:func:`stats.is_flat`): a spread that comes
#: from runs still rising at their maximum measures speed, not where the models converge
BAR = {"best_at_most": 0.97, "baseline_within": 0.10, "spread_at_least": 0.10,
       "seeds_at_least": 5, "converged": True}


def bar_check(rows: List[Dict[str, Any]], task: str, difficulty: Any = "") -> Dict[str, Any]:
    """The separation bar (:data:`BAR`) on one (task, difficulty): per model the mean test
    accuracy over every seed (learned or not); ``best`` and ``worst`` among the block models
    (every model but the baseline); each point of the bar and ``met`` (all five). A row
    without ``flat`` counts as converged."""
    sub = [r for r in rows if group_key(r) == (str(task), str(difficulty))]
    if not sub:
        raise ValueError(f"no runs of task {task!r} at difficulty {difficulty!r}")
    acc: Dict[str, List[float]] = {}
    for r in sub:
        acc.setdefault(r["model"], []).append(float(r["accuracy"]))
    means = {m: statistics.fmean(v) for m, v in acc.items()}
    blocks = {m: v for m, v in means.items() if m != "baseline"}
    best, worst = max(blocks, key=blocks.get), min(blocks, key=blocks.get)
    chance = statistics.fmean(float(r["chance"]) for r in sub)
    base = means.get("baseline", math.nan)
    checks = {"best_at_most": blocks[best] <= BAR["best_at_most"],
              "baseline_within": abs(base - chance) <= BAR["baseline_within"],
              "spread_at_least": blocks[best] - blocks[worst] >= BAR["spread_at_least"],
              "seeds_at_least": min(len(v) for v in acc.values()) >= BAR["seeds_at_least"],
              "converged": all(_converged(r) for r in sub if r["model"] in (best, worst))}
    return {"task": task, "difficulty": difficulty, "means": means, "best": best,
            "worst": worst, "chance": chance, "baseline": base,
            "seeds": min(len(v) for v in acc.values()), "checks": checks,
            "met": all(checks.values())}
