"""``gclab reproduce``: the GCNet ablation table at laptop scale (issue 4).

Trains and evaluates every model of :data:`MODELS` (baseline, Non-local in four modes, SNL,
GC r16/r4, SE and the GC ablations) over several seeds on the long-range task (and, in the full
run, on the digits task), then writes into ``--out`` (default ``data/results``):

- ``ablation.csv``   one row per run (task, model, seed, accuracy, chance, block_params,
  block_flops, latency_ms, ... and the query-independence statistics of the block);
- ``ablation.md``    means +- std over seeds, per task and model;
- ``ablation.png``, ``attention_nl.png``  the figures;
- ``machine.json``   where and how long it ran;
- ``nl_longrange_seed0.pt``  the trained NL model that lesson 3 looks inside.

Usage::

    gclab reproduce            # the full table (3 seeds, both tasks; 2 workers x 1 thread)
    gclab reproduce --quick    # 1 seed, 3 models, long-range task only (~1 min)
    gclab reproduce --seeds 5 --out /tmp/results
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence

import torch

from gclab.experiments import analysis
from gclab.experiments.data import DATA_DIR, load, to_tensors
from gclab.experiments.models import SmallResNet
from gclab.experiments.train import TrainConfig, accuracy, build, train

RESULTS_DIR = DATA_DIR / "results"
#: every block sits in the single unit of layer3 (4 x 16 positions, 32 channels)
STAGES = (3,)


@dataclass(frozen=True)
class ModelSpec:
    """How to build one row's model: a block name (or None) and its constructor kwargs."""

    block: str | None
    kwargs: Dict[str, Any] = field(default_factory=dict)
    position: str | None = None


MODELS: Dict[str, ModelSpec] = {
    "baseline": ModelSpec(None),
    "nl": ModelSpec("nl", {"mode": "embedded_gaussian"}),
    "nl_gaussian": ModelSpec("nl", {"mode": "gaussian"}),
    "nl_dot_product": ModelSpec("nl", {"mode": "dot_product"}),
    "nl_concatenation": ModelSpec("nl", {"mode": "concatenation"}),
    "snl": ModelSpec("snl"),
    "gc_r16": ModelSpec("gc", {"ratio": 1 / 16}),
    "gc_r4": ModelSpec("gc", {"ratio": 1 / 4}),
    "se_r16": ModelSpec("se", {"ratio": 1 / 16}),
    "gc_r16_avg": ModelSpec("gc", {"ratio": 1 / 16, "pooling": "avg"}),
    "gc_r16_mul": ModelSpec("gc", {"ratio": 1 / 16, "fusions": ("mul",)}),
    "gc_r16_add_mul": ModelSpec("gc", {"ratio": 1 / 16, "fusions": ("mul", "add")}),
    "gc_r16_noln": ModelSpec("gc", {"ratio": 1 / 16, "layer_norm": False}),
}
#: the models trained on the digits task in the full run (the main comparison only)
DIGITS_MODELS = ("baseline", "nl", "snl", "gc_r16", "se_r16")
QUICK_MODELS = ("baseline", "gc_r16", "nl")
#: the GC model whose success the quick test checks
QUICK_GC = "gc_r16"
COLUMNS = (
    "task", "model", "seed", "accuracy", "chance", "block_params", "block_flops", "latency_ms",
    "block_latency_ms", "model_params", "model_flops", "train_seconds", "final_loss",
    "dist_input", "dist_output", "dist_attention",
)


@dataclass
class Plan:
    """What one invocation trains: tasks x models x seeds, and the training budget."""

    tasks: Dict[str, Sequence[str]]
    seeds: Sequence[int]
    config: TrainConfig
    n_train: int


def make_plan(quick: bool, seeds: int | None = None) -> Plan:
    """The full plan or the ``--quick`` one; ``seeds`` overrides the number of seeds."""
    if quick:
        n = 1 if seeds is None else seeds
        return Plan({"longrange": QUICK_MODELS}, range(n),
                    TrainConfig(epochs=1, batch_size=64, lr=3e-3), n_train=150 * 64)
    n = 3 if seeds is None else seeds
    models = tuple(m for m in MODELS if m != "gc_r16_add_mul")
    return Plan({"longrange": models, "digits": DIGITS_MODELS}, range(n),
                TrainConfig(epochs=1, batch_size=64, lr=3e-3), n_train=200 * 64)


