r"""``gclab bench``: time gclab's blocks beside mmcv (and timm), against this machine's limits.

First it measures what the machine can do, at the thread count in use:

- **matmul throughput**: GFLOP/s of the attention-shaped float32 batched matrix products of
  Non-local at 64x64 (``(B, N, C_i) @ (B, C_i, N)`` and ``(B, N, N) @ (B, N, C_i)``, B=2, C_i=128);
- **streaming bandwidth**: GB/s of one ``x.clone()`` of the GC/SE input at 64x64 (bytes read +
  written over its time; a fresh tensor, so its page faults are in it, as in every block's).

Every figure is then also a share of its **floor**, so results read the same on any machine:

- Non-local: the FLOPs of its six N x N' x C_i matmuls (two forward, four backward: the
  attention as the paper defines it) at the measured throughput; share = floor / time (1.0 =
  running at the machine's matmul speed; above 1 when a fast path computes less, as dot
  product's associativity does);
- GC / SE: the bytes that must move, as multiples of one ``x.clone()`` (timed interleaved with
  the blocks): a forward writes z from x and a backward writes dx from g, so the floor is two
  clones; the table gives time / clone.

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
  forward + backward of :mod:`gclab.nn._fused`);
- ``explicit``: gclab's reference path that builds the (N, N') attention (``impl='explicit'``);
- ``mmcv``: mmcv-lite's ``NonLocal2d`` / ``ContextBlock`` when mmcv is installed;
- ``timm``: timm's ``SEModule`` when timm is importable, else ``timm-style``: the SE block as
  timm builds it, reimplemented here (:class:`TimmStyleSE`: average pool -> 1x1 conv -> ReLU ->
  1x1 conv -> sigmoid -> x * gate), and labelled so;
- ``x.clone()``: one clone of the input, the unit of the GC/SE floor.

Targets are printed as MET / NOT MET with the measured value, per thread count.

Usage::

    gclab bench                          # full run (~10 min, 2 cores), into ./bench-<time>/
    gclab bench --out data/bench/NAME    # the committed results of one machine
    gclab bench --quick                  # a small subset, ~1-2 minutes
    gclab bench --smoke                  # tiny shapes: checks that it runs

Writes ``results.csv``, ``machine.json``, ``report.md`` (the printed tables) and, when
matplotlib is installed, ``scaling.png`` (time and memory against N, log-log) into ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
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
    # kineto, torch.profiler's backend, prints every profiler start and stop to stderr at its
    # "USDT" log level (5): 22 of the 75 lines of a --smoke run. It reads KINETO_LOG_LEVEL once,
    # when the profiler is first used in the process; 6 silences that level.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
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

    The order within each round is shuffled (seeded): on a machine whose CPU time comes in
    slices shared with other jobs, a fixed order would hand the same step the same phase of
    every slice. Returns the measured times (warm-up excluded) per name.
    """
    import random

    rng = random.Random(0)
    times: Dict[str, List[float]] = {k: [] for k in steps}
    names = list(steps)
    for r in range(warmup + repeats):
        order = names[:]
        rng.shuffle(order)
        for name in order:
            step = steps[name]
            t0 = time.perf_counter()
            step()
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[name].append(dt)
    return times


@dataclass
class Row:
    """One measured (threads, group, implementation, size)."""

    group: str
    impl: str
    batch: int
    channels: int
    height: int
    width: int
    time_ms: float = float("nan")
    time_median_ms: float = float("nan")
    time_max_ms: float = float("nan")
    peak_mib: float = float("nan")
    floor_ms: float = float("nan")  # NL: matmul floor; GC/SE: two x.clone()
    repeats: int = 0
    note: str = ""
    threads: int = 1

    @property
    def n(self) -> int:
        return self.height * self.width

    @property
    def share(self) -> float:
        """floor / time: 1.0 = at the machine's limit."""
        if math.isnan(self.floor_ms) or math.isnan(self.time_ms) or not self.time_ms:
            return float("nan")
        return self.floor_ms / self.time_ms


