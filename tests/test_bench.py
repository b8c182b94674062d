"""``gclab bench`` as a tool (not its numbers): the floors and shares it prints, where it writes,
what it says it wrote, no profiler noise, and ``--help`` without the optional packages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gclab.experiments import bench, bench_core, bench_report

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_prints_peaks_shares_and_both_thread_counts(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    before = sorted((ROOT / "data" / "bench").rglob("*"))
    assert bench.main(["--smoke", "--threads", "1,2", "--no-plot"]) == 0
    out, err = capfd.readouterr()
    assert "USDT" not in out + err  # kineto's profiler_start/stop lines are silenced
    assert "peaks at 1 thread(s): GEMM" in out and "copy into a preallocated buffer" in out
    assert "peaks at 2 thread(s)" in out and "GB/s" in out
    assert "| floor work | floor ms | share of peak | x 6 bmm | x clones |" in out
    assert "| target | 1 thread | status | 2 threads | status |" in out
    assert "x.clone()" in out
    # NL with measured routes beside impl='auto', and its target
    assert "| nl_embedded | 8x8 | 1 | measured |" in out
    assert "impl='auto', measured routes: took " in out
    assert "| NL embedded, measured routes, <= 1.0x mmcv at every size" in out
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
    row = bench_core.Row("nl_dot", "gclab", 1, 8, 4, 4, time_ms=1.0)
    msg = bench_report.plot_scaling([row], str(tmp_path / "scaling.png"))
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
    d = bench_report.cpu_description()
    assert isinstance(d["cpu"], str) and d["cpu"]
    assert isinstance(d["vector_extensions"], list)


def _smoke_config():
    cfg = bench_core.Config(nl_sizes=((4, 4),), gc_sizes=((4, 4), (8, 8)), channels=8,
                       nl_batch=1, gc_batch=2, gemm_sizes=(32, 64))
    return cfg


def test_peaks_are_the_max_over_every_measurement():
    cfg = _smoke_config()
    lim = bench_core.measure_limits(cfg, 1)
    assert set(lim.gemm_rates) == {32, 64} and len(lim.copy_gbps) == 2
    assert lim.gemm_gflops == max(lim.gemm_rates.values())
    assert lim.gemm_rates[lim.gemm_size] == lim.gemm_gflops
    first_gemm, first_copy = dict(lim.gemm_rates), dict(lim.copy_gbps)
    bench_core.remeasure_peaks(lim, cfg)  # a second measurement can only raise them
    assert all(lim.gemm_rates[n] >= r for n, r in first_gemm.items())
    assert all(lim.copy_gbps[m] >= r for m, r in first_copy.items())
    assert lim.gemm_gflops == max(lim.gemm_rates.values())
    assert lim.load_average_end


def _limits(gemm: float, copy: dict) -> bench_core.Limits:
    return bench_core.Limits(threads=1, matmul_gflops=1.0, matmul_shape="", clone_gbps=1.0,
                        clone_ms=1.0, clone_mib=1.0, load_average=(0.0, 0.0, 0.0),
                        gemm_gflops=gemm, gemm_size=64, gemm_rates={64: gemm},
                        copy_gbps=dict(copy))


def test_floors_are_work_at_the_peak_and_no_share_exceeds_one():
    # 1 GFLOP in 20 ms = 50 GFLOP/s: half of a 100 GFLOP/s peak; 0.5 GFLOP in 2 ms = 250
    # GFLOP/s beats it, so the peak must become 250 (measured peaks are lower bounds)
    nl_slow = bench_core.Row("nl_embedded", "mmcv", 2, 256, 8, 8, time_ms=20.0)
    nl_fast = bench_core.Row("nl_dot", "gclab", 2, 256, 8, 8, time_ms=2.0)
    mib = 2 * 256 * 8 * 8 * 4 / bench_core.MIB
    se = bench_core.Row("se", "gclab", 2, 256, 8, 8, time_ms=1.0)  # 5 tensors of 128 KiB
    # faster than the copy
    clone = bench_core.Row("se", bench_core.CLONE, 2, 256, 8, 8, time_ms=1e-4)
    lim = _limits(100.0, {round(mib, 3): 10.0})
    rows = [nl_slow, nl_fast, se, clone]
    bench_core.apply_floors(rows, lim, {("nl_embedded", 64): 1.0, ("nl_dot", 64): 0.5})
    assert lim.gemm_gflops == 250.0 and any("nl_dot" in why for why in lim.raised_by)
    assert nl_fast.share == 1.0
    assert abs(nl_slow.share - 1.0 / 250.0 / 20e-3) < 1e-12
    tensor = 2 * 256 * 64 * 4
    assert se.work == 5 * tensor and clone.work == 2 * tensor
    assert lim.copy_gbps[round(mib, 3)] == 2 * tensor / 1e-7 / 1e9
    assert all(r.share <= 1.0 for r in rows)


def test_measured_routes_target_uses_the_gclab_row_where_unmeasured():
    # 8x8: the measured row (0.9 of mmcv) although gclab is slower there (1.2); 16x16: no
    # measured row (N > 16 C_i), so gclab's (1.1), the worst
    cfg = bench_core.Config(nl_sizes=((8, 8), (16, 16)))
    rows = [bench_core.Row("nl_embedded", impl, 2, 256, h, h, time_ms=t)
            for impl, h, t in (("gclab", 8, 12.0), ("measured", 8, 9.0), ("mmcv", 8, 10.0),
                               ("gclab", 16, 11.0), ("mmcv", 16, 10.0))]
    (tgt,) = [t for t in bench_report.evaluate_targets(rows, cfg)
              if t.name.startswith("NL embedded, measured routes")]
    assert abs(tgt.value - 1.1) < 1e-12 and tgt.status == "NOT MET"
    assert "8x8: 0.90, 16x16: 1.10" in tgt.detail
    rows[3].time_ms = 9.5
    (tgt,) = [t for t in bench_report.evaluate_targets(rows, cfg)
              if t.name.startswith("NL embedded, measured routes")]
    assert abs(tgt.value - 0.95) < 1e-12 and tgt.status == "MET"


def _markdown_tables(text):
    """Each markdown table of ``text`` as (header cells, rows of cells)."""
    tables, lines = [], text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("|") and lines[i + 1].startswith("|---"):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip("|").split("|")])
            tables.append(([c.strip() for c in line.strip("|").split("|")], rows))
    return tables


def test_committed_tables_show_no_share_above_one_and_name_the_old_yardsticks():
    # every column called a share (of a peak) in the README, docs/benchmarks.md and the
    # committed reports holds values <= 1; results.csv's ``share`` column too; the older
    # bench's ratios to bmm / clone times are labelled as yardsticks, never as a floor
    import csv
    import re

    docs = [ROOT / "README.md", ROOT / "docs" / "benchmarks.md",
            *sorted((ROOT / "data" / "bench").rglob("*.md"))]
    checked = 0
    for path in docs:
        for header, rows in _markdown_tables(path.read_text(encoding="utf-8")):
            assert "floor/time" not in header, path  # the older bench's yardstick ratio
            for col, name in enumerate(header):
                low = name.lower()  # "share of peak", "gclab share"; not "share that learned"
                if not ("share of peak" in low or low.endswith(" share") or low == "share"):
                    continue
                for row in rows:
                    for num in re.findall(r"\d+\.?\d*", row[col] if col < len(row) else ""):
                        checked += 1
                        assert float(num) <= 1.0, f"{path}: {name} = {row[col]}"
    assert checked > 500
    for path in sorted((ROOT / "data" / "bench").rglob("results.csv")):
        rows = list(csv.DictReader(path.open()))
        shares = [float(r["share"]) for r in rows if r.get("share") not in (None, "", "nan")]
        assert all(v <= 1.0 for v in shares), path
    for path in sorted((ROOT / "data" / "bench").rglob("report.md")):
        text = path.read_text(encoding="utf-8")
        assert "(floor: 2)" not in text and "matmul floor" not in text, path
        assert "the floor: six" not in text and "set the floors" not in text, path


def test_counted_flops_are_the_non_local_formula():
    # explicit embedded Gaussian NL, fwd+bwd: 6 N x N x C_i products (2 forward, 4 backward)
    # and 4 1x1 convs C <-> C_i (each 2 B N C C_i forward, twice that backward)
    from gclab.nn import NonLocal2d

    b, c, h, w = 2, 16, 4, 6
    n, ci = h * w, c // 2
    got = bench_core.count_flops(lambda: NonLocal2d(c, impl="explicit"), (b, c, h, w))
    assert got == 6 * 2 * b * n * n * ci + 4 * 3 * 2 * b * n * c * ci


def test_runs_write_each_run_a_summary_and_no_share_above_one(tmp_path, capsys):
    import csv

    assert bench.main(["--smoke", "--threads", "1", "--no-plot", "--no-memory", "--runs", "2",
                       "--out", str(tmp_path)]) == 0
    for k in (1, 2):
        rows = list(csv.DictReader((tmp_path / f"run{k}" / "results.csv").open()))
        shares = [float(r["share"]) for r in rows if r["share"] not in ("", "nan")]
        assert len(shares) >= 10 and max(shares) <= 1.0
        assert {"work", "floor_ms", "bmm_ms", "clone_ms"} <= set(rows[0])
        machine = json.loads((tmp_path / f"run{k}" / "machine.json").read_text())
        assert machine["load_average_end"] and "code" in machine and "environment" in machine
    summary = (tmp_path / "summary.md").read_text()
    # every measured target: median (value, value), met k/2
    line = next(s for s in summary.splitlines() if s.startswith("| GC fwd+bwd within 1.5x"))
    assert line.count(",") >= 2 and "/2" in line
    assert "| run2 |" in summary


def test_cpu_clock_leaves_out_time_the_process_does_not_run():
    import time

    import pytest

    nap = {"nap": lambda: time.sleep(0.05)}  # 50 ms off the CPU, as when another job runs
    try:
        bench_core.use_clock("cpu")
        assert max(bench_core.interleaved_medians(nap, 2, 0)["nap"]) < 0.02
    finally:
        bench_core.use_clock("wall")
    assert min(bench_core.interleaved_medians(nap, 2, 0)["nap"]) >= 0.05
    with pytest.raises(ValueError, match="clock must be one of"):
        bench_core.use_clock("cycles")


def test_cpu_clock_applies_to_one_thread_only(tmp_path):
    assert bench.main(["--smoke", "--threads", "1,2", "--no-plot", "--no-memory",
                       "--clock", "cpu", "--out", str(tmp_path)]) == 0
    machine = json.loads((tmp_path / "machine.json").read_text())
    assert [(lim["threads"], lim["clock"]) for lim in machine["limits"]] == [(1, "cpu"),
                                                                              (2, "wall")]
    assert "timed by cpu time" in (tmp_path / "report.md").read_text()
