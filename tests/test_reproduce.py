"""`gclab reproduce`: --quick end to end (from another folder, without touching the checkout's
data/), the plan, the up-front dependency check, and the committed results."""

import csv
import hashlib
import json
import math
import subprocess
import sys

import pytest

from gclab.cli import main as cli_main
from gclab.experiments import comparisons, reproduce
from gclab.experiments.data import DATA_DIR
from gclab.experiments.plan import QUICK_GC, build_model, make_plan, select_tasks


def _tree_hash(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.slow
def test_quick_reproduction_writes_a_new_folder_in_the_cwd(tmp_path, monkeypatch):
    before = _tree_hash(DATA_DIR)
    monkeypatch.chdir(tmp_path)
    # the quick plan in two invocations: one task, then the other merged into its results,
    # then the second again (its rows and its invocation replaced, not added twice)
    for tasks, merge in (("longrange", []), ("paint", ["--merge"]), ("paint", ["--merge"])):
        assert cli_main(["reproduce", "--quick", "--no-progress", "--threads", "1",
                         "--tasks", tasks] + merge) == 0
    assert _tree_hash(DATA_DIR) == before  # the checkout's data/ (and results) untouched
    out = tmp_path / reproduce.DEFAULT_OUT
    machine = json.loads((out / "machine.json").read_text())
    assert [p["tasks"] for p in machine["parts"]] == [["longrange"], ["paint"]]
    assert machine["runs"] == len(make_plan(quick=True).runs())
    assert "--tasks paint --merge" in machine["parts"][1]["command"]
    with (out / "ablation.csv").open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        assert tuple(reader.fieldnames) == comparisons.COLUMNS + comparisons.DERIVED_COLUMNS
    with (out / "comparisons.csv").open() as f:
        reader = csv.DictReader(f)
        comps = list(reader)
        assert tuple(reader.fieldnames) == comparisons.COMPARISON_COLUMNS
    assert comps and all(c["verdict"] in ("reproduced", "reversed", "not decidable")
                         for c in comps)
    plan = make_plan(quick=True)
    expected = {(t, "" if d is None else str(d), m, s) for t, d, m, s in plan.runs()}
    got = [(r["task"], r["difficulty"], r["model"], int(r["seed"])) for r in rows]
    assert set(got) == expected and len(got) == len(expected)
    with (out / "curves.csv").open() as f:
        curve_runs = {(r["task"], r["difficulty"], r["model"], int(r["seed"]), int(r["step"]))
                      for r in csv.DictReader(f)}
    assert {c[:4] for c in curve_runs} == expected
    acc = {(r["task"], r["model"]): float(r["accuracy"]) for r in rows}
    for r in rows:
        assert float(r["chance"]) == pytest.approx(0.5, abs=0.02)
    # the plain CNN cannot see both objects / the key: it stays near chance on held-out data
    assert abs(acc[("longrange", "baseline")] - 0.5) < 0.07, acc
    assert abs(acc[("paint", "baseline")] - 0.5) < 0.05, acc
    # ... and one GC block in layer3 solves the long-range task
    assert acc[("longrange", QUICK_GC)] > 0.85, acc
    gc = next(r for r in rows if r["model"] == QUICK_GC)
    base = next(r for r in rows if r["model"] == "baseline")
    assert int(base["block_params"]) == 0 and int(base["block_flops"]) == 0
    assert 0 < int(gc["block_params"]) and 0 < int(gc["block_flops"]) < int(gc["model_flops"])
    # GC shares one attention map across queries: 1 - cos of identical rows, only float32
    # rounding left, ~10·sqrt(3N)·u = 1.6e-5 at N = 256 positions (tests/_tol.py); 1e-4 over it
    assert float(gc["dist_attention"]) < 1e-4
    for name in ("ablation.md", "ablation.png", "machine.json", "attention_nl.png",
                 "curves.csv", "curves.png", "attention_blocks.png", "nl_longrange_seed0.pt"):
        assert (out / name).stat().st_size > 0, name
    md = (out / "ablation.md").read_text()
    assert "| baseline |" in md and "±" in md and "Welch" in md


def test_missing_matplotlib_stops_before_any_work(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    called = []
    monkeypatch.setattr(reproduce, "make_plan", lambda *a, **k: called.append(1))
    assert reproduce.main(["--quick", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "matplotlib" in err[0] and "gclab[course]" in err[0]
    assert not called and not (tmp_path / "r").exists()


def test_help_needs_no_optional_package():
    """A fresh interpreter in which matplotlib, scipy and sklearn cannot be imported."""
    code = ("import sys\n"
            "for m in ('matplotlib', 'scipy', 'sklearn'):\n"
            "    sys.modules[m] = None\n"
            "from gclab.cli import main\n"
            "main(['reproduce', '--help'])\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "--out" in res.stdout and "gclab-results" in res.stdout


def test_plan_and_model_names():
    full = make_plan(quick=False)
    assert set(full.tasks) == {"lookalike", "longrange", "manykeys", "digitkeys", "digitgrid"}
    # without --tasks: everything but manykeys and digitkeys (they run only when named)
    assert list(select_tasks(full, None).tasks) == ["longrange", "lookalike", "digitgrid"]
    assert list(select_tasks(full, ["manykeys"]).tasks) == ["manykeys"]
    # digitgrid, digitkeys and manykeys run exactly their committed designs
    # (docs/experiments.md, fifth, fourth and third design): models, level, seeds, maximum,
    # patience, cool-down, warm-up, batch, evaluation interval and images, early-stop
    # threshold (digitgrid: none, every block run trains its whole budget)
    for task, level, max_steps, learn_above in (("digitgrid", 4, 2400, math.inf),
                                                ("digitkeys", 6, 4000, 0.75),
                                                ("manykeys", 2, 1600, 0.75)):
        tp = full.tasks[task]
        assert tuple(tp.models) == ("baseline", "nl", "snl", "gc_r16", "gc_r4")
        assert tuple(tp.difficulties) == (level,) and tp.seeds_for(level) == [0, 1, 2, 3, 4]
        cfg = tp.config
        assert (cfg.max_steps, cfg.patience, cfg.cooldown_steps, cfg.warmup_steps,
                cfg.batch_size, cfg.eval_every, tp.eval_images, tp.learn_above) == (
            max_steps, 250, 100, 100, 32, 50, 256, learn_above)
    for task in ("digitkeys", "digitgrid"):
        head = build_model("nl", task).fc
        assert (head.in_channels, head.out_channels) == (32, 10)  # ten classes
        assert build_model("gc_r16", task).inserted[0][1].planes == 8
    for task in ("lookalike",):
        tp = full.tasks[task]
        assert build_model("gc_r16", task).dense
        cfg = tp.config
        # the converged protocol: a maximum, early stopping on the validation curve, warm-up
        assert cfg.max_steps >= 1000 and cfg.patience > 0 and cfg.eval_every > 0
        assert cfg.warmup_steps > 0 and cfg.cooldown_steps > 0
        for level in tp.difficulties:
            assert len(tp.seeds_for(level)) >= 5
    # manykeys puts 128 channels where the blocks sit: GC r16's bottleneck is 8 wide
    gc = build_model("gc_r16", "manykeys").inserted[0][1]
    assert gc.planes == 8 and build_model("gc_r4", "manykeys").inserted[0][1].planes == 32
    for mode in ("nl", "nl_gaussian", "nl_dot_product", "nl_concatenation"):
        assert mode in full.tasks["longrange"].models  # lesson 3 reads them
    assert reproduce.DEFAULT_OUT.name == "gclab-results" and not reproduce.DEFAULT_OUT.is_absolute()
    with pytest.raises(ValueError, match="model must be one of"):
        build_model("resnet50")
    gc = build_model("gc_r16_avg")
    assert gc.inserted[0][1].pooling == "avg"
    # within lookalike: every seed of the central models, seed by seed, before the others
    runs = [r for r in full.runs() if r[0] == "lookalike"]
    core = full.tasks["lookalike"].first
    k = len(core) * 5
    assert {r[2] for r in runs[:k]} == set(core) and [r[3] for r in runs[:k:len(core)]] == [
        0, 1, 2, 3, 4]


def _committed():
    out = reproduce.RESULTS_DIR
    with (out / "ablation.csv").open() as f:
        rows = list(csv.DictReader(f))
    with (out / "comparisons.csv").open() as f:
        comps = list(csv.DictReader(f))
    with (out / "curves.csv").open() as f:
        curves = list(csv.DictReader(f))
    return out, rows, comps, curves


def test_tasks_must_name_tasks_of_the_plan(capsys, tmp_path):
    with pytest.raises(SystemExit) as err:
        reproduce.main(["--tasks", "manykey", "--out", str(tmp_path / "r")])
    assert err.value.code == 2
    assert "'manykeys'" in capsys.readouterr().err  # the message names the plan's tasks
    with pytest.raises(SystemExit):  # --merge needs earlier results in --out
        reproduce.main(["--quick", "--tasks", "paint", "--merge", "--out", str(tmp_path)])
    assert "--merge needs the results" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_merge_keeps_the_other_tasks_of_a_single_invocation_file(tmp_path):
    """A machine.json written by one invocation over two tasks (no ``parts``): merging a new
    run of one task keeps that invocation for the other task only."""
    rows = [{k: "" for k in comparisons.COLUMNS} | {"task": t, "model": "nl", "seed": 0,
                                                    "capped": "False", "cpu_seconds": 60}
            for t in ("longrange", "lookalike")]
    comparisons.write_csv(tmp_path / "ablation.csv", rows, comparisons.COLUMNS)
    comparisons.write_csv(tmp_path / "curves.csv", [
        {"task": t, "difficulty": "", "model": "nl", "seed": 0, "step": 50, "accuracy": 0.5}
        for t in ("longrange", "lookalike")], comparisons.CURVE_COLUMNS)
    (tmp_path / "machine.json").write_text(json.dumps(
        {"command": "gclab reproduce", "runs": 2, "capped_runs": 0, "skipped_runs": []}))
    kept = reproduce.kept_results(tmp_path, ["lookalike"])
    assert [r["task"] for r in kept.rows] == ["longrange"]
    assert [c["task"] for c in kept.curves] == ["longrange"]
    assert [p["tasks"] for p in kept.parts] == [["longrange"]]
    # its counts cover the kept task only; its wall time the whole invocation
    assert kept.parts[0]["runs"] == 1 and kept.parts[0]["capped_runs"] == 0
    assert kept.parts[0]["trained_tasks"] == ["longrange", "lookalike"]
    assert reproduce.kept_results(tmp_path, ["lookalike", "longrange"]).parts == []


def test_committed_results_cover_the_full_plan():
    """data/results holds one row per run of the full plan (less the runs that machine.json
    lists as skipped by --stop-after), every comparison per metric, and the files the lessons
    read (the notebooks 03 and 07 load them)."""
    import json

    out, rows, comps, _ = _committed()
    machine = json.loads((out / "machine.json").read_text())
    plan = make_plan(quick=False)
    expected = {(t, "" if d is None else str(d), m, s) for t, d, m, s in plan.runs()}
    skipped = {tuple(r[:3]) + (int(r[3]),) for r in machine.get("skipped_runs", [])}
    skipped = {(t, "" if d == "None" else d, m, s) for t, d, m, s in skipped}
    got = {(r["task"], r["difficulty"], r["model"], int(r["seed"])) for r in rows}
    assert got == expected - skipped and len(rows) == len(got)
    assert len(skipped) <= len(expected) // 4  # a cut may not eat the plan
    assert {c["metric"] for c in comps} == set(comparisons.METRICS)
    for task in ("lookalike", "digitkeys", "digitgrid"):
        for level in plan.tasks[task].difficulties:
            models = set(plan.tasks[task].models)
            want = {(c.name, m) for c in comparisons.COMPARISONS if {c.first, c.second} <= models
                    for m in comparisons.METRICS}
            have = {(c["comparison"], c["metric"]) for c in comps
                    if c["task"] == task and c["difficulty"] == str(level)}
            assert have == want, (task, level)
    for name in ("ablation.md", "ablation.png", "attention_nl.png", "machine.json",
                 "nl_longrange_seed0.pt", "curves.csv", "curves.png", "attention_blocks.png"):
        assert (out / name).stat().st_size > 0, name
    model = build_model("nl")
    import torch

    model.load_state_dict(torch.load(out / "nl_longrange_seed0.pt", weights_only=True))


def test_no_decided_comparison_rests_on_a_run_that_had_not_converged():
    """Every run's validation curve in curves.csv: its `flat` column is the convergence check
    recomputed here from the curve (stats.is_flat: the last quarter within its noise of the
    quarter before); a capped run ran to its maximum; and every accuracy comparison counts
    exactly the seeds that learned AND whose last quarter is flat, every accuracy_all
    comparison exactly the flat seeds -- a run that had not levelled off (capped or not)
    never enters an accuracy verdict."""
    from gclab.experiments import stats

    _, rows, comps, curves = _committed()
    by_run = {}
    for c in curves:
        key = (c["task"], c["difficulty"], c["model"], int(c["seed"]))
        by_run.setdefault(key, []).append((int(c["step"]), float(c["accuracy"])))
    for r in rows:
        key = (r["task"], r["difficulty"], r["model"], int(r["seed"]))
        curve = sorted(by_run[key])
        assert curve[-1][0] == int(r["steps"]), key
        assert stats.is_flat(curve, int(r["eval_images"] or 256)) == (r["flat"] == "True"), key
        if r["capped"] == "True":
            assert int(r["steps"]) == int(r["max_steps"]), key
        else:  # stopped early, or a baseline that levelled off at chance
            assert int(r["steps"]) < int(r["max_steps"]), key
    for c in (c for c in comps if c["metric"] in ("accuracy", "accuracy_all")):
        for side in ("first", "second"):
            used = [r for r in rows if (r["task"], r["difficulty"], r["model"]) ==
                    (c["task"], c["difficulty"], c[side]) and r["flat"] == "True"
                    and (r["learned"] == "True" or c["metric"] == "accuracy_all")]
            assert int(c[f"n_{side}"]) == len(used), (c["comparison"], c["metric"], side)
        if c["verdict"] != "not decidable":
            assert int(c["n_first"]) >= 2 and int(c["n_second"]) >= 2


@pytest.mark.parametrize("task, level", [("digitkeys", "6"), ("digitgrid", "4")])
def test_long_runs_run_the_committed_protocol_longer(tmp_path, task, level):
    """scripts/long_runs.py: the plan's run with only the maximum raised; its rows carry the
    ablation columns (keys_read included) and its curve ends at the maximum."""
    import os

    out, root = tmp_path / "long.csv", reproduce.RESULTS_DIR.parents[1]
    res = subprocess.run([sys.executable, str(root / "scripts" / "long_runs.py"),
                          "--task", task, "--seeds", "3", "--max-steps", "220", "--jobs", "1",
                          "--out", str(out)],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert res.returncode == 0, res.stderr
    (row,) = comparisons.read_csv(out)
    assert (row["task"], row["difficulty"], row["model"], row["seed"], row["max_steps"]) == (
        task, level, "gc_r16", "3", "220")
    assert row["steps"] == "220" and row["capped"] == "True" and row["keys_read"] != ""
    curve = comparisons.read_csv(tmp_path / "long_curves.csv")
    assert int(curve[-1]["step"]) == 220 and "keys read" in res.stdout