@dataclass
class Limits:
    """What this machine does at one thread count: the units of the floors."""

    threads: int
    matmul_gflops: float
    matmul_shape: str
    clone_gbps: float
    clone_ms: float
    clone_mib: float
    load_average: Tuple[float, float, float]
    # the same, measured interleaved with the blocks (the floors of the table use these)
    matmul_gflops_in_run: float = float("nan")
    matmul_in_run_n: int = 0
    clone_ms_in_run: float = float("nan")
    clone_gbps_in_run: float = float("nan")


@dataclass
class Config:
    """What to run: which groups at which sizes, at which thread counts."""

    nl_sizes: Sequence[Tuple[int, int]] = ((8, 8), (16, 16), (32, 32), (64, 64), (128, 128))
    dot_sizes: Sequence[Tuple[int, int]] = (
        (8, 8), (16, 16), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)
    )
    gc_sizes: Sequence[Tuple[int, int]] = ((32, 32), (64, 64))
    numpy_size: Tuple[int, int] | None = (32, 32)
    nl_batch: int = 2
    gc_batch: int = 8
    channels: int = 256
    repeats: int = 5
    threads: Sequence[int] = (1, 2)
    max_gib: float = 9.0  # skip an (N, N') implementation whose estimate exceeds this
    dot_peers_max_n: int = 64 * 64  # dot product: explicit/mmcv only up to this N
    memory: bool = True
    seed: int = 0
    notes: List[str] = field(default_factory=list)


CLONE = "x.clone()"


def _nxn_estimate_gib(batch: int, n: int, n_keys: int) -> float:
    # explicit fwd+bwd keeps ~4 (B, N, N') float32 tensors alive (logits, softmax, 2 grads)
    return 4 * batch * n * n_keys * 4 / GIB


