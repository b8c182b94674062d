"""Why a concatenation NL dies: the share of its live pairs at every training step.

Concatenation's pairwise function is ReLU(w_theta^T theta_i + w_phi^T phi_j): a pair (i, j)
is *live* while that sum is positive. Once no pair is live, no gradient reaches w, theta or
phi again and the block is dead for good (:func:`gclab.experiments.analysis.dead_attention_share`).
:func:`trace` retrains one committed run (task, seed, the plan's protocol) with a forward hook
that records, at every training step, the share of live pairs on that step's batch, the mean
logit, and the norms of W_z and of w. Deterministic (the run's own seed)::

    python -m gclab.experiments.dead_trace            # longrange, seed 0 (about 1 min of CPU)
"""

from __future__ import annotations

import argparse
import sys
from typing import Dict, List

import torch
from torch import nn

from gclab.experiments import analysis
from gclab.experiments.data import load, to_tensors
from gclab.experiments.plan import build_model, make_plan
from gclab.experiments.train import TrainConfig, build, train
from gclab.nn import NonLocal2d


@torch.no_grad()
def live_pairs(block: NonLocal2d, x: torch.Tensor) -> Dict[str, float]:
    """Share of the (image, query, key) pairs whose concatenation logit is positive, and the
    mean logit, for the block's input ``x``."""
    if block.mode != "concatenation":
        raise ValueError(f"live_pairs needs a concatenation NL, got mode {block.mode!r}")
    theta, phi, _ = block.embed(x)  # (B, N, Ci), (B, Ci, N')
    w = block.concat_project.weight.reshape(-1)
    ci = theta.shape[-1]
    logits = (theta @ w[:ci]).unsqueeze(2) + (phi.transpose(1, 2) @ w[ci:]).unsqueeze(1)
    return {"live": float((logits > 0).float().mean()), "mean_logit": float(logits.mean())}


def trace(task: str = "longrange", seed: int = 0, model: str = "nl_concatenation"
          ) -> List[Dict[str, float]]:
    """Retrain run (task, model, seed) of the full plan; one record per training step."""
    tp = make_plan(quick=False).tasks[task]
    level = tp.difficulties[0]
    xtr, ytr = to_tensors(*load(task, "train", difficulty=level))
    xva, yva = to_tensors(*load(task, "val", difficulty=level))
    cfg = TrainConfig(**{**tp.config.as_dict(), "seed": seed, "progress": False,
                         "learn_above": tp.learn_above})
    net: nn.Module = build(lambda: build_model(model, task), seed=seed)
    (_, block), = analysis.find_blocks(net)
    records: List[Dict[str, float]] = []

    @torch.no_grad()
    def hook(m, args, _out):
        if m.training:
            records.append({**live_pairs(m, args[0]),
                            "w_z": float(m.conv_out.weight.norm()),
                            "w": float(m.concat_project.weight.norm())})

    handle = block.register_forward_hook(hook)
    try:
        train(net, xtr[: tp.n_train], ytr[: tp.n_train], cfg,
              eval_data=(xva[: tp.eval_images], yva[: tp.eval_images]))
    finally:
        handle.remove()
    return records


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gclab.experiments.dead_trace",
                                description=__doc__.split("\n")[0])
    p.add_argument("--task", default="longrange")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    records = trace(args.task, args.seed)
    print(f"{'step':>5}{'live pairs':>12}{'mean logit':>12}{'|W_z|':>9}{'|w|':>9}")
    for step in sorted({*range(0, 16, 2), *range(0, len(records), 100), len(records) - 1}):
        r = records[step]
        print(f"{step:>5}{r['live']:>12.4f}{r['mean_logit']:>12.3f}{r['w_z']:>9.4f}"
              f"{r['w']:>9.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
