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
- ``explicit``: gclab's reference path that builds the (N, N') attention (``impl='explicit'``);
- ``mmcv``: mmcv-lite's ``NonLocal2d`` / ``ContextBlock`` when mmcv is installed;
- ``timm``: timm's ``SEModule`` when timm is importable, else ``timm-style``: the SE block as
  timm builds it, reimplemented here (:class:`TimmStyleSE`: average pool -> 1x1 conv -> ReLU ->
  1x1 conv -> sigmoid -> x * gate), and labelled so;
- ``x.clone()``: one clone of the input, the unit of the GC/SE floor.

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
import dataclasses
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from gclab.experiments.bench_core import (
    CLONE,
    FLOOR,
    Config,
    Limits,
    Row,
    apply_floors,
    available_gib,
    count_flops,
    init_weights,
    interleaved_medians,
    matmul_floor_step,
    measure_group,
    measure_limits,
    median_row,
    nl_matmul_flops,
    nxn_estimate_gib,
    remeasure_peaks,
    use_clock,
)
from gclab.experiments.bench_report import (
    Target,
    cpu_description,
    evaluate_targets,
    format_limits,
    format_rows,
    format_summary,
    format_targets,
    plot_scaling,
    write_csv,
)
from gclab.nn import GCBlock, NonLocal2d, SEBlock


