"""Measured routes for ``impl='auto'``: time the routes once per input shape on this machine
and keep the faster, an opt-in like ``torch.backends.cudnn.benchmark``.

By default a block with ``impl='auto'`` picks its route by a fixed size rule (the Non-local
blocks: the explicit (N, N') matrix for few keys, the fast path otherwise), so the same
model takes the same route on every machine. The rule was measured on one CPU; on another
the other route can be faster near its threshold. With measured routes switched on, the first
eager call of a block for a given configuration (the block's settings, the input's shape,
dtype, device and layout, the number of torch threads, whether autograd will differentiate
the call, autocast) times every candidate route: one warm-up, then timed calls interleaved
(at least :data:`REPEATS` of each, more until each route has run :data:`MIN_SECONDS`, at most
:data:`MAX_REPEATS`), forward + backward when autograd will differentiate the call (gradients
taken with ``torch.autograd.grad``, so no ``.grad`` is touched; buffers such as BatchNorm's
running statistics are restored afterwards), forward only under ``no_grad``. The route with
the shortest time is kept in a table for the rest of the process (a tie keeps the size rule's
route) and later calls with the same configuration take it without timing.

Never measured: under tracing, TorchScript, ``torch.compile`` / ``torch.export`` (those keep
the size rule's graph route), on ``meta`` tensors, inside ``torch.func`` transforms and
under a ``TorchDispatchMode`` (``FlopCounterMode`` counts the rule's route) or saved-tensor
hooks (activation checkpointing, ``save_on_cpu``: there the size rule holds, kept choices or
not, so a checkpoint's recomputation takes its forward's route). Each process keeps its own
table, so two processes (DDP ranks) may keep different routes for the same configuration. The
routes give the same values to rounding, so the choice changes speed, not results beyond
float rounding.

Example::

    >>> import torch
    >>> from gclab.nn import NonLocal2d
    >>> from gclab.nn.fast.routes import clear_route_table, measured_routes, route_table
    >>> clear_route_table()
    >>> nl = NonLocal2d(32)
    >>> with measured_routes():          # or set_measured_routes(True) for the whole process
    ...     out = nl(torch.randn(2, 32, 8, 8))
    >>> [entry["route"] in ("explicit", "fast") for entry in route_table().values()]
    [True]
    >>> out.shape
    torch.Size([2, 32, 8, 8])
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Dict, Hashable, Iterator, List, Mapping, Tuple

import torch
from torch import Tensor, nn
from torch.utils import _python_dispatch

from .fused import compiling

REPEATS = 5  # timed calls per route at least, after one warm-up; the fastest counts
MIN_SECONDS = 0.5  # ... and more, interleaved, until each route has run this long
MAX_REPEATS = 200  # ... but no more than this many
clock: Callable[[], float] = time.perf_counter  # the timer (tests substitute a stub clock)

_enabled = [False]
_table: Dict[Hashable, Dict[str, object]] = {}


def _check_flag(enabled: object) -> bool:
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {enabled!r} "
                        f"({type(enabled).__name__})")
    return enabled


def set_measured_routes(enabled: bool) -> None:
    """Switch measured routes on (``True``) or off (``False``, the default) for this process."""
    _enabled[0] = _check_flag(enabled)


def measured_routes_enabled() -> bool:
    """Whether ``impl='auto'`` blocks measure their routes (:func:`set_measured_routes`)."""
    return _enabled[0]


@contextlib.contextmanager
def measured_routes(enabled: bool = True) -> Iterator[None]:
    """Measured routes on (or off) inside a ``with`` block; the previous setting after it.

    The table of measured choices is kept: calling a model once inside the block with a
    typical input (a calibration pass) and leaving it does not make later calls use the
    measured route; keep the switch on for that (:func:`set_measured_routes`)."""
    before = _enabled[0]
    _enabled[0] = _check_flag(enabled)
    try:
        yield
    finally:
        _enabled[0] = before


def route_table() -> Dict[str, Dict[str, object]]:
    """The measured choices so far: ``{configuration: {"route": name, "ms": {name: ms}}}``
    (a copy; the configuration as text, the times the fastest of each route's calls)."""
    return {str(k): {"route": v["route"], "ms": dict(v["ms"])} for k, v in _table.items()}


def clear_route_table() -> None:
    """Forget every measured choice (the next call of each configuration measures again)."""
    _table.clear()


def measurable(x: Tensor) -> bool:
    """Whether a call on ``x`` may be timed: eager mode on real tensors (not under tracing,
    TorchScript, torch.compile / torch.export, not ``meta``, not inside torch.func, a
    TorchDispatchMode such as FlopCounterMode or saved-tensor hooks such as checkpointing)."""
    if torch.jit.is_scripting() or torch.jit.is_tracing() or compiling():
        return False
    if x.device.type == "meta":
        return False
    in_mode = getattr(_python_dispatch, "is_in_torch_dispatch_mode", None)
    if in_mode is not None and in_mode():  # FlopCounterMode, fake tensors...: not timeable
        return False
    # saved-tensor hooks (activation checkpointing, offloading) would see the timed calls, and
    # checkpoint's recomputation must take the forward's route: the rule, whatever is kept
    top_hooks = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    if top_hooks is not None and top_hooks(False) is not None:
        return False
    wrapped = getattr(torch._C, "_functorch", None)
    check = getattr(wrapped, "is_functorch_wrapped_tensor", None)
    return not (check is not None and check(x))


def call_key(block_settings: Tuple[Hashable, ...], x: Tensor, params: List[Tensor]) -> tuple:
    """The configuration a measured choice is kept for: the block's settings and what about
    the call changes the routes' speed (shape, dtype, device, layout, threads, autograd,
    autocast)."""
    backward = _needs_backward(x, params)
    device = x.device.type
    autocast = torch.is_autocast_enabled(device)
    autocast_dtype = torch.get_autocast_dtype(device) if autocast else None
    return (block_settings, x.shape, x.dtype, x.device, x.stride(), torch.get_num_threads(),
            backward, (autocast, autocast_dtype))


def _needs_backward(x: Tensor, params: List[Tensor]) -> bool:
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params))


