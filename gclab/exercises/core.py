r"""The exercise engine: register exercises, check learner code, diagnose mistakes, give hints.

Learner side::

    >>> from gclab.exercises import check, hint, catalog
    >>> result = check("rf.theoretical", theoretical_rf)   # CheckResult (HTML in Jupyter)
    >>> result.passed, result.status, result.diagnosis
    (False, 'failed', 'off by one: forgot the 1 (the centre pixel itself)')
    >>> hint("rf.theoretical", level=2)                     # 1 concept, 2 shapes, 3 pseudo-code

Author side: one content module per notebook (``gclab/exercises/nbNN_slug.py``) calls
:func:`register` with an :class:`Exercise`; see ``docs/exercises.md`` for the contract.

How a check works
-----------------
For every seed in ``Exercise.seeds`` the engine draws the cases (``cases(rng)``), runs the
learner's object and the reference on independent deep copies of the same inputs, and compares
the outputs by the CS231n relative error

.. math::

    \mathrm{err}(a, b) = \max_i \frac{|a_i - b_i|}{\max(10^{-8},\, |a_i| + |b_i|)}

(elements whose absolute difference is at most ``atol`` count as equal, so exact zeros computed
two ways do not blow up the ratio), against the stated tolerance ``rtol``. Shapes, dtypes,
containers, NaN/inf, input mutation and the exercise's :class:`Property` checks are verified
separately, each with its own message. When the output is wrong, every registered mistake
variant is run on the same inputs; the one whose output the learner's output matches is the
diagnosis (never string matching of code).

Robustness: the learner's calls run under a time limit (``SIGALRM`` via ``setitimer`` in the
main thread, which interrupts pure-Python loops and re-fires every 50 ms, so code that swallows
one exception does not escape it; elsewhere -- a non-main thread or a platform without
``SIGALRM`` -- the call runs in a daemon thread that is abandoned after the limit, so the verdict
still comes back but the runaway code keeps a core busy until the kernel restarts). Known limit:
code that catches ``BaseException`` inside an endless loop, or a single C call that never
returns, cannot be stopped from inside the process; ``gclab grade`` bounds those with its
subprocess time-out. stdout/stderr are captured and capped. Exceptions, ``None``, wrong
shapes/dtypes, NaN, mutated inputs, time-outs and megabytes of printing all give a failing
verdict with a message.

Grading hook: when the environment variable ``GCLAB_GRADE_LOG`` names a file, every
:func:`check` appends one JSON line ``{"id", "status", "passed", "message", ...}`` to it.
"""

from __future__ import annotations

import copy
import html
import io
import json
import numbers
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, NamedTuple, Sequence, Tuple

import numpy as np

__all__ = [
    "Case",
    "CheckItem",
    "CheckResult",
    "Exercise",
    "Hint",
    "Property",
    "catalog",
    "check",
    "get",
    "hint",
    "register",
]

KINDS = ("function", "value", "module")
STATUSES = ("passed", "failed", "not implemented")
#: Printing more than this many characters during one check fails it.
MAX_PRINTED_CHARS = 100_000
#: How much of the captured output a verdict shows.
SHOWN_PRINTED_CHARS = 300


