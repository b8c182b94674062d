r"""``gclab bench``: time and measure gclab's blocks side by side with mmcv (and timm).

Every configuration runs forward + backward (``out.backward(g)`` with a fixed random ``g``)
on the same input for every implementation, **interleaved** (one step of each, round-robin),
and reports the median over the repeats after a warm-up step, so a busy machine slows every
implementation alike and the printed ratios stay meaningful.

Peak memory is the peak of the bytes held by PyTorch tensors during one forward + backward,
above what was held before it (input, weights): ``torch.profiler`` with ``profile_memory=True``
records every allocation and free of PyTorch's CPU allocator, and the running sum's maximum
is the peak (deterministic; it does not count allocator caching, Python objects or mkldnn's
primitive caches, so it measures the algorithm, not the process).

Implementations compared:

- ``gclab``: the default blocks (``impl='auto'``: the fast paths of :mod:`gclab.nn.non_local`);
- ``explicit``: gclab's reference path that builds the (N, N') attention (``impl='explicit'``);
- ``mmcv``: mmcv-lite's ``NonLocal2d`` / ``ContextBlock`` when mmcv is installed;
- ``timm``: timm's ``SEModule`` when timm is importable, else ``timm-style``: the SE block as
  timm builds it, reimplemented here (:class:`TimmStyleSE`: average pool -> 1x1 conv -> ReLU ->
  1x1 conv -> sigmoid -> x * gate), and labelled so.

Targets (B=2, C=256 unless noted) are printed as MET / NOT MET with the measured ratio.

Usage::

    gclab bench                 # full run (several minutes on 2 cores), writes data/bench/
    gclab bench --quick         # a small subset, < 1 minute
    python -m gclab.experiments.bench --out /tmp/bench --repeats 5

Writes ``results.csv``, ``machine.json``, ``report.md`` (the printed tables) and
``scaling.png`` (time and memory against N, log-log) into ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from gclab.nn import GCBlock, NonLocal2d, SEBlock

GIB = 2**30
MIB = 2**20


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


def _mmcv():
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


# ------------------------------------------------------------------------------ measuring
def peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes held by PyTorch CPU tensors while ``fn()`` runs, above the level at its start.

    Uses ``torch.profiler`` (``profile_memory=True``): the running sum of allocation (+) and
    free (-) records, in time order; its maximum is the peak. Example::

        >>> peak_bytes(lambda: torch.empty(1 << 20)) >= 4 << 20
        True
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    records = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
    level = peak = 0
    for _, nbytes in records:
        level += nbytes
        peak = max(peak, level)
    return peak


def fwd_bwd_step(module: nn.Module, x: Tensor, grad: Tensor) -> Callable[[], None]:
    """One forward + backward of ``module`` on ``x`` with upstream gradient ``grad``."""

    def step() -> None:
        x.grad = None
        for p in module.parameters():
            p.grad = None
        module(x).backward(grad)

    return step


def interleaved_medians(
    steps: Dict[str, Callable[[], None]], repeats: int, warmup: int = 1
) -> Dict[str, List[float]]:
    """Seconds per call of every step, run round-robin ``warmup + repeats`` times.

    Returns the measured times (warm-up excluded) per name; the medians are compared.
    """
    times: Dict[str, List[float]] = {k: [] for k in steps}
    for r in range(warmup + repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[name].append(dt)
    return times


@dataclass
class Row:
    """One measured (group, implementation, size)."""

    group: str
    impl: str
    batch: int
    channels: int
    height: int
    width: int
    time_ms: float = float("nan")
    time_min_ms: float = float("nan")
    time_max_ms: float = float("nan")
    peak_mib: float = float("nan")
    repeats: int = 0
    note: str = ""

    @property
    def n(self) -> int:
        return self.height * self.width


@dataclass
class Config:
    """What to run: which groups at which sizes."""

    nl_sizes: Sequence[Tuple[int, int]] = ((16, 16), (32, 32), (64, 64), (128, 128))
    dot_sizes: Sequence[Tuple[int, int]] = (
        (16, 16), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)
    )
    gc_sizes: Sequence[Tuple[int, int]] = ((32, 32), (64, 64))
    numpy_size: Tuple[int, int] | None = (32, 32)
    nl_batch: int = 2
    gc_batch: int = 8
    channels: int = 256
    repeats: int = 5
    max_gib: float = 3.0  # skip an (N, N') implementation whose estimate exceeds this
    memory: bool = True
    seed: int = 0
    notes: List[str] = field(default_factory=list)


def _nxn_estimate_gib(batch: int, n: int, n_keys: int) -> float:
    # explicit fwd+bwd keeps ~4 (B, N, N') float32 tensors alive (logits, softmax, 2 grads)
    return 4 * batch * n * n_keys * 4 / GIB


def _init_(module: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return module


def _repeats_for(cfg: Config, n: int) -> Tuple[int, int]:
    # big maps are slow on 2 cores: fewer repeats there (still interleaved)
    if n >= 128 * 128:
        return 1, 0
    if n >= 64 * 128:
        return max(1, min(cfg.repeats, 3)), 1
    return cfg.repeats, 1


def measure_group(
    group: str,
    builders: Dict[str, Callable[[], nn.Module]],
    batch: int,
    channels: int,
    size: Tuple[int, int],
    cfg: Config,
    skip: Dict[str, str] | None = None,
) -> List[Row]:
    """Time (interleaved) and measure every implementation of one configuration."""
    skip = skip or {}
    h, w = size
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(batch, channels, h, w, generator=gen).requires_grad_()
    grad = torch.randn(batch, channels, h, w, generator=gen)
    rows = {k: Row(group, k, batch, channels, h, w) for k in builders}
    steps = {}
    for name, build in builders.items():
        if name in skip:
            rows[name].note = skip[name]
            continue
        torch.manual_seed(cfg.seed)
        steps[name] = fwd_bwd_step(_init_(build(), cfg.seed), x, grad)
    repeats, warmup = _repeats_for(cfg, h * w)
    if cfg.memory:  # the profiled step doubles as the warm-up
        for name, step in steps.items():
            rows[name].peak_mib = peak_bytes(step) / MIB
        warmup = 0
    for name, ts in interleaved_medians(steps, repeats, warmup).items():
        r = rows[name]
        r.time_ms = statistics.median(ts) * 1e3
        r.time_min_ms, r.time_max_ms = min(ts) * 1e3, max(ts) * 1e3
        r.repeats = len(ts)
    return list(rows.values())


# --------------------------------------------------------------------------------- groups
def run_nonlocal(mode: str, sizes, cfg: Config, mmcv) -> List[Row]:
    group = {"embedded_gaussian": "nl_embedded", "dot_product": "nl_dot"}[mode]
    c, b = cfg.channels, cfg.nl_batch
    builders: Dict[str, Callable[[], nn.Module]] = {
        "gclab": lambda: NonLocal2d(c, mode=mode),
        "explicit": lambda: NonLocal2d(c, mode=mode, impl="explicit"),
    }
    if mmcv is not None:
        builders["mmcv"] = lambda: mmcv[0](c, mode=mode)
    rows: List[Row] = []
    for size in sizes:
        n = size[0] * size[1]
        est = _nxn_estimate_gib(b, n, n)
        skip = {}
        if est > cfg.max_gib:
            why = f"skipped: its (N, N) attention needs ~{est:.1f} GiB (> --max-gib {cfg.max_gib})"
            skip = {k: why for k in builders if k != "gclab"}
        rows += measure_group(group, builders, b, c, size, cfg, skip)
        _progress(rows[-len(builders):])
    return rows


def run_gc_se(cfg: Config, mmcv, timm) -> List[Row]:
    c, b = cfg.channels, cfg.gc_batch
    planes = max(int(c / 16), 1)
    gc: Dict[str, Callable[[], nn.Module]] = {"gclab": lambda: GCBlock(c, ratio=1 / 16)}
    if mmcv is not None:
        gc["mmcv"] = lambda: mmcv[1](c, ratio=1 / 16)
    se: Dict[str, Callable[[], nn.Module]] = {
        "gclab": lambda: SEBlock(c, ratio=1 / 16),
        "timm-style": lambda: TimmStyleSE(c, planes),
    }
    if timm is not None:
        se["timm"] = lambda: timm.SEModule(c, rd_ratio=1 / 16)
    rows: List[Row] = []
    for size in cfg.gc_sizes:
        rows += measure_group("gc", gc, b, c, size, cfg)
        _progress(rows[-len(gc):])
        rows += measure_group("se", se, b, c, size, cfg)
        _progress(rows[-len(se):])
        rows += gc_forward_vs_clone(cfg, size)
        _progress(rows[-2:])
    return rows


def gc_forward_vs_clone(cfg: Config, size: Tuple[int, int]) -> List[Row]:
    """GC forward (no grad) against one ``x.clone()`` of the same input, interleaved."""
    c, b = cfg.channels, cfg.gc_batch
    x = torch.randn(b, c, *size, generator=torch.Generator().manual_seed(cfg.seed))
    gc = _init_(GCBlock(c, ratio=1 / 16), cfg.seed)

    def fwd() -> None:
        with torch.no_grad():
            gc(x)

    def clone() -> None:
        x.clone()

    times = interleaved_medians({"gclab": fwd, "x.clone()": clone}, 3 * cfg.repeats, 2)
    rows = []
    for name, ts in times.items():
        r = Row("gc_forward", name, b, c, size[0], size[1], repeats=len(ts))
        r.time_ms = statistics.median(ts) * 1e3
        r.time_min_ms, r.time_max_ms = min(ts) * 1e3, max(ts) * 1e3
        rows.append(r)
    return rows


def run_numpy(cfg: Config) -> List[Row]:
    """The vectorised NumPy NL forward against torch's forward, float64, no grad."""
    try:
        import gclab.numpy as gnp
        from gclab.numpy import non_local as np_nl
    except ImportError as e:
        return [Row("numpy_nl", "numpy", 0, 0, 0, 0, note=f"gclab.numpy not available: {e}")]
    c, b = cfg.channels, cfg.nl_batch
    h, w = cfg.numpy_size or (32, 32)
    nl = _init_(NonLocal2d(c), cfg.seed).double()
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
    rows = []
    for name, ts in interleaved_medians(steps, cfg.repeats, 1).items():
        r = Row("numpy_nl", name, b, c, h, w, repeats=len(ts), note="float64 forward")
        r.time_ms = statistics.median(ts) * 1e3
        r.time_min_ms, r.time_max_ms = min(ts) * 1e3, max(ts) * 1e3
        rows.append(r)
    rows[0].note += f"; max abs(numpy - torch) = {err:.1e}"
    _progress(rows)
    return rows