def _available_gib() -> float:
    """MemAvailable of /proc/meminfo in GiB (inf where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / GIB
    except (OSError, ValueError, IndexError):
        pass
    return float("inf")


def _init_(module: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return module


def _repeats_for(cfg: Config, n: int, linear: bool = False) -> Tuple[int, int]:
    # big maps are slow on 2 cores: fewer repeats there (still interleaved); ``linear``: only
    # steps whose time grows as N are timed (dot product above the peers' sizes), which stay
    # cheap, and the growth fit needs their minimum to be a real one
    if linear:
        return cfg.repeats, 1
    if n >= 128 * 128:
        return 1, 0
    if n >= 64 * 64:  # seconds per step; 5 repeats keep the 64x64 floor share stable
        return max(1, min(cfg.repeats, 5)), 1
    if n <= 16 * 16:  # milliseconds per step, and the noisiest ratios: many more repeats
        return 5 * cfg.repeats, 2
    return cfg.repeats, 1


def _median_row(row: Row, ts: Sequence[float]) -> Row:
    # time_ms: the fastest repeat (module docstring); the median and the slowest beside it
    row.time_ms = min(ts) * 1e3
    row.time_median_ms, row.time_max_ms = statistics.median(ts) * 1e3, max(ts) * 1e3
    row.repeats = len(ts)
    return row


def measure_group(
    group: str,
    builders: Dict[str, Callable[[], nn.Module] | None],
    batch: int,
    channels: int,
    size: Tuple[int, int],
    cfg: Config,
    threads: int,
    memory: bool,
    skip: Dict[str, str] | None = None,
    extra: Dict[str, Callable[[], None]] | None = None,
    linear: bool = False,
) -> List[Row]:
    """Time (interleaved) and measure every implementation of one configuration.

    A builder of ``None`` under the name :data:`CLONE` times ``x.clone()`` instead; ``extra``
    steps (the matmul floor) are timed in the same round-robin, without a memory pass."""
    skip = skip or {}
    extra = extra or {}
    h, w = size
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(batch, channels, h, w, generator=gen).requires_grad_()
    grad = torch.randn(batch, channels, h, w, generator=gen)
    rows = {k: Row(group, k, batch, channels, h, w, threads=threads) for k in builders}
    steps: Dict[str, Callable[[], None]] = {}
    for name, build in builders.items():
        if name in skip:
            rows[name].note = skip[name]
            continue
        if build is None:
            steps[name] = lambda: x.detach().clone()
            continue
        torch.manual_seed(cfg.seed)
        steps[name] = fwd_bwd_step(_init_(build(), cfg.seed), x, grad)
    repeats, warmup = _repeats_for(cfg, h * w, linear)
    if memory:  # the profiled step doubles as the warm-up
        for name, step in steps.items():
            rows[name].peak_mib = peak_bytes(step) / MIB
        warmup = 0
    for name, step in extra.items():
        rows[name] = Row(group, name, batch, channels, h, w, threads=threads)
        steps[name] = step
        if warmup == 0:
            step()
    for name, ts in interleaved_medians(steps, repeats, warmup).items():
        _median_row(rows[name], ts)
    return list(rows.values())


# ------------------------------------------------------------------------------- limits
def measure_limits(cfg: Config, threads: int) -> Limits:
    """Matmul GFLOP/s (attention-shaped float32 bmm) and x.clone() GB/s at this thread count."""
    n = min(64 * 64, max(h * w for h, w in cfg.nl_sizes))
    b, ci = cfg.nl_batch, max(cfg.channels // 2, 1)
    step = matmul_floor_step(b, n, ci, cfg.seed)
    t = min(interleaved_medians({"mm": step}, 3, 1)["mm"])
    gflops = 6 * 2 * b * n * n * ci / t / 1e9
    del step
    gen = torch.Generator().manual_seed(cfg.seed)
    h, w = max(cfg.gc_sizes, key=lambda s: s[0] * s[1])
    x = torch.randn(cfg.gc_batch, cfg.channels, h, w, generator=gen)
    clone = min(interleaved_medians({"c": lambda: x.clone()}, 15, 2)["c"])
    nbytes = x.numel() * x.element_size()
    return Limits(
        threads=threads,
        matmul_gflops=gflops,
        matmul_shape=f"the six bmm of attention fwd+bwd, B={b}, N={n}, C_i={ci}",
        clone_gbps=2 * nbytes / clone / 1e9,
        clone_ms=clone * 1e3,
        clone_mib=nbytes / MIB,
        load_average=tuple(round(v, 2) for v in os.getloadavg()),  # type: ignore[arg-type]
    )


FLOOR = "6 matmuls"


def nl_matmul_flops(row: Row, reduction: int = 2) -> float:
    """FLOPs of the six N x N x C_i matmuls of one NL fwd+bwd (2 forward, 4 backward)."""
    ci = max(row.channels // reduction, 1)
    return 6 * 2 * row.batch * row.n * row.n * ci


def matmul_floor_step(batch: int, n: int, ci: int, seed: int = 0) -> Callable[[], None]:
    """The six products of attention fwd+bwd, into preallocated outputs (no page faults):
    S = Q K^T, Y = A V; dA = dY V^T, dV = A^T dY, dQ = dS K, dK = dS^T Q."""
    gen = torch.Generator().manual_seed(seed)
    q, k, v, dy = (torch.randn(batch, n, ci, generator=gen) for _ in range(4))
    a, da = torch.rand(batch, n, n, generator=gen), torch.empty(batch, n, n)
    y, dq, dk, dv = (torch.empty(batch, n, ci) for _ in range(4))

    def step() -> None:
        torch.bmm(q, k.transpose(1, 2), out=a)
        torch.bmm(a, v, out=y)
        torch.bmm(dy, v.transpose(1, 2), out=da)
        torch.bmm(a.transpose(1, 2), dy, out=dv)
        torch.bmm(da, k, out=dq)
        torch.bmm(da.transpose(1, 2), q, out=dk)

    return step


# --------------------------------------------------------------------------------- groups
def run_nonlocal(mode: str, sizes, cfg: Config, mmcv, threads: int, memory: bool,
                 gflops: Dict[int, float]) -> List[Row]:
    """One NL mode at every size. The floor of each row: the six attention matmuls of its
    size timed in the same round-robin (embedded Gaussian, N <= 64x64), else their FLOPs at
    the throughput measured at the nearest smaller such size (``gflops``: N -> GFLOP/s, filled
    here)."""
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
        est = _nxn_estimate_gib(b, n, n)
        skip: Dict[str, str] = {}
        avail = _available_gib()
        if est > cfg.max_gib or est > 0.8 * avail:
            why = (f"skipped: its (N, N) attention needs ~{est:.1f} GiB (--max-gib "
                   f"{cfg.max_gib}, {avail:.1f} GiB available)")
            skip = {k: why for k in builders if k != "gclab"}
        elif mode == "dot_product" and n > cfg.dot_peers_max_n:
            skip = {k: "skipped: the (N, N) matrix costs as in nl_embedded; the growth target "
                    "needs gclab only" for k in builders if k != "gclab"}
        elif n >= 128 * 128 and "mmcv" in builders:  # explicit == mmcv's algorithm: time one
            skip = {"explicit": "skipped at this size: the same (N, N) algorithm as mmcv"}
        extra = {}
        if mode == "embedded_gaussian" and n <= cfg.dot_peers_max_n:
            extra[FLOOR] = matmul_floor_step(b, n, max(c // 2, 1), cfg.seed)
        linear = mode == "dot_product" and n > cfg.dot_peers_max_n  # gclab's path alone
        got = measure_group(group, builders, b, c, size, cfg, threads, memory, skip, extra,
                            linear)
        floor = next((r for r in got if r.impl == FLOOR), None)
        if floor is not None:
            floor.note = "the floor: six N x N x C_i bmm, fwd+bwd of the attention"
            gflops[n] = nl_matmul_flops(floor) / (floor.time_ms * 1e-3) / 1e9
        near = [m for m in gflops if m <= n] or list(gflops)
        rate = gflops[max(near)] if near else float("nan")
        for r in got:
            r.floor_ms = floor.time_ms if floor else nl_matmul_flops(r) / (rate * 1e9) * 1e3
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
                r.floor_ms = 2 * clone.time_ms
            rows += got
            _progress(got)
        rows += gc_forward_vs_clone(cfg, size, threads)
        _progress(rows[-2:])
    return rows


def gc_forward_vs_clone(cfg: Config, size: Tuple[int, int], threads: int) -> List[Row]:
    """GC forward (no grad) against one ``x.clone()`` of the same input, interleaved."""
    c, b = cfg.channels, cfg.gc_batch
    x = torch.randn(b, c, *size, generator=torch.Generator().manual_seed(cfg.seed))
    gc = _init_(GCBlock(c, ratio=1 / 16), cfg.seed)

    def fwd() -> None:
        with torch.no_grad():
            gc(x)

    def clone() -> None:
        x.clone()

    times = interleaved_medians({"gclab": fwd, CLONE: clone}, 3 * cfg.repeats, 2)
    rows = [_median_row(Row("gc_forward", name, b, c, size[0], size[1], threads=threads), ts)
            for name, ts in times.items()]
    for r in rows:
        r.floor_ms = rows[1].time_ms
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
    rows = [_median_row(Row("numpy_nl", name, b, c, h, w, note="float64 forward",
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


# -------------------------------------------------------------------------------- targets
@dataclass
class Target:
    name: str
    limit: float
    value: float  # nan when not measured
    detail: str
    at_least: bool = False  # MET when value >= limit (a share of a floor)

    @property
    def status(self) -> str:
        if math.isnan(self.value):
            return "NOT MEASURED"
        ok = self.value >= self.limit if self.at_least else self.value <= self.limit
        return "MET" if ok else "NOT MET"


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


def _worst_ratio(rows, group, a, b, sizes) -> Tuple[float, str]:
    got = [(s, _ratio(rows, group, a, b, s)) for s in sizes]
    got = [(s, v) for s, v in got if not math.isnan(v)]
    if not got:
        return float("nan"), f"{a} / {b} time"
    detail = ", ".join(f"{s[0]}x{s[1]}: {v:.2f}" for s, v in got)
    return max(v for _, v in got), f"worst of {a} / {b} time ({detail})"


def evaluate_targets(rows: Sequence[Row], cfg: Config) -> List[Target]:
    """The issues' targets for the rows of one thread count (nan when not measured)."""
    t: List[Target] = []
    s64, s128 = (64, 64), (128, 128)
    nl = f"B={cfg.nl_batch}, C={cfg.channels}"
    sizes = " to ".join(f"{s[0]}x{s[1]}" for s in (cfg.nl_sizes[0], cfg.nl_sizes[-1]))
    v, d = _worst_ratio(rows, "nl_embedded", "gclab", "mmcv", cfg.nl_sizes)
    t.append(Target(f"NL embedded fwd+bwd <= 1.0x mmcv at every size {sizes} ({nl})", 1.0, v,
                    d))
    r64 = _find(rows, "nl_embedded", "gclab", s64)
    t.append(Target(f"NL embedded 64x64 >= 0.85 of its matmul floor ({nl})", 0.85,
                    r64.share if r64 else float("nan"),
                    "floor / time; floor = six N x N x C_i matmuls at the measured GFLOP/s",
                    at_least=True))
    dsizes = [s for s in cfg.dot_sizes if s[0] * s[1] <= cfg.dot_peers_max_n]
    v, d = _worst_ratio(rows, "nl_dot", "gclab", "mmcv", dsizes)
    t.append(Target(f"NL dot product fwd+bwd <= 1.0x mmcv at every size up to "
                    f"{dsizes[-1][0]}x{dsizes[-1][1]} ({nl})" if dsizes else "NL dot product",
                    1.0, v, d))
    growth, detail = dot_product_growth(rows)
    t.append(Target(f"dot-product NL time grows <= 2.2x when N doubles ({nl})", 2.2, growth,
                    detail))
    t.append(Target(f"NL embedded 64x64 peak memory <= 0.2x mmcv ({nl})", 0.2,
                    _ratio(rows, "nl_embedded", "gclab", "mmcv", s64, "peak_mib"),
                    "gclab / mmcv peak memory"))
    r128 = _find(rows, "nl_embedded", "gclab", s128)
    mem128 = r128.peak_mib / 1024 if r128 is not None else float("nan")
    t.append(Target(f"NL embedded 128x128 fits in < 2 GiB extra memory ({nl})", 2.0, mem128,
                    "GiB above input and weights, fwd+bwd"))
    se_ref = "timm" if any(r.group == "se" and r.impl == "timm" for r in rows) else "timm-style"
    for size in cfg.gc_sizes:
        tag = f"B={cfg.gc_batch}, C={cfg.channels}, {size[0]}x{size[1]}"
        t.append(Target(f"GC fwd+bwd <= 1.0x mmcv ContextBlock ({tag})", 1.0,
                        _ratio(rows, "gc", "gclab", "mmcv", size), "gclab / mmcv time"))
        t.append(Target(f"SE fwd+bwd <= 1.0x {se_ref} SE ({tag})", 1.0,
                        _ratio(rows, "se", "gclab", se_ref, size), f"gclab / {se_ref} time"))
        t.append(Target(f"GC forward <= 3x one x.clone() ({tag})", 3.0,
                        _ratio(rows, "gc_forward", "gclab", CLONE, size),
                        "GC forward / clone time"))
    big = max(cfg.gc_sizes, key=lambda s: s[0] * s[1])
    tag = f"B={cfg.gc_batch}, C={cfg.channels}, {big[0]}x{big[1]}"
    for group, name in (("gc", "GC"), ("se", "SE")):
        t.append(Target(f"{name} fwd+bwd <= 10x one x.clone() ({tag})", 10.0,
                        _ratio(rows, group, "gclab", CLONE, big),
                        f"{name} fwd+bwd / clone time (floor: 2)"))
        if group == "gc" and _find(rows, "gc", "mmcv", big):
            t[-1].detail += f"; mmcv: {_ratio(rows, 'gc', 'mmcv', CLONE, big):.1f}"
    if cfg.numpy_size is not None:
        h, w = cfg.numpy_size
        t.append(Target(f"NumPy NL forward <= 3x torch CPU (float64, {h}x{w})", 3.0,
                        _ratio(rows, "numpy_nl", "numpy", "torch", cfg.numpy_size),
                        "numpy / torch forward time, torch's default path"))
        t.append(Target(f"NumPy NL forward <= 3x torch CPU, explicit path ({h}x{w})", 3.0,
                        _ratio(rows, "numpy_nl", "numpy", "torch-explicit", cfg.numpy_size),
                        "numpy / torch forward time, both building the (N, N) matrix"))
    return t


