"""The measuring primitives of ``gclab bench``: timing, peak memory, the machine's limits.

``interleaved_medians`` times several steps round-robin (shuffled order per round),
``peak_bytes`` reads torch.profiler's allocation records. ``measure_limits`` measures the
machine's physical peaks (the best float32 GEMM rate over square sizes, the copy bandwidth into
a preallocated buffer) beside the older yardsticks (attention-shaped ``bmm``, ``x.clone()``);
``count_flops`` counts a block's fwd+bwd FLOPs with torch's ``FlopCounterMode``; and
``apply_floors`` turns them into every row's floor, the time the work would take at the peak,
raising a peak to any rate a row reached beyond it so that no share exceeds 1.
:mod:`gclab.experiments.bench` runs them; the targets and tables are in
:mod:`gclab.experiments.bench_report`. Example::

    >>> peak_bytes(lambda: torch.empty(1 << 20)) >= 4 << 20
    True
"""

from __future__ import annotations

import functools
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

GIB = 2**30
MIB = 2**20


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


CLOCKS: Dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
_clock: List[Callable[[], float]] = [time.perf_counter]


def use_clock(name: str) -> None:
    """Time steps by ``'wall'`` clock (the default) or by this process's ``'cpu'`` time (user +
    system, page faults included): on one thread, the CPU time leaves out the time other jobs
    hold the core, so a loaded machine still gives each step's own cost (not its cache
    interference). With more threads it would count idle-spinning workers: wall only."""
    if name not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {name!r}")
    _clock[0] = CLOCKS[name]


def interleaved_medians(
    steps: Dict[str, Callable[[], None]], repeats: int, warmup: int = 1
) -> Dict[str, List[float]]:
    """Seconds per call of every step, run round-robin ``warmup + repeats`` times.

    The order within each round is shuffled (seeded): on a machine whose CPU time comes in
    slices shared with other jobs, a fixed order would hand the same step the same phase of
    every slice. Returns the measured times (warm-up excluded) per name, by the clock
    :func:`use_clock` chose.
    """
    clock = _clock[0]
    import random

    rng = random.Random(0)
    times: Dict[str, List[float]] = {k: [] for k in steps}
    names = list(steps)
    for r in range(warmup + repeats):
        order = names[:]
        rng.shuffle(order)
        for name in order:
            step = steps[name]
            t0 = clock()
            step()
            dt = clock() - t0
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
    # the physical floor: ``work`` (NL: GFLOP; GC/SE: GB that must move) at the machine's peak
    work: float = float("nan")
    floor_ms: float = float("nan")
    # the older yardsticks, measured in the same round-robin: NL the six attention-shaped bmm
    # of its size, GC/SE one x.clone() of its input (ratios, not shares: they are no limit)
    bmm_ms: float = float("nan")
    clone_ms: float = float("nan")
    repeats: int = 0
    note: str = ""
    threads: int = 1

    @property
    def n(self) -> int:
        return self.height * self.width

    @property
    def share(self) -> float:
        """floor / time: the share of the machine's peak; 1.0 = at the peak."""
        if math.isnan(self.floor_ms) or math.isnan(self.time_ms) or not self.time_ms:
            return float("nan")
        return self.floor_ms / self.time_ms


