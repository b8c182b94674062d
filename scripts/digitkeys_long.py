r"""How far GC r16 on ``digitkeys`` is from converged: the committed plan's run, longer.

Trains GC r16 (and any other model named) on ``digitkeys`` level 6 under the committed
protocol (docs/experiments.md, fourth design) with only the maximum raised, and early
stopping only above ``--learn-above`` (default 0.99: never, so every run shows its whole
climb). Writes one row per run (the columns of ablation.csv) to ``--out`` (default
./digitkeys_long.csv) and the validation curves beside it (``*_curves.csv``). About 6.5 min of
CPU per 6,000-step run at one thread; the committed files were made by::

    python scripts/digitkeys_long.py --models gc_r16 gc_r4 --seeds 3 --max-steps 6000 \
        --out data/results/digitkeys_long.csv
"""

import argparse
import dataclasses
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from gclab.experiments import comparisons, plan, reproduce

TASK, LEVEL = "digitkeys", 6


def _one(job):
    model, seed, max_steps, learn_above = job
    torch.set_num_threads(1)
    full = plan.make_plan(quick=False)
    tp = full.tasks[TASK]
    cfg = dataclasses.replace(tp.config, max_steps=max_steps)
    longer = plan.Plan({TASK: dataclasses.replace(tp, config=cfg, learn_above=learn_above)})
    tensors = reproduce.load_tensors(TASK, LEVEL)
    res = reproduce.run_one(TASK, LEVEL, model, seed, longer, tensors, progress=False)
    curve = [{"task": TASK, "difficulty": LEVEL, "model": model, "seed": seed, "step": s,
              "accuracy": round(a, 4)} for s, a in res["curve"]]
    return res["row"], curve


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["gc_r16"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--max-steps", type=int, default=6000)
    p.add_argument("--learn-above", type=float, default=0.99)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("digitkeys_long.csv"))
    args = p.parse_args(argv)
    jobs = [(m, s, args.max_steps, args.learn_above) for m in args.models for s in args.seeds]
    with ProcessPoolExecutor(args.jobs) as pool:
        done = list(pool.map(_one, jobs))
    rows = [r for r, _ in done]
    comparisons.write_csv(args.out, rows, comparisons.COLUMNS)
    comparisons.write_csv(args.out.with_name(args.out.stem + "_curves.csv"),
                          [c for _, cs in done for c in cs], comparisons.CURVE_COLUMNS)
    for r in rows:
        print(f"{r['model']} seed {r['seed']}: {r['steps']} steps, test {r['accuracy']}, "
              f"keys read {r['keys_read']}, {r['cpu_seconds']} s CPU")


if __name__ == "__main__":
    main()
