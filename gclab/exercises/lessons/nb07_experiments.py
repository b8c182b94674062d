r"""Exercises of lesson 07, the ablation table at laptop scale (topic ``exp.``).

.. math::

    \bar a = \frac{1}{S}\sum_s a_s, \quad s_a = \sqrt{\frac{1}{S-1}\sum_s (a_s - \bar a)^2},
    \quad t = \frac{\bar a - \bar b}{\sqrt{s_a^2/S_a + s_b^2/S_b}}

References: NumPy (``ddof=1``), ``scipy.stats.ttest_ind(equal_var=False)`` and torch's
``FlopCounterMode`` on the real blocks.
"""

from __future__ import annotations

import numpy as np
import torch

from gclab.exercises.lessons.common import count_is_int
from gclab.exercises.registry import Case, Exercise, Property, register
from gclab.nn import GCBlock, NonLocal2d

NOTEBOOK = "07_experiments"
#: exp.which_claim: two final accuracies closer than this are "the same"
CLAIM_TOL = 0.02


# --------------------------------------------------------------------------- references
def ref_mean_std(acc: np.ndarray):
    """Accuracies (M models, S seeds) -> (means (M,), sample stds (M,)) over the seeds."""
    a = np.asarray(acc, dtype=np.float64)
    return a.mean(axis=1), a.std(axis=1, ddof=1)


def ref_welch_t(a: np.ndarray, b: np.ndarray) -> float:
    """Welch's t statistic of two samples (unequal variances), as scipy computes it."""
    from scipy import stats

    return float(stats.ttest_ind(np.asarray(a), np.asarray(b), equal_var=False).statistic)


def _flops(module: torch.nn.Module, shape) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    module = module.to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(torch.empty(*shape, device="meta"))
    return int(counter.get_total_flops())


def ref_nl_flops(channels: int, height: int, width: int) -> int:
    """FLOPs FlopCounterMode counts for one embedded-gaussian NonLocal2d (reduction 2) on a
    (1, C, H, W) input (explicit attention, every matmul counted)."""
    return _flops(NonLocal2d(channels, impl="explicit"), (1, channels, height, width))


def ref_gc_flops(channels: int, height: int, width: int, ratio: float) -> int:
    """FLOPs FlopCounterMode counts for one GCBlock(C, ratio) (add fusion) on (1, C, H, W)."""
    return _flops(GCBlock(channels, ratio=ratio), (1, channels, height, width))


def _first_step(steps, curve, level):
    """First step at which one seed's curve is >= level; inf if never."""
    hit = np.nonzero(np.asarray(curve) >= level)[0]
    return float(np.asarray(steps)[hit[0]]) if hit.size else float("inf")


