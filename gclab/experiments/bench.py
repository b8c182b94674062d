r"""``gclab bench``: time gclab's blocks beside mmcv (and timm), against this machine's limits.

First it measures the machine's physical peaks, at the thread count in use, at the start and
again at the end of that thread count's run (the best of both is kept):

- **peak GEMM**: the best float32 ``torch.mm`` rate (torch's BLAS) over square sizes
  (``Config.gemm_sizes``: 256 to 2048), in GFLOP/s;
- **copy bandwidth**: ``dst.copy_(src)`` into a preallocated, already touched ``dst`` (STREAM's
  copy: bytes read + written over the time), at each GC/SE tensor size, in GB/s.

Every figure is then a **share of its peak**: its floor (the work at the peak) over its time.

- Non-local: the FLOPs of one fwd+bwd counted by ``FlopCounterMode`` (torch's formulas and those
  :mod:`gclab.nn.fast.flops` registers), the fewest any implementation of the configuration counts;
- GC / SE: the bytes that must move: the forward reads x and writes z, the backward reads g and
  x and writes dx, 5 tensors of (B, C, H, W) float32 (the forward alone: 2).

A row that beats a measured peak raises it (``Limits.raised_by``), so no share exceeds 1. The
older yardsticks stay beside them as ratios: ``x 6 bmm`` (time over the six attention-shaped
``torch.bmm`` of Non-local fwd+bwd at the same size, timed in the same round-robin) and
``x clones`` (time over one ``x.clone()`` of the input, a fresh tensor whose page faults are in
its time). Neither is a limit: both are slower than the peaks on both CPUs measured.

It runs at 1 and at 2 threads (``--threads``), and names the CPU (``/proc/cpuinfo`` model name and
the vector extensions it reports; ``platform.processor()`` is often empty).

Every configuration runs forward + backward (``out.backward(g)`` with a fixed random ``g``)
on the same input for every implementation, **interleaved** (one step of each, round-robin),
in a shuffled order each round, and reports the **fastest** of the repeats after a warm-up
step (the median is kept in the CSV). On a machine shared with other jobs the noise only adds
time, and it is bimodal: a 2 ms step takes 2 ms or 6 ms depending on whether it lost a time
slice, so a median of a few repeats is a coin flip, while the minimum is the undisturbed cost
of each implementation measured under the same conditions. The load average is recorded.

Peak memory is the peak of the bytes held by PyTorch tensors during one forward + backward,
above what was held before it (input, weights): ``torch.profiler`` with ``profile_memory=True``
records every allocation and free of PyTorch's CPU allocator, and the running sum's maximum
is the peak (deterministic; it does not count allocator caching, Python objects or mkldnn's
primitive caches, so it measures the algorithm, not the process). Measured at the first thread
count only (it does not depend on threads).

Implementations compared:

- ``gclab``: the default blocks (``impl='auto'``; GC/SE/SNL train through the fused
  forward + backward of :mod:`gclab.nn.fast.fused`);
- ``measured``: gclab's Non-local with ``impl='auto'`` and measured routes
  (:mod:`gclab.nn.fast.routes`: the explicit or the fast route, whichever its calibration on this
  machine timed faster; named in the row's note), up to N' = 16 C_i;
- ``explicit``: gclab's reference path that builds the (N, N') attention (``impl='explicit'``);
- ``mmcv``: mmcv-lite's ``NonLocal2d`` / ``ContextBlock`` when mmcv is installed;
- ``timm``: timm's ``SEModule`` when timm is importable, else ``timm-style``: the SE block as
  timm builds it, reimplemented in :class:`~gclab.experiments.bench_groups.TimmStyleSE`
  (average pool -> 1x1 conv -> ReLU -> 1x1 conv -> sigmoid -> x * gate), and labelled so;
- ``x.clone()``: one clone of the input (a fresh tensor), the older GC/SE yardstick, not a
  floor.

Targets are printed as MET / NOT MET with the measured value, per thread count.

Usage::

    gclab bench                          # one full run, into ./bench-<time>/
    gclab bench --runs 3 --out data/bench/NAME   # three runs of one machine + summary.md
    gclab bench --quick                  # a small subset, ~1-2 minutes
    gclab bench --smoke                  # tiny shapes: checks that it runs

Writes ``results.csv``, ``machine.json``, ``report.md`` (the printed tables) and, when
matplotlib is installed, ``scaling.png`` (time and memory against N, log-log) into ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from dataclasses import asdict
from typing import Dict, List, Sequence, Tuple

import torch

from gclab.experiments.bench_core import (
    CLONE,
    Config,
    Limits,
    Row,
    apply_floors,
    measure_limits,
    remeasure_peaks,
    use_clock,
)
from gclab.experiments.bench_groups import (
    mmcv_blocks,
    run_gc_se,
    run_nonlocal,
    run_numpy,
    timm_layers,
)
from gclab.experiments.bench_machine import machine_description
from gclab.experiments.bench_report import (
    Target,
    evaluate_targets,
    format_limits,
    format_rows,
    format_summary,
    format_targets,
    plot_scaling,
    write_csv,
)


# ----------------------------------------------------------------------------------- main
def build_config(args: argparse.Namespace) -> Config:
    """The full run, ``--quick`` (a subset) or ``--smoke`` (tiny, for tests)."""
    cfg = Config(repeats=args.repeats or 5, max_gib=args.max_gib, memory=not args.no_memory,
                 clock=args.clock)
    if args.quick:
        cfg.nl_sizes = ((8, 8), (16, 16), (32, 32), (64, 64))
        cfg.dot_sizes = ((16, 16), (32, 32), (32, 64), (64, 64))
        cfg.repeats = args.repeats or 3
    if args.smoke:
        cfg.nl_sizes = ((8, 8), (16, 16))
        cfg.dot_sizes = ((8, 8), (8, 16))
        cfg.gc_sizes = ((8, 8),)
        cfg.numpy_size = (8, 8)
        cfg.channels, cfg.gc_batch, cfg.nl_batch = 16, 2, 1
        cfg.repeats = args.repeats or 1
    if args.channels:
        cfg.channels = args.channels
    cores = os.cpu_count() or 1
    if args.threads:
        cfg.threads = tuple(int(t) for t in str(args.threads).split(",") if t.strip())
    else:
        cfg.threads = tuple(t for t in (1, 2) if t <= cores) or (1,)
    return cfg


def _new_folder() -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, i = f"bench-{stamp}", 1
    while os.path.exists(path):
        i += 1
        path = f"bench-{stamp}-{i}"
    return path


def main(argv: List[str] | None = None) -> int:
    """``gclab bench [--quick | --smoke] [--out DIR] [--threads 1,2] [--repeats N] ...``."""
    p = argparse.ArgumentParser(prog="gclab bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a subset (up to 64x64), 1-2 minutes")
    p.add_argument("--smoke", action="store_true",
                   help="tiny shapes (C=16) to check that the benchmark runs; numbers meaningless")
    p.add_argument("--out", default=None,
                   help="output folder (default: a new ./bench-<date>-<time>/; the committed "
                   "results are data/bench/<machine>/)")
    p.add_argument("--threads", default="",
                   help="comma-separated torch thread counts, each run in turn (default: 1,2, "
                   "capped at the cores)")
    p.add_argument("--repeats", type=int, default=0, help="timed repeats per configuration")
    p.add_argument("--channels", type=int, default=0, help="override C (default 256)")
    p.add_argument("--max-gib", type=float, default=9.0,
                   help="skip (N, N') implementations whose attention would need more (also "
                   "when it exceeds 80%% of MemAvailable)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    p.add_argument("--no-plot", action="store_true", help="do not draw scaling.png")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="time by the wall clock (default) or, at 1 thread only, by this "
                   "process's CPU time, which leaves out the time other jobs hold the core "
                   "(for a shared machine; thread counts above 1 stay on the wall clock)")
    p.add_argument("--runs", type=int, default=1,
                   help="repeat the whole benchmark this many times, into OUT/run1 ... OUT/runK, "
                   "and write OUT/summary.md (each target's median and values over the runs)")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error(f"--runs must be at least 1, got {args.runs}")
    cfg = build_config(args)
    out_dir = args.out or _new_folder()
    if args.runs == 1:
        run_once(args, cfg, out_dir, argv)
        return 0
    runs = [run_once(args, cfg, os.path.join(out_dir, f"run{k}"), argv)
            for k in range(1, args.runs + 1)]
    text = format_summary(runs)
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(text + "\n")
    print(f"\n{text}\nwrote {out_dir}/summary.md and run1 ... run{args.runs}")
    return 0


def run_once(args: argparse.Namespace, cfg: Config, out_dir: str,
             argv: List[str] | None) -> Tuple[Dict[str, object], Dict[int, List[Target]]]:
    """One full benchmark into ``out_dir``; returns the machine description and the targets."""
    mmcv, timm = mmcv_blocks(), timm_layers()
    machine = machine_description()
    arch = f", {machine['microarchitecture']}" if machine["microarchitecture"] else ""
    print(f"gclab bench on {machine['cpu_label']}{arch} ({machine['cores']} cores, torch "
          f"{machine['torch']}), threads {list(cfg.threads)}, load average "
          f"{machine['load_average_1_5_15']}")
    print("mmcv " + (f"{machine['mmcv']}" if mmcv else "not installed: no mmcv columns"))
    if timm is None:
        print("timm not installed: SE is compared with 'timm-style', the SE of timm's SEModule "
              "reimplemented in gclab.experiments.bench_groups (avg pool -> conv -> ReLU -> "
              "conv -> sigmoid -> x * gate)")
    t0 = time.perf_counter()
    rows, limits = measure_all(cfg, mmcv, timm)
    mem_rows = [r for r in rows if not math.isnan(r.peak_mib)]
    targets: Dict[int, List[Target]] = {}
    for threads in cfg.threads:
        mine = [r for r in rows if r.threads == threads]
        if threads != cfg.threads[0]:  # peak memory and NumPy are measured at the first only
            mine += [r for r in rows if r.group == "numpy_nl"]
        targets[threads] = evaluate_targets(_with_memory(mine, mem_rows), cfg)
    machine["limits"] = [asdict(lim) for lim in limits.values()]
    machine["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    machine["seconds"] = round(time.perf_counter() - t0, 1)
    machine["argv"] = list(argv) if argv is not None else sys.argv[1:]
    write_results(out_dir, rows, limits, targets, machine, plot=not args.no_plot)
    return machine, targets


def measure_all(cfg: Config, mmcv, timm) -> Tuple[List[Row], Dict[int, Limits]]:
    """Every group at every thread count of ``cfg``, each beside that thread count's limits
    (measured before and after its groups). Returns the rows and the limits by thread count."""
    rows: List[Row] = []
    limits: Dict[int, Limits] = {}
    nl_flops: Dict[Tuple[str, int], float] = {}  # (group, N) -> GFLOP of the floor
    saved_threads = torch.get_num_threads()
    try:
        for i, threads in enumerate(cfg.threads):
            torch.set_num_threads(threads)
            torch.manual_seed(cfg.seed)
            memory = cfg.memory and i == 0
            clock = cfg.clock if threads == 1 else "wall"
            use_clock(clock)
            lim = limits[threads] = measure_limits(cfg, threads)
            lim.clock = clock
            print(format_limits(lim), flush=True)
            got: List[Row] = []
            rates: Dict[int, float] = {}
            got += run_nonlocal("embedded_gaussian", cfg.nl_sizes, cfg, mmcv, threads, memory,
                                rates, nl_flops)
            got += run_nonlocal("dot_product", cfg.dot_sizes, cfg, mmcv, threads, memory, rates,
                                nl_flops)
            got += run_gc_se(cfg, mmcv, timm, threads, memory)
            _update_limits(lim, rates, got)
            remeasure_peaks(lim, cfg)
            apply_floors(got, lim, nl_flops)
            print(format_limits(lim), flush=True)
            if cfg.numpy_size is not None and i == 0:
                got += run_numpy(cfg, threads)
            rows += got
    finally:
        torch.set_num_threads(saved_threads)
        use_clock("wall")
    return rows, limits


def write_results(out_dir: str, rows: List[Row], limits: Dict[int, Limits],
                  targets: Dict[int, List[Target]], machine: Dict[str, object],
                  plot: bool) -> None:
    """Print the tables and write results.csv, machine.json, report.md (and scaling.png)."""
    parts = []
    for threads in limits:
        parts += [f"### {threads} thread{'s' if threads > 1 else ''}", "",
                  format_limits(limits[threads]), "",
                  format_rows([r for r in rows if r.threads == threads]), ""]
    parts += ["### Targets", "", format_targets(targets)]
    text = "\n".join(parts)
    print()
    print(text)
    os.makedirs(out_dir, exist_ok=True)
    written = ["results.csv", "machine.json", "report.md"]
    write_csv(rows, os.path.join(out_dir, "results.csv"))
    with open(os.path.join(out_dir, "machine.json"), "w") as f:
        json.dump(machine, f, indent=2)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(f"Machine: {json.dumps(machine)}\n\n{text}\n")
    if plot:
        why_not = plot_scaling(rows, os.path.join(out_dir, "scaling.png"))
        if why_not:
            print(why_not)
        else:
            written.append("scaling.png")
    print(f"\nwrote {out_dir}/: {', '.join(written)} in {machine['seconds']} s")


def _update_limits(lim: Limits, rates: Dict[int, float], rows: Sequence[Row]) -> None:
    """The limits as measured inside the run (interleaved with the blocks, so under the same
    load): the attention-bmm rate at the largest bmm step, the clone of the largest GC input."""
    if rates:
        n = max(rates)
        lim.matmul_gflops_in_run = rates[n]
        lim.matmul_in_run_n = n
    clones = [r for r in rows if r.impl == CLONE and r.group in ("gc", "se")]
    if clones:
        big = max(r.n for r in clones)
        ts = [r.time_ms for r in clones if r.n == big]
        r0 = next(r for r in clones if r.n == big)
        nbytes = r0.batch * r0.channels * r0.n * 4
        lim.clone_ms_in_run = min(ts)
        lim.clone_gbps_in_run = 2 * nbytes / (lim.clone_ms_in_run * 1e-3) / 1e9


def _with_memory(rows: List[Row], mem_rows: Sequence[Row]) -> List[Row]:
    """The rows of one thread count, with the peak memory measured at the first one."""
    mem = {(r.group, r.impl, r.height, r.width): r.peak_mib for r in mem_rows}
    out = []
    for r in rows:
        key = (r.group, r.impl, r.height, r.width)
        if math.isnan(r.peak_mib) and key in mem:
            r = copy.copy(r)
            r.peak_mib = mem[key]
        out.append(r)
    return out


if __name__ == "__main__":
    sys.exit(main())