def _progress(rows: Sequence[Row]) -> None:
    for r in rows:
        what = f"{r.time_ms:9.1f} ms" if not math.isnan(r.time_ms) else r.note
        print(f"  {r.group:<11} {r.height}x{r.width:<4} {r.impl:<15} {what}", file=sys.stderr)


# -------------------------------------------------------------------------------- targets
@dataclass
class Target:
    name: str
    limit: float
    value: float  # nan when not measured
    detail: str

    @property
    def status(self) -> str:
        if math.isnan(self.value):
            return "NOT MEASURED"
        return "MET" if self.value <= self.limit else "NOT MET"


def _find(rows: Sequence[Row], group: str, impl: str, size: Tuple[int, int]) -> Row | None:
    for r in rows:
        if (r.group, r.impl, r.height, r.width) == (group, impl, size[0], size[1]):
            return r
    return None


def _ratio(rows, group, a, b, size, attr="time_ms") -> float:
    ra, rb = _find(rows, group, a, size), _find(rows, group, b, size)
    if ra is None or rb is None:
        return float("nan")
    va, vb = getattr(ra, attr), getattr(rb, attr)
    if math.isnan(va) or math.isnan(vb) or vb == 0:
        return float("nan")
    return va / vb


def dot_product_growth(rows: Sequence[Row]) -> Tuple[float, str]:
    """Time growth per doubling of N for gclab's dot-product NL: 2**slope of the least-squares
    line through (log2 N, log2 time) over the sizes with N >= 1024 (a single pair of sizes is
    at the mercy of one noisy median); the detail also lists each consecutive pair's ratio."""
    pts = sorted((r.n, r.time_ms) for r in rows if r.group == "nl_dot" and r.impl == "gclab"
                 and r.n >= 1024 and not math.isnan(r.time_ms))
    if len(pts) < 2:
        return float("nan"), "needs 2+ sizes with N >= 1024"
    lx = [math.log2(n) for n, _ in pts]
    ly = [math.log2(t) for _, t in pts]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    slope = sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)
    pairs = ", ".join(f"{(t1 / t0) ** (1 / math.log2(n1 / n0)):.2f} ({n0}->{n1})"
                      for (n0, t0), (n1, t1) in zip(pts, pts[1:]) if n1 > n0)
    return 2.0**slope, f"2^slope of the log-log fit over N >= 1024; per doubling: {pairs}"


