"""The numbers of docs/experiments.md and the README's experiments section, made from the
committed results.

Each generated block sits between ``<!-- generated: NAME ARGS -->`` and ``<!-- /generated -->``
in a markdown file; :func:`render` rewrites the lines between the two from the CSVs of a
results folder (``data/results``), and leaves everything else alone. Blocks:

``run``                    where and how the results were made (machine.json, one line per
                           invocation) and the wall time the plan needs on 2 idle cores
``models TASK LEVEL``      per model: learned share, accuracy, steps to 90 / 95 %, capped
``claims TASK``            the comparisons on TASK, one column per metric
``bar``                    the separation bar on every dense task
``nl``                     the NL blocks' attention statistics (dead blocks named)
``summary``                every comparison on every task, one verdict per metric

Usage::

    python -m gclab.experiments.writeup --write   # rewrite the blocks of the docs and README
    python -m gclab.experiments.writeup --check   # exit 1 when a block differs from the CSVs
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

from gclab.experiments.comparisons import (
    BAR,
    METRICS,
    bar_check,
    derive,
    group_key,
    read_csv,
    task_label,
)
from gclab.experiments.data import DATA_DIR
from gclab.experiments.plan import DEFAULT_TASKS
from gclab.experiments.report import (
    attention_markdown,
    claims_markdown,
    model_table_markdown,
    short_cell,
)

ROOT = DATA_DIR.parent
#: the files whose generated blocks ``--write`` rewrites
FILES = (ROOT / "docs" / "experiments.md", ROOT / "README.md")
BEGIN = re.compile(r"^<!-- generated: (.+?) -->$")
END = "<!-- /generated -->"
#: the plan's runs share 2 cores: its wall time on an idle machine is its CPU time / this
IDLE_WORKERS = 2


@dataclass
class Results:
    """What a results folder holds: derived rows, comparisons, machine.json."""

    rows: List[Dict[str, Any]]
    comparisons: List[Dict[str, Any]]
    machine: Dict[str, Any]

    @classmethod
    def read(cls, folder: Path) -> Results:
        folder = Path(folder)
        rows = read_csv(folder / "ablation.csv")
        if rows and "learned" not in rows[0]:
            rows = derive(rows, read_csv(folder / "curves.csv"))
        return cls(rows, read_csv(folder / "comparisons.csv"),
                   json.loads((folder / "machine.json").read_text()))


def run_lines(res: Results) -> List[str]:
    """One line per invocation of machine.json, then the idle estimate of the whole plan."""
    parts = res.machine.get("parts", [res.machine])
    lines = []
    for p in parts:
        wall = (f"{p['wall_minutes']:.1f} min wall (for all it trained then: "
                f"{', '.join(p['trained_tasks'])})" if "trained_tasks" in p else
                f"{p['wall_minutes']:.1f} min wall")
        lines.append(f"* `{p['command']}` ({', '.join(p.get('tasks', []))}): "
                     f"{p['runs']} runs ({p.get('capped_runs', 0)} capped), "
                     f"{wall} and {p['cpu_minutes']:.1f} min of training CPU on {p['cpu']} "
                     f"({p['logical_cpus']} cores), "
                     f"{p['jobs']} workers x {p['threads']} thread, 1-min load "
                     f"{p.get('load_average_1min_mean_during_run')} on average (the run's own "
                     f"{p['jobs']} workers included), {p['date']}.")
    per_task: Dict[str, float] = {}
    for r in res.rows:
        per_task[r["task"]] = per_task.get(r["task"], 0.0) + float(r["cpu_seconds"]) / 60
    default = {t: m for t, m in per_task.items() if t in DEFAULT_TASKS}
    cpu = sum(default.values())
    others = [t for t in per_task if t not in DEFAULT_TASKS]
    lines.append(f"* On {IDLE_WORKERS} idle cores the default plan (`gclab reproduce` without "
                 f"`--tasks`) needs about **{cpu / IDLE_WORKERS:.0f} min** of wall time (its "
                 f"{cpu:.1f} min of training CPU over {IDLE_WORKERS} workers; "
                 + ", ".join(f"{t} {m / IDLE_WORKERS:.0f} min" for t, m in default.items())
                 + ")" + "".join(f"; `--tasks {t}` another {per_task[t] / IDLE_WORKERS:.0f} min"
                                 for t in others) + ".")
    return lines


def bar_lines(res: Results) -> List[str]:
    """Per dense task level: the bar's five points and whether it is met."""
    lines = ["| task | best block model | worst block model | baseline (chance) | seeds | "
             "best and worst converged | bar met? |", "|---|---|---|---|---|---|---|"]
    for task, diff in dict.fromkeys(group_key(r) for r in res.rows):
        if not any(r["model"] == "baseline" for r in res.rows if r["task"] == task):
            continue
        b = bar_check(res.rows, task, diff)
        ok = {k: "yes" if v else "**no**" for k, v in b["checks"].items()}
        lines.append(
            f"| {task_label(task, diff)} | {b['best']} {b['means'][b['best']]:.3f} "
            f"(≤ {BAR['best_at_most']}: {ok['best_at_most']}) | {b['worst']} "
            f"{b['means'][b['worst']]:.3f} (spread ≥ {BAR['spread_at_least']}: "
            f"{ok['spread_at_least']}) | {b['baseline']:.3f} ({b['chance']:.3f}; within "
            f"{BAR['baseline_within']}: {ok['baseline_within']}) | {b['seeds']} "
            f"(≥ {BAR['seeds_at_least']}: {ok['seeds_at_least']}) | {ok['converged']} | "
            f"{'**yes**' if b['met'] else '**no**'} |")
    return lines


