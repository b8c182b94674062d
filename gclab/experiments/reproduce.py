"""``gclab reproduce``: the GCNet comparisons at laptop scale, trained to convergence.

Trains the plan of :mod:`gclab.experiments.plan` (models x tasks x levels x seeds, each run
under its task's converged protocol) and measures every run. Writes into ``--out`` (default:
a NEW folder ``./gclab-results`` in the current directory; the committed results are
rewritten only with ``--out data/results``):

- ``ablation.csv``     one row per run (task, difficulty, model, seed, test and validation
  accuracy, steps, capped, flat, costs, the attention statistics, and the derived columns);
- ``comparisons.csv``  per paper comparison, task and difficulty, one row per metric
  (:mod:`gclab.experiments.comparisons`);
- ``curves.csv``       validation accuracy during training (task, difficulty, model, seed,
  step);
- ``attention_maps.json``  the attention maps drawn in ``attention_blocks.png``;
- ``ablation.md``, ``ablation.png``, ``curves.png``, ``attention_blocks.png``,
  ``attention_nl.png``;
- ``machine.json``     every invocation that made the files (``parts``: command, tasks, CPU,
  load, wall and CPU time) and the totals;
- ``nl_longrange_seed0.pt``  the trained NL model that lesson 3 looks inside.

``--tasks`` trains a part of the plan; with ``--merge`` its runs replace those tasks' rows in
the results already in ``--out`` and keep every other task's.

Usage::

    gclab reproduce                      # the full plan into ./gclab-results (2 workers)
    gclab reproduce --quick              # 1 seed, a few models (~1 min)
    gclab reproduce --tasks manykeys --merge --out data/results   # one task into the rest
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
from typing import Any, Dict, List, Sequence, Tuple

import torch

from gclab.experiments import analysis, stats
from gclab.experiments.comparisons import COLUMNS, CURVE_COLUMNS, read_csv, task_label
from gclab.experiments.data import DATA_DIR, load, to_tensors
from gclab.experiments.figures import plot_nl_attention
from gclab.experiments.keys_read import LAYOUT as KEY_LAYOUT
from gclab.experiments.keys_read import keys_read
from gclab.experiments.models import SmallResNet
from gclab.experiments.plan import (
    AT_CHANCE_BY_CONSTRUCTION,
    ATTENTION_MODELS,
    Plan,
    build_model,
    make_plan,
    select_tasks,
)
from gclab.experiments.report import summarize_results
from gclab.experiments.tasks import IGNORE
from gclab.experiments.train import TrainConfig, accuracy, build, predict, train
from gclab.nn import NonLocal2d

#: the committed results (read by lessons 3 and 7); written only when asked: --out data/results
RESULTS_DIR = DATA_DIR / "results"
#: where ``gclab reproduce`` writes by default: a new folder in the current directory
DEFAULT_OUT = Path("gclab-results")

def _chance(y: torch.Tensor) -> float:
    """The accuracy of always answering the most frequent scored label."""
    scored = y[y != IGNORE]
    return float(torch.bincount(scored).max()) / scored.numel()


def run_one(task: str, difficulty: Any, name: str, seed: int, plan: Plan, tensors: Tuple,
            progress: bool = True) -> Dict[str, Any]:
    """Train model ``name`` with ``seed`` on ``(task, difficulty)`` and measure it.

    Training follows the task's :class:`TrainConfig` (the converged protocol: validation
    curve on ``eval_images`` images of the val split, early stopping, capped at
    ``max_steps``); the final accuracies are on the whole val and test splits.
    Returns ``{"row": csv row, "model": the trained model, "curve": [(step, val accuracy)]}``.
    """
    tp = plan.tasks[task]
    xtr, ytr, xva, yva, xte, yte = tensors
    cfg = TrainConfig(**{**tp.config.as_dict(), "seed": seed, "progress": progress,
                         "desc": f"{task}/{difficulty}/{name}/s{seed}",
                         "learn_above": (0.0 if name in AT_CHANCE_BY_CONSTRUCTION
                                         else tp.learn_above)})
    model = build(lambda: build_model(name, task), seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    hist = train(model, xtr[: tp.n_train], ytr[: tp.n_train], cfg,
                 eval_data=(xva[: tp.eval_images], yva[: tp.eval_images]))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    costs = analysis.block_costs(model, xte[:1], latency=False)
    batch = xte[:64]
    curve = hist.get("curve", [])
    row = {
        "task": task, "difficulty": "" if difficulty is None else difficulty, "model": name,
        "seed": seed, "accuracy": round(accuracy(model, xte, yte), 4),
        "val_accuracy": round(accuracy(model, xva, yva), 4),
        "chance": round(_chance(yte), 4), "steps": hist.get("steps", len(curve)),
        "stop_step": hist.get("stop_step", ""), "max_steps": cfg.max_steps,
        "capped": bool(hist.get("capped", False)),
        "flat": stats.is_flat(curve, min(tp.eval_images, len(xva))) if curve else "",
        "eval_images": min(tp.eval_images, len(xva)),
        "block_params": int(costs["blocks"]["params"]),
        "block_flops": int(costs["blocks"]["flops"]),
        "latency_ms": round(analysis.latency_ms(model, batch, repeats=5), 3),
        "block_latency_ms": "",
        "model_params": int(costs["model"]["params"]),
        "model_flops": int(costs["model"]["flops"]),
        "train_seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
        "final_loss": round(hist["loss"][-1], 4),
        "dist_input": "", "dist_output": "", "dist_attention": "", "entropy_attention": "",
        "dist_attention_centered": "", "mean_map_accuracy": "", "attention_dead_share": "",
    }
    row.update(block_measurements(model, batch, xte, yte))
    row["keys_read"] = (round(keys_read(predict(model, xte), yte, task), 3)
                        if task in KEY_LAYOUT else "")
    return {"row": row, "model": model, "curve": curve}


def block_measurements(model: SmallResNet, batch: torch.Tensor, xte: torch.Tensor,
                       yte: torch.Tensor) -> Dict[str, Any]:
    """Latency of the block, the query-independence statistics (cosine distances, entropy,
    distance after subtracting the uniform map), the share of dead attention rows and, for
    NL, the mean-map replacement test. A dead block (every attention row 0 on the probe
    images, :func:`analysis.dead_attention_share`) has no maps and a constant output: its
    output and attention statistics are left empty, not scored."""
    blocks = analysis.find_blocks(model)
    if not blocks:
        return {}
    _, block = blocks[0]
    inp, _ = analysis.capture(model, batch, block)
    out: Dict[str, Any] = {"block_latency_ms": round(analysis.latency_ms(block, inp,
                                                                         repeats=5), 3)}
    probe = xte[:128]
    dead = analysis.dead_attention_share(model, probe, block)
    out["attention_dead_share"] = round(dead, 4)
    stats_ = analysis.query_independence(model, probe, block=block)
    shape = analysis.attention_shape_statistics(model, probe, block)
    measured = {"dist_input": stats_["input"], "dist_output": stats_["output"],
                "dist_attention": stats_["attention"], "entropy_attention": shape["entropy"],
                "dist_attention_centered": shape["centered"]}
    for k, v in measured.items():
        undefined = v != v or (dead == 1.0 and k != "dist_input")  # nan, or a dead block
        out[k] = "" if undefined else round(v, 4)
    if isinstance(block, NonLocal2d):
        out["mean_map_accuracy"] = round(analysis.mean_map_accuracy(model, xte, yte, block), 4)
    return out


def _cpu_model() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def machine_info(args: argparse.Namespace, seconds: float, cpu_seconds: float,
                 plan: Plan, loads: List[float]) -> Dict:
    """Where and how one invocation ran: its command, tasks, CPU, load, wall and CPU time."""
    return {
        "command": "gclab reproduce" + (" --quick" if args.quick else "")
        + (f" --tasks {','.join(args.tasks)}" if args.tasks else "")
        + (" --merge" if args.merge else "")
        + (f" --seeds {args.seeds}" if args.seeds is not None else "")
        + f" --jobs {args.jobs} --threads {args.threads}"
        + (f" --stop-after {args.stop_after:g}" if args.stop_after is not None else ""),
        "tasks": list(plan.tasks),
        "cpu": _cpu_model(), "logical_cpus": os.cpu_count(), "threads": args.threads,
        "jobs": args.jobs,
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "load_average_1min_mean_during_run": (round(sum(loads) / len(loads), 2)
                                              if loads else None),
        "torch": torch.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                               time.gmtime()),
        "wall_minutes": seconds / 60, "cpu_minutes": cpu_seconds / 60,
        "cpu_minutes_note": "sum over the runs of the worker's CPU time while training",
        "seeds": list(plan.seeds),
    }


def machine_parts(machine: Dict[str, Any], rows: List[Dict[str, Any]]) -> List[Dict]:
    """The invocations recorded in a machine.json: its ``parts``, or the whole record of a
    file written by one invocation (its ``tasks`` taken from ``rows`` when it has none)."""
    if "parts" in machine:
        return [dict(p) for p in machine["parts"]]
    part = {k: v for k, v in machine.items()
            if k not in ("runs", "capped_runs", "skipped_runs")}
    part.setdefault("tasks", list(dict.fromkeys(str(r["task"]) for r in rows)))
    part["runs"] = machine.get("runs", len(rows))
    part["capped_runs"] = machine.get("capped_runs")
    part["skipped_runs"] = machine.get("skipped_runs", [])
    return [part]


def machine_record(parts: List[Dict[str, Any]]) -> Dict[str, Any]:
    """machine.json: every invocation that made the results (``parts``) and the totals."""
    return {"parts": parts, "runs": sum(int(p["runs"]) for p in parts),
            "capped_runs": sum(int(p["capped_runs"] or 0) for p in parts),
            "skipped_runs": [s for p in parts for s in p.get("skipped_runs", [])]}


@dataclass
class Kept:
    """What ``--merge`` keeps from the results already in ``--out``: the rows, curves,
    attention maps and invocations of the tasks this invocation does not train."""

    rows: List[Dict[str, Any]] = field(default_factory=list)
    curves: List[Dict[str, Any]] = field(default_factory=list)
    maps: List[Dict[str, Any]] = field(default_factory=list)
    parts: List[Dict[str, Any]] = field(default_factory=list)


def narrow_part(part: Dict[str, Any], tasks: List[str], rows: List[Dict[str, Any]]
                ) -> Dict[str, Any]:
    """An invocation's record once only ``tasks`` of it are kept: its runs, capped runs,
    skipped runs and training CPU counted over the rows of those tasks; its wall time still
    covers everything it trained (``trained_tasks``)."""
    mine = [r for r in rows if r["task"] in tasks]
    return {**part, "tasks": tasks, "trained_tasks": part.get("trained_tasks", part["tasks"]),
            "runs": len(mine), "capped_runs": sum(r["capped"] == "True" for r in mine),
            "cpu_minutes": sum(float(r["cpu_seconds"]) for r in mine) / 60,
            "skipped_runs": [s for s in part.get("skipped_runs", []) if s[0] in tasks],
            "wall_minutes_note": "wall time of the whole invocation (trained_tasks)"}


def kept_results(out: Path, tasks: Sequence[str]) -> Kept:
    """Read the results in ``out`` and keep everything that is not about ``tasks``; an
    invocation that trained only ``tasks`` is dropped, one that trained others keeps them."""
    if not (out / "ablation.csv").exists() or not (out / "machine.json").exists():
        raise FileNotFoundError(f"--merge needs the results of an earlier reproduce in {out} "
                                "(ablation.csv, curves.csv, machine.json)")
    rows = read_csv(out / "ablation.csv")
    parts = []
    for part in machine_parts(json.loads((out / "machine.json").read_text()), rows):
        left = [t for t in part["tasks"] if t not in tasks]
        if left and left != part["tasks"]:
            parts.append(narrow_part(part, left, rows))
        elif left:
            parts.append(part)
    maps_file = out / "attention_maps.json"
    maps = json.loads(maps_file.read_text()) if maps_file.exists() else []
    return Kept(rows=[{k: r.get(k, "") for k in COLUMNS} for r in rows if r["task"] not in tasks],
                curves=[c for c in read_csv(out / "curves.csv") if c["task"] not in tasks],
                maps=[m for m in maps if m["task"] not in tasks], parts=parts)


_TENSORS: Dict[Tuple[str, Any], Tuple] = {}


def load_tensors(task: str, difficulty: Any) -> Tuple:
    """(x_train, y_train, x_val, y_val, x_test, y_test) of one task level, loaded once."""
    key = (task, difficulty)
    if key not in _TENSORS:
        _TENSORS[key] = tuple(t for split in ("train", "val", "test")
                              for t in to_tensors(*load(task, split, difficulty=difficulty)))
    return _TENSORS[key]


def _attention_records(model: SmallResNet, task: str, difficulty: Any, name: str,
                       xte: torch.Tensor) -> List[Dict[str, Any]]:
    """The attention maps drawn by :func:`plot_block_attention` (test image 0): one query in
    the right half's top rows; on ``twokeys`` NL also one in its bottom rows (each half
    needs its own key), drawn as the column ``nl (bottom query)``."""
    queries = [(1, 12)] + ([(2, 12)] if task == "twokeys" and name.startswith("nl") else [])
    maps, _ = analysis.attention_maps(model, xte[:1], queries)
    return [{"task": task, "difficulty": "" if difficulty is None else difficulty,
             "model": name if k == 0 else f"{name} (bottom query)",
             "image": xte[0, 0].numpy().tolist(), "map": maps[k].numpy().tolist(),
             "query": q if name.startswith("nl") else None}
            for k, q in enumerate(queries)]


def _job(args: tuple) -> Dict[str, Any]:
    """One (task, difficulty, model, seed) run in a worker; saves the NL artefacts of lesson
    3 and the attention maps of the new tasks."""
    task, difficulty, name, seed, plan, out, progress, threads, deadline = args
    if deadline is not None and time.time() > deadline:
        return {"skipped": (task, difficulty, name, seed)}
    if threads is not None:
        torch.set_num_threads(threads)
    tensors = load_tensors(task, difficulty)
    res = run_one(task, difficulty, name, seed, plan, tensors, progress=progress)
    first_seed = plan.tasks[task].seeds_for(difficulty)[0]
    attention: List[Dict[str, Any]] = []
    if task == "longrange" and name == "nl" and seed == first_seed:
        torch.save(res["model"].state_dict(), Path(out) / "nl_longrange_seed0.pt")
        plot_nl_attention(res["model"], tensors[4], Path(out) / "attention_nl.png")
    elif task != "longrange" and name in ATTENTION_MODELS and seed == first_seed:
        attention = _attention_records(res["model"], task, difficulty, name, tensors[4])
    curve = [{"task": task, "difficulty": res["row"]["difficulty"], "model": name,
              "seed": seed, "step": st, "accuracy": round(a, 4)} for st, a in res["curve"]]
    return {"row": res["row"], "curve": curve, "attention": attention}


def check_requirements() -> str | None:
    """None when everything ``gclab reproduce`` needs is installed, else the one-line reason
    (checked before any training starts)."""
    from gclab._extras import MissingExtra, require

    try:
        for mod in ("matplotlib", "scipy", "sklearn"):
            require(mod, extra="course", why="gclab reproduce")
    except MissingExtra as err:
        return str(err)
    return None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gclab reproduce", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="1 seed, a few models, one paint level + long-range (~1 min)")
    p.add_argument("--tasks", type=lambda v: [t for t in v.split(",") if t], default=None,
                   metavar="T1,T2", help="train only these tasks of the plan (comma-separated; "
                   "default: every task of the plan)")
    p.add_argument("--merge", action="store_true",
                   help="keep the results of the other tasks already in --out and add these "
                   "runs to them (rows of the tasks trained now are replaced)")
    p.add_argument("--seeds", type=int, default=None,
                   help="number of seeds of every dense task (default: 5, 1 on long-range; "
                   "1 with --quick)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="output folder (default: ./gclab-results; the committed results: "
                   "--out data/results)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads per run (default 1: every run is then "
                   "bit-reproducible whatever --jobs is)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: rewrite comparisons.csv, ablation.md, the derived "
                   "columns and the figures from the runs already in --out")
    p.add_argument("--stop-after", type=float, default=None, metavar="MINUTES",
                   help="start no run after this many minutes; the runs not started are "
                   "listed in machine.json (skipped_runs) and the report uses the rest")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="runs in parallel, one worker process each (default: 2 on 2+ cores)")
    return p


def _results(jobs: List[tuple], workers: int):
    """The results of ``_job`` over ``jobs``, in order, from ``workers`` processes."""
    if workers == 1:
        yield from map(_job, jobs)
        return
    import multiprocessing as mp

    pool = mp.get_context("spawn").Pool(workers)
    try:
        yield from pool.imap(_job, jobs)
    finally:
        pool.close()
        pool.join()


def _progress_line(k: int, n: int, row: Dict[str, Any]) -> str:
    return (f"[{k}/{n}] {task_label(row['task'], row['difficulty']):<24} {row['model']:<17} "
            f"seed {row['seed']}  acc {row['accuracy']:.3f}  {row['steps']} steps"
            f"{' (CAPPED at the maximum)' if row['capped'] else ''} "
            f"({row['train_seconds']:.0f} s wall, {row['cpu_seconds']:.0f} s CPU)")


def _train_all(args: argparse.Namespace, plan: Plan, kept: Kept) -> Dict[str, Any]:
    """Train every run of ``plan`` and write ablation.csv, curves.csv and
    attention_maps.json into ``args.out`` as the runs finish (after the ``kept`` results).
    Returns this invocation's machine record."""
    out: Path = args.out
    deadline = None if args.stop_after is None else time.time() + 60 * args.stop_after
    jobs = [(t, d, m, s, plan, str(out), not args.no_progress and args.jobs == 1, args.threads,
             deadline) for t, d, m, s in plan.runs()]
    skipped: List[Tuple] = []
    rows: List[Dict[str, Any]] = []
    maps, loads = list(kept.maps), []
    t0 = time.perf_counter()
    with (out / "ablation.csv").open("w", newline="") as f, \
            (out / "curves.csv").open("w", newline="") as fc:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(kept.rows)
        curve_writer = csv.DictWriter(fc, fieldnames=CURVE_COLUMNS)
        curve_writer.writeheader()
        curve_writer.writerows(kept.curves)
        for k, res in enumerate(_results(jobs, args.jobs), start=1):
            if "skipped" in res:
                skipped.append(res["skipped"])
                continue
            rows.append(res["row"])
            writer.writerow(res["row"])
            curve_writer.writerows(res["curve"])
            f.flush()
            fc.flush()
            if res["attention"]:
                maps.extend(res["attention"])
            if hasattr(os, "getloadavg"):
                loads.append(os.getloadavg()[0])
            print(_progress_line(k, len(jobs), res["row"]), flush=True)
    (out / "attention_maps.json").write_text(json.dumps(maps))
    cpu = sum(float(r["cpu_seconds"]) for r in rows)
    part = machine_info(args, time.perf_counter() - t0, cpu, plan, loads)
    part.update(runs=len(rows), capped_runs=sum(bool(r["capped"]) for r in rows),
                skipped_runs=[list(map(str, s)) for s in skipped])
    return part


