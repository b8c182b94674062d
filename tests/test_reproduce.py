"""`gclab reproduce --quick` end to end: the table's shape and the two headline outcomes."""

import csv

import pytest

from gclab.cli import main as cli_main
from gclab.experiments import reproduce


@pytest.mark.slow
def test_quick_reproduction(tmp_path):
    out = tmp_path / "results"
    assert cli_main(["reproduce", "--quick", "--no-progress", "--threads", "1",
                     "--out", str(out)]) == 0
    with (out / "ablation.csv").open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        assert set(reproduce.COLUMNS) <= set(reader.fieldnames)
    plan = reproduce.make_plan(quick=True)
    expected = {(t, m, s) for t, ms in plan.tasks.items() for m in ms for s in plan.seeds}
    assert {(r["task"], r["model"], int(r["seed"])) for r in rows} == expected
    assert all(r["model"].split("_")[0] in ("baseline", "nl", "snl", "gc", "se") for r in rows)
    acc = {r["model"]: float(r["accuracy"]) for r in rows}
    chance = float(rows[0]["chance"])
    assert chance == 0.5
    # the plain CNN cannot see both objects: it stays near chance on held-out data ...
    assert abs(acc["baseline"] - chance) < 0.07, acc
    # ... and one GC block in layer3 solves the task
    assert acc[reproduce.QUICK_GC] > 0.85, acc
    base = next(r for r in rows if r["model"] == "baseline")
    gc = next(r for r in rows if r["model"] == reproduce.QUICK_GC)
    assert int(base["block_params"]) == 0 and int(base["block_flops"]) == 0
    assert 0 < int(gc["block_params"]) and 0 < int(gc["block_flops"]) < int(gc["model_flops"])
    # GC shares one attention map across queries: 1 - cos of identical rows, only float32
    # rounding left, ~10·sqrt(3N)·u = 1.6e-5 at N = 256 positions (tests/_tol.py); 1e-4 over it
    assert float(gc["dist_attention"]) < 1e-4
    for name in ("ablation.md", "ablation.png", "machine.json", "attention_nl.png"):
        assert (out / name).stat().st_size > 0, name
    md = (out / "ablation.md").read_text()
    assert "| baseline |" in md and "±" in md


def test_plan_and_model_names():
    full = reproduce.make_plan(quick=False)
    assert len(list(full.seeds)) >= 3
    names = set(full.tasks["longrange"])
    for needed in ("baseline", "nl", "snl", "gc_r16", "gc_r4", "se_r16", "gc_r16_avg",
                   "gc_r16_mul", "gc_r16_noln"):
        assert needed in names
    for mode in ("nl_gaussian", "nl_dot_product", "nl_concatenation"):
        assert mode in names
    with pytest.raises(ValueError, match="model must be one of"):
        reproduce.build_model("resnet50")
    gc = reproduce.build_model("gc_r16_avg")
    assert gc.inserted[0][1].pooling == "avg"


def test_committed_results_cover_the_full_plan():
    """data/results holds one row per (task, model, seed) of the full plan, and the files the
    lessons read (the notebooks 03 and 07 load them)."""
    out = reproduce.RESULTS_DIR
    with (out / "ablation.csv").open() as f:
        rows = list(csv.DictReader(f))
    plan = reproduce.make_plan(quick=False)
    expected = {(t, m, s) for t, ms in plan.tasks.items() for m in ms for s in plan.seeds}
    assert {(r["task"], r["model"], int(r["seed"])) for r in rows} == expected
    assert len(rows) == len(expected)
    for name in ("ablation.md", "ablation.png", "attention_nl.png", "machine.json",
                 "nl_longrange_seed0.pt"):
        assert (out / name).stat().st_size > 0, name
    model = reproduce.build_model("nl")
    import torch

    model.load_state_dict(torch.load(out / "nl_longrange_seed0.pt", weights_only=True))
