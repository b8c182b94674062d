"""The process-wide settings a notebook can change and a check depends on.

NumPy's error state and print options, torch's default dtype, grad mode, anomaly mode,
deterministic-algorithm flag and thread count, the warnings filters, the working directory and
the three random generators (NumPy's legacy one, torch's, Python's ``random``).

The engine runs trusted code (references, registered mistakes) inside :func:`engine_state`: a
state it sets itself and restores afterwards, whatever the learner's notebook did. The learner's
code runs in the learner's own state; :func:`departures` names the settings where that state
differs from the engine's (for a verdict: "your notebook set np.seterr(all='raise')"), and
:func:`changed` names what a learner's call changed while it ran (the engine then puts it back).
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List

import numpy as np

__all__ = ["Setting", "SETTINGS", "changed", "departures", "engine_state", "restore", "snapshot"]

NUMPY_ERRSTATE = {"divide": "warn", "over": "warn", "under": "ignore", "invalid": "warn"}
NUMPY_PRINTOPTIONS = {
    "edgeitems": 3, "threshold": 1000, "floatmode": "maxprec", "precision": 8,
    "suppress": False, "linewidth": 75, "nanstr": "nan", "infstr": "inf", "sign": "-",
    "formatter": None, "legacy": False,
}


def _torch() -> Any:
    return sys.modules.get("torch")


def _threads_default() -> int | None:
    t = _torch()
    return _THREADS.setdefault("n", t.get_num_threads()) if t is not None else None


_THREADS: Dict[str, int] = {}
if _torch() is not None:  # the count torch chose at start-up, before any notebook cell ran
    _threads_default()


@dataclass(frozen=True)
class Setting:
    """One global setting: how to read and write it, the engine's value (``default()``; None
    when the engine only restores it) and how a learner sets it (``how(value)``)."""

    name: str
    read: Callable[[], Any]
    write: Callable[[Any], None]
    default: Callable[[], Any] | None
    how: Callable[[Any], str]
    needs_torch: bool = False
    noted: bool = True  # a learner's call that changes it is named in the verdict


def _errstate_how(v: Dict[str, str]) -> str:
    if len(set(v.values())) == 1:
        return f"np.seterr(all={next(iter(v.values()))!r})"
    diff = {k: x for k, x in v.items() if NUMPY_ERRSTATE.get(k) != x}
    return "np.seterr(" + ", ".join(f"{k}={x!r}" for k, x in diff.items()) + ")"


def _printopt_read() -> Dict[str, Any]:
    opts = np.get_printoptions()
    return {k: opts.get(k) for k in NUMPY_PRINTOPTIONS}


def _printopt_how(v: Dict[str, Any]) -> str:
    diff = {k: x for k, x in v.items() if NUMPY_PRINTOPTIONS[k] != x}
    return "np.set_printoptions(" + ", ".join(f"{k}={x!r}" for k, x in diff.items()) + ")"


def _cwd_read() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the folder was deleted under the kernel
        return None


def _cwd_write(path: str | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            os.chdir(path)


def _filters_write(filters: list) -> None:
    warnings.filters[:] = filters
    warnings._filters_mutated()  # noqa: SLF001 - the documented way the module resets caches


def _filters_how(filters: list) -> str:
    if any(f[0] == "error" for f in filters):
        return "warnings.simplefilter('error') (warnings become exceptions)"
    return "changed the warnings filters"


def _deterministic_read() -> tuple:
    t = _torch()
    return (t.are_deterministic_algorithms_enabled(),
            t.is_deterministic_algorithms_warn_only_enabled())


def _deterministic_write(v: tuple) -> None:
    _torch().use_deterministic_algorithms(v[0], warn_only=v[1])


def _dtype_name(v: Any) -> str:
    return f"torch.{str(v).replace('torch.', '')}"


SETTINGS: List[Setting] = [
    Setting("NumPy's error state", np.geterr, lambda v: np.seterr(**v),
            lambda: dict(NUMPY_ERRSTATE), _errstate_how),
    Setting("NumPy's print options", _printopt_read, lambda v: np.set_printoptions(**v),
            lambda: dict(NUMPY_PRINTOPTIONS), _printopt_how),
    Setting("torch's default dtype", lambda: _torch().get_default_dtype(),
            lambda v: _torch().set_default_dtype(v), lambda: _torch().float32,
            lambda v: f"torch.set_default_dtype({_dtype_name(v)})", needs_torch=True),
    Setting("torch's grad mode", lambda: _torch().is_grad_enabled(),
            lambda v: _torch().set_grad_enabled(v), lambda: True,
            lambda v: f"torch.set_grad_enabled({v})", needs_torch=True),
    Setting("torch's anomaly mode", lambda: _torch().is_anomaly_enabled(),
            lambda v: _torch().set_anomaly_enabled(v), lambda: False,
            lambda v: f"torch.autograd.set_detect_anomaly({v})", needs_torch=True),
    Setting("torch's deterministic algorithms", _deterministic_read, _deterministic_write,
            lambda: (False, False),
            lambda v: f"torch.use_deterministic_algorithms({v[0]}"
                      + (", warn_only=True)" if v[1] else ")"), needs_torch=True),
    Setting("torch's thread count", lambda: _torch().get_num_threads(),
            lambda v: _torch().set_num_threads(v), _threads_default,
            lambda v: f"torch.set_num_threads({v})", needs_torch=True),
    Setting("the warnings filters", lambda: list(warnings.filters), _filters_write,
            None, _filters_how),
    Setting("the working directory", _cwd_read, _cwd_write, None,
            lambda v: f"os.chdir({v!r})"),
    Setting("torch's random generator", lambda: _torch().get_rng_state(),
            lambda v: _torch().set_rng_state(v), None, lambda v: "torch.manual_seed(...)",
            needs_torch=True, noted=False),
    Setting("NumPy's legacy random generator", np.random.get_state, np.random.set_state,
            None, lambda v: "np.random.seed(...)", noted=False),
    Setting("Python's random generator", random.getstate, random.setstate, None,
            lambda v: "random.seed(...)", noted=False),
]


def _live() -> List[Setting]:
    have_torch = _torch() is not None
    return [s for s in SETTINGS if have_torch or not s.needs_torch]


def snapshot() -> Dict[str, Any]:
    """Every setting's current value, by name."""
    return {s.name: s.read() for s in _live()}