def build_model(name: str) -> SmallResNet:
    """The SmallResNet of model ``name`` (a key of :data:`MODELS`), block in layer3."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {list(MODELS)}, got {name!r}")
    spec = MODELS[name]
    return SmallResNet(block=spec.block, stages=STAGES, position=spec.position,
                       block_kwargs=dict(spec.kwargs))


def run_one(task: str, name: str, seed: int, plan: Plan, tensors: Dict[str, Any],
            progress: bool = True) -> Dict[str, Any]:
    """Train model ``name`` with ``seed`` on ``task`` and measure it; returns one csv row."""
    xtr, ytr, xte, yte = tensors[task]
    cfg = TrainConfig(**{**plan.config.as_dict(), "seed": seed, "progress": progress,
                         "desc": f"{task}/{name}/s{seed}"})
    model = build(lambda: build_model(name), seed=seed)
    t0 = time.perf_counter()
    hist = train(model, xtr[: plan.n_train], ytr[: plan.n_train], cfg)
    seconds = time.perf_counter() - t0
    acc = accuracy(model, xte, yte)
    one = xte[:1]
    costs = analysis.block_costs(model, one, latency=False)
    batch = xte[:64]
    row = {
        "task": task, "model": name, "seed": seed, "accuracy": round(acc, 4),
        "chance": round(max(float(yte.float().mean()), 1 - float(yte.float().mean())), 4),
        "block_params": int(costs["blocks"]["params"]),
        "block_flops": int(costs["blocks"]["flops"]),
        "latency_ms": round(analysis.latency_ms(model, batch, repeats=10), 3),
        "block_latency_ms": "",
        "model_params": int(costs["model"]["params"]),
        "model_flops": int(costs["model"]["flops"]),
        "train_seconds": round(seconds, 1), "final_loss": round(hist["loss"][-1], 4),
        "dist_input": "", "dist_output": "", "dist_attention": "",
    }
    blocks = analysis.find_blocks(model)
    if blocks:
        name_b, block = blocks[0]
        inp, _ = analysis.capture(model, batch, block)
        row["block_latency_ms"] = round(analysis.latency_ms(block, inp, repeats=10), 3)
        stats = analysis.query_independence(model, xte[:128], block=block)
        row.update({f"dist_{k}": round(v, 4) for k, v in stats.items()})
    return {"row": row, "model": model}


def write_markdown(rows: List[Dict[str, Any]], path: Path, machine: Dict[str, Any]) -> str:
    """Means +- std (over seeds) per task and model; returns the text written to ``path``."""
    lines = ["# Ablation table (laptop scale)", "",
             f"Generated by `{machine['command']}` on {machine['cpu']} "
             f"({machine['jobs']} process(es) x {machine['threads']} torch thread(s)), "
             f"{machine['date']}; "
             f"{machine['wall_minutes']:.1f} min. Mean ± std over seeds {machine['seeds']}.",
             ""]
    for task in dict.fromkeys(r["task"] for r in rows):
        sub = [r for r in rows if r["task"] == task]
        lines += [f"## {task} (chance {sub[0]['chance']:.2f})", "",
                  "| model | accuracy | block params | block MFLOPs | model MFLOPs | "
                  "latency ms (64 imgs) | attention dist | output dist | input dist | n |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for model in dict.fromkeys(r["model"] for r in sub):
            rs = [r for r in sub if r["model"] == model]
            m, s = analysis.summarize(r["accuracy"] for r in rs)
            lat, lat_s = analysis.summarize(r["latency_ms"] for r in rs)

            def dist(key: str, rs=rs) -> str:
                vals = [r[key] for r in rs if r[key] != ""]
                if not vals:
                    return "–"
                mu, sd = analysis.summarize(vals)
                return f"{mu:.3f} ± {sd:.3f}"

            lines.append(
                f"| {model} | {m:.3f} ± {s:.3f} | {rs[0]['block_params']:,} | "
                f"{rs[0]['block_flops'] / 1e6:.3f} | {rs[0]['model_flops'] / 1e6:.2f} | "
                f"{lat:.1f} ± {lat_s:.1f} | {dist('dist_attention')} | {dist('dist_output')} | "
                f"{dist('dist_input')} | {len(rs)} |"
            )
        lines.append("")
    text = "\n".join(lines)
    path.write_text(text)
    return text


def plot_table(rows: List[Dict[str, Any]], path: Path) -> None:
    """Accuracy per model (mean and each seed) for each task, chance as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sub = [r for r in rows if r["task"] == task]
        models = list(dict.fromkeys(r["model"] for r in sub))
        for i, m in enumerate(models):
            accs = [r["accuracy"] for r in sub if r["model"] == m]
            ax.bar(i, sum(accs) / len(accs), color="C0" if m.startswith("gc") else "C7")
            ax.plot([i] * len(accs), accs, "k.", ms=4)
        ax.axhline(sub[0]["chance"], color="r", ls="--", lw=1, label="chance")
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, rotation=60, ha="right", fontsize=8)
        ax.set_ylim(0.4, 1.0)
        ax.set_ylabel("test accuracy")
        ax.set_title(task)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_nl_attention(model: SmallResNet, xte: torch.Tensor, path: Path) -> None:
    """Attention maps of the trained NL model for 4 queries on 2 test images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def machine_info(args: argparse.Namespace, seconds: float, seeds: Sequence[int]) -> Dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "command": "gclab reproduce" + (" --quick" if args.quick else "")
        + (f" --seeds {args.seeds}" if args.seeds is not None else "")
        + f" --jobs {args.jobs} --threads {args.threads}",
        "cpu": cpu, "logical_cpus": os.cpu_count(), "threads": torch.get_num_threads(),
        "jobs": args.jobs,
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                               time.gmtime()),
        "wall_minutes": seconds / 60, "seeds": list(seeds),
    }


_TENSORS: Dict[str, Any] = {}


def _tensors(task: str):
    if task not in _TENSORS:
        xtr, ytr = to_tensors(*load(task, "train"))
        xte, yte = to_tensors(*load(task, "test"))
        _TENSORS[task] = (xtr, ytr, xte, yte)
    return _TENSORS


def _job(args: tuple) -> Dict[str, Any]:
    """One (task, model, seed) run in a worker; saves the NL artefacts of lesson 3."""
    task, name, seed, plan, out, progress, threads = args
    if threads is not None:
        torch.set_num_threads(threads)
    res = run_one(task, name, seed, plan, _tensors(task), progress=progress)
    if task == "longrange" and name == "nl" and seed == list(plan.seeds)[0]:
        torch.save(res["model"].state_dict(), Path(out) / "nl_longrange_seed0.pt")
        plot_nl_attention(res["model"], _TENSORS[task][2], Path(out) / "attention_nl.png")
    return res["row"]


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gclab reproduce", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1 seed, 3 models, long-range only")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3; 1 quick)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="output folder")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads per run (default 1: every run is then "
                   "bit-reproducible whatever --jobs is)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="runs in parallel, one worker process each (default: 2 on 2+ cores)")
    args = p.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        p.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.jobs < 1 or args.threads < 1:
        p.error(f"--jobs and --threads must be >= 1, got {args.jobs} and {args.threads}")
    torch.set_num_threads(args.threads)
    plan = make_plan(args.quick, args.seeds)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(task, name, seed, plan, str(out), not args.no_progress and args.jobs == 1,
             args.threads) for task, models in plan.tasks.items() for name in models
            for seed in plan.seeds]
    t0 = time.perf_counter()
    rows: List[Dict[str, Any]] = []
    csv_path = out / "ablation.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        if args.jobs == 1:
            results = map(_job, jobs)
        else:
            import multiprocessing as mp

            pool = mp.get_context("spawn").Pool(args.jobs)
            results = pool.imap(_job, jobs)
        for row in results:
            rows.append(row)
            writer.writerow(row)
            f.flush()
            print(f"{row['task']:<9} {row['model']:<17} seed {row['seed']}  "
                  f"acc {row['accuracy']:.3f}  ({row['train_seconds']:.0f} s)", flush=True)
        if args.jobs != 1:
            pool.close()
            pool.join()
    machine = machine_info(args, time.perf_counter() - t0, list(plan.seeds))
    (out / "machine.json").write_text(json.dumps(machine, indent=2) + "\n")
    write_markdown(rows, out / "ablation.md", machine)
    plot_table(rows, out / "ablation.png")
    print(f"wrote {csv_path}, ablation.md, ablation.png, machine.json in {out} "
          f"({machine['wall_minutes']:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
