"""A small, deterministic CPU training loop (issue 4).

Determinism: :func:`seed_everything` seeds Python, NumPy and torch and turns on
``torch.use_deterministic_algorithms``; batches come from a seeded ``torch.Generator`` in the
main process (no worker threads), so the same seed, data, model and thread count give the
same weights bit for bit. Progress bars use ``tqdm.auto`` (plain text outside Jupyter).

Example::

    >>> from gclab.experiments.data import make_split, to_tensors
    >>> from gclab.experiments.models import SmallResNet
    >>> x, y = to_tensors(*make_split("longrange", "train", n=64))
    >>> cfg = TrainConfig(epochs=1, progress=False)
    >>> model = build(lambda: SmallResNet(block="gc"), seed=0)
    >>> history = train(model, x, y, cfg)
    >>> len(history["loss"])
    1
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (the same for every model of the ablation)."""

    epochs: int = 1
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    progress: bool = True
    desc: str = "train"
    #: evaluate on ``eval_data`` every this many steps (0: never) -> history["curve"]
    eval_every: int = 0

    def as_dict(self) -> Dict[str, object]:
        return asdict(self)


def seed_everything(seed: int) -> None:
    """Seed random, NumPy and torch; make torch pick deterministic kernels."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def build(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Seed, then build the model: its initial weights are a function of ``seed``."""
    seed_everything(seed)
    return factory()


def _check_xy(x: Tensor, y: Tensor) -> None:
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(f"x and y must be tensors, got {type(x).__name__}, {type(y).__name__}")
    if x.dim() != 4 or y.dim() not in (1, 3) or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"expected x (B, C, H, W) and y (B,) or (B, h, w) with the same B, got "
            f"{tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )


def train(model: nn.Module, x: Tensor, y: Tensor, config: TrainConfig | None = None,
          eval_data: tuple | None = None) -> Dict[str, List[float]]:
    """Train ``model`` on (x (B, C, H, W) float, y (B,) int64) with AdamW.

    The learning rate is constant for the first 70 % of the steps, then decays linearly to
    10 % of its value.

    Minimises the cross-entropy :math:`-\\frac{1}{B}\\sum_b \\log p_{b, y_b}` (dense labels
    (B, h, w): averaged over the scored positions, ``-100`` is ignored). Returns the history
    ``{"loss": [mean loss per epoch], "seconds": [wall time per epoch]}``, plus
    ``"curve": [(step, accuracy on eval_data)]`` when ``config.eval_every`` > 0 (step 0 is the
    initial model; the evaluation time is not in "seconds").
    """
    from tqdm.auto import tqdm

    cfg = config or TrainConfig()
    _check_xy(x, y)
    torch.use_deterministic_algorithms(True, warn_only=True)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = (x.shape[0] + cfg.batch_size - 1) // cfg.batch_size
    total_steps = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: _lr_factor(k, total_steps))
    history: Dict[str, List] = {"loss": [], "seconds": []}
    curve = cfg.eval_every > 0 and eval_data is not None
    if curve:
        history["curve"] = [(0, accuracy(model, *eval_data))]
        model.train()
    step = 0
    bar = tqdm(total=cfg.epochs * steps_per_epoch, desc=cfg.desc, disable=not cfg.progress,
               leave=False, mininterval=1.0)
    model.train()
    for _ in range(cfg.epochs):
        t0, total = time.perf_counter(), 0.0
        order = torch.randperm(x.shape[0], generator=gen)
        for k in range(steps_per_epoch):
            idx = order[k * cfg.batch_size : (k + 1) * cfg.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            bar.update(1)
            step += 1
            if curve and (step % cfg.eval_every == 0 or step == total_steps):
                te = time.perf_counter()
                history["curve"].append((step, accuracy(model, *eval_data)))
                model.train()
                t0 += time.perf_counter() - te
        history["loss"].append(total / x.shape[0])
        history["seconds"].append(time.perf_counter() - t0)
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
    bar.close()
    model.eval()
    return history


def _lr_factor(step: int, total: int) -> float:
    """1 for the first 70 % of the steps, then linear down to 0.1 at the last step."""
    start = int(0.7 * total)
    if step < start or total - start <= 1:
        return 1.0
    return 1.0 - 0.9 * (step - start) / (total - start - 1)


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 512) -> Tensor:
    """Class predictions (B,) (or (B, h, w) for a dense model) of ``model`` in eval mode."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]).argmax(1)
                      for i in range(0, x.shape[0], batch_size)])


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Fraction of correct predictions, :math:`\\frac{1}{B}\\sum_b [\\hat y_b = y_b]`; for
    dense labels, over the scored positions (labels != -100)."""
    _check_xy(x, y)
    keep = y != -100
    return float((predict(model, x) == y)[keep].float().mean())