def _claims(steps, a, b, chance, final=None, level=None, speed=None):
    """The decision of exp.which_claim, with each step replaceable by a mistake."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    final = final or (lambda c: float(c[:, -1].mean()))
    fa, fb = final(a), final(b)
    where = "same" if abs(fa - fb) <= CLAIM_TOL else ("a" if fa > fb else "b")
    top = max(fa, fb)
    lev = (level or (lambda: chance + 0.9 * (top - chance)))()
    speed = speed or (lambda c: float(np.median([_first_step(steps, s, lev) for s in c])))
    ta, tb = speed(a), speed(b)
    fast = "same" if ta == tb else ("a" if ta < tb else "b")
    return where, fast


def ref_which_claim(steps, a, b, chance):
    """(where it converges, how fast it gets there) for two models' validation curves.

    a (S_a, T), b (S_b, T): one curve per seed at ``steps`` (T,). Where: the mean over seeds
    of the last evaluation; 'a' or 'b' if one is more than CLAIM_TOL higher, else 'same'.
    How fast: per seed, the first step at 90 % of the way from chance to the higher of the two
    final means (inf if never, kept); the median over seeds; the smaller wins, 'same' on a tie.
    """
    return _claims(steps, a, b, chance)


# --------------------------------------------------------------------------- mistakes
def wrong_std_population(acc):
    a = np.asarray(acc, dtype=np.float64)
    return a.mean(axis=1), a.std(axis=1)


def wrong_over_models(acc):
    a = np.asarray(acc, dtype=np.float64)
    return a.mean(axis=0), a.std(axis=0, ddof=1)


def wrong_std_of_mean(acc):
    a = np.asarray(acc, dtype=np.float64)
    return a.mean(axis=1), a.std(axis=1, ddof=1) / np.sqrt(a.shape[1])


def wrong_t_population(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float((a.mean() - b.mean()) / np.sqrt(a.var() / len(a) + b.var() / len(b)))


def wrong_t_no_n(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float((a.mean() - b.mean()) / np.sqrt(a.var(ddof=1) + b.var(ddof=1)))


def wrong_t_pooled(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = len(a), len(b)
    sp2 = ((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2)
    return float((a.mean() - b.mean()) / np.sqrt(sp2 * (1 / na + 1 / nb)))


def _nl_by_formula(c, h, w, attention=True, factor=2):
    ci, n = c // 2, h * w
    convs = 3 * c * ci * n + ci * c * n  # theta, phi, g and W_z: 1x1 convs at every position
    att = 2 * n * n * ci if attention else 0  # theta phi^T (N x N x Ci) and A g (N x N x Ci)
    return factor * (convs + att)


def wrong_nl_no_attention(c, h, w):
    return _nl_by_formula(c, h, w, attention=False)


def wrong_nl_macs(c, h, w):
    return _nl_by_formula(c, h, w, factor=1)


def wrong_nl_one_matmul(c, h, w):
    ci, n = c // 2, h * w
    return 2 * (3 * c * ci * n + ci * c * n + n * n * ci)


def _gc_by_formula(c, h, w, ratio, per_position=False, pooling=True):
    p, n = int(c * ratio), h * w
    pool = 2 * c * n + 2 * c * n if pooling else 0  # W_k x (C -> 1 at N positions), sum_j a_j x_j
    transform = 2 * (c * p + p * c) * (n if per_position else 1)
    return pool + transform


def wrong_gc_per_position(c, h, w, ratio):
    return _gc_by_formula(c, h, w, ratio, per_position=True)


def wrong_gc_no_pooling(c, h, w, ratio):
    return _gc_by_formula(c, h, w, ratio, pooling=False)


def wrong_claim_curve_mean(steps, a, b, chance):
    return _claims(steps, a, b, chance, final=lambda c: float(c.mean()))


def wrong_claim_best_point(steps, a, b, chance):
    return _claims(steps, a, b, chance, final=lambda c: float(c.max(axis=1).mean()))


def wrong_claim_drop_never(steps, a, b, chance):
    fa, fb = float(np.asarray(a)[:, -1].mean()), float(np.asarray(b)[:, -1].mean())
    lev = chance + 0.9 * (max(fa, fb) - chance)

    def speed(c):
        t = [_first_step(steps, s, lev) for s in c]
        t = [v for v in t if np.isfinite(v)]
        return float(np.median(t)) if t else float("inf")

    return _claims(steps, a, b, chance, speed=speed)


def wrong_claim_mean_steps(steps, a, b, chance):
    fa, fb = float(np.asarray(a)[:, -1].mean()), float(np.asarray(b)[:, -1].mean())
    lev = chance + 0.9 * (max(fa, fb) - chance)
    return _claims(steps, a, b, chance, speed=lambda c: float(np.mean(
        [_first_step(steps, s, lev) for s in c])))


def wrong_claim_level_of_ceiling(steps, a, b, chance):
    fa, fb = float(np.asarray(a)[:, -1].mean()), float(np.asarray(b)[:, -1].mean())
    return _claims(steps, a, b, chance, level=lambda: 0.9 * max(fa, fb))


def wrong_claim_mean_curve_speed(steps, a, b, chance):
    fa, fb = float(np.asarray(a)[:, -1].mean()), float(np.asarray(b)[:, -1].mean())
    lev = chance + 0.9 * (max(fa, fb) - chance)
    return _claims(steps, a, b, chance,
                   speed=lambda c: _first_step(steps, c.mean(axis=0), lev))


# --------------------------------------------------------------------------- cases
def cases_mean_std(rng):
    out = []
    for m, s in ((4, 3), (2, 5), (6, 4)):
        acc = np.clip(0.5 + 0.4 * rng.random((m, 1)) + 0.05 * rng.standard_normal((m, s)), 0, 1)
        out.append(Case(args=(acc,), label=f"{m} models x {s} seeds"))
    return out


def cases_welch(rng):
    out = []
    for na, nb, shift in ((3, 3, 0.05), (5, 3, -0.02), (4, 6, 0.3)):
        a = 0.8 + 0.03 * rng.standard_normal(na) + shift
        b = 0.8 + 0.06 * rng.standard_normal(nb)
        out.append(Case(args=(a, b), label=f"{na} vs {nb} seeds"))
    return out


def cases_nl(rng):
    # C = 15: C_i = C // 2 = 7, where C / 2 rounded up or to even gives 8
    return [Case(args=(c, h, w), label=f"C={c}, {h}x{w}")
            for c, h, w in ((64, 4, 16), (16, 3, 5), (256, 14, 14), (15, 4, 3))]


def cases_gc(rng):
    # C * ratio = 6.25 and 5.625: int() (the reference), round() and ceil() all differ there
    return [Case(args=(c, h, w, r), label=f"C={c}, {h}x{w}, ratio={r:g}")
            for c, h, w, r in ((64, 4, 16, 1 / 16), (64, 4, 16, 1 / 4), (256, 7, 9, 1 / 16),
                               (100, 5, 7, 1 / 16), (90, 3, 4, 1 / 16))]


def _sigmoid_curves(steps, onsets, tops, chance=0.5, width=60.0):
    """One curve per seed: chance until about its onset, then up to its top (inf: never)."""
    t = np.asarray(steps, dtype=np.float64)
    out = []
    for on, top in zip(onsets, tops):
        rise = np.zeros_like(t) if np.isinf(on) else 1 / (1 + np.exp(-(t - on) / width))
        out.append(chance + (top - chance) * rise)
    return np.array(out)


def cases_which_claim(rng):
    steps = np.arange(0, 1601, 50)
    inf = float("inf")
    j = lambda: 0.003 * rng.standard_normal()  # noqa: E731 - a small seed-to-seed jitter
    sets = {
        # same ceiling, a learns 600 steps sooner: only the speed differs (averaging the
        # whole curve calls a higher)
        "same ceiling, a learns sooner": (
            _sigmoid_curves(steps, [200, 250, 300, 220, 280], [0.97 + j() for _ in range(5)]),
            _sigmoid_curves(steps, [800, 900, 850, 950, 820], [0.97 + j() for _ in range(5)])),
        # a converges higher and later: b's best point is high early, then it settles lower
        "a converges higher, b peaks early": (
            _sigmoid_curves(steps, [500, 550, 600], [0.97, 0.975, 0.97]),
            np.minimum(_sigmoid_curves(steps, [150, 160, 170], [0.99, 0.99, 0.99]),
                       0.99 - 0.00006 * steps)),
        # b: 3 of 5 seeds never learn (median inf), the 2 that do are the fastest of all
        "b learns fast on 2 seeds of 5": (
            _sigmoid_curves(steps, [400, 450, 500, 420, 480], [0.96] * 5),
            _sigmoid_curves(steps, [100, 120, inf, inf, inf], [0.96] * 5)),
        # a crosses 0.9 x ceiling early but 90 % of the way from chance late; b the other way
        "the level is 90 % of the way from chance": (
            np.minimum(_sigmoid_curves(steps, [100] * 4, [0.90] * 4), 1)
            + np.where(steps >= 900, 0.08, 0.0),
            _sigmoid_curves(steps, [500, 520, 540, 560], [0.975] * 4)),
        # b has one never-learning seed: the mean of the steps is inf, the median is not
        "one censored seed of five": (
            _sigmoid_curves(steps, [300, 320, 340, 360, 380], [0.97] * 5),
            _sigmoid_curves(steps, [150, 160, 170, 180, inf], [0.97] * 5)),
        # b: four early seeds and one late one; the mean curve waits for the late one
        "one late seed drags the mean curve": (
            _sigmoid_curves(steps, [250] * 5, [0.97] * 5),
            _sigmoid_curves(steps, [100, 100, 100, 100, 600], [0.97] * 5)),
    }
    cases = [Case(args=(steps, a, b, 0.5), label=name) for name, (a, b) in sets.items()]
    # ten classes, chance 0.1: a level computed from 0.5 (or none) lands above b's plateau
    ten = (_sigmoid_curves(steps, [300, 320, 340], [0.95] * 3, chance=0.1),
           _sigmoid_curves(steps, [200, 220, 240], [0.93] * 3, chance=0.1))
    cases.append(Case(args=(steps, *ten, 0.1), label="ten classes: chance is 0.1"))
    return cases


def _std_nonneg(out, *args, **kw):
    return bool(np.all(np.asarray(out[1]) >= 0))


# --------------------------------------------------------------------------- registry
register(Exercise(
    id="exp.mean_std",
    notebook=NOTEBOOK,
    title="Mean and sample standard deviation over seeds",
    kind="function",
    reference=ref_mean_std,
    cases=cases_mean_std,
    rtol=1e-9,
    mistakes={
        "population std (ddof=0); with 3 seeds use the sample std (ddof=1)":
            wrong_std_population,
        "averaged over the models (axis 0) instead of over the seeds (axis 1)":
            wrong_over_models,
        "reported the standard error of the mean (std / sqrt(S)) as the std":
            wrong_std_of_mean,
    },
    properties=[Property("standard deviations are >= 0", _std_nonneg)],
    hints=(
        "Each row is one model, each column one seed: summarise every row. With a handful of "
        "seeds, estimate the spread with the sample standard deviation (divide by S - 1).",
        "acc (M, S) -> means (M,), stds (M,): reduce over axis 1, the seeds.",
        "the mean of every row\nthe sample standard deviation of every row (one degree of freedom "
        "removed)\nreturn both as a tuple",
    ),
))

register(Exercise(
    id="exp.welch_t",
    notebook=NOTEBOOK,
    title="Welch's t statistic between two models' seeds",
    kind="function",
    reference=ref_welch_t,
    cases=cases_welch,
    rtol=1e-9,
    mistakes={
        "population variances (ddof=0) instead of sample variances": wrong_t_population,
        "forgot to divide each variance by its number of seeds": wrong_t_no_n,
        "pooled the variances (Student's t) instead of Welch's unequal variances":
            wrong_t_pooled,
    },
    hints=(
        "Welch's t compares two means in units of the standard error of their difference, each "
        "sample keeping its own variance.",
        "a (S_a,), b (S_b,) -> one float; each sample variance (one degree of freedom removed) is "
        "divided by its own sample size.",
        "the standard error: the square root of the two variance-over-size terms added\nthe "
        "difference of the means divided by it",
    ),
))

register(Exercise(
    id="exp.nl_flops",
    notebook=NOTEBOOK,
    title="FLOPs of one Non-local block (embedded gaussian, reduction 2)",
    kind="function",
    reference=ref_nl_flops,
    cases=cases_nl,
    rtol=0.0,
    mistakes={
        "forgot the attention matmuls (theta phi^T and A g), counted the 1x1 convs only":
            wrong_nl_no_attention,
        "counted multiply-adds (MACs); FlopCounterMode counts 2 FLOPs per multiply-add":
            wrong_nl_macs,
        "counted one N x N matmul; there are two (the logits and the weighted sum)":
            wrong_nl_one_matmul,
    },
    properties=[Property("a count is an int", count_is_int)],
    hints=(
        "Count every matrix product: four 1x1 convs applied at all H W positions (theta, phi, g: "
        "C -> C/2; W_z: C/2 -> C) and two products with the N x N attention matrix. A "
        "multiply-add is 2 FLOPs; softmax and additions are not counted.",
        "C_i is C // 2 and N is H times W. A 1x1 conv from Cin to Cout channels on N positions "
        "does Cin Cout N multiply-adds. The logits are an (N, C_i) by (C_i, N) product; the "
        "aggregation an (N, N) by (N, C_i) product.",
        "the convs: three embeddings C to C_i and one transform C_i to C, at every position\nthe "
        "attention: the logits product and the aggregation product\ntwo FLOPs per multiply-add; "
        "add everything up as an int",
    ),
))

register(Exercise(
    id="exp.gc_flops",
    notebook=NOTEBOOK,
    title="FLOPs of one GC block (attention pooling, bottleneck on one vector)",
    kind="function",
    reference=ref_gc_flops,
    cases=cases_gc,
    rtol=0.0,
    mistakes={
        "applied the bottleneck at every position; it runs once, on the (C, 1, 1) context":
            wrong_gc_per_position,
        "forgot the attention pooling (W_k x at every position and the weighted sum)":
            wrong_gc_no_pooling,
    },
    properties=[Property("a count is an int", count_is_int)],
    hints=(
        "Context modelling touches every position twice (the logits, C -> 1, and the weighted sum "
        "of the x_j); the transform acts on ONE vector per image.",
        "N is H times W and P is C times ratio, rounded down to an int. conv_mask costs C "
        "multiply-adds per position; the weighted sum is a (C, N) by (N, 1) product; the "
        "bottleneck two convs on a 1x1 map.",
        "the context modelling: conv_mask and the weighted sum, both over all positions\nthe "
        "transform: the two bottleneck convs on a single vector\ntwo FLOPs per multiply-add; add "
        "them up as an int",
    ),
))


def _claim_values(out, *args, **kw):
    return (isinstance(out, (tuple, list)) and len(out) == 2
            and all(v in ("a", "b", "same") for v in out))


register(Exercise(
    id="exp.which_claim",
    notebook=NOTEBOOK,
    title="Which claim do two sets of learning curves support: where or how fast?",
    kind="function",
    reference=ref_which_claim,
    cases=cases_which_claim,
    rtol=0.0,
    mistakes={
        "averaged the whole curve for 'where it converges': that mixes in how fast it got "
        "there; use each seed's last evaluation": wrong_claim_curve_mean,
        "took each seed's best point instead of its last: an early peak that does not last is "
        "not where the model converges": wrong_claim_best_point,
        "dropped the seeds that never reach the level: a seed that never gets there is the "
        "slowest, not missing": wrong_claim_drop_never,
        "averaged the steps: one never-reaching seed (inf) makes the mean inf; use the "
        "median": wrong_claim_mean_steps,
        "used 0.9 x ceiling as the level; the level is 90 % of the way from chance to the "
        "ceiling": wrong_claim_level_of_ceiling,
        "timed the curve averaged over seeds: a mean curve can cross the level when no seed "
        "has, or late when most seeds were early": wrong_claim_mean_curve_speed,
    },
    properties=[Property("each answer is 'a', 'b' or 'same'", _claim_values)],
    hints=(
        "Two different questions. Where a model converges is read at the END of each seed's "
        "curve; how fast it gets there is WHEN each seed first reaches a level close to the "
        "ceiling. A seed that never reaches it counts as the slowest, it is not left out.",
        "a (S_a, T) and b (S_b, T), one row per seed, evaluated at steps (T,). Where: one "
        "number per model from the last column, then compare with the 0.02 tolerance. How "
        "fast: the level sits 90 % of the way from chance up to the higher of the two final "
        "numbers; per seed one step (inf if never), then one robust summary per model.",
        "final_a, final_b = the mean over seeds of each model's last evaluation\nwhere = "
        "'same' if they differ by at most 0.02, else the model with the higher one\nlevel = "
        "chance + 0.9 * (the higher final - chance)\nfor each seed: the first step whose "
        "accuracy is >= level, inf if none\nfast = the model with the smaller median of those "
        "steps, 'same' if equal\nreturn (where, fast)",
    ),
))
