"""The converged protocol's statistics (gclab.experiments.stats) against scipy and by hand."""

import math
from itertools import combinations

import pytest
from scipy import stats as sps

from gclab.experiments import stats

INF = math.inf


def test_rank_test_matches_scipy_exact_mann_whitney_without_ties():
    a, b = [100, 200, 250, 400, 700], [300, 500, 900, 1200, 1500]
    p_less, p_greater = stats.rank_test(a, b)
    assert p_less == pytest.approx(sps.mannwhitneyu(a, b, alternative="less",
                                                    method="exact").pvalue)
    assert p_greater == pytest.approx(sps.mannwhitneyu(a, b, alternative="greater",
                                                       method="exact").pvalue)


def test_rank_test_counts_censored_runs_as_slowest_and_tied():
    # every run of a reaches the level, none of b does: the most extreme of C(10, 5) splits
    p_less, p_greater = stats.rank_test([100, 150, 200, 250, 300], [INF] * 5)
    assert p_less == pytest.approx(1 / math.comb(10, 5)) and p_greater == 1.0
    # dropping the censored runs would leave b empty; keeping them decides
    assert stats.one_sided_verdict(p_less, p_greater) == "reproduced"
    # all censored on both sides: every split ties, nothing is decided
    assert stats.rank_test([INF] * 3, [INF] * 3) == (1.0, 1.0)


def test_rank_test_ties_by_hand():
    # a = [1, inf], b = [inf, inf]: mid-ranks 1, 3, 3, 3; rank sums of the C(4,2)=6 splits:
    # {1,3} three times (4), {3,3} three times (6); a's sum is 4 -> P(S <= 4) = 1/2
    assert stats.rank_test([1, INF], [INF, INF]) == (0.5, 1.0)
    with pytest.raises(ValueError, match="nan"):
        stats.rank_test([float("nan")], [1.0])
    with pytest.raises(ValueError, match="at least one"):
        stats.rank_test([], [1.0])


def test_fisher_test_by_hand():
    # 5/5 vs 0/5: the one table as extreme of C(10, 5) with 5 successes in total
    p_more, p_less = stats.fisher_test(5, 5, 0, 5)
    assert p_more == pytest.approx(1 / 252) and p_less == 1.0
    # 5/5 vs 2/5: hypergeometric P(X >= 5) with 7 successes among 10, 5 drawn
    assert stats.fisher_test(5, 5, 2, 5)[0] == pytest.approx(
        math.comb(7, 5) * math.comb(3, 0) / math.comb(10, 5))
    with pytest.raises(ValueError, match="successes"):
        stats.fisher_test(6, 5, 0, 5)


@pytest.mark.parametrize("p_better, p_worse, expected", [
    (0.01, 0.99, "reproduced"), (0.99, 0.01, "reversed"), (0.2, 0.8, "not decidable"),
    (0.05, 0.95, "not decidable"),  # alpha is strict
])
def test_one_sided_verdict(p_better, p_worse, expected):
    assert stats.one_sided_verdict(p_better, p_worse) == expected


def test_steps_learned_and_ceiling():
    curve = [(0, 0.5), (50, 0.6), (100, 0.93), (150, 0.97)]
    assert stats.steps_to(curve, 0.93) == 100 and stats.steps_to(curve, 0.99) == INF
    assert stats.level(0.5, 0.98, 0.9) == pytest.approx(0.932)
    assert stats.ceiling({"a": [0.5, 0.98, 0.97], "b": [0.95, 0.96, 0.2]}) == 0.97
    assert stats.learned(0.74, 0.5, 0.98) is True and stats.learned(0.73, 0.5, 0.98) is False
    with pytest.raises(ValueError):
        stats.level(0.5, 1.0, 1.5)


def test_is_flat_sees_a_rising_tail_and_accepts_noise():
    n = 256
    noise = [0.003 * ((-1) ** k) for k in range(40)]
    flat = [(50 * k, 0.95 + noise[k]) for k in range(40)]
    assert stats.is_flat(flat, n)
    # rising by 0.05 from one quarter to the next, with no spread around the line
    rising = [(50 * k, 0.8 + 0.005 * k) for k in range(40)]
    assert not stats.is_flat(rising, n)
    # a learning jump long before the last half does not matter
    jump = [(50 * k, 0.5 if k < 10 else 0.97) for k in range(40)]
    assert stats.is_flat(jump, n)
    # learning inside the last quarter is not flat, even when it ends high
    late = [(50 * k, 0.5 if k < 35 else 0.97) for k in range(40)]
    assert not stats.is_flat(late, n)
    # two evaluations dipping and recovering inside the last quarter: flat
    dip = [(50 * k, 0.92 if k in (34, 35) else 0.975) for k in range(40)]
    assert stats.is_flat(dip, n)
    # a collapse over the last four evaluations is not
    assert not stats.is_flat(jump[:36] + [(50 * k, 0.6) for k in range(36, 40)], n)
    # a plateau that moves by +-0.02 between evaluations (training, not sampling noise)
    wobbly = [(50 * k, 0.97 + 0.02 * ((-1) ** k)) for k in range(40)]
    assert stats.is_flat(wobbly, n)
    assert not stats.is_flat(flat[:3], n)  # too short to tell
    with pytest.raises(ValueError):
        stats.is_flat(flat, 0)


def test_midranks_enumeration_agrees_with_brute_force():
    a, b = [3.0, 1.0, INF], [2.0, INF, 5.0, 1.0]
    pooled = a + b
    rk = sps.rankdata(pooled)
    obs = sum(rk[:3])
    sums = [sum(rk[list(c)]) for c in combinations(range(7), 3)]
    assert stats.rank_test(a, b)[0] == pytest.approx(sum(s <= obs + 1e-9 for s in sums)
                                                     / len(sums))