def choose_route(key: Hashable, routes: Mapping[str, Callable[[Tensor], Tensor]], x: Tensor,
                 module: nn.Module) -> str:
    """The name of the faster of ``routes`` for a call on ``x`` (measured once per ``key``).

    Args:
        key: the configuration (:func:`call_key`); a known key returns its kept route.
        routes: name -> function computing the block's output from an input like x, in order
            of preference (a tie keeps the first).
        x: the call's input (B, C, ...); timed through ``x.detach()``, so the call's own
            autograd graph is untouched.
        module: the block; its parameters get the timed backward's gradients (returned by
            ``torch.autograd.grad``, never accumulated) and its buffers are restored.
    """
    kept = _table.get(key)
    if kept is not None:
        return str(kept["route"])
    if not routes:
        raise ValueError("choose_route needs at least one route, got none")
    bad = [name for name, fn in routes.items() if not callable(fn)]
    if bad:
        raise TypeError(f"routes must map names to callables; not callable: {bad}")
    params = [p for p in module.parameters() if p.requires_grad]
    backward = _needs_backward(x, params)
    xd = x.detach().requires_grad_(x.requires_grad and backward)
    inputs = ([xd] if xd.requires_grad else []) + (params if backward else [])
    saved = {name: b.detach().clone() for name, b in module.named_buffers()}
    try:
        best = _fastest_calls(routes, xd, inputs)
    finally:
        with torch.no_grad():
            for name, b in module.named_buffers():
                b.copy_(saved[name])
    route = min(routes, key=lambda name: best[name])  # first of the fastest on a tie
    _table[key] = {"route": route, "ms": {k: v * 1e3 for k, v in best.items()}}
    return route


def _fastest_calls(routes: Mapping[str, Callable[[Tensor], Tensor]], x: Tensor,
                   inputs: List[Tensor]) -> Dict[str, float]:
    # a warm-up, then interleaved rounds (REPEATS to MAX_REPEATS, until MIN_SECONDS each)
    best = {name: float("inf") for name in routes}
    spent = {name: 0.0 for name in routes}
    for fn in routes.values():
        _time_call(fn, x, inputs)
    rep = 0
    while rep < REPEATS or (min(spent.values()) < MIN_SECONDS and rep < MAX_REPEATS):
        rep += 1
        for name, fn in routes.items():
            t = _time_call(fn, x, inputs)
            best[name], spent[name] = min(best[name], t), spent[name] + t
    return best


def _time_call(fn: Callable[[Tensor], Tensor], x: Tensor, inputs: List[Tensor]) -> float:
    _sync(x)
    start = clock()
    out = fn(x)
    if inputs:
        torch.autograd.grad(out, inputs, torch.ones_like(out), allow_unused=True)
    _sync(x)
    return clock() - start


def _sync(x: Tensor) -> None:
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
