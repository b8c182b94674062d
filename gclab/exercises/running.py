"""Running learner code under limits: a time limit, a cap on what it prints, and a readable
description of what it raised."""


import io
import os
import pickle
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Sequence

#: Printing more than this many characters during one check fails it.
MAX_PRINTED_CHARS = 100_000
#: How much of the captured output a verdict shows.
SHOWN_PRINTED_CHARS = 300

# --------------------------------------------------------------------------------------------
# Running learner code safely
# --------------------------------------------------------------------------------------------
class _TimeLimit(BaseException):
    """Raised inside learner code when its time is up (a BaseException, so ``except Exception``
    in learner code cannot swallow it)."""


class CappedStream(io.TextIOBase):
    """A text stream that counts everything written and keeps only the first ``cap`` chars.

    It also collects what else the learner's calls of one check left behind: ``warnings``
    (``"RuntimeWarning: overflow encountered in exp (line 3)"``, the first few) with their
    count ``warned``, and ``changes`` (global settings a call changed, see
    :func:`gclab.exercises.globalstate.changed`). ``state``, when set, is the learner's snapshot
    of the global settings: :func:`guarded` runs each call in it and then puts the engine's back.
    """

    def __init__(self, cap: int = SHOWN_PRINTED_CHARS) -> None:
        self.cap = cap
        self.count = 0
        self._kept: List[str] = []
        self._kept_len = 0
        self.warnings: List[str] = []
        self.warned = 0
        self.changes: List[str] = []
        self.state: Dict[str, Any] | None = None

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        s = str(s)
        self.count += len(s)
        if self._kept_len < self.cap:
            piece = s[: self.cap - self._kept_len]
            self._kept.append(piece)
            self._kept_len += len(piece)
        return len(s)

    def flush(self) -> None:
        pass

    @property
    def text(self) -> str:
        return "".join(self._kept)

    def fresh(self) -> "CappedStream":
        """An empty stream for one call, in the same (learner's) global state."""
        sub = CappedStream(self.cap)
        sub.state = self.state
        return sub

    def add(self, text: str, count: int, warned: int = 0, warnings: Sequence[str] = (),
            changes: Sequence[str] = ()) -> None:
        """Take in what a call run elsewhere (another stream, a forked child, the sandbox)
        printed (``text``: the first characters of ``count``), warned and changed."""
        self.write(text)
        self.count += max(0, count - len(text))
        self.warned += warned
        for w in warnings:
            if w not in self.warnings and len(self.warnings) < 3:
                self.warnings.append(w)
        for c in changes:
            if c not in self.changes:
                self.changes.append(c)

    def add_stream(self, other: "CappedStream") -> None:
        """Take in everything ``other`` collected."""
        self.add(other.text, other.count, other.warned, other.warnings, other.changes)


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None
    timed_out: bool = False
    tb: str = ""


def _can_use_alarm() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def _run_with_alarm(fn: Callable[[], Any], limit: float) -> Outcome:
    state = {"active": True}

    def on_alarm(signum, frame):  # noqa: ARG001
        if state["active"]:
            raise _TimeLimit()

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, old_interval = signal.getitimer(signal.ITIMER_REAL)
    start = time.monotonic()
    # re-fire every 50 ms until cancelled: learner code that swallows one alarm gets another
    signal.setitimer(signal.ITIMER_REAL, limit, 0.05)
    try:
        try:
            return Outcome(value=fn())
        finally:
            state["active"] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_handler)
            if old_delay > 0:  # someone else's timer (e.g. pytest-timeout): re-arm what is left
                left = max(1e-3, old_delay - (time.monotonic() - start))
                signal.setitimer(signal.ITIMER_REAL, left, old_interval)
    except _TimeLimit:
        return Outcome(timed_out=True)
    except (Exception, SystemExit) as exc:  # the learner's error, reported in the verdict
        return Outcome(error=exc, tb=_learner_frame(exc))


def _run_in_thread(fn: Callable[[], Any], limit: float) -> Outcome:
    box: Dict[str, Outcome] = {}

    def target():
        try:
            box["out"] = Outcome(value=fn())
        except BaseException as exc:  # noqa: BLE001 - reported in the verdict
            box["out"] = Outcome(error=exc, tb=_learner_frame(exc))

    worker = threading.Thread(target=target, daemon=True, name="gclab-check")
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        return Outcome(timed_out=True)
    return box["out"]


#: Files of the engine and the grader (not of the lessons): their frames are not the learner's.
_ENGINE_FILE = re.compile(r"[/\\]gclab[/\\](exercises|grading)[/\\]\w+\.py$")