# ----------------------------------------------------------------------------- references
class TimmStyleSE(nn.Module):
    r"""SE as timm's ``SEModule`` computes it (reimplemented: timm is not installed here).

    .. math::  z = x \odot \sigma(W_2\,\mathrm{ReLU}(W_1\,\mathrm{avgpool}(x)))

    ``W_1, W_2`` are 1x1 convs C -> P -> C with bias. Shapes: (B, C, H, W) -> (B, C, H, W).

    Example::

        >>> TimmStyleSE(64, planes=4)(torch.randn(2, 64, 8, 8)).shape
        torch.Size([2, 64, 8, 8])
    """

    def __init__(self, channels: int, planes: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, planes, kernel_size=1)
        self.fc2 = nn.Conv2d(planes, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        gate = x.mean((2, 3), keepdim=True)
        gate = self.fc2(torch.relu(self.fc1(gate)))
        return x * torch.sigmoid(gate)


def mmcv_blocks():
    """mmcv's (NonLocal2d, ContextBlock) classes, or None where mmcv is not installed."""
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from mmcv.cnn import ContextBlock
            from mmcv.cnn import NonLocal2d as MmcvNonLocal2d
        return MmcvNonLocal2d, ContextBlock
    except Exception:  # noqa: BLE001 - any import failure means "not installed" here
        return None


def _timm():
    try:
        import timm.layers as layers  # type: ignore

        return layers
    except Exception:  # noqa: BLE001
        return None


ENV_SETTINGS = ("THP_MEM_ALLOC_ENABLE", "LD_PRELOAD", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "KMP_AFFINITY", "OMP_PROC_BIND")


def _code_version() -> str | None:
    """The git commit of the gclab being measured (``+dirty`` with uncommitted changes under
    ``gclab/``; docs being edited do not change what is measured)."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, timeout=10,
                              capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "gclab"], cwd=root, timeout=10, capture_output=True, text=True)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


# when this module (and with it gclab) was imported: what a run measures, even if the
# checkout moves on while a long ``--runs`` session is under way
CODE_VERSION = _code_version()


def machine_description() -> Dict[str, object]:
    """CPU, cores, load and library versions."""
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    d: Dict[str, object] = dict(cpu_description())
    d.update({
        "cores": os.cpu_count(),
        "memory_available_gib": round(available_gib(), 1),
        "load_average_1_5_15": [round(v, 2) for v in load],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cuda": torch.cuda.is_available(),
        "code": CODE_VERSION,
        # allocator and threading settings that change the timings (page faults, threads)
        "environment": {k: v for k, v in os.environ.items()
                        if k.startswith("MALLOC_") or k in ENV_SETTINGS},
    })
    try:
        import mmcv

        d["mmcv"] = mmcv.__version__
    except Exception:  # noqa: BLE001
        d["mmcv"] = None
    timm = _timm()
    d["timm"] = getattr(sys.modules.get("timm"), "__version__", None) if timm else None
    return d


# --------------------------------------------------------------------------------- groups
def run_nonlocal(mode: str, sizes, cfg: Config, mmcv, threads: int, memory: bool,
                 gflops: Dict[int, float], nl_flops: Dict[Tuple[str, int], float]) -> List[Row]:
    """One NL mode at every size. ``nl_flops`` is filled with the floor's work per (group, N):
    the fewest fwd+bwd FLOPs any implementation counts (:func:`count_flops`). The older
    yardstick of each row (``bmm_ms``): the six attention bmm of its size timed in the same
    round-robin (embedded Gaussian, N <= 64x64), else their FLOPs at the rate measured at the
    nearest smaller such size (``gflops``: N -> GFLOP/s, filled here)."""
    group = {"embedded_gaussian": "nl_embedded", "dot_product": "nl_dot"}[mode]
    c, b = cfg.channels, cfg.nl_batch
    builders: Dict[str, Callable[[], nn.Module] | None] = {
        "gclab": lambda: NonLocal2d(c, mode=mode),
        "explicit": lambda: NonLocal2d(c, mode=mode, impl="explicit"),
    }
    if mmcv is not None:
        builders["mmcv"] = lambda: mmcv[0](c, mode=mode)
    rows: List[Row] = []
    for size in sizes:
        n = size[0] * size[1]
        est = nxn_estimate_gib(b, n, n)
        skip: Dict[str, str] = {}
        avail = available_gib()
        if est > cfg.max_gib or est > 0.8 * avail:
            why = (f"skipped: its (N, N) attention needs ~{est:.1f} GiB (--max-gib "
                   f"{cfg.max_gib}, {avail:.1f} GiB available)")
            skip = {k: why for k in builders if k != "gclab"}
        elif mode == "dot_product" and n > cfg.dot_peers_max_n:
            skip = {k: "skipped: the (N, N) matrix costs as in nl_embedded; the growth target "
                    "needs gclab only" for k in builders if k != "gclab"}
        elif n >= 128 * 128 and "mmcv" in builders:  # explicit == mmcv's algorithm: time one
            skip = {"explicit": "skipped at this size: the same (N, N) algorithm as mmcv"}
        if (group, n) not in nl_flops:
            counts = [count_flops(build, (b, c, *size)) for name, build in builders.items()
                      if build is not None]
            nl_flops[(group, n)] = min(counts) / 1e9
        extra = {}
        if mode == "embedded_gaussian" and n <= cfg.dot_peers_max_n:
            extra[FLOOR] = matmul_floor_step(b, n, max(c // 2, 1), cfg.seed)
        linear = mode == "dot_product" and n > cfg.dot_peers_max_n  # gclab's path alone
        got = measure_group(group, builders, b, c, size, cfg, threads, memory, skip, extra,
                            linear)
        floor = next((r for r in got if r.impl == FLOOR), None)
        if floor is not None:
            floor.note = "six attention-shaped bmm N x N x C_i (fwd+bwd of the attention alone)"
            gflops[n] = nl_matmul_flops(floor) / (floor.time_ms * 1e-3) / 1e9
        near = [m for m in gflops if m <= n] or list(gflops)
        rate = gflops[max(near)] if near else float("nan")
        for r in got:
            r.bmm_ms = floor.time_ms if floor else nl_matmul_flops(r) / (rate * 1e9) * 1e3
        rows += got
        _progress(got)
    return rows


def run_gc_se(cfg: Config, mmcv, timm, threads: int, memory: bool) -> List[Row]:
    c, b = cfg.channels, cfg.gc_batch
    planes = max(int(c / 16), 1)
    gc: Dict[str, Callable[[], nn.Module] | None] = {
        "gclab": lambda: GCBlock(c, ratio=1 / 16), CLONE: None,
    }
    if mmcv is not None:
        gc["mmcv"] = lambda: mmcv[1](c, ratio=1 / 16)
    se: Dict[str, Callable[[], nn.Module] | None] = {
        "gclab": lambda: SEBlock(c, ratio=1 / 16),
        CLONE: None,
        "timm-style": lambda: TimmStyleSE(c, planes),
    }
    if timm is not None:
        se["timm"] = lambda: timm.SEModule(c, rd_ratio=1 / 16)
    rows: List[Row] = []
    # a step is milliseconds and the clone noisier still: three times the repeats
    many = dataclasses.replace(cfg, repeats=3 * cfg.repeats)
    for size in cfg.gc_sizes:
        for group, builders in (("gc", gc), ("se", se)):
            got = measure_group(group, builders, b, c, size, many, threads, memory)
            clone = next(r for r in got if r.impl == CLONE)
            for r in got:
                r.clone_ms = clone.time_ms
            rows += got
            _progress(got)
        rows += gc_forward_vs_clone(cfg, size, threads)
        _progress(rows[-2:])
    return rows


def gc_forward_vs_clone(cfg: Config, size: Tuple[int, int], threads: int) -> List[Row]:
    """GC forward (no grad) against one ``x.clone()`` of the same input, interleaved."""
    c, b = cfg.channels, cfg.gc_batch
    x = torch.randn(b, c, *size, generator=torch.Generator().manual_seed(cfg.seed))
    gc = init_weights(GCBlock(c, ratio=1 / 16), cfg.seed)

    def fwd() -> None:
        with torch.no_grad():
            gc(x)

    def clone() -> None:
        x.clone()

    times = interleaved_medians({"gclab": fwd, CLONE: clone}, 3 * cfg.repeats, 2)
    rows = [median_row(Row("gc_forward", name, b, c, size[0], size[1], threads=threads), ts)
            for name, ts in times.items()]
    for r in rows:
        r.clone_ms = rows[1].time_ms
    return rows


def run_numpy(cfg: Config, threads: int) -> List[Row]:
    """The vectorised NumPy NL forward against torch's forward, float64, no grad."""
    try:
        import gclab.numpy as gnp
        from gclab.numpy import non_local as np_nl
    except ImportError as e:
        return [Row("numpy_nl", "numpy", 0, 0, 0, 0, threads=threads,
                    note=f"gclab.numpy not available: {e}")]
    c, b = cfg.channels, cfg.nl_batch
    h, w = cfg.numpy_size or (32, 32)
    nl = init_weights(NonLocal2d(c), cfg.seed).double()
    nl_explicit = copy.deepcopy(nl)
    nl_explicit.impl = "explicit"
    params = gnp.params_from_torch(nl)
    x = torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(cfg.seed))
    x = x.double()
    xn = x.numpy()

    def torch_fwd(m: nn.Module) -> Callable[[], None]:
        def f() -> None:
            with torch.no_grad():
                m(x)

        return f

    steps = {
        "numpy": lambda: np_nl.forward(xn, params),
        "torch": torch_fwd(nl),
        "torch-explicit": torch_fwd(nl_explicit),
    }
    out_np = np_nl.forward(xn, params)[0]
    with torch.no_grad():
        err = float(np.abs(out_np - nl(x).numpy()).max())
    rows = [median_row(Row("numpy_nl", name, b, c, h, w, note="float64 forward",
                            threads=threads), ts)
            for name, ts in interleaved_medians(steps, cfg.repeats, 1).items()]
    rows[0].note += f"; max abs(numpy - torch) = {err:.1e}"
    _progress(rows)
    return rows