def restore(snap: Dict[str, Any]) -> None:
    """Put every setting of ``snap`` back (settings that are unchanged are not touched)."""
    for s in _live():
        if s.name in snap and not _same(s.read(), snap[s.name]):
            with contextlib.suppress(Exception):
                s.write(snap[s.name])


def _same(a: Any, b: Any) -> bool:
    t = _torch()
    if t is not None and isinstance(a, t.Tensor):
        return isinstance(b, t.Tensor) and a.shape == b.shape and bool(t.equal(a, b))
    if isinstance(a, tuple) and len(a) == 5 and isinstance(a[1], np.ndarray):  # np.random
        return isinstance(b, tuple) and a[0] == b[0] and np.array_equal(a[1], b[1]) \
            and a[2:] == b[2:]
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001
        return False


def departures(snap: Dict[str, Any]) -> List[str]:
    """How the learner's state ``snap`` differs from the engine's, in the learner's words
    ("np.seterr(all='raise')"), one item per setting."""
    out = []
    for s in _live():
        if s.default is None or s.name not in snap:
            if s.name == "the warnings filters" and any(f[0] == "error" for f in snap.get(
                    s.name, ())):
                out.append(s.how(snap[s.name]))
            continue
        if not _same(snap[s.name], s.default()):
            out.append(s.how(snap[s.name]))
    return out


def changed(before: Dict[str, Any], after: Dict[str, Any]) -> List[str]:
    """The noted settings that differ between two snapshots, as "<name> (<how>)"."""
    return [f"{s.name} ({s.how(after[s.name])})" for s in _live()
            if s.noted and s.name in before and s.name in after
            and not _same(before[s.name], after[s.name])]


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def engine_state(seed: int | None = None) -> Iterator[None]:
    """Run trusted code in the engine's own state: NumPy's default error state and print
    options, float32 as torch's default dtype, grad mode on, anomaly mode and deterministic
    algorithms off, torch's start-up thread count, every warning ignored; with ``seed``,
    torch's generator seeded. Everything is put back on exit, the random generators included
    (trusted code never consumes the learner's draws). The working directory is left as it is
    (a process-wide folder change would reach every subprocess started meanwhile), unless it
    no longer exists.

    Most of these settings are process-wide, so only the main thread (a notebook's kernel)
    switches them; elsewhere (``gclab grade``'s worker threads, whose process runs no learner
    code) only NumPy's error state, which is per thread, is set."""
    if not in_main_thread():
        with np.errstate(**NUMPY_ERRSTATE):
            if seed is not None and _torch() is not None:
                _torch().manual_seed(seed)
            yield
        return
    saved = snapshot()
    try:
        with warnings.catch_warnings():
            warnings.resetwarnings()  # the learner's filters (an "error" one) do not apply
            warnings.simplefilter("ignore")
            for s in _live():
                if s.default is not None:
                    value = s.default()
                    if value is not None and not _same(saved[s.name], value):
                        s.write(value)
            if saved.get("the working directory", "") is None:
                _cwd_write(tempfile.gettempdir())
            if seed is not None and _torch() is not None:
                _torch().manual_seed(seed)
            yield
    finally:
        restore(saved)