# --------------------------------------------------------------------------------- output
# CPUID (family, model) of the server parts this benchmark has met; a VM may mask the model
_MICROARCH = {
    ("GenuineIntel", 6, 143): "Sapphire Rapids",
    ("GenuineIntel", 6, 207): "Emerald Rapids",
    ("GenuineIntel", 6, 106): "Ice Lake-SP",
    ("GenuineIntel", 6, 85): "Skylake/Cascade Lake-SP",
    ("AuthenticAMD", 23, 49): "Zen 2 (EPYC Rome)",
    ("AuthenticAMD", 25, 1): "Zen 3 (EPYC Milan)",
    ("AuthenticAMD", 25, 17): "Zen 4 (EPYC Genoa)",
}


def cpu_description() -> Dict[str, object]:
    """CPU model name, vendor, family/model, vector extensions, from /proc/cpuinfo or lscpu."""
    info: Dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                k, _, v = line.partition(":")
                info[k.strip()] = v.strip()
    except OSError:
        pass
    if "model name" not in info:
        import subprocess

        try:
            out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
            for line in out.splitlines():
                k, _, v = line.partition(":")
                info.setdefault({"Model name": "model name", "Flags": "flags",
                                 "Vendor ID": "vendor_id"}.get(k.strip(), k.strip()), v.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    name = info.get("model name") or platform.processor() or platform.machine()
    flags = set(info.get("flags", "").split())
    ext = [e for e, f in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AVX512-BF16", "avx512_bf16"),
                          ("AMX", "amx_tile")) if f in flags]
    vendor = info.get("vendor_id", "")
    try:
        fam_model = (vendor, int(info.get("cpu family", -1)), int(info.get("model", -1)))
    except ValueError:
        fam_model = (vendor, -1, -1)
    arch = _MICROARCH.get(fam_model)
    if arch is None and vendor == "GenuineIntel" and "amx_tile" in flags:
        arch = "Sapphire Rapids or later (AMX; CPUID model masked or newer)"
    label = name + (f" [{', '.join(ext)}]" if ext else "")
    return {"cpu": name, "cpu_label": label, "vendor": vendor, "family": fam_model[1],
            "model": fam_model[2], "microarchitecture": arch, "vector_extensions": ext}