def _learner_frame(exc: BaseException) -> str:
    """``line N in func`` of the innermost frame outside gclab's engine, or ''."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not _ENGINE_FILE.search(f.filename)
    ]
    if not frames:
        return ""
    f = frames[-1]
    where = f" ({f.line.strip()})" if f.line else ""
    return f"line {f.lineno} in {f.name}{where}"


def guarded(fn: Callable[[], Any], limit: float, out: CappedStream) -> Outcome:
    """Run ``fn()`` with a time limit, stdout/stderr captured into ``out`` and the warnings it
    issues recorded there (not printed: a warning is not something the learner printed). With
    ``out.state`` set, ``fn`` runs in that (the learner's) global state, what it changes there is
    recorded in ``out.changes``, and the caller's state is put back afterwards."""
    import contextlib

    from gclab.exercises import globalstate

    engine = learner = None
    if out.state is not None:
        engine, learner = globalstate.snapshot(), out.state
        globalstate.restore(learner)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), \
                warnings.catch_warnings(record=True) as caught:
            outcome = _run_with_alarm(fn, limit) if _can_use_alarm() else _run_in_thread(fn, limit)
        _record_warnings(caught, out)
    finally:
        if engine is not None:
            after = globalstate.snapshot()
            for change in globalstate.changed(learner, after):
                if change not in out.changes:
                    out.changes.append(change)
            globalstate.restore(engine)
    return outcome


def _record_warnings(caught: List[warnings.WarningMessage], out: CappedStream) -> None:
    for w in caught:
        out.warned += 1
        if len(out.warnings) < 3:
            where = f" (line {w.lineno})" if w.lineno else ""
            text = f"{w.category.__name__}: {w.message}{where}"
            if text not in out.warnings:
                out.warnings.append(text)


def describe_error(outcome: Outcome, limit: float) -> str:
    if outcome.timed_out:
        return (
            f"did not finish within the time limit of {limit:g} s "
            "(an endless loop? a very slow loop over elements?)"
        )
    exc = outcome.error
    if isinstance(exc, SystemExit):
        return "called sys.exit() / exit(); return a value instead"
    msg = str(exc)
    if len(msg) > 300:
        msg = msg[:300] + "..."
    where = f" at {outcome.tb}" if outcome.tb else ""
    return f"raised {type(exc).__name__}: {msg}{where}"


# --------------------------------------------------------------------------------------------
# A call run apart: for the cases only a formula reaches
# --------------------------------------------------------------------------------------------
#: Memory a call run apart may map on top of what the process had when it forked.
APART_MEMORY = 2 << 30
#: Seconds a call run apart gets on top of its time limit (the fork, the reply).
APART_SLACK = 2.0


def guarded_apart(fn: Callable[[], Any], limit: float, out: CappedStream) -> Outcome:
    """:func:`guarded` in a forked child process that may map at most :data:`APART_MEMORY`
    more and is killed at the time limit: a loop in C that never looks at signals
    (``sum(range(10**12))``) or an allocation of terabytes ends there, not in the learner's
    process. What the call printed and warned comes back into ``out``. Where there is no fork
    (not Linux, or no process may be started), it is :func:`guarded`."""
    if not sys.platform.startswith("linux"):
        return guarded(fn, limit, out)
    read, write = os.pipe()
    try:
        pid = os.fork()
    except OSError:  # no process left to start (a sandbox's limit): run it here
        os.close(read)
        os.close(write)
        return guarded(fn, limit, out)
    if pid == 0:  # the child: run, send the outcome, and leave without cleaning up
        try:
            os.close(read)
            _cap_memory(APART_MEMORY)
            sub = CappedStream()
            sub.state = out.state
            with os.fdopen(write, "wb") as pipe:
                pipe.write(_pack(guarded(fn, limit, sub), sub))
        finally:
            os._exit(0)
    os.close(write)
    data = _read_until(read, time.monotonic() + limit + APART_SLACK)
    if data is None:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    if data is None:
        return Outcome(timed_out=True)
    if not data:
        return Outcome(error=MemoryError("the call ended its process (out of memory?)"))
    value, error, timed_out, tb, text, count, warned, warns = pickle.loads(data)
    out.add(text, count, warned, warns)
    return Outcome(value=value, error=error, timed_out=timed_out, tb=tb)


def _pack(outcome: Outcome, sub: CappedStream) -> bytes:
    error, value = outcome.error, outcome.value
    try:
        pickle.dumps(error)
    except Exception:  # noqa: BLE001 - an exception class of the learner's
        error = RuntimeError(f"{type(error).__name__}: {error}")
    try:
        pickle.dumps(value)
    except Exception:  # noqa: BLE001
        value, error = None, TypeError(f"returned a {type(value).__name__}, which cannot be "
                                       "checked (it cannot be copied)")
    return pickle.dumps((value, error, outcome.timed_out, outcome.tb, sub.text, sub.count,
                         sub.warned, sub.warnings))


def _cap_memory(extra: int) -> None:
    """Let this process map at most ``extra`` bytes more than it does now."""
    try:
        import resource

        with open("/proc/self/status") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = kib * 1024 + extra
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (OSError, ValueError, StopIteration):
        pass  # no cap: the time limit still ends the call


def _read_until(fd: int, deadline: float) -> bytes | None:
    """Everything written to ``fd`` until it closes, or None at the deadline."""
    import select

    chunks: List[bytes] = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)
