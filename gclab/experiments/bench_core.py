"""The measuring primitives of ``gclab bench``: timing, peak memory, the machine's limits.

``interleaved_medians`` times several steps round-robin (shuffled order per round),
``peak_bytes`` reads torch.profiler's allocation records, ``measure_limits`` and
``matmul_floor_step`` measure the floors the report divides by (attention-shaped float32
matmuls in GFLOP/s, ``x.clone()`` in GB/s). :mod:`gclab.experiments.bench` runs them; the
targets and tables are in :mod:`gclab.experiments.bench_report`. Example::

    >>> peak_bytes(lambda: torch.empty(1 << 20)) >= 4 << 20
    True
"""

from __future__ import annotations

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