def machine_description() -> Dict[str, object]:
    """CPU, cores, load and library versions."""
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    d: Dict[str, object] = dict(cpu_description())
    d.update({
        "cores": os.cpu_count(),
        "memory_available_gib": round(_available_gib(), 1),
        "load_average_1_5_15": [round(v, 2) for v in load],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cuda": torch.cuda.is_available(),
    })
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


def format_limits(lim: Limits) -> str:
    text = (f"machine limits at {lim.threads} thread(s): matmul {lim.matmul_gflops:.1f} GFLOP/s "
            f"({lim.matmul_shape}, float32); stream {lim.clone_gbps:.1f} GB/s "
            f"(x.clone() of {lim.clone_mib:.0f} MiB in {lim.clone_ms:.2f} ms, read + write); "
            f"load average {list(lim.load_average)}")
    if not math.isnan(lim.matmul_gflops_in_run):
        text += (f"; during the run, interleaved with the blocks (these set the floors): "
                 f"matmul {lim.matmul_gflops_in_run:.1f} GFLOP/s (six attention bmm at N = "
                 f"{lim.matmul_in_run_n})")
    if not math.isnan(lim.clone_gbps_in_run):
        text += (f", stream {lim.clone_gbps_in_run:.1f} GB/s (x.clone() "
                 f"{lim.clone_ms_in_run:.2f} ms)")
    return text


