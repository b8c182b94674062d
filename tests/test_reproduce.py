"""`gclab reproduce`: --quick end to end (from another folder, without touching the checkout's
data/), the plan, the up-front dependency check, and the committed results."""

import csv
import hashlib
import subprocess
import sys

import pytest

from gclab.cli import main as cli_main
from gclab.experiments import reproduce
from gclab.experiments.data import DATA_DIR


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
    assert cli_main(["reproduce", "--quick", "--no-progress", "--threads", "1"]) == 0
    assert _tree_hash(DATA_DIR) == before  # the checkout's data/ (and results) untouched
    out = tmp_path / reproduce.DEFAULT_OUT
    with (out / "ablation.csv").open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        assert tuple(reader.fieldnames) == reproduce.COLUMNS
    with (out / "comparisons.csv").open() as f:
        reader = csv.DictReader(f)
        comps = list(reader)
        assert tuple(reader.fieldnames) == reproduce.COMPARISON_COLUMNS
    assert comps and all(c["verdict"] in ("reproduced", "reversed", "not decidable")
                         for c in comps)
    plan = reproduce.make_plan(quick=True)
    expected = {(t, "" if d is None else str(d), m, s) for t, d, m, s in plan.runs()}
    assert {(r["task"], r["difficulty"], r["model"], int(r["seed"])) for r in rows} == expected
    acc = {(r["task"], r["model"]): float(r["accuracy"]) for r in rows}
    for r in rows:
        assert float(r["chance"]) == pytest.approx(0.5, abs=0.02)
    # the plain CNN cannot see both objects / the key: it stays near chance on held-out data
    assert abs(acc[("longrange", "baseline")] - 0.5) < 0.07, acc
    assert abs(acc[("paint", "baseline")] - 0.5) < 0.05, acc
    # ... and one GC block in layer3 solves the long-range task
    assert acc[("longrange", reproduce.QUICK_GC)] > 0.85, acc
    gc = next(r for r in rows if r["model"] == reproduce.QUICK_GC)
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
    full = reproduce.make_plan(quick=False)
    assert set(full.tasks) == {"paint", "lookalike", "twokeys", "longrange"}
    for task in ("paint", "lookalike", "twokeys"):
        assert set(full.tasks[task].models) == set(reproduce.COMPARE_MODELS)
        assert len(full.tasks[task].difficulties) >= 2
        assert reproduce.build_model("gc_r16", task).dense
    # the levels that the bar is read on have 5 seeds
    for task, level in (("paint", 8), ("lookalike", 8), ("lookalike", 10), ("twokeys", 50)):
        assert len(full.tasks[task].seeds_for(level)) >= 5
    for mode in ("nl", "nl_gaussian", "nl_dot_product", "nl_concatenation"):
        assert mode in full.tasks["longrange"].models  # lesson 3 reads them
    assert reproduce.DEFAULT_OUT.name == "gclab-results" and not reproduce.DEFAULT_OUT.is_absolute()
    with pytest.raises(ValueError, match="model must be one of"):
        reproduce.build_model("resnet50")
    gc = reproduce.build_model("gc_r16_avg")
    assert gc.inserted[0][1].pooling == "avg"
    assert reproduce.build_model("gc_r16", "paint").dense


def test_committed_results_cover_the_full_plan():
    """data/results holds one row per run of the full plan, every comparison, and the files the
    lessons read (the notebooks 03 and 07 load them)."""
    out = reproduce.RESULTS_DIR
    with (out / "ablation.csv").open() as f:
        rows = list(csv.DictReader(f))
    plan = reproduce.make_plan(quick=False)
    expected = {(t, "" if d is None else str(d), m, s) for t, d, m, s in plan.runs()}
    assert {(r["task"], r["difficulty"], r["model"], int(r["seed"])) for r in rows} == expected
    assert len(rows) == len(expected)
    with (out / "comparisons.csv").open() as f:
        comps = list(csv.DictReader(f))
    for task in ("paint", "lookalike", "twokeys"):
        for level in plan.tasks[task].difficulties:
            names = {c["comparison"] for c in comps
                     if c["task"] == task and c["difficulty"] == str(level)}
            assert names == {c.name for c in reproduce.COMPARISONS}, (task, level)
    for name in ("ablation.md", "ablation.png", "attention_nl.png", "machine.json",
                 "nl_longrange_seed0.pt", "curves.csv", "curves.png", "attention_blocks.png"):
        assert (out / name).stat().st_size > 0, name
    model = reproduce.build_model("nl")
    import torch

    model.load_state_dict(torch.load(out / "nl_longrange_seed0.pt", weights_only=True))
