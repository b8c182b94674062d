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

from gclab.exercises.core import Case, Exercise, Property, register
from gclab.nn import GCBlock, NonLocal2d

from ._props import count_is_int

NOTEBOOK = "07_experiments"


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


def _std_nonneg(out, *args, **kw):
    return bool(np.all(np.asarray(out[1]) >= 0))


def _is_int(out, *args, **kw):
    return count_is_int(out)


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
    properties=[Property("a count is an int", _is_int)],
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
    properties=[Property("a count is an int", _is_int)],
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