# --------------------------------------------------------------------------------------------
# Data classes of the author side
# --------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One input of a check.

    ``kind="function"``: ``args``/``kwargs`` are passed to the learner's function and the
    reference. ``kind="module"``: ``args``/``kwargs`` go to the constructor and ``inputs`` to
    ``forward``. ``label`` names the case in the verdict (e.g. ``"(2,5,7)"``).
    """

    args: Tuple[Any, ...] = ()
    kwargs: Dict[str, Any] = field(default_factory=dict)
    inputs: Tuple[Any, ...] = ()
    label: str = ""


@dataclass
class Property:
    """A named property of the learner's output, checked on every case.

    ``fn(out, *args, **kwargs) -> bool`` for functions (the case's arguments), ``fn(out,
    *inputs)`` for modules, ``fn(value)`` for values. Returning a falsy value or raising fails it.
    """

    name: str
    fn: Callable[..., Any]


@dataclass
class Exercise:
    """One auto-checked exercise (see ``docs/exercises.md``).

    ``rtol`` is the tolerance on the CS231n relative error; ``atol`` an absolute floor below
    which two elements count as equal; ``seeds`` the seeds each ``cases(rng)`` is drawn with;
    ``time_limit`` the seconds allowed per learner call; ``randomize`` (modules only) gives the
    reference module random parameters (normal, std 0.3) before they are copied into the
    learner's, so a zero-initialised block cannot hide a mistake.
    """

    id: str
    notebook: str
    title: str
    kind: str = "function"
    reference: Any = None
    cases: Callable[[np.random.Generator], Sequence[Case]] | None = None
    rtol: float = 1e-7
    atol: float = 1e-12
    mistakes: Dict[str, Any] = field(default_factory=dict)
    properties: Sequence[Property] = ()
    hints: Sequence[str] = ()
    time_limit: float = 5.0
    seeds: Sequence[int] = (0, 1)
    randomize: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or "." not in self.id:
            raise ValueError(f"Exercise.id must look like '<topic>.<name>', got {self.id!r}")
        if self.kind not in KINDS:
            raise ValueError(f"Exercise {self.id}: kind must be one of {KINDS}, got {self.kind!r}")
        if not callable(self.reference):
            raise TypeError(
                f"Exercise {self.id}: reference must be callable, "
                f"got {type(self.reference).__name__}"
            )
        if self.kind != "value" and self.cases is None:
            raise ValueError(
                f"Exercise {self.id}: kind={self.kind!r} needs cases=lambda rng: [...]"
            )
        if not isinstance(self.mistakes, dict):
            raise TypeError(f"Exercise {self.id}: mistakes must be a dict name -> wrong variant")
        if not (self.rtol >= 0 and self.atol >= 0 and self.time_limit > 0):
            raise ValueError(
                f"Exercise {self.id}: need rtol >= 0, atol >= 0 and time_limit > 0, got "
                f"rtol={self.rtol!r}, atol={self.atol!r}, time_limit={self.time_limit!r}"
            )
        self.properties = tuple(self.properties)
        self.hints = tuple(self.hints)
        self.seeds = tuple(self.seeds)
        if not self.seeds:
            raise ValueError(f"Exercise {self.id}: seeds must not be empty")


_REGISTRY: Dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    """Add ``exercise`` to the catalog (re-registering the same id replaces it, so a content
    module can be reloaded). Returns the exercise."""
    if not isinstance(exercise, Exercise):
        raise TypeError(f"register() expects an Exercise, got {type(exercise).__name__}")
    _REGISTRY[exercise.id] = exercise
    return exercise


def get(exercise_id: str) -> Exercise:
    """The registered :class:`Exercise` with this id (``KeyError`` naming close ids if none)."""
    try:
        return _REGISTRY[exercise_id]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(str(exercise_id), list(_REGISTRY), n=3)
        extra = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"no exercise with id {exercise_id!r}{extra}") from None


class CatalogEntry(NamedTuple):
    id: str
    notebook: str
    title: str


class Catalog(list):
    """A list of :class:`CatalogEntry` that displays as a table in Jupyter."""

    def __str__(self) -> str:
        return "\n".join(f"{e.id:<28} {e.notebook:<26} {e.title}" for e in self)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td><code>{html.escape(e.id)}</code></td><td>{html.escape(e.notebook)}</td>"
            f"<td>{html.escape(e.title)}</td></tr>"
            for e in self
        )
        return (
            '<table class="gclab-catalog"><thead><tr><th>id</th><th>notebook</th><th>title</th>'
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )


def catalog(notebook: str | None = None) -> Catalog:
    """Every registered exercise as ``(id, notebook, title)``, sorted by notebook then order of
    registration; ``notebook="00_receptive_fields"`` keeps one lesson's."""
    entries = [
        CatalogEntry(e.id, e.notebook, e.title)
        for e in _REGISTRY.values()
        if notebook is None or e.notebook == notebook
    ]
    order = {k: i for i, k in enumerate(_REGISTRY)}
    entries.sort(key=lambda e: (e.notebook, order[e.id]))
    return Catalog(entries)


class Hint(str):
    """A hint (a ``str``) that renders as a small box in Jupyter."""

    def _repr_html_(self) -> str:
        return (
            '<div class="gclab-hint" style="border-left:4px solid #2b6cb0;padding:4px 10px;'
            f'background:#ebf4ff;white-space:pre-wrap">{html.escape(str(self))}</div>'
        )


_HINT_LEVELS = {1: "concept", 2: "shapes", 3: "pseudo-code"}