def summary_lines(res: Results) -> List[str]:
    """Every comparison on every task level: one cell per metric with its verdict."""
    lines = ["| comparison | task | accuracy of the converged learners (difference, 95 % CI) | "
             "share that learned (Fisher) | median steps to 90 % (Mann-Whitney) | "
             "accuracy of every converged run (Mann-Whitney) |",
             "|---|---|---|---|---|---|"]
    keys = dict.fromkeys((c["comparison"], c["task"], c["difficulty"])
                         for c in res.comparisons)
    names = list(dict.fromkeys(k[0] for k in keys))
    for name, task, diff in sorted(keys, key=lambda k: names.index(k[0])):
        rs = {c["metric"]: c for c in res.comparisons
              if (c["comparison"], c["task"], c["difficulty"]) == (name, task, diff)}
        lines.append(f"| {name} | {task_label(task, diff)} | "
                     + " | ".join(short_cell(rs[m]) if m in rs else "–" for m in METRICS)
                     + " |")
    return lines


def _block(res: Results, name: str, args: Sequence[str]) -> List[str]:
    makers: Dict[str, Callable[[], List[str]]] = {
        "run": lambda: run_lines(res),
        "models": lambda: model_table_markdown(res.rows, (args[0], args[1])),
        "claims": lambda: claims_markdown(res.comparisons, args[0]),
        "bar": lambda: bar_lines(res),
        "nl": lambda: attention_markdown(res.rows)[2:],
        "summary": lambda: summary_lines(res),
    }
    if name not in makers:
        raise ValueError(f"unknown generated block {name!r}; known: {sorted(makers)}")
    return makers[name]()


def render(text: str, res: Results) -> str:
    """``text`` with every generated block rewritten from ``res``; an unclosed block or an
    unknown name raises ValueError."""
    out: List[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        out.append(lines[i])
        m = BEGIN.match(lines[i])
        i += 1
        if not m:
            continue
        try:
            end = lines.index(END, i)
        except ValueError:
            raise ValueError(f"generated block {m.group(1)!r} has no {END}") from None
        name, *args = m.group(1).split()
        out += [ln.rstrip() for ln in _block(res, name, args)] + [END]
        i = end + 1
    return "\n".join(out)


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gclab.experiments.writeup",
                                description=__doc__.split("\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true", help="rewrite the generated blocks")
    g.add_argument("--check", action="store_true", help="exit 1 when a block is stale")
    p.add_argument("--results", type=Path, default=DATA_DIR / "results")
    args = p.parse_args(argv)
    res = Results.read(args.results)
    stale = []
    for path in FILES:
        text = path.read_text()
        new = render(text, res)
        if new != text:
            stale.append(path)
            if args.write:
                path.write_text(new)
    verb = "rewrote" if args.write else "stale:"
    print(f"{verb} {', '.join(str(s) for s in stale)}" if stale else "generated blocks up to date")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