def format_rows(rows: Sequence[Row]) -> str:
    """The ratio table of one thread count (markdown)."""
    out = ["| group | size | B | impl | time ms (fastest) | peak MiB | gclab/this time "
           "| gclab/this memory | floor ms | floor/time | x clones | note |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ref: Dict[Tuple[str, int, int], Row] = {}
    clones: Dict[Tuple[str, int, int], Row] = {}
    for r in rows:
        if r.impl in ("gclab", "numpy"):
            ref[(r.group, r.height, r.width)] = r
        if r.impl == CLONE:
            clones[(r.group, r.height, r.width)] = r
    for r in rows:
        key = (r.group, r.height, r.width)
        base = ref.get(key)
        tr = mr = xc = float("nan")
        if base is not None and base is not r and r.time_ms:
            tr = base.time_ms / r.time_ms
            if r.peak_mib and not math.isnan(r.peak_mib):
                mr = base.peak_mib / r.peak_mib
        if key in clones and r.impl != CLONE:
            xc = r.time_ms / clones[key].time_ms
        out.append(
            f"| {r.group} | {r.height}x{r.width} | {r.batch} | {r.impl} | {_fmt(r.time_ms)} "
            f"| {_fmt(r.peak_mib)} | {_fmt(tr, '.2f')} | {_fmt(mr, '.3f')} "
            f"| {_fmt(r.floor_ms)} | {_fmt(r.share, '.2f')} | {_fmt(xc, '.1f')} | {r.note} |"
        )
    return "\n".join(out)


def format_targets(by_threads: Dict[int, List[Target]]) -> str:
    """One line per target, one column per thread count."""
    threads = list(by_threads)
    out = ["| target | " + " | ".join(f"{t} thread{'s' if t > 1 else ''} | status"
                                      for t in threads) + " |",
           "|---|" + "---|---|" * len(threads)]
    first = by_threads[threads[0]]
    for i, tgt in enumerate(first):
        cells = []
        for t in threads:
            got = by_threads[t][i]
            cells.append(f"{_fmt(got.value, '.3g')} | {got.status}")
        out.append(f"| {tgt.name} | " + " | ".join(cells) + " |")
    out += ["", "Details:"]
    for t in threads:
        for tgt in by_threads[t]:
            if not math.isnan(tgt.value) and any(ch.isdigit() for ch in tgt.detail):
                out.append(f"- [{t} thread(s)] {tgt.name}: {tgt.detail}")
    return "\n".join(out)


def write_csv(rows: Sequence[Row], path: str) -> None:
    """One line per measured (threads, group, impl, size)."""
    with open(path, "w", newline="") as f:
        names = [k for k in asdict(rows[0])] + ["n", "share"]
        wr = csv.DictWriter(f, fieldnames=names)
        wr.writeheader()
        for r in rows:
            d = asdict(r)
            d["n"], d["share"] = r.n, r.share
            wr.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()})


