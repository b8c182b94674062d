"""What ``gclab reproduce`` trains: the models, the tasks, their levels and seeds, and the
training protocol of each task (docs/experiments.md, "third design").

:func:`make_plan` gives the full plan or the ``--quick`` one, :func:`select_tasks` a part of
it (``--tasks``), :func:`build_model` the SmallResNet of one model name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

from gclab.experiments.data import DIFFICULTIES
from gclab.experiments.models import SmallResNet
from gclab.experiments.train import TrainConfig

#: every block sits in the single unit of layer3 (4 x 16 positions, 64 channels)
STAGES = (3,)
#: tasks whose labels are per position (the model gets a dense head)
DENSE_TASKS = ("paint", "twokeys", "lookalike", "manykeys", "digitkeys", "digitgrid")
#: backbone widths (layer1..layer4) where a task needs another than SmallResNet's default:
#: the key tasks put 128 channels where the blocks sit, so GC r16 has an 8-wide bottleneck
#: and r4 a 32-wide one
WIDE = (8, 16, 128, 32)
TASK_WIDTHS = {"manykeys": WIDE, "digitkeys": WIDE, "digitgrid": WIDE}
#: label classes where a task has more than two (the digit key tasks: the class of a digit)
TASK_CLASSES = {"digitkeys": 10, "digitgrid": 10}


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
#: the models every comparison of :data:`COMPARISONS` needs
COMPARE_MODELS = ("baseline", "nl", "snl", "gc_r16", "gc_r4", "se_r16", "gc_r16_avg",
                  "gc_r16_mul", "gc_r16_noln")
#: the long-range task keeps the NL modes that lesson 3 reads, and GC as the floor
LONGRANGE_MODELS = ("baseline", "nl", "nl_gaussian", "nl_dot_product", "nl_concatenation",
                    "gc_r16")
QUICK_MODELS = ("baseline", "gc_r16", "nl")
#: the converged protocol on the dense tasks: at most MAX_STEPS[task] steps of 32 images,
#: early stopping after PATIENCE steps without a gain of 0.005 in validation accuracy (once a
#: run is above LEARN_ABOVE), then COOLDOWN steps of decay; ``digitkeys`` gets the longest
#: maximum because GC's climb through its bottleneck there takes thousands of steps;
#: ``digitgrid``'s block runs train exactly their maximum (DIGITGRID_LEARN_ABOVE)
MAX_STEPS = {"lookalike": 1200, "manykeys": 1600, "digitkeys": 4000, "digitgrid": 2400}
PATIENCE = {"lookalike": 200, "manykeys": 250, "digitkeys": 250, "digitgrid": 250}
COOLDOWN, LEARN_ABOVE = 100, 0.75
#: models that cannot learn by construction (tested with autograd): their plateau at chance
#: is their convergence, so early stopping applies to them from the start
AT_CHANCE_BY_CONSTRUCTION = ("baseline",)
#: the sample-efficiency task keeps every model of the paper's comparisons; the four of the
#: central claims (GC vs NL, SNL vs NL, r4 vs r16) run first, so that a cut by --stop-after
#: leaves them with all their seeds
LOOKALIKE_MODELS = COMPARE_MODELS
LOOKALIKE_FIRST = ("nl", "gc_r16", "snl", "gc_r4")
#: the separation task (docs/experiments.md, "third design"): the bottleneck's width at C = 128;
#: the block models run first, the baseline (at chance by construction) last
MANYKEYS_MODELS = ("baseline", "nl", "snl", "gc_r16", "gc_r4")
MANYKEYS_FIRST = ("nl", "gc_r16", "snl", "gc_r4")
MANYKEYS_LEVELS = (2,)
#: the separation task of converged models (docs/experiments.md, "fourth design"): four
#: handwritten keys through one context; the models of manykeys, in the same order
DIGITKEYS_MODELS, DIGITKEYS_FIRST = MANYKEYS_MODELS, MANYKEYS_FIRST
DIGITKEYS_LEVELS = (6,)
#: the separation task of converged models (docs/experiments.md, "fifth design"): sixteen
#: handwritten keys, one per query, through one context; the models of manykeys
DIGITGRID_MODELS, DIGITGRID_FIRST = MANYKEYS_MODELS, MANYKEYS_FIRST
DIGITGRID_LEVELS = (4,)
#: ``digitgrid``'s block runs are never stopped early: each trains its whole budget
#: (MAX_STEPS), and whether its curve is flat over the last quarter is checked per run (the
#: issue's "budget chosen so that every model's curve is flat for its last quarter"); its
#: baseline, at chance by construction, still stops on its plateau
DIGITGRID_LEARN_ABOVE = math.inf
#: what ``gclab reproduce`` trains when --tasks does not say: ``manykeys`` and ``digitkeys``
#: (the third and fourth designs' separation tasks, superseded by ``digitgrid``) run only when
#: named, to keep the default plan within 45 minutes on 2 cores
DEFAULT_TASKS = ("longrange", "lookalike", "digitgrid")
#: lesson 3 reads the four pairwise functions of NL on the long-range task
LONGRANGE_PLAN_MODELS = ("nl", "nl_gaussian", "nl_dot_product", "nl_concatenation")
#: the GC model whose success the quick test checks
QUICK_GC = "gc_r16"
#: models whose attention maps are drawn on the new tasks (seed 0)
ATTENTION_MODELS = ("nl", "snl", "gc_r16")


@dataclass
class TaskPlan:
    """One task of a plan: its models, difficulty levels, seeds and training protocol.

    ``seeds`` is one range for every level, or ``{level: range}``. ``eval_images``: the
    validation images of the curve that early stopping reads; ``learn_above``: the
    validation accuracy below which a run is never stopped early (TrainConfig)."""

    models: Sequence[str]
    difficulties: Sequence[Any]
    seeds: Any
    config: TrainConfig
    n_train: int
    eval_images: int = 256
    learn_above: float = LEARN_ABOVE
    #: models whose runs go first (all their seeds), before the task's other models
    first: Sequence[str] = ()

    def seeds_for(self, difficulty: Any) -> List[int]:
        seeds = self.seeds[difficulty] if isinstance(self.seeds, dict) else self.seeds
        return list(seeds)


@dataclass
class Plan:
    """What one invocation trains: tasks x difficulties x models x seeds."""

    tasks: Dict[str, TaskPlan]

    def runs(self) -> List[Tuple[str, Any, str, int]]:
        """Every (task, difficulty, model, seed), task by task; within a task every seed of
        its ``first`` models, seed by seed, then every seed of the others (a run stopped by
        ``--stop-after`` loses the last models' last seeds first)."""
        out = []
        for t, tp in self.tasks.items():
            first = [m for m in tp.models if m in tp.first]
            for group in (first, [m for m in tp.models if m not in tp.first]):
                out += [(t, d, m, s) for d in tp.difficulties for s in tp.seeds_for(d)
                        for m in group]
        return out

    @property
    def seeds(self) -> List[int]:
        return sorted({s for tp in self.tasks.values() for d in tp.difficulties
                       for s in tp.seeds_for(d)})


def converged(batch_size: int, max_steps: int, patience: int, cooldown: int,
              warmup: int = 100, eval_every: int = 50) -> TrainConfig:
    """The converged protocol's training (docs/experiments.md): AdamW 3e-3 after a linear
    warm-up, validation every ``eval_every`` steps, early stopping with ``patience``, a
    linear cool-down, at most ``max_steps``."""
    return TrainConfig(batch_size=batch_size, lr=3e-3, max_steps=max_steps,
                       warmup_steps=warmup, eval_every=eval_every, patience=patience,
                       cooldown_steps=cooldown)


def make_plan(quick: bool, seeds: int | None = None) -> Plan:
    """The full plan or the ``--quick`` one; ``seeds`` overrides the number of seeds."""
    if quick:
        n = 1 if seeds is None else seeds
        return Plan({
            "paint": TaskPlan(("baseline", "gc_r16"), DIFFICULTIES["paint"][-1:], range(n),
                              converged(32, 100, 50, 20, warmup=20, eval_every=25),
                              n_train=100 * 32, eval_images=128),
            "longrange": TaskPlan(QUICK_MODELS, (None,), range(n),
                                  converged(64, 150, 50, 30, warmup=20, eval_every=25),
                                  n_train=150 * 64, eval_images=128),
        })
    return _full_plan(seeds)


def _full_plan(seeds: int | None) -> Plan:
    """The committed plan (docs/experiments.md, "third design"): what 2 cores allow in 45
    minutes when every run trains to convergence."""
    n_dense = 5 if seeds is None else seeds
    n_long = 1 if seeds is None else seeds
    return Plan({
        "longrange": TaskPlan(LONGRANGE_PLAN_MODELS, (None,), range(n_long),
                              converged(64, 600, 150, 50, warmup=50), n_train=200 * 64),
        "lookalike": _dense("lookalike", LOOKALIKE_MODELS, (8,), n_dense, LOOKALIKE_FIRST),
        "manykeys": _dense("manykeys", MANYKEYS_MODELS, MANYKEYS_LEVELS, n_dense, MANYKEYS_FIRST),
        "digitkeys": _dense("digitkeys", DIGITKEYS_MODELS, DIGITKEYS_LEVELS, n_dense,
                            DIGITKEYS_FIRST),
        "digitgrid": _dense("digitgrid", DIGITGRID_MODELS, DIGITGRID_LEVELS, n_dense,
                            DIGITGRID_FIRST, learn_above=DIGITGRID_LEARN_ABOVE),
    })


def _dense(task: str, models: Sequence[str], levels: Sequence[Any], seeds: int,
           first: Sequence[str], learn_above: float = LEARN_ABOVE) -> TaskPlan:
    """A dense task's plan: the converged protocol with the task's MAX_STEPS and PATIENCE,
    batches of 32, 6,400 training images, ``seeds`` seeds, ``first`` models run first."""
    return TaskPlan(models, levels, range(seeds),
                    converged(32, MAX_STEPS[task], PATIENCE[task], COOLDOWN),
                    n_train=6400, first=first, learn_above=learn_above)


def select_tasks(plan: Plan, tasks: Sequence[str] | None) -> Plan:
    """The part of ``plan`` that trains only ``tasks``; when None, the plan's tasks of
    :data:`DEFAULT_TASKS` (all of a plan that has none of them: the quick one)."""
    if tasks is None:
        default = [t for t in plan.tasks if t in DEFAULT_TASKS]
        return Plan({t: plan.tasks[t] for t in default}) if default else plan
    unknown = [t for t in tasks if t not in plan.tasks]
    if unknown or not tasks:
        raise ValueError(f"--tasks must name tasks of the plan {list(plan.tasks)}, "
                         f"got {list(tasks)}")
    return Plan({t: tp for t, tp in plan.tasks.items() if t in tasks})


def build_model(name: str, task: str = "longrange") -> SmallResNet:
    """The SmallResNet of model ``name`` (a key of :data:`MODELS`), block in layer3; a dense
    head for the dense tasks."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {list(MODELS)}, got {name!r}")
    spec = MODELS[name]
    widths = TASK_WIDTHS.get(task, (8, 16, 64, 32))
    return SmallResNet(block=spec.block, stages=STAGES, position=spec.position,
                       block_kwargs=dict(spec.kwargs), dense=task in DENSE_TASKS,
                       widths=widths, num_classes=TASK_CLASSES.get(task, 2))