def hint(exercise_id: str, level: int = 1) -> Hint:
    """Hint ``level`` (1 = concept, 2 = shapes, 3 = pseudo-code) for an exercise."""
    ex = get(exercise_id)
    if isinstance(level, bool) or not isinstance(level, numbers.Integral) or level not in (1, 2, 3):
        raise ValueError(f"hint level must be 1, 2 or 3, got {level!r}")
    if len(ex.hints) < level:
        return Hint(f"[{ex.id}] no level-{level} hint for this exercise yet")
    return Hint(f"[{ex.id}] hint {level} ({_HINT_LEVELS[int(level)]}): {ex.hints[level - 1]}")


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
class CheckItem(NamedTuple):
    """One check that ran: its name, whether it passed, and what it found."""

    name: str
    passed: bool
    message: str


@dataclass
class CheckResult:
    """The verdict of :func:`check`.

    ``passed`` (bool), ``status`` ("passed" | "failed" | "not implemented"), ``checks`` (every
    :class:`CheckItem` that ran), ``diagnosis`` (the name of the mistake the output matches, or
    None), ``message`` (one line), ``printed`` (characters the learner's code printed).
    """

    id: str
    title: str
    status: str
    checks: List[CheckItem]
    message: str
    diagnosis: str | None = None
    rtol: float = 0.0
    printed: int = 0
    printed_text: str = ""
    not_run: int = 0

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __bool__(self) -> bool:
        return self.passed

    def summary(self) -> str:
        """One line: the verdict and how many public checks ran."""
        return f"{self.id}: {self.message}"

    def _lines(self) -> List[str]:
        mark = {"passed": "PASS", "failed": "FAIL", "not implemented": "TODO"}[self.status]
        lines = [f"[{mark}] {self.id} - {self.title}: {self.message}"]
        for c in self.checks:
            lines.append(f"  {'ok ' if c.passed else 'X  '} {c.name}: {c.message}")
        if self.not_run:
            lines.append(f"  ... {self.not_run} further check(s) not run after the first error")
        if self.diagnosis:
            lines.append(f"  Likely cause: {self.diagnosis}")
        if self.printed:
            lines.append(f"  Your code printed {self.printed} characters during the check.")
        if not self.passed:
            lines.append(f'  Stuck? hint("{self.id}", level=1)  (levels 1-3)')
        return lines

    def __str__(self) -> str:
        return "\n".join(self._lines())

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colours = {
            "passed": ("#276749", "#f0fff4"),
            "failed": ("#9b2c2c", "#fff5f5"),
            "not implemented": ("#975a16", "#fffff0"),
        }
        fg, bg = colours[self.status]
        esc = html.escape
        slug = self.status.replace(" ", "-")
        items = "".join(
            f'<li style="color:{"#276749" if c.passed else "#9b2c2c"}">'
            f"{'&#10003;' if c.passed else '&#10007;'} <b>{esc(c.name)}</b>: {esc(c.message)}</li>"
            for c in self.checks
        )
        if self.not_run:
            items += f"<li>{self.not_run} further check(s) not run after the first error</li>"
        parts = [
            f'<div class="gclab-verdict gclab-verdict-{slug}" data-exercise="{esc(self.id)}" '
            f'style="border:1px solid {fg};border-left:6px solid {fg};background:{bg};'
            f'color:#1a202c;padding:6px 10px;margin:4px 0;font-family:sans-serif;font-size:90%">',
            f'<div style="color:{fg}"><b>{esc(self.status.upper())}</b> &middot; '
            f"<code>{esc(self.id)}</code> &middot; {esc(self.title)}</div>",
            f"<div>{esc(self.message)}</div>",
        ]
        if self.diagnosis:
            parts.append(f"<div><b>Likely cause:</b> {esc(self.diagnosis)}</div>")
        if self.printed:
            parts.append(
                f"<div>Your code printed {self.printed} characters during the check.</div>"
            )
        if items:
            open_ = "" if self.passed else " open"
            parts.append(
                f"<details{open_}><summary>checks that ran ({len(self.checks)})</summary>"
                f'<ul style="margin:2px 0">{items}</ul></details>'
            )
        if not self.passed:
            parts.append(
                f'<div style="color:#4a5568">Stuck? <code>hint("{esc(self.id)}", level=1)</code>'
                " (levels 1-3)</div>"
            )
        parts.append("</div>")
        return "".join(parts)


# --------------------------------------------------------------------------------------------
# Running learner code safely
# --------------------------------------------------------------------------------------------
class _TimeLimit(BaseException):
    """Raised inside learner code when its time is up (a BaseException, so ``except Exception``
    in learner code cannot swallow it)."""


class _CappedStream(io.TextIOBase):
    """A text stream that counts everything written and keeps only the first ``cap`` chars."""

    def __init__(self, cap: int = SHOWN_PRINTED_CHARS) -> None:
        self.cap = cap
        self.count = 0
        self._kept: List[str] = []
        self._kept_len = 0

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


@dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None
    timed_out: bool = False
    tb: str = ""


def _can_use_alarm() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def _run_with_alarm(fn: Callable[[], Any], limit: float) -> _Outcome:
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
            return _Outcome(value=fn())
        finally:
            state["active"] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_handler)
            if old_delay > 0:  # someone else's timer (e.g. pytest-timeout): re-arm what is left
                left = max(1e-3, old_delay - (time.monotonic() - start))
                signal.setitimer(signal.ITIMER_REAL, left, old_interval)
    except _TimeLimit:
        return _Outcome(timed_out=True)
    except (Exception, SystemExit) as exc:  # the learner's error, reported in the verdict
        return _Outcome(error=exc, tb=_learner_frame(exc))


def _run_in_thread(fn: Callable[[], Any], limit: float) -> _Outcome:
    box: Dict[str, _Outcome] = {}

    def target():
        try:
            box["out"] = _Outcome(value=fn())
        except BaseException as exc:  # noqa: BLE001 - reported in the verdict
            box["out"] = _Outcome(error=exc, tb=_learner_frame(exc))

    worker = threading.Thread(target=target, daemon=True, name="gclab-check")
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        return _Outcome(timed_out=True)
    return box["out"]


def _learner_frame(exc: BaseException) -> str:
    """``line N in func`` of the innermost frame outside gclab's engine, or ''."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if "gclab/exercises/core" not in f.filename
    ]
    if not frames:
        return ""
    f = frames[-1]
    where = f" ({f.line.strip()})" if f.line else ""
    return f"line {f.lineno} in {f.name}{where}"


def _guarded(fn: Callable[[], Any], limit: float, out: _CappedStream) -> _Outcome:
    """Run ``fn()`` with a time limit and stdout/stderr captured into ``out``."""
    import contextlib

    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        if _can_use_alarm():
            return _run_with_alarm(fn, limit)
        return _run_in_thread(fn, limit)


def _describe_error(outcome: _Outcome, limit: float) -> str:
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
# Copying and comparing
# --------------------------------------------------------------------------------------------
def _torch():
    import sys

    return sys.modules.get("torch")


def _is_tensor(x: Any) -> bool:
    t = _torch()
    return t is not None and isinstance(x, t.Tensor)


def _clone(x: Any) -> Any:
    """An independent copy of a case's inputs (arrays, tensors, containers, anything else)."""
    if isinstance(x, np.ndarray):
        return x.copy()
    if _is_tensor(x):
        y = x.detach().clone()
        return y.requires_grad_(x.requires_grad) if y.is_floating_point() else y
    if isinstance(x, tuple):
        return tuple(_clone(v) for v in x)
    if isinstance(x, list):
        return [_clone(v) for v in x]
    if isinstance(x, dict):
        return {k: _clone(v) for k, v in x.items()}
    try:
        return copy.deepcopy(x)
    except Exception:  # noqa: BLE001 - uncopyable objects are passed as they are
        return x


def _identical(a: Any, b: Any) -> bool:
    """Exact equality (NaN equal to NaN) of two inputs, for the mutation check."""
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
        )
    if _is_tensor(a):
        t = _torch()
        return (
            _is_tensor(b)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool(t.equal(a.detach().nan_to_num(), b.detach().nan_to_num()))
        )
    if isinstance(a, (tuple, list)):
        return (
            isinstance(b, (tuple, list))
            and len(a) == len(b)
            and all(_identical(x, y) for x, y in zip(a, b))
        )
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(_identical(a[k], b[k]) for k in a)
        )
    t = _torch()
    if t is not None and isinstance(a, t.nn.Module):
        return isinstance(b, t.nn.Module) and _identical(dict(a.state_dict()), dict(b.state_dict()))
    if type(a).__eq__ is object.__eq__:  # identity equality says nothing about a copy
        return True
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001
        return True


def _to_numpy(x: Any) -> np.ndarray:
    if _is_tensor(x):
        x = x.detach().cpu()
        if x.dtype.is_complex:
            return x.resolve_conj().numpy()
        return x.numpy()
    return np.asarray(x)


def _rel_error(expected: np.ndarray, actual: np.ndarray, atol: float) -> float:
    """CS231n relative error, max over elements, ignoring differences <= atol."""
    e = expected.astype(np.float64) if expected.dtype.kind in "biu" else expected
    a = actual.astype(np.float64) if actual.dtype.kind in "biu" else actual
    if e.size == 0:
        return 0.0
    diff = np.abs(e - a)
    denom = np.maximum(1e-8, np.abs(e) + np.abs(a))
    err = np.where(diff <= atol, 0.0, diff / denom)
    return float(np.max(err))


