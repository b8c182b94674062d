"""``gclab bench`` as a tool (not its numbers): the floors and shares it prints, where it writes,
what it says it wrote, no profiler noise, and ``--help`` without the optional packages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gclab.experiments.bench as bench

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_prints_limits_shares_and_both_thread_counts(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    before = sorted((ROOT / "data" / "bench").rglob("*"))
    assert bench.main(["--smoke", "--threads", "1,2", "--no-plot"]) == 0
    out, err = capfd.readouterr()
    assert "USDT" not in out + err  # kineto's profiler_start/stop lines are silenced
    assert "machine limits at 1 thread(s): matmul" in out and "GB/s" in out
    assert "machine limits at 2 thread(s)" in out
    assert "| floor ms | floor/time | x clones |" in out
    assert "| target | 1 thread | status | 2 threads | status |" in out
    assert "x.clone()" in out
    # a new folder in the current directory, not data/bench of the package
    made = [p for p in tmp_path.iterdir() if p.name.startswith("bench-")]
    assert len(made) == 1
    assert sorted((ROOT / "data" / "bench").rglob("*")) == before
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"wrote {made[0].name}/") and "scaling.png" not in last
    machine = json.loads((made[0] / "machine.json").read_text())
    assert machine["cpu"] and [lim["threads"] for lim in machine["limits"]] == [1, 2]
    header = (made[0] / "results.csv").read_text().splitlines()[0]
    assert header.startswith("group,impl,batch,channels,height,width,time_ms")
    assert "threads" in header and "floor_ms" in header


def test_plot_without_matplotlib_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    row = bench.Row("nl_dot", "gclab", 1, 8, 4, 4, time_ms=1.0)
    msg = bench.plot_scaling([row], str(tmp_path / "scaling.png"))
    assert msg and "matplotlib" in msg and not (tmp_path / "scaling.png").exists()


def test_help_works_without_matplotlib_and_mmcv():
    code = (
        "import sys; sys.modules['matplotlib'] = None; sys.modules['mmcv'] = None\n"
        "from gclab.cli import main\n"
        "try:\n    main(['bench', '--help'])\nexcept SystemExit as e:\n    sys.exit(e.code)\n"
    )
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert got.returncode == 0, got.stderr
    assert "--threads" in got.stdout and "--out" in got.stdout


def test_cpu_description_names_the_cpu():
    d = bench.cpu_description()
    assert isinstance(d["cpu"], str) and d["cpu"]
    assert isinstance(d["vector_extensions"], list)