def evaluate_targets(rows: Sequence[Row], cfg: Config) -> List[Target]:
    """The issue's targets, each with the measured ratio (nan when not measured)."""
    t: List[Target] = []
    s64, s128 = (64, 64), (128, 128)
    nl = f"B={cfg.nl_batch}, C={cfg.channels}"
    t.append(Target(f"NL embedded 64x64 fwd+bwd time <= 0.5x mmcv ({nl})", 0.5,
                    _ratio(rows, "nl_embedded", "gclab", "mmcv", s64), "gclab / mmcv time"))
    t.append(Target(f"NL embedded 64x64 peak memory <= 0.2x mmcv ({nl})", 0.2,
                    _ratio(rows, "nl_embedded", "gclab", "mmcv", s64, "peak_mib"),
                    "gclab / mmcv peak memory"))
    r128 = _find(rows, "nl_embedded", "gclab", s128)
    mem128 = r128.peak_mib / 1024 if r128 is not None else float("nan")
    t.append(Target(f"NL embedded 128x128 fits in < 2 GiB extra memory ({nl})", 2.0, mem128,
                    "GiB above input and weights, fwd+bwd"))
    growth, detail = dot_product_growth(rows)
    t.append(Target(f"dot-product NL time grows <= 2.2x when N doubles ({nl})", 2.2, growth,
                    detail))
    for size in cfg.gc_sizes:
        tag = f"B={cfg.gc_batch}, C={cfg.channels}, {size[0]}x{size[1]}"
        t.append(Target(f"GC fwd+bwd <= 1.0x mmcv ContextBlock ({tag})", 1.0,
                        _ratio(rows, "gc", "gclab", "mmcv", size), "gclab / mmcv time"))
        t.append(Target(f"SE fwd+bwd <= 1.0x timm-style SE ({tag})", 1.0,
                        _ratio(rows, "se", "gclab", "timm-style", size),
                        "gclab / timm-style time"))
        t.append(Target(f"GC forward <= 3x one x.clone() ({tag})", 3.0,
                        _ratio(rows, "gc_forward", "gclab", "x.clone()", size),
                        "GC forward / clone time"))
    if cfg.numpy_size is not None:
        h, w = cfg.numpy_size
        t.append(Target(f"NumPy NL forward <= 3x torch CPU (float64, {h}x{w})", 3.0,
                        _ratio(rows, "numpy_nl", "numpy", "torch", cfg.numpy_size),
                        "numpy / torch forward time, torch's default (fast) path"))
        t.append(Target(f"NumPy NL forward <= 3x torch CPU, explicit path ({h}x{w})", 3.0,
                        _ratio(rows, "numpy_nl", "numpy", "torch-explicit", cfg.numpy_size),
                        "numpy / torch forward time, both building the (N, N) matrix"))
    return t