def _typename(x: Any) -> str:
    if _is_tensor(x):
        return "torch.Tensor"
    if isinstance(x, np.ndarray):
        return "numpy.ndarray"
    return type(x).__name__


class _Mismatch(NamedTuple):
    ok: bool
    message: str
    error: float = 0.0
    value_only: bool = False  # False when the structure/shape/dtype/finiteness was wrong


def _compare(
    expected: Any,
    actual: Any,
    rtol: float,
    atol: float,
    where: str = "output",
    equal_nan: bool = False,
) -> _Mismatch:
    """Compare the learner's ``actual`` with ``expected`` and say what differs."""
    if actual is None and expected is not None:
        return _Mismatch(False, f"{where} is None (did you forget `return`?)")
    exp_arr = isinstance(expected, np.ndarray) or _is_tensor(expected)
    if exp_arr:
        if _is_tensor(expected) != _is_tensor(actual) or not (
            isinstance(actual, np.ndarray) or _is_tensor(actual)
        ):
            return _Mismatch(
                False, f"{where} is a {_typename(actual)}, expected a {_typename(expected)}"
            )
        e, a = _to_numpy(expected), _to_numpy(actual)
        if e.shape != a.shape:
            return _Mismatch(
                False, f"{where} has shape {tuple(a.shape)}, expected {tuple(e.shape)}"
            )
        if e.dtype != a.dtype:
            return _Mismatch(False, f"{where} has dtype {a.dtype}, expected {e.dtype}")
        return _compare_values(e, a, rtol, atol, where, equal_nan)
    if isinstance(expected, (bool, np.bool_)):
        if not isinstance(actual, (bool, np.bool_)):
            return _Mismatch(False, f"{where} is a {_typename(actual)}, expected a bool")
        if bool(actual) != bool(expected):
            return _Mismatch(
                False, f"{where} is {bool(actual)}, expected {bool(expected)}", 1.0, True
            )
        return _Mismatch(True, f"{where} is {bool(actual)}")
    if isinstance(expected, (numbers.Number, np.number)):
        if (
            isinstance(actual, (np.ndarray,))
            and actual.shape == ()
            or (_is_tensor(actual) and actual.numel() == 1 and actual.dim() == 0)
        ):
            actual = _to_numpy(actual)[()]
        if isinstance(actual, (bool, np.bool_)) or not isinstance(
            actual, (numbers.Number, np.number)
        ):
            return _Mismatch(False, f"{where} is a {_typename(actual)}, expected a number")
        return _compare_values(
            np.asarray(expected), np.asarray(actual), rtol, atol, where, equal_nan, scalar=True
        )
    if isinstance(expected, (tuple, list)):
        if not isinstance(actual, (tuple, list)):
            return _Mismatch(
                False, f"{where} is a {_typename(actual)}, expected a {_typename(expected)}"
            )
        if len(actual) != len(expected):
            return _Mismatch(False, f"{where} has {len(actual)} items, expected {len(expected)}")
        worst = _Mismatch(True, f"{where} matches", 0.0)
        for i, (e, a) in enumerate(zip(expected, actual)):
            r = _compare(e, a, rtol, atol, f"{where}[{i}]", equal_nan)
            if not r.ok:
                return r
            if r.error >= worst.error:
                worst = r
        return worst
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return _Mismatch(False, f"{where} is a {_typename(actual)}, expected a dict")
        if set(actual) != set(expected):
            missing = sorted(map(str, set(expected) - set(actual)))
            extra = sorted(map(str, set(actual) - set(expected)))
            return _Mismatch(False, f"{where} has keys missing {missing} / unexpected {extra}")
        worst = _Mismatch(True, f"{where} matches", 0.0)
        for k in expected:
            r = _compare(expected[k], actual[k], rtol, atol, f"{where}[{k!r}]", equal_nan)
            if not r.ok:
                return r
            if r.error >= worst.error:
                worst = r
        return worst
    try:
        same = bool(expected == actual)
    except Exception:  # noqa: BLE001
        same = False
    if not same:
        return _Mismatch(False, f"{where} is {actual!r:.80}, expected {expected!r:.80}", 1.0, True)
    return _Mismatch(True, f"{where} equals the reference")


