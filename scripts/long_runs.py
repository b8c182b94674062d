r"""How far a plan's runs are from converged: the committed plan's runs, longer.

Trains the named models of one task (``--task``, default ``digitkeys``) at the plan's level
under the committed protocol (docs/experiments.md) with only the maximum raised, and early
stopping only above ``--learn-above`` (default 0.99: never, so every run shows its whole
climb). Writes one row per run (the columns of ablation.csv) to ``--out`` (default
./<task>_long.csv) and the validation curves beside it (``*_curves.csv``). About 6.5 min of
CPU per 6,000-step run at one thread; the committed files were made by::

    python scripts/long_runs.py --task digitkeys --models gc_r16 gc_r4 --seeds 3 \
        --max-steps 6000 --out data/results/digitkeys_long.csv
    python scripts/long_runs.py --task digitgrid --models nl snl --seeds 1 \
        --max-steps 8000 --out data/results/digitgrid_long.csv
    python scripts/long_runs.py --task digitgrid --models gc_r16 gc_r4 --seeds 1 \
        --max-steps 8000 --out data/results/digitgrid_long_gc.csv
"""

import argparse
import dataclasses
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from gclab.experiments import comparisons, plan, reproduce


def _one(job):
    task, model, seed, max_steps, learn_above = job
    torch.set_num_threads(1)
    full = plan.make_plan(quick=False)
    tp = full.tasks[task]
    (level,) = tp.difficulties
    cfg = dataclasses.replace(tp.config, max_steps=max_steps)
    longer = plan.Plan({task: dataclasses.replace(tp, config=cfg, learn_above=learn_above)})
    tensors = reproduce.load_tensors(task, level)
    res = reproduce.run_one(task, level, model, seed, longer, tensors, progress=False)
    curve = [{"task": task, "difficulty": level, "model": model, "seed": seed, "step": s,
              "accuracy": round(a, 4)} for s, a in res["curve"]]
    return res["row"], curve


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="digitkeys",
                   choices=[t for t, tp in plan.make_plan(quick=False).tasks.items()
                            if len(tp.difficulties) == 1 and t != "longrange"])
    p.add_argument("--models", nargs="+", default=["gc_r16"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--max-steps", type=int, default=6000)
    p.add_argument("--learn-above", type=float, default=0.99)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    out = args.out or Path(f"{args.task}_long.csv")
    jobs = [(args.task, m, s, args.max_steps, args.learn_above)
            for m in args.models for s in args.seeds]
    with ProcessPoolExecutor(args.jobs) as pool:
        done = list(pool.map(_one, jobs))
    rows = [r for r, _ in done]
    comparisons.write_csv(out, rows, comparisons.COLUMNS)
    comparisons.write_csv(out.with_name(out.stem + "_curves.csv"),
                          [c for _, cs in done for c in cs], comparisons.CURVE_COLUMNS)
    for r in rows:
        print(f"{r['model']} seed {r['seed']}: {r['steps']} steps, test {r['accuracy']}, "
              f"keys read {r['keys_read']}, {r['cpu_seconds']} s CPU")


if __name__ == "__main__":
    main()
