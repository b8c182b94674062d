"""A small, deterministic CPU training loop.

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

import math
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
    """Hyper-parameters of one run (the same for every model of the ablation).

    Two ways to bound a run: ``epochs`` passes over the data (``max_steps = 0``), or the
    converged protocol: ``max_steps`` > 0 steps at most, a validation accuracy every
    ``eval_every`` steps, and early stopping (``patience`` > 0, see :func:`train`).
    """

    epochs: int = 1
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    progress: bool = True
    desc: str = "train"
    #: evaluate on ``eval_data`` every this many steps (0: never) -> history["curve"]
    eval_every: int = 0
    #: the converged protocol: at most this many steps (0: ``epochs`` passes instead)
    max_steps: int = 0
    #: linear learning-rate warm-up from lr / 10 over this many steps
    warmup_steps: int = 0
    #: stop when the best validation accuracy has not risen by more than ``min_delta`` for
    #: this many steps (0: no early stopping) ...
    patience: int = 0
    min_delta: float = 0.005
    #: ... but only once it is at least ``learn_above`` (a run still at chance is not
    #: stopped: it trains to ``max_steps`` and is reported as capped)
    learn_above: float = 0.0
    #: after the stop criterion fired, this many steps decay the learning rate linearly to a
    #: tenth of its value, then the run stops
    cooldown_steps: int = 0

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


def _check_config(cfg: TrainConfig, has_eval: bool) -> None:
    for name in ("max_steps", "warmup_steps", "patience", "cooldown_steps", "eval_every"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"TrainConfig.{name} must be an int >= 0, got {v!r}")
    if cfg.patience and not (cfg.max_steps and cfg.eval_every and has_eval):
        raise ValueError("early stopping (patience > 0) needs max_steps > 0, eval_every > 0 "
                         "and eval_data (the validation split)")
    if cfg.max_steps and cfg.cooldown_steps + cfg.warmup_steps > cfg.max_steps:
        raise ValueError(f"warmup_steps + cooldown_steps ({cfg.warmup_steps} + "
                         f"{cfg.cooldown_steps}) must fit in max_steps ({cfg.max_steps})")


class _Stopper:
    """Learning-rate schedule and early stopping of the converged protocol.

    lr factor: linear warm-up from 0.1 to 1 over ``warmup_steps``, then a cosine from 1 down
    to 0.1 at ``max_steps``. When the stop criterion fires at step s (see :func:`train`),
    the factor decays linearly from its value at s to a tenth of it over ``cooldown_steps``
    and the run stops. ``capped``: the run reached ``max_steps`` without the criterion firing
    (only when early stopping is on).
    """

    def __init__(self, cfg: TrainConfig, total: int) -> None:
        self.cfg, self.total = cfg, total
        self.best, self.best_step = -1.0, 0
        self.cool_from: int | None = None
        self.capped = False

    def _cosine(self, step: int) -> float:
        cfg = self.cfg
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return 0.1 + 0.9 * step / cfg.warmup_steps
        span = max(1, self.total - cfg.warmup_steps)
        done = min(1.0, (step - cfg.warmup_steps) / span)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * done))

    def lr_factor(self, step: int) -> float:
        if self.cool_from is None or self.cfg.cooldown_steps == 0:
            return self._cosine(step)
        done = min(1.0, (step - self.cool_from) / self.cfg.cooldown_steps)
        return self._cosine(self.cool_from) * (1.0 - 0.9 * done)

    def observe(self, step: int, acc: float) -> None:
        cfg = self.cfg
        if acc > self.best + cfg.min_delta:
            self.best, self.best_step = acc, step
        if (cfg.patience and self.cool_from is None and self.best >= cfg.learn_above
                and step - self.best_step >= cfg.patience
                and step + cfg.cooldown_steps < self.total):
            self.cool_from = step

    def done(self, step: int) -> bool:
        if step >= self.total:
            self.capped = bool(self.cfg.patience) and self.cool_from is None
            return True
        return self.cool_from is not None and step >= self.cool_from + self.cfg.cooldown_steps


def train(model: nn.Module, x: Tensor, y: Tensor, config: TrainConfig | None = None,
          eval_data: tuple | None = None) -> Dict[str, List[float]]:
    """Train ``model`` on (x (B, C, H, W) float, y (B,) int64) with AdamW.

    Minimises the cross-entropy :math:`-\\frac{1}{B}\\sum_b \\log p_{b, y_b}` (dense labels
    (B, h, w): averaged over the scored positions, ``-100`` is ignored).

    Length and learning rate. With ``max_steps = 0``: ``epochs`` passes, the learning rate
    constant for the first 70 % of the steps, then linear down to 10 %. With ``max_steps``
    > 0 (the converged protocol): batches from reshuffled passes over the data; a linear
    warm-up (``warmup_steps``) then a cosine down to lr / 10 at ``max_steps``; accuracy on
    ``eval_data`` (the validation split) every ``eval_every`` steps; once the best validation
    accuracy is at least ``learn_above`` and has not risen by more than ``min_delta`` for
    ``patience`` steps, a cool-down of ``cooldown_steps`` (lr linear down to a tenth of its
    value) and the run stops. A run that reaches ``max_steps`` first is marked ``capped``.

    Returns the history ``{"loss": [mean loss per epoch], "seconds": [wall time per epoch]}``,
    plus ``"curve": [(step, accuracy on eval_data)]`` when ``config.eval_every`` > 0 (step 0
    is the initial model; the evaluation time is not in "seconds"); with ``max_steps``:
    ``"steps"`` (steps run), ``"capped"`` (bool) and ``"stop_step"`` (where the cool-down
    began).
    """
    from tqdm.auto import tqdm

    cfg = config or TrainConfig()
    _check_xy(x, y)
    _check_config(cfg, eval_data is not None)
    torch.use_deterministic_algorithms(True, warn_only=True)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = (x.shape[0] + cfg.batch_size - 1) // cfg.batch_size
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    stopper = _Stopper(cfg, total_steps) if cfg.max_steps else None
    factor = stopper.lr_factor if stopper else (lambda k: _lr_factor(k, total_steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    history: Dict[str, List] = {"loss": [], "seconds": []}
    curve = cfg.eval_every > 0 and eval_data is not None
    if curve:
        history["curve"] = [(0, accuracy(model, *eval_data))]
    step = 0
    bar = tqdm(total=total_steps, desc=cfg.desc, disable=not cfg.progress,
               leave=False, mininterval=1.0)
    model.train()
    while step < total_steps and not (stopper and stopper.done(step)):
        t0, total, seen = time.perf_counter(), 0.0, 0
        order = torch.randperm(x.shape[0], generator=gen)
        for k in range(steps_per_epoch):
            idx = order[k * cfg.batch_size : (k + 1) * cfg.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, seen = total + float(loss.detach()) * len(idx), seen + len(idx)
            bar.update(1)
            step += 1
            if curve and (step % cfg.eval_every == 0 or step == total_steps):
                te = time.perf_counter()
                acc = accuracy(model, *eval_data)
                history["curve"].append((step, acc))
                if stopper:
                    stopper.observe(step, acc)
                    bar.set_postfix(val=f"{acc:.3f}")
                model.train()
                t0 += time.perf_counter() - te
            if step >= total_steps or (stopper and stopper.done(step)):
                break
        history["loss"].append(total / max(seen, 1))
        history["seconds"].append(time.perf_counter() - t0)
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
    bar.close()
    if stopper:
        stopper.done(step)  # records whether the run ended at max_steps
        if curve and history["curve"][-1][0] != step:
            history["curve"].append((step, accuracy(model, *eval_data)))
        history.update(steps=step, capped=stopper.capped,
                       stop_step=stopper.cool_from if stopper.cool_from is not None else step)
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