def _compare_values(
    e: np.ndarray,
    a: np.ndarray,
    rtol: float,
    atol: float,
    where: str,
    equal_nan: bool,
    scalar: bool = False,
) -> _Mismatch:
    if e.dtype.kind in "fc" or a.dtype.kind in "fc":
        e_bad, a_bad = ~np.isfinite(e), ~np.isfinite(np.asarray(a, dtype=np.complex128))
        if a_bad.any() or e_bad.any():
            if not np.array_equal(e_bad, a_bad) or not np.array_equal(
                e[e_bad], a[a_bad], equal_nan=True
            ):
                if equal_nan and np.array_equal(e_bad, a_bad):
                    pass  # NaN where the other has NaN (or inf): same failure, compare the rest
                else:
                    n = int(a_bad.sum())
                    if n:
                        return _Mismatch(False, f"{where} contains {n} NaN/inf value(s)")
                    return _Mismatch(False, f"{where} is finite where the reference is NaN/inf")
            keep = ~(e_bad | a_bad)
            e, a = e[keep], a[keep]
    err = _rel_error(e, a, atol)
    if err > rtol:
        if scalar:
            return _Mismatch(
                False,
                f"{where} is {a[()].item()!r}, expected {e[()].item()!r} "
                f"(relative error {err:.2g})",
                err,
                True,
            )
        return _Mismatch(
            False, f"{where}: relative error {err:.2g} > tolerance {rtol:g}", err, True
        )
    return _Mismatch(True, f"relative error {err:.1g} <= {rtol:g}", err, True)


# --------------------------------------------------------------------------------------------
# The check itself
# --------------------------------------------------------------------------------------------
@dataclass
class _Trial:
    """One (seed, case) of a check: its inputs and the reference output."""

    label: str
    case: Case
    expected: Any
    seed: int


def _trials(ex: Exercise) -> List[_Trial]:
    trials: List[_Trial] = []
    if ex.kind == "value":
        return [_Trial("value", Case(label="value"), ex.reference(), 0)]
    multi = len(ex.seeds) > 1
    for seed in ex.seeds:
        rng = np.random.default_rng(seed)
        _seed_torch(seed)
        cases = list(ex.cases(rng))
        if not cases:
            raise ValueError(f"Exercise {ex.id}: cases(rng) returned no cases")
        for i, case in enumerate(cases):
            label = f"output on {case.label or f'case {i + 1}'}"
            if multi:
                label = f"{label} [seed {seed}]"
            expected = _run_reference(ex, ex.reference, case, seed * 1000 + i)
            trials.append(_Trial(label, case, expected, seed * 1000 + i))
    return trials


def _seed_torch(seed: int) -> None:
    t = _torch()
    if t is not None:
        t.manual_seed(seed)


def _randomize_module(module: Any, seed: int) -> None:
    t = _torch()
    gen = t.Generator().manual_seed(seed)
    with t.no_grad():
        for p in module.parameters():
            p.copy_(t.randn(p.shape, generator=gen, dtype=t.float64).to(p.dtype) * 0.3)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(t.randn(b.shape, generator=gen, dtype=t.float64).to(b.dtype) * 0.3)
            elif name.endswith("running_var"):
                b.copy_(t.rand(b.shape, generator=gen, dtype=t.float64).to(b.dtype) + 0.5)


def _build_reference_module(ex: Exercise, factory: Any, case: Case, seed: int) -> Any:
    _seed_torch(seed)
    module = factory(*_clone(case.args), **_clone(case.kwargs))
    if ex.randomize:
        _randomize_module(module, seed)
    module.eval()
    return module


def _run_reference(ex: Exercise, fn: Any, case: Case, seed: int) -> Any:
    """The reference's (or a mistake's) output on ``case`` (trusted code: no guard)."""
    if ex.kind == "function":
        return fn(*_clone(case.args), **_clone(case.kwargs))
    if ex.kind == "value":
        return fn()
    t = _torch()
    ref = _build_reference_module(ex, ex.reference, case, seed)
    module = (
        ref
        if fn is ex.reference
        else _load_into(fn(*_clone(case.args), **_clone(case.kwargs)), ref)
    )
    with t.no_grad():
        return module(*_clone(case.inputs))


def _load_into(module: Any, reference: Any) -> Any:
    module.load_state_dict(reference.state_dict(), strict=True)
    module.eval()
    return module