def _progress(rows: Sequence[Row]) -> None:
    for r in rows:
        what = f"{r.time_ms:9.1f} ms" if not math.isnan(r.time_ms) else r.note
        print(f"  [{r.threads}t] {r.group:<11} {r.height}x{r.width:<4} {r.impl:<15} {what}",
              file=sys.stderr, flush=True)


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
    mmcv, timm = mmcv_blocks(), _timm()
    machine = machine_description()
    arch = f", {machine['microarchitecture']}" if machine["microarchitecture"] else ""
    print(f"gclab bench on {machine['cpu_label']}{arch} ({machine['cores']} cores, torch "
          f"{machine['torch']}), threads {list(cfg.threads)}, load average "
          f"{machine['load_average_1_5_15']}")
    print("mmcv " + (f"{machine['mmcv']}" if mmcv else "not installed: no mmcv columns"))
    if timm is None:
        print("timm not installed: SE is compared with 'timm-style', the SE of timm's SEModule "
              "reimplemented in gclab.experiments.bench (avg pool -> conv -> ReLU -> conv -> "
              "sigmoid -> x * gate)")
    t0 = time.perf_counter()
    rows: List[Row] = []
    limits: Dict[int, Limits] = {}
    nl_flops: Dict[Tuple[str, int], float] = {}  # (group, N) -> GFLOP of the floor
    targets: Dict[int, List[Target]] = {}
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
    mem_rows = [r for r in rows if not math.isnan(r.peak_mib)]
    for threads in cfg.threads:
        mine = [r for r in rows if r.threads == threads]
        if threads != cfg.threads[0]:  # peak memory and NumPy are measured at the first only
            mine += [r for r in rows if r.group == "numpy_nl"]
        targets[threads] = evaluate_targets(_with_memory(mine, mem_rows), cfg)
    machine["limits"] = [asdict(lim) for lim in limits.values()]
    machine["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    machine["seconds"] = round(time.perf_counter() - t0, 1)
    machine["argv"] = list(argv) if argv is not None else sys.argv[1:]

    parts = []
    for threads in cfg.threads:
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
    if not args.no_plot:
        why_not = plot_scaling(rows, os.path.join(out_dir, "scaling.png"))
        if why_not:
            print(why_not)
        else:
            written.append("scaling.png")
    print(f"\nwrote {out_dir}/: {', '.join(written)} in {machine['seconds']} s")
    return machine, targets


def _update_limits(lim: Limits, rates: Dict[int, float], rows: Sequence[Row]) -> None:
    """The limits as measured inside the run (interleaved with the blocks, so under the same
    load): the matmul rate at the largest floor step, the clone of the largest GC input."""
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