def main(argv: List[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        p.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.jobs < 1 or args.threads < 1:
        p.error(f"--jobs and --threads must be >= 1, got {args.jobs} and {args.threads}")
    missing = check_requirements()
    if missing:
        print(f"gclab reproduce: {missing}", file=sys.stderr)
        return 2
    try:
        plan = select_tasks(make_plan(args.quick, args.seeds), args.tasks)
    except ValueError as err:
        p.error(str(err))
    if args.report_only:
        if not (args.out / "ablation.csv").exists():
            p.error(f"--report-only needs the runs of an earlier reproduce in {args.out}")
        summarize_results(args.out)
        print(f"rewrote comparisons.csv, ablation.md, the derived columns and the figures "
              f"in {args.out}")
        return 0
    kept = Kept()
    if args.merge:
        try:
            kept = kept_results(args.out, list(plan.tasks))
        except FileNotFoundError as err:
            p.error(str(err))
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    part = _train_all(args, plan, kept)
    machine = machine_record(kept.parts + [part])
    (args.out / "machine.json").write_text(json.dumps(machine, indent=2) + "\n")
    summarize_results(args.out)
    print(f"wrote ablation.csv, comparisons.csv, curves.csv, ablation.md, the figures and "
          f"machine.json in {args.out} ({part['wall_minutes']:.1f} min wall, "
          f"{part['cpu_minutes']:.1f} min CPU for {part['runs']} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