@dataclass
class Limits:
    """What this machine does at one thread count.

    The peaks (the floors divide by these): ``gemm_gflops``, the best float32 ``torch.mm``
    rate over the square sizes of ``gemm_rates`` (size -> best GFLOP/s), and ``copy_gbps``
    (tensor MiB -> best GB/s of ``dst.copy_(src)`` into a preallocated ``dst``, read + write
    counted, STREAM's convention). Each is the maximum over every repeat measured, at the start
    and at the end of the thread count's run, and over the rates the rows themselves reached
    (``raised_by`` names a row that beat a measured peak). The older yardsticks beside them:
    the six attention-shaped bmm (``matmul_gflops``) and ``x.clone()`` (``clone_gbps``)."""

    threads: int
    matmul_gflops: float
    matmul_shape: str
    clone_gbps: float
    clone_ms: float
    clone_mib: float
    load_average: Tuple[float, float, float]
    gemm_gflops: float = float("nan")
    gemm_size: int = 0
    gemm_rates: Dict[int, float] = field(default_factory=dict)
    copy_gbps: Dict[float, float] = field(default_factory=dict)
    load_average_end: Tuple[float, ...] = ()
    raised_by: List[str] = field(default_factory=list)
    clock: str = "wall"  # what timed this thread count: use_clock's name
    # the attention bmm and the clone measured interleaved with the blocks
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
    gemm_sizes: Sequence[int] = (256, 512, 1024, 2048)  # the square GEMMs of the peak
    nl_batch: int = 2
    gc_batch: int = 8
    channels: int = 256
    repeats: int = 5
    threads: Sequence[int] = (1, 2)
    clock: str = "wall"  # 'cpu': process CPU time at 1 thread (use_clock); wall at more
    max_gib: float = 9.0  # skip an (N, N') implementation whose estimate exceeds this
    dot_peers_max_n: int = 64 * 64  # dot product: explicit/mmcv only up to this N
    memory: bool = True
    seed: int = 0
    notes: List[str] = field(default_factory=list)


CLONE = "x.clone()"


def nxn_estimate_gib(batch: int, n: int, n_keys: int) -> float:
    """GiB of (B, N, N') float32 maps the explicit Non-local fwd+bwd holds at once."""
    # explicit fwd+bwd keeps ~4 (B, N, N') float32 tensors alive (logits, softmax, 2 grads)
    return 4 * batch * n * n_keys * 4 / GIB


def available_gib() -> float:
    """MemAvailable of /proc/meminfo in GiB (inf where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / GIB
    except (OSError, ValueError, IndexError):
        pass
    return float("inf")


def init_weights(module: nn.Module, seed: int) -> nn.Module:
    """Every parameter of ``module`` drawn from N(0, 0.02^2) with ``seed``, in place."""
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


def median_row(row: Row, ts: Sequence[float]) -> Row:
    """``row`` with its times from the repeats ``ts`` (seconds), in ms."""
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
    steps (the six attention bmm: an older yardstick) are timed alike, without a memory pass."""
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
        steps[name] = fwd_bwd_step(init_weights(build(), cfg.seed), x, grad)
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
        median_row(rows[name], ts)
    return list(rows.values())


# ------------------------------------------------------------------------------- limits
def gemm_rates(sizes: Sequence[int], repeats: int = 3, seed: int = 0) -> Dict[int, float]:
    """Best float32 GFLOP/s of ``torch.mm(a, b, out=c)`` (torch's BLAS) per square size."""
    gen = torch.Generator().manual_seed(seed)
    rates: Dict[int, float] = {}
    for n in sizes:
        a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
        c = torch.empty(n, n)
        mm = functools.partial(torch.mm, a, b, out=c)
        t = min(interleaved_medians({"mm": mm}, repeats, 1)["mm"])
        rates[n] = 2 * n**3 / t / 1e9
    return rates