def plot_scaling(rows: Sequence[Row], path: str) -> str | None:
    """Time and peak memory against N (log-log) for the NL groups, first thread count.

    Returns None when the plot was written, else the reason it was not."""
    from gclab._extras import MissingExtra, require

    try:
        matplotlib = require("matplotlib", why="the benchmark's scaling.png")
    except MissingExtra as e:
        return f"no scaling.png: {e}"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = rows[0].threads
    rows = [r for r in rows if r.threads == threads]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels = [("nl_embedded", "NL embedded Gaussian (B=2)"), ("nl_dot", "NL dot product (B=2)")]
    for ax, (group, title) in zip(axes[:2], panels):
        for impl in sorted({r.impl for r in rows if r.group == group}):
            pts = [(r.n, r.time_ms) for r in rows
                   if r.group == group and r.impl == impl and not math.isnan(r.time_ms)]
            if pts:
                pts.sort()
                ax.loglog(*zip(*pts), "o-", label=f"{impl}")
        pts = sorted((r.n, r.floor_ms) for r in rows if r.group == group and r.impl == "gclab")
        if pts:
            ax.loglog(*zip(*pts), "k:", label="matmul floor (6 N x N x C_i)")
        ax.set(title=f"{title}, {threads} thread(s)", xlabel="N = H*W",
               ylabel="fwd+bwd time (ms)")
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
    args = p.parse_args(argv)
    cfg = build_config(args)
    out_dir = args.out or _new_folder()

    mmcv, timm = _mmcv(), _timm()
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
    targets: Dict[int, List[Target]] = {}
    saved_threads = torch.get_num_threads()
    try:
        for i, threads in enumerate(cfg.threads):
            torch.set_num_threads(threads)
            torch.manual_seed(cfg.seed)
            memory = cfg.memory and i == 0
            lim = limits[threads] = measure_limits(cfg, threads)
            print(format_limits(lim), flush=True)
            got: List[Row] = []
            rates: Dict[int, float] = {}
            got += run_nonlocal("embedded_gaussian", cfg.nl_sizes, cfg, mmcv, threads, memory,
                                rates)
            got += run_nonlocal("dot_product", cfg.dot_sizes, cfg, mmcv, threads, memory, rates)
            _update_limits(lim, rates, got)
            got += run_gc_se(cfg, mmcv, timm, threads, memory)
            if cfg.numpy_size is not None and i == 0:
                got += run_numpy(cfg, threads)
            rows += got
    finally:
        torch.set_num_threads(saved_threads)
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
    return 0


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