def check(exercise_id: str, obj: Any) -> CheckResult:
    """Check the learner's ``obj`` (a function, a value, or an ``nn.Module`` class) for one
    exercise and return a :class:`CheckResult` (``.passed``, ``.status``, ``.checks``,
    ``.diagnosis``); it renders as a coloured box in Jupyter and as text elsewhere.

    Example::

        >>> check("rf.layers_to_cover", lambda n, kernel=3: (n - 2) // (kernel - 1) + 1).passed
        True
    """
    ex = get(exercise_id)
    result = _check(ex, obj)
    _log(ex, result)
    return result


def _check(ex: Exercise, obj: Any) -> CheckResult:
    out = _CappedStream()
    checks: List[CheckItem] = []
    trials = _trials(ex)

    def finish(status: str, message: str, diagnosis: str | None = None, not_run: int = 0):
        printed = out.count
        if printed > MAX_PRINTED_CHARS:
            checks.append(
                CheckItem(
                    "output size",
                    False,
                    f"your code printed {printed:,} characters (limit {MAX_PRINTED_CHARS:,}); "
                    "remove the print statements",
                )
            )
            if status == "passed":
                status = "failed"
                message = (
                    f"your code printed {printed:,} characters (limit {MAX_PRINTED_CHARS:,}); "
                    "remove the print statements"
                )
            elif status == "failed":
                message = f"{message}; it also printed {printed:,} characters"
        return CheckResult(
            id=ex.id,
            title=ex.title,
            status=status,
            checks=checks,
            message=message,
            diagnosis=diagnosis,
            rtol=ex.rtol,
            printed=printed,
            printed_text=out.text,
            not_run=not_run,
        )

    # what kind of object did the learner hand in?
    if ex.kind == "function" and not callable(obj):
        checks.append(
            CheckItem("is a function", False, f"got a {_typename(obj)} object, expected a function")
        )
        return finish("failed", f"expected a function, got a {_typename(obj)} object")
    if ex.kind == "module" and not callable(obj):
        checks.append(
            CheckItem(
                "is a module class", False, f"got a {_typename(obj)}, expected an nn.Module class"
            )
        )
        return finish("failed", f"expected an nn.Module class, got a {_typename(obj)}")

    outputs: List[Any] = []
    failures = 0
    mutated: List[str] = []
    prop_fail: Dict[str, str] = {}

    for k, trial in enumerate(trials):
        outcome, kept_inputs, passed_inputs, build_error = _run_learner(ex, obj, trial, out)
        if build_error:
            checks.append(CheckItem(trial.label, False, build_error))
            return finish("failed", build_error, not_run=len(trials) - k - 1)
        if outcome.error is not None or outcome.timed_out:
            if isinstance(outcome.error, NotImplementedError):
                checks.append(CheckItem(trial.label, False, "not yet implemented"))
                return finish("not implemented", "not yet implemented", not_run=len(trials) - k - 1)
            msg = _describe_error(outcome, ex.time_limit)
            checks.append(CheckItem(trial.label, False, msg))
            return finish("failed", msg, not_run=len(trials) - k - 1)
        actual = outcome.value
        if ex.kind == "value" and callable(actual) and not callable(trial.expected):
            msg = f"got a {_typename(actual)}; pass the value itself (or call your function)"
            checks.append(CheckItem(trial.label, False, msg))
            return finish("failed", msg)
        outputs.append(actual)
        cmp = _compare(trial.expected, actual, ex.rtol, ex.atol)
        if cmp.ok:
            checks.append(CheckItem(trial.label, True, f"matches the reference ({cmp.message})"))
        else:
            failures += 1
            checks.append(CheckItem(trial.label, False, cmp.message))
        if ex.kind != "value" and not _identical(kept_inputs, passed_inputs):
            mutated.append(trial.label.replace("output on ", "", 1))
        for prop in ex.properties:
            if prop.name in prop_fail:
                continue
            ok, why = _check_property(ex, prop, actual, trial.case)
            if not ok:
                where = trial.label.replace("output on ", "", 1)
                prop_fail[prop.name] = f"fails on {where}" + (f": {why}" if why else "")

    if ex.kind != "value":
        checks.append(
            CheckItem(
                "inputs not mutated",
                not mutated,
                "your code left its inputs unchanged"
                if not mutated
                else f"your code modified its input arrays in place (on {mutated[0]}); "
                "work on a copy or use out-of-place operations",
            )
        )
    for prop in ex.properties:
        checks.append(
            CheckItem(
                prop.name,
                prop.name not in prop_fail,
                prop_fail.get(prop.name, "holds on every case"),
            )
        )

    n_bad = sum(not c.passed for c in checks)
    if n_bad == 0:
        n_out = len(trials)
        others = [c.name for c in checks[n_out:]]
        what = (
            "the value matches the reference"
            if ex.kind == "value"
            else f"output matches the reference on {n_out} case{'s' if n_out > 1 else ''} "
            f"({len(trials) // len(ex.seeds)} cases x {len(ex.seeds)} seeds)"
        )
        what = "; ".join([what, *others])
        msg = f"{len(checks)} public check{'s' if len(checks) != 1 else ''} passed: {what} "
        msg += f"(tolerance: relative error <= {ex.rtol:g})" if ex.rtol > 0 else "(exact match)"
        return finish("passed", msg)

    diagnosis = None
    if failures:  # wrong outputs (crashes returned earlier): which mistake gives them?
        diagnosis = _diagnose(ex, trials, outputs)
    first_bad = next(c for c in checks if not c.passed)
    msg = f"{n_bad} of {len(checks)} public checks failed; first: {first_bad.name}: "
    msg += first_bad.message
    return finish("failed", msg, diagnosis)