def copy_rates(nbytes: Sequence[int], repeats: int = 15) -> Dict[float, float]:
    """Best GB/s of ``dst.copy_(src)`` into a preallocated, already touched ``dst`` (STREAM's
    copy: bytes read + bytes written over the time), per tensor size in MiB."""
    rates: Dict[float, float] = {}
    for size in nbytes:
        src = torch.ones(max(size // 4, 1))
        dst = torch.zeros_like(src)
        copy = functools.partial(dst.copy_, src)
        t = min(interleaved_medians({"copy": copy}, repeats, 2)["copy"])
        rates[round(size / MIB, 3)] = 2 * src.numel() * 4 / t / 1e9
    return rates


def _gc_tensor_bytes(cfg: Config) -> List[int]:
    return sorted({cfg.gc_batch * cfg.channels * h * w * 4 for h, w in cfg.gc_sizes})


def measure_limits(cfg: Config, threads: int) -> Limits:
    """The peaks (square GEMM, copy into a preallocated buffer, at the GC/SE tensor sizes) and
    the older yardsticks (attention-shaped bmm, x.clone()) at this thread count."""
    load = tuple(round(v, 2) for v in os.getloadavg())
    rates = gemm_rates(cfg.gemm_sizes, seed=cfg.seed)
    copies = copy_rates(_gc_tensor_bytes(cfg))
    n = min(64 * 64, max(h * w for h, w in cfg.nl_sizes))
    b, ci = cfg.nl_batch, max(cfg.channels // 2, 1)
    step = attention_bmm_step(b, n, ci, cfg.seed)
    t = min(interleaved_medians({"mm": step}, 3, 1)["mm"])
    gflops = 6 * 2 * b * n * n * ci / t / 1e9
    del step
    gen = torch.Generator().manual_seed(cfg.seed)
    h, w = max(cfg.gc_sizes, key=lambda s: s[0] * s[1])
    x = torch.randn(cfg.gc_batch, cfg.channels, h, w, generator=gen)
    clone = min(interleaved_medians({"c": lambda: x.clone()}, 15, 2)["c"])
    nbytes = x.numel() * x.element_size()
    best = max(rates, key=lambda k: rates[k])
    return Limits(
        threads=threads,
        matmul_gflops=gflops,
        matmul_shape=f"the six bmm of attention fwd+bwd, B={b}, N={n}, C_i={ci}",
        clone_gbps=2 * nbytes / clone / 1e9,
        clone_ms=clone * 1e3,
        clone_mib=nbytes / MIB,
        load_average=load,  # type: ignore[arg-type]
        gemm_gflops=rates[best],
        gemm_size=best,
        gemm_rates=rates,
        copy_gbps=copies,
    )


def remeasure_peaks(lim: Limits, cfg: Config) -> None:
    """Measure the peaks again (at the end of a thread count's run) and keep the best of both."""
    for n, r in gemm_rates(cfg.gemm_sizes, seed=cfg.seed).items():
        lim.gemm_rates[n] = max(r, lim.gemm_rates.get(n, 0.0))
    for mib, r in copy_rates(_gc_tensor_bytes(cfg)).items():
        lim.copy_gbps[mib] = max(r, lim.copy_gbps.get(mib, 0.0))
    lim.gemm_size = max(lim.gemm_rates, key=lambda k: lim.gemm_rates[k])
    lim.gemm_gflops = lim.gemm_rates[lim.gemm_size]
    lim.load_average_end = tuple(round(v, 2) for v in os.getloadavg())


def count_flops(build: Callable[[], nn.Module], shape: Sequence[int]) -> float:
    """FLOPs of one forward + backward of ``build()`` on a float32 input of ``shape``, by
    ``torch.utils.flop_counter.FlopCounterMode`` (torch's formulas for mm/bmm/conv/SDPA and the
    CPU flash-attention ones :mod:`gclab.nn.fast.flops` registers). On the meta device (no
    arithmetic) where the module runs there, else on CPU."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    module = build()
    for device in ("meta", "cpu"):
        try:
            m = module.to(device)
            x = torch.randn(*shape, device=device, requires_grad=True)
            with FlopCounterMode(display=False) as counter:
                m(x).backward(torch.ones(*shape, device=device))
            return float(counter.get_total_flops())
        except (RuntimeError, NotImplementedError):
            module = build()
    return float("nan")


GC_SE_PASSES = {"gc": 5, "se": 5, "gc_forward": 2, CLONE: 2}


def gc_se_bytes(row: Row) -> float:
    """Bytes a GC/SE step must move, as multiples of its (B, C, H, W) float32 tensor S:
    fwd+bwd reads x and writes z (forward), reads g and x again and writes dx (backward): 5 S;
    the forward alone (``gc_forward``) and one ``x.clone()``: 2 S."""
    passes = GC_SE_PASSES[CLONE if row.impl == CLONE else row.group]
    return passes * row.batch * row.channels * row.n * 4


def _copy_rate(lim: Limits, nbytes: float) -> float:
    # the copy bandwidth measured at this tensor size (else the nearest measured size)
    mib = nbytes / MIB
    if not lim.copy_gbps:
        return float("nan")
    return lim.copy_gbps[min(lim.copy_gbps, key=lambda k: abs(math.log(k / mib)))]


def apply_floors(rows: Sequence[Row], lim: Limits,
                 nl_flops: Dict[Tuple[str, int], float]) -> None:
    """Set every row's ``work`` and ``floor_ms`` (work at the peak) at ``lim.threads``.

    NL rows: ``nl_flops[(group, N)]``, the fewest FLOPs any measured implementation of the
    configuration counted (the attention row: its own six products). GC/SE rows: the bytes of
    :func:`gc_se_bytes` at the copy bandwidth measured for that tensor size. A row whose rate
    (work / time) beats the measured peak raises the peak to it (noted in ``lim.raised_by``):
    the peak is the maximum over everything measured, so floor <= time, share <= 1."""
    mine = [r for r in rows if r.threads == lim.threads]
    for r in mine:
        if r.group.startswith("nl_"):
            own = nl_matmul_flops(r) / 1e9  # the attention row: its own six products
            r.work = own if r.impl == SIX_BMM else nl_flops.get((r.group, r.n), float("nan"))
        elif r.group in ("gc", "se", "gc_forward"):
            r.work = gc_se_bytes(r)
    for r in mine:  # raise a peak that a row beat
        if math.isnan(r.work) or math.isnan(r.time_ms) or r.time_ms <= 0:
            continue
        rate = r.work / (r.time_ms * 1e-3)  # NL: GFLOP/s; GC/SE: B/s, GB/s below
        if not r.group.startswith("nl_"):
            rate /= 1e9
        if r.group.startswith("nl_") and rate > lim.gemm_gflops:
            lim.gemm_gflops = rate
            lim.raised_by.append(f"GEMM {rate:.1f} GFLOP/s by {r.group} {r.impl} "
                                 f"{r.height}x{r.width}")
        elif r.group in ("gc", "se", "gc_forward"):
            mib = round(r.batch * r.channels * r.n * 4 / MIB, 3)
            if rate > _copy_rate(lim, mib * MIB):
                lim.copy_gbps[mib] = rate
                lim.raised_by.append(f"copy {rate:.1f} GB/s by {r.group} {r.impl} "
                                     f"{r.height}x{r.width}")
    for r in mine:
        if math.isnan(r.work):
            continue
        if r.group.startswith("nl_"):
            r.floor_ms = r.work / lim.gemm_gflops * 1e3
        else:
            size = r.batch * r.channels * r.n * 4
            r.floor_ms = r.work / (_copy_rate(lim, size) * 1e9) * 1e3


SIX_BMM = "6 matmuls"
MEASURED = "measured"  # gclab's NonLocal2d, impl='auto' with measured routes


def nl_matmul_flops(row: Row, reduction: int = 2) -> float:
    """FLOPs of the six N x N x C_i matmuls of one NL fwd+bwd (2 forward, 4 backward)."""
    ci = max(row.channels // reduction, 1)
    return 6 * 2 * row.batch * row.n * row.n * ci


def attention_bmm_step(batch: int, n: int, ci: int, seed: int = 0) -> Callable[[], None]:
    """The older NL yardstick (no limit: they run below the peak GEMM rate): the six products
    of attention fwd+bwd, into preallocated outputs (no page faults):
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
