"""Statistics of the converged protocol: when did a run converge, learn, reach a level.

A run of :mod:`gclab.experiments.reproduce` gives a validation curve ``[(step, accuracy)]``
and a final accuracy. From them, per run:

* :func:`is_flat`: is the last quarter of the curve flat within its noise (no higher or
  lower than the quarter before it)?
* :func:`learned`: did the run get at least halfway from chance to the task's ceiling?
* :func:`steps_to`: the first step at which the curve reaches a level (``inf`` if never: a
  censored run, kept, never dropped).

And per comparison of two models over seeds:

* :func:`fisher_test`: the share of seeds that learn, as a 2 x 2 table (Fisher's exact test);
* :func:`rank_test`: steps to a level, a one-sided exact Mann-Whitney test on mid-ranks,
  where censored runs (``inf``) tie with each other above every finite value;
* :func:`one_sided_verdict`: 'reproduced' / 'reversed' / 'not decidable' from the two
  one-sided p-values.

Example::

    >>> steps_to([(0, 0.5), (50, 0.7), (100, 0.95)], 0.9)
    100.0
    >>> steps_to([(0, 0.5), (50, 0.6)], 0.9)
    inf
    >>> round(fisher_test(5, 5, 0, 5)[0], 4)  # P(first learns more often | no difference)
    0.004
"""

from __future__ import annotations

import itertools
import math
import statistics
from typing import Dict, Sequence, Tuple

#: significance level of every one-sided test
ALPHA = 0.05
#: a run "learned" when its final validation accuracy is at least this share of the way
#: from chance to the task's ceiling
LEARNED_SHARE = 0.5
#: the levels of the steps-to metrics: this share of the way from chance to the ceiling
LEVELS = {"steps_to_90": 0.90, "steps_to_95": 0.95}


def level(chance: float, ceiling: float, share: float) -> float:
    """``chance + share * (ceiling - chance)``: a point between chance and the ceiling."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    return chance + share * (ceiling - chance)


def ceiling(final_val: Dict[str, Sequence[float]]) -> float:
    """The task's ceiling: the best model's median final validation accuracy over seeds.

    final_val: ``{model: [accuracy of each seed]}``. The median keeps a model whose seeds
    split between learned and not from being judged by its lucky seed alone."""
    if not final_val or not all(final_val.values()):
        raise ValueError("ceiling needs at least one model with at least one seed")
    return max(statistics.median(v) for v in final_val.values())


def steps_to(curve: Sequence[Tuple[int, float]], threshold: float) -> float:
    """First step at which the curve's accuracy is >= ``threshold``; ``inf`` if never."""
    for step, acc in curve:
        if acc >= threshold:
            return float(step)
    return math.inf


def learned(final_val: float, chance: float, top: float, share: float = LEARNED_SHARE) -> bool:
    """Did the run get at least ``share`` of the way from chance to the ceiling ``top``?"""
    return final_val >= level(chance, top, share)


def is_flat(curve: Sequence[Tuple[int, float]], n_eval: int, z: float = 2.0,
            tail: float = 0.25) -> bool:
    r"""Is the last ``tail`` of the curve (by steps) flat within its noise?

    Compares the mean accuracy of the evaluations in the last quarter, :math:`\bar L`, with
    that of the quarter before it, :math:`\bar P`: flat when
    :math:`|\bar L - \bar P| \le z\, \sigma \sqrt{1/n_L + 1/n_P}`, where :math:`\sigma` is
    the pooled standard deviation of the evaluations inside the two quarters (how much the
    curve moves from one evaluation to the next while training, which on these tasks is more
    than sampling noise), floored at the binomial standard error of one evaluation,
    :math:`\sqrt{p(1-p)/n}` (p: the last quarter's mean, kept 0.01 from 0 and 1; n: the images
    per evaluation). A run still rising has a last quarter above the one before; one that
    dipped once and recovered has not. Needs 2 evaluations in each quarter (fewer: False).
    """
    if n_eval < 1:
        raise ValueError(f"n_eval must be >= 1, got {n_eval}")
    if not curve:
        return False
    last = curve[-1][0]
    late = [float(a) for s, a in curve if s >= (1 - tail) * last]
    prev = [float(a) for s, a in curve if (1 - 2 * tail) * last <= s < (1 - tail) * last]
    if len(late) < 2 or len(prev) < 2:
        return False
    pooled = math.sqrt((statistics.variance(late) + statistics.variance(prev)) / 2)
    p = min(max(statistics.fmean(late), 0.01), 0.99)
    sigma = max(pooled, math.sqrt(p * (1 - p) / n_eval))
    gap = abs(statistics.fmean(late) - statistics.fmean(prev))
    return gap <= z * sigma * math.sqrt(1 / len(late) + 1 / len(prev))


def fisher_test(k1: int, n1: int, k2: int, n2: int) -> Tuple[float, float]:
    """One-sided Fisher's exact tests of ``k1 / n1`` vs ``k2 / n2`` (successes / trials).

    Returns ``(p_greater, p_less)``: the p-values of "the first share is larger" and of "the
    first share is smaller" (scipy.stats.fisher_exact on the table [[k1, n1-k1], [k2, n2-k2]]).
    """
    from scipy.stats import fisher_exact

    for k, n in ((k1, n1), (k2, n2)):
        if not 0 <= k <= n or n < 1:
            raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {k}/{n}")
    table = [[k1, n1 - k1], [k2, n2 - k2]]
    return (float(fisher_exact(table, alternative="greater")[1]),
            float(fisher_exact(table, alternative="less")[1]))


def _midranks(values: Sequence[float]) -> list:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def rank_test(a: Sequence[float], b: Sequence[float]) -> Tuple[float, float]:
    """One-sided exact Mann-Whitney tests on mid-ranks; ``inf`` (censored) is allowed.

    Returns ``(p_less, p_greater)``: p-values of "``a`` tends to be smaller" (e.g. reaches a
    level in fewer steps) and of "``a`` tends to be larger", from the exact permutation
    distribution of the rank sum of ``a`` over every split of the pooled values (ties keep
    their mid-ranks). Censored runs at ``inf`` tie with each other above every finite value,
    which is right when a run that never reached the level would have needed more steps than
    every run that did.
    """
    a, b = [float(v) for v in a], [float(v) for v in b]
    if not a or not b:
        raise ValueError("rank_test needs at least one value in each sample")
    if any(math.isnan(v) for v in a + b):
        raise ValueError("rank_test: nan is not a number of steps (use inf for censored)")
    pooled = a + b
    ranks = _midranks(pooled)
    observed = sum(ranks[: len(a)])
    n = len(pooled)
    if math.comb(n, len(a)) > 200_000:
        raise ValueError(f"rank_test enumerates every split: {len(a)} + {len(b)} values is "
                         f"too many")
    sums = [sum(ranks[i] for i in idx) for idx in itertools.combinations(range(n), len(a))]
    eps = 1e-9
    p_less = sum(s <= observed + eps for s in sums) / len(sums)
    p_greater = sum(s >= observed - eps for s in sums) / len(sums)
    return p_less, p_greater


def one_sided_verdict(p_better: float, p_worse: float, alpha: float = ALPHA) -> str:
    """'reproduced' when the first model is significantly better (``p_better < alpha``),
    'reversed' when significantly worse, else 'not decidable'."""
    if p_better < alpha:
        return "reproduced"
    if p_worse < alpha:
        return "reversed"
    return "not decidable"