def _run_learner(ex: Exercise, obj: Any, trial: _Trial, out: _CappedStream):
    """Run the learner's object on one trial: (outcome, snapshot, inputs-as-passed, build_error)."""
    case = trial.case
    limit = ex.time_limit
    if ex.kind == "value":
        if callable(obj) and not callable(trial.expected):
            return _guarded(obj, limit, out), None, None, None
        return _Outcome(value=obj), None, None, None
    if ex.kind == "function":
        snapshot = (_clone(case.args), _clone(case.kwargs))
        passed = (_clone(case.args), _clone(case.kwargs))
        outcome = _guarded(lambda: obj(*passed[0], **passed[1]), limit, out)
        return outcome, snapshot, passed, None
    # module: build the learner's module, load the reference weights, run forward
    t = _torch()
    ref = _build_reference_module(ex, ex.reference, case, trial.seed)
    built = _guarded(lambda: obj(*_clone(case.args), **_clone(case.kwargs)), limit, out)
    if built.error is not None or built.timed_out:
        return built, None, None, None
    module = built.value
    if t is None or not isinstance(module, t.nn.Module):
        return _Outcome(), None, None, f"building it gave a {_typename(module)}, not an nn.Module"
    try:
        _load_into(module, ref)
    except Exception as exc:  # noqa: BLE001 - reported in the verdict
        text = str(exc).replace("\n\t", " ").replace("\n", " ")
        return (
            _Outcome(),
            None,
            None,
            (
                "its parameters do not match the reference's (names/shapes of the state_dict): "
                + text[:400]
            ),
        )
    snapshot = _clone(case.inputs)
    passed = _clone(case.inputs)

    def forward():
        with t.no_grad():
            return module(*passed)

    return _guarded(forward, limit, out), snapshot, passed, None


def _check_property(ex: Exercise, prop: Property, actual: Any, case: Case) -> Tuple[bool, str]:
    try:
        if ex.kind == "function":
            ok = prop.fn(actual, *_clone(case.args), **_clone(case.kwargs))
        elif ex.kind == "module":
            ok = prop.fn(actual, *_clone(case.inputs))
        else:
            ok = prop.fn(actual)
    except Exception as exc:  # noqa: BLE001 - a property that cannot be evaluated fails
        return False, f"could not be evaluated ({type(exc).__name__}: {exc})"
    if isinstance(ok, tuple):
        return bool(ok[0]), str(ok[1]) if len(ok) > 1 else ""
    return bool(ok), ""


def _diagnose(ex: Exercise, trials: List[_Trial], outputs: List[Any]) -> str | None:
    """The name of the first mistake whose output the learner's output matches on every case."""
    if len(outputs) != len(trials):
        return None
    for name, variant in ex.mistakes.items():
        try:
            for trial, actual in zip(trials, outputs):
                if ex.kind == "value":
                    wrong = variant()
                else:
                    wrong = _run_reference(ex, variant, trial.case, trial.seed)
                if not _compare(wrong, actual, ex.rtol, ex.atol, equal_nan=True).ok:
                    break
            else:
                return name
        except Exception:  # noqa: BLE001 - a variant that crashes on these inputs matches nothing
            continue
    return None


def _log(ex: Exercise, result: CheckResult) -> None:
    path = os.environ.get("GCLAB_GRADE_LOG")
    if not path:
        return
    record = {
        "id": ex.id,
        "notebook": ex.notebook,
        "status": result.status,
        "passed": result.passed,
        "message": result.message,
        "diagnosis": result.diagnosis,
        "checks_passed": sum(c.passed for c in result.checks),
        "checks_total": len(result.checks),
    }
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
