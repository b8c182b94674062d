r"""The groups ``gclab bench`` times: Non-local, GC/SE and NumPy, each beside its peers.

Each ``run_*`` function times one group at every size of its :class:`~.bench_core.Config`
(forward + backward, interleaved, :func:`~.bench_core.measure_group`) and returns its rows.
The peers: mmcv-lite's ``NonLocal2d`` / ``ContextBlock`` (:func:`mmcv_blocks`), timm's
``SEModule`` (:func:`timm_layers`) or, without timm, :class:`TimmStyleSE`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from gclab.experiments.bench_core import (
    CLONE,
    MEASURED,
    SIX_BMM,
    Config,
    Row,
    attention_bmm_step,
    available_gib,
    count_flops,
    init_weights,
    interleaved_medians,
    measure_group,
    median_row,
    nl_matmul_flops,
    nxn_estimate_gib,
)
from gclab.nn import GCBlock, NonLocal2d, SEBlock
from gclab.nn.fast.routes import clear_route_table, measured_routes, route_table
from gclab.nn.non_local import MEASURED_MAX_KEYS


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


class MeasuredRoutes(nn.Module):
    """A block called with measured routes on (:mod:`gclab.nn.fast.routes`), calibrated when
    built: one forward + backward on a random input of ``shape`` times its routes (the route
    table is cleared first), so every later call, timed or profiled, takes the kept route.

    ``route`` is the route kept, ``times_ms`` each route's fastest timed call.
    Shapes: as the block's, e.g. (B, C, H, W) -> (B, C, H, W).

    Example::

        >>> m = MeasuredRoutes(NonLocal2d(16), (2, 16, 4, 4))
        >>> m.route in ("explicit", "fast"), m(torch.randn(2, 16, 4, 4)).shape
        (True, torch.Size([2, 16, 4, 4]))
    """

    def __init__(self, block: nn.Module, shape: Sequence[int]) -> None:
        super().__init__()
        self.block = block
        clear_route_table()
        with measured_routes():
            block(torch.randn(*shape, requires_grad=True)).sum().backward()
        block.zero_grad(set_to_none=True)
        kept = list(route_table().values())
        if len(kept) != 1:
            raise RuntimeError(f"expected one measured route for {type(block).__name__} on "
                               f"{tuple(shape)}, got {len(kept)}: is the map beyond "
                               f"N' <= {MEASURED_MAX_KEYS} C_i?")
        self.route = str(kept[0]["route"])
        self.times_ms: Dict[str, float] = dict(kept[0]["ms"])  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        with measured_routes():
            return self.block(x)


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


def timm_layers():
    """``timm.layers``, or None where timm is not importable."""
    try:
        import timm.layers as layers  # type: ignore

        return layers
    except Exception:  # noqa: BLE001
        return None


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
    built: List[MeasuredRoutes] = []

    def measured(shape: Tuple[int, ...]) -> nn.Module:
        built.append(MeasuredRoutes(NonLocal2d(c, mode=mode), shape))
        return built[-1]

    rows: List[Row] = []
    for size in sizes:
        n = size[0] * size[1]
        shape = (b, c, *size)
        builders: Dict[str, Callable[[], nn.Module] | None] = {
            "gclab": lambda: NonLocal2d(c, mode=mode),
            MEASURED: lambda shape=shape: measured(shape),
            "explicit": lambda: NonLocal2d(c, mode=mode, impl="explicit"),
        }
        if mmcv is not None:
            builders["mmcv"] = lambda: mmcv[0](c, mode=mode)
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
        if n > MEASURED_MAX_KEYS * max(c // 2, 1):
            skip[MEASURED] = (f"skipped: the same route as gclab (N > {MEASURED_MAX_KEYS} C_i "
                              f"is never measured: the fast path)")
        if (group, n) not in nl_flops:  # MEASURED runs one of the others' routes
            counts = [count_flops(build, (b, c, *size)) for name, build in builders.items()
                      if build is not None and name != MEASURED]
            nl_flops[(group, n)] = min(counts) / 1e9
        extra = {}
        if mode == "embedded_gaussian" and n <= cfg.dot_peers_max_n:
            extra[SIX_BMM] = attention_bmm_step(b, n, max(c // 2, 1), cfg.seed)
        linear = mode == "dot_product" and n > cfg.dot_peers_max_n  # gclab's path alone
        got = measure_group(group, builders, b, c, size, cfg, threads, memory, skip, extra,
                            linear)
        for r in got:
            if r.impl == MEASURED and MEASURED not in skip and built:
                ms = ", ".join(f"{k} {v:.1f} ms" for k, v in built[-1].times_ms.items())
                r.note = f"impl='auto', measured routes: took {built[-1].route} ({ms})"
        floor = next((r for r in got if r.impl == SIX_BMM), None)
        if floor is not None:
            floor.note = "six attention-shaped bmm N x N x C_i (fwd+bwd of the attention alone)"
            gflops[n] = nl_matmul_flops(floor) / (floor.time_ms * 1e-3) / 1e9
        near = [m for m in gflops if m <= n] or list(gflops)
        rate = gflops[max(near)] if near else float("nan")
        for r in got:
            r.bmm_ms = floor.time_ms if floor else nl_matmul_flops(r) / (rate * 1e9) * 1e3
        rows += got
        progress(got)
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
            progress(got)
        rows += gc_forward_vs_clone(cfg, size, threads)
        progress(rows[-2:])
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
    progress(rows)
    return rows


def progress(rows: Sequence[Row]) -> None:
    """One line per row on stderr: the time, or why it was skipped."""
    for r in rows:
        what = f"{r.time_ms:9.1f} ms" if not math.isnan(r.time_ms) else r.note
        print(f"  [{r.threads}t] {r.group:<11} {r.height}x{r.width:<4} {r.impl:<15} {what}",
              file=sys.stderr, flush=True)