# --------------------------------------------------------------------------------- output
def machine_description() -> Dict[str, object]:
    """CPU model, cores, threads, load and library versions."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    d: Dict[str, object] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15": [round(v, 2) for v in load],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cuda": torch.cuda.is_available(),
    }
    try:
        import mmcv

        d["mmcv"] = mmcv.__version__
    except Exception:  # noqa: BLE001
        d["mmcv"] = None
    timm = _timm()
    d["timm"] = getattr(sys.modules.get("timm"), "__version__", None) if timm else None
    return d


def _fmt(v: float, spec: str = ".1f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def format_tables(rows: Sequence[Row], targets: Sequence[Target]) -> str:
    """The ratio table (markdown) and the targets."""
    out = ["| group | size | B | impl | time ms (median) | peak MiB | gclab/this time "
           "| gclab/this memory | note |",
           "|---|---|---|---|---|---|---|---|---|"]
    ref: Dict[Tuple[str, int, int], Row] = {}
    for r in rows:
        if r.impl in ("gclab", "numpy"):
            ref[(r.group, r.height, r.width)] = r
    for r in rows:
        base = ref.get((r.group, r.height, r.width))
        tr = mr = float("nan")
        if base is not None and base is not r:
            tr = base.time_ms / r.time_ms if r.time_ms else float("nan")
            if r.peak_mib and not math.isnan(r.peak_mib):
                mr = base.peak_mib / r.peak_mib
        out.append(
            f"| {r.group} | {r.height}x{r.width} | {r.batch} | {r.impl} | {_fmt(r.time_ms)} "
            f"| {_fmt(r.peak_mib)} | {_fmt(tr, '.2f')} | {_fmt(mr, '.3f')} | {r.note} |"
        )
    out += ["", "| target | measured | status |", "|---|---|---|"]
    for t in targets:
        out.append(f"| {t.name} | {_fmt(t.value, '.3g')} ({t.detail}) | {t.status} |")
    return "\n".join(out)


def write_csv(rows: Sequence[Row], path: str) -> None:
    """One line per measured (group, impl, size)."""
    with open(path, "w", newline="") as f:
        names = [k for k in asdict(rows[0]) if k != "n"] + ["n"]
        wr = csv.DictWriter(f, fieldnames=names)
        wr.writeheader()
        for r in rows:
            d = asdict(r)
            d["n"] = r.n
            wr.writerow({k: (round(v, 3) if isinstance(v, float) else v) for k, v in d.items()})


def plot_scaling(rows: Sequence[Row], path: str) -> str | None:
    """Time and peak memory against N (log-log) for the NL groups and GC/SE."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no plot"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels = [("nl_embedded", "NL embedded Gaussian (B=2)"), ("nl_dot", "NL dot product (B=2)")]
    for ax, (group, title) in zip(axes[:2], panels):
        for impl in sorted({r.impl for r in rows if r.group == group}):
            pts = [(r.n, r.time_ms) for r in rows
                   if r.group == group and r.impl == impl and not math.isnan(r.time_ms)]
            if pts:
                pts.sort()
                ax.loglog(*zip(*pts), "o-", label=f"{impl}")
        ax.set(title=title, xlabel="N = H*W", ylabel="fwd+bwd time (ms)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    ax = axes[2]
    for group in ("nl_embedded", "nl_dot"):
        for impl in sorted({r.impl for r in rows if r.group == group}):
            pts = sorted((r.n, r.peak_mib) for r in rows if r.group == group and r.impl == impl
                         and not math.isnan(r.peak_mib) and r.peak_mib > 0)
            if pts:
                ax.loglog(*zip(*pts), "o-", label=f"{group} {impl}")
    ax.set(title="peak extra memory, fwd+bwd (B=2)", xlabel="N = H*W", ylabel="MiB")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# ----------------------------------------------------------------------------------- main
def build_config(args: argparse.Namespace) -> Config:
    """The full run, ``--quick`` (a subset) or ``--smoke`` (tiny, for tests)."""
    cfg = Config(repeats=args.repeats or 5, max_gib=args.max_gib, memory=not args.no_memory)
    if args.quick:
        cfg.nl_sizes = ((16, 16), (32, 32))
        cfg.dot_sizes = ((16, 16), (32, 32), (32, 64))
        cfg.gc_sizes = ((32, 32),)
        cfg.numpy_size = (32, 32)
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
    return cfg


def main(argv: List[str] | None = None) -> int:
    """``gclab bench [--quick | --smoke] [--out DIR] [--repeats N] [--max-gib G]``."""
    p = argparse.ArgumentParser(prog="gclab bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a small subset (< 1 minute)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny shapes (C=16) to check that the benchmark runs; numbers meaningless")
    p.add_argument("--out", default=os.path.join("data", "bench"), help="output folder")
    p.add_argument("--repeats", type=int, default=0, help="timed repeats per configuration")
    p.add_argument("--channels", type=int, default=0, help="override C (default 256)")
    p.add_argument("--max-gib", type=float, default=3.0,
                   help="skip (N, N') implementations whose attention would need more")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    p.add_argument("--no-plot", action="store_true", help="do not draw scaling.png")
    p.add_argument("--threads", type=int, default=0,
                   help="torch.set_num_threads (default: torch's choice); on a machine shared "
                   "with other jobs, 1 avoids OpenMP threads waiting for descheduled peers")
    args = p.parse_args(argv)
    cfg = build_config(args)
    if args.threads:
        torch.set_num_threads(args.threads)

    mmcv, timm = _mmcv(), _timm()
    machine = machine_description()
    print(f"gclab bench on {machine['cpu']} ({machine['cores']} cores, torch "
          f"{machine['torch']}, {machine['torch_threads']} threads), load average "
          f"{machine['load_average_1_5_15']}")
    print("mmcv " + (f"{machine['mmcv']}" if mmcv else "not installed: no mmcv columns"))
    if timm is None:
        print("timm not installed: SE is compared with 'timm-style', the SE of timm's SEModule "
              "reimplemented in gclab.experiments.bench (avg pool -> conv -> ReLU -> conv -> "
              "sigmoid -> x * gate)")
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rows: List[Row] = []
    rows += run_nonlocal("embedded_gaussian", cfg.nl_sizes, cfg, mmcv)
    rows += run_nonlocal("dot_product", cfg.dot_sizes, cfg, mmcv)
    rows += run_gc_se(cfg, mmcv, timm)
    if cfg.numpy_size is not None:
        rows += run_numpy(cfg)
    targets = evaluate_targets(rows, cfg)
    machine["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    machine["seconds"] = round(time.perf_counter() - t0, 1)
    machine["argv"] = list(argv) if argv is not None else sys.argv[1:]

    text = format_tables(rows, targets)
    print()
    print(text)
    os.makedirs(args.out, exist_ok=True)
    write_csv(rows, os.path.join(args.out, "results.csv"))
    with open(os.path.join(args.out, "machine.json"), "w") as f:
        json.dump(machine, f, indent=2)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(f"Machine: {json.dumps(machine)}\n\n{text}\n")
    if not args.no_plot:
        msg = plot_scaling(rows, os.path.join(args.out, "scaling.png"))
        if msg:
            print(msg)
    print(f"\nwrote {args.out}/results.csv, machine.json, report.md"
          + ("" if args.no_plot else ", scaling.png") + f" in {machine['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
