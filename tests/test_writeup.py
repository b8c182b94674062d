"""The generated numbers of docs/experiments.md and the README: the separation bar against a
hand computation, the block rewriting, and the committed docs against the committed CSVs."""

import pytest

from gclab.experiments import comparisons, writeup


def _rows(means, seeds=5, chance=0.5):
    # accuracies mean +- 0.01 alternating, so each model's mean is exactly its given mean
    return [{"task": "t", "difficulty": "2", "model": m, "seed": s, "chance": chance,
             "accuracy": mu + (0.01 if s % 2 else -0.01) * (s < seeds - seeds % 2)}
            for m, mu in means.items() for s in range(seeds)]


def test_bar_check_against_a_hand_computation():
    ok = comparisons.bar_check(_rows({"baseline": 0.52, "nl": 0.95, "gc_r16": 0.80}), "t", 2)
    assert ok["best"] == "nl" and ok["worst"] == "gc_r16"  # the baseline is no block model
    assert ok["means"]["nl"] == pytest.approx(0.95) and ok["seeds"] == 5
    assert ok["met"] and all(ok["checks"].values())
    # each point of the bar fails on its own
    for means, seeds, point in (
            ({"baseline": 0.52, "nl": 0.98, "gc_r16": 0.80}, 5, "best_at_most"),
            ({"baseline": 0.52, "nl": 0.95, "gc_r16": 0.86}, 5, "spread_at_least"),
            ({"baseline": 0.61, "nl": 0.95, "gc_r16": 0.80}, 5, "baseline_within"),
            ({"baseline": 0.52, "nl": 0.95, "gc_r16": 0.80}, 4, "seeds_at_least")):
        b = comparisons.bar_check(_rows(means, seeds), "t", "2")
        assert not b["met"] and [k for k, v in b["checks"].items() if not v] == [point]
    # a spread that comes from a run still rising at its maximum separates no converged models
    rows = _rows({"baseline": 0.52, "nl": 0.95, "gc_r16": 0.80})
    for r in rows:
        r["flat"] = "False" if (r["model"], r["seed"]) == ("gc_r16", 3) else "True"
    b = comparisons.bar_check(rows, "t", "2")
    assert not b["met"] and [k for k, v in b["checks"].items() if not v] == ["converged"]
    for r in rows:  # the baseline's convergence is not the bar's business
        r["flat"] = "False" if r["model"] == "baseline" else "True"
    assert comparisons.bar_check(rows, "t", "2")["met"]
    with pytest.raises(ValueError, match="no runs"):
        comparisons.bar_check(_rows({"nl": 0.9}), "t", "3")


def test_render_rewrites_only_the_generated_blocks():
    res = writeup.Results.read(writeup.DATA_DIR / "results")
    text = "keep me\n<!-- generated: bar -->\nstale 0.123\n<!-- /generated -->\nkeep 0.5\n"
    out = writeup.render(text, res)
    assert out.startswith("keep me\n<!-- generated: bar -->\n| task |")
    assert out.endswith("<!-- /generated -->\nkeep 0.5\n") and "stale" not in out
    assert writeup.render(out, res) == out
    with pytest.raises(ValueError, match="no <!-- /generated -->"):
        writeup.render("<!-- generated: bar -->\n", res)
    with pytest.raises(ValueError, match="unknown generated block"):
        writeup.render("<!-- generated: verdicts -->\n<!-- /generated -->", res)


def test_committed_docs_match_the_committed_results(capsys):
    """Every generated block of docs/experiments.md and README.md is what the code makes
    from data/results (rerun `python -m gclab.experiments.writeup --write` after a run)."""
    texts = {p: p.read_text() for p in writeup.FILES}
    assert all("<!-- generated: " in t for t in texts.values())
    assert writeup.main(["--check"]) == 0, capsys.readouterr().out
