"""The comparison statistics on synthetic numbers with a known answer."""

import math

import numpy as np
import pytest
from scipy import stats

from gclab.experiments import analysis, reproduce


def test_welch_interval_matches_scipy_and_a_hand_computation():
    a = [0.80, 0.82, 0.79, 0.85, 0.81]
    b = [0.70, 0.75, 0.72, 0.69, 0.74, 0.71]
    d, lo, hi = analysis.welch_interval(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert math.isclose(d, np.mean(a) - np.mean(b), rel_tol=1e-12)
    assert math.isclose(lo, ci.low, rel_tol=1e-10) and math.isclose(hi, ci.high, rel_tol=1e-10)
    # by hand: two samples of 3 with variances 1 and 1 -> se = sqrt(2/3), df = 4
    d, lo, hi = analysis.welch_interval([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])
    half = stats.t.ppf(0.975, 4) * math.sqrt(2 / 3)
    assert d == 1.0 and math.isclose(lo, 1 - half) and math.isclose(hi, 1 + half)


def test_welch_interval_edge_cases():
    assert analysis.welch_interval([1.0, 1.0], [0.5, 0.5]) == (0.5, 0.5, 0.5)  # no spread
    d, lo, hi = analysis.welch_interval([0.9], [0.5, 0.6])
    assert d == pytest.approx(0.35) and math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError):
        analysis.welch_interval([], [1.0])


@pytest.mark.parametrize("low, high, direction, expected", [
    (0.01, 0.2, "greater", "reproduced"),
    (-0.2, -0.01, "greater", "reversed"),
    (-0.1, 0.1, "greater", "not decidable"),
    (0.0, 0.1, "greater", "not decidable"),  # touching 0 does not exclude it
    (-0.015, 0.03, "noninferior", "reproduced"),  # at most 0.02 worse
    (-0.2, -0.05, "noninferior", "reversed"),
    (-0.1, 0.05, "noninferior", "not decidable"),
    (float("nan"), float("nan"), "greater", "not decidable"),
])
def test_verdicts(low, high, direction, expected):
    assert analysis.verdict(low, high, direction, margin=0.02) == expected


def test_compare_rows_known_answer():
    rows = []
    for seed, (g, s) in enumerate([(0.9, 0.6), (0.92, 0.62), (0.91, 0.58)]):
        for model, acc, flops in (("gc_r16", g, 10), ("se_r16", s, 2), ("nl", g, 1000)):
            rows.append({"task": "paint", "difficulty": 6, "model": model, "seed": seed,
                         "accuracy": acc, "block_flops": flops})
    out = {c["comparison"]: c for c in reproduce.compare(rows)}
    assert set(out) == {"GC vs SE", "GC vs NL"}  # only pairs whose two models ran
    gs = out["GC vs SE"]
    assert gs["difference"] == pytest.approx(0.31, abs=1e-4) and gs["verdict"] == "reproduced"
    assert gs["flops_ratio"] == 5.0
    gn = out["GC vs NL"]
    # identical samples, sd 0.01: half-width t(0.975, 4) * sqrt(2 * 0.01**2 / 3) = 0.0227 > 0.02
    assert gn["difference"] == 0 and gn["ci_low"] == pytest.approx(-0.0227, abs=1e-4)
    assert gn["verdict"] == "not decidable"
    assert gn["flops_ratio"] == 0.01
    assert set(reproduce.COMPARISON_COLUMNS[:8]) == {
        "comparison", "task", "difficulty", "difference", "ci_low", "ci_high", "verdict",
        "paper_claim"}


def test_every_paper_comparison_is_in_the_full_plan():
    names = {c.name for c in reproduce.COMPARISONS}
    for needed in ("GC vs SE", "att vs avg pooling", "add vs mul fusion", "LayerNorm vs none",
                   "r4 vs r16", "SNL vs NL", "GC vs NL"):
        assert needed in names
    plan = reproduce.make_plan(quick=False)
    models = set(plan.tasks["paint"].models)
    assert all({c.first, c.second} <= models for c in reproduce.COMPARISONS)
    assert len(plan.tasks["paint"].seeds_for(min(plan.tasks["paint"].difficulties))) >= 5
    assert len(plan.tasks["paint"].difficulties) >= 2
