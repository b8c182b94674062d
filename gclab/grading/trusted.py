"""The trusted side of ``gclab grade``: verdicts computed where no learner code runs.

The learner's notebook runs in a sandbox (:mod:`gclab.grading.sandbox`). This module, in the
grader's own process, decides which object answers which exercise, draws the cases, computes the
references (and the registered mistakes, for the diagnosis) itself, sends only the *inputs* into
the sandbox, and compares the outputs that come back -- as data (:mod:`gclab.grading.wire`) --
with :func:`gclab.exercises.core.judge`, the same code that gives a learner's ``check`` its
verdict; inside the sandbox the learner's object is called by the same code as in ``check``
(:func:`gclab.exercises.calls.perform`; :class:`SandboxRunner` sends the requests). The
expected outputs never exist in the sandbox, so nothing there (a patched engine, a forged log,
a function that walks the stack) can see or change them.

Which object: the object the notebook's ``check(id, obj)`` call handed in (the sandbox's
``check`` only records it); for an exercise of the lesson whose check never ran, the name the
instructor's lesson source checks (``notebooks/src/<lesson>.py``). Either way the grader chooses
the inputs, so pointing a check at another object gains nothing.

The cases are drawn from seeds secret to each grading run (:func:`secret_seeds`), so no table
of answers made beforehand matches them. The sandbox imports gclab from a copy without the
answers (:mod:`gclab.grading.view`; which code: :func:`gclab.grading.reference_code.
answer_code`); a call into one of its stubs, or (second line, a profiler) into gclab's own
implementation of the exercise, fails it with "uses the reference implementation". Replies are
decoded outside the lock the batch shares, within the submission's own time; a reply that is
not an answer is that exercise's verdict.
"""

from __future__ import annotations

import builtins
import copy
import hashlib
import pickle
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple

from gclab.exercises.calls import Played, Request
from gclab.exercises.core import judge
from gclab.exercises.registry import Case, Exercise
from gclab.exercises.running import CappedStream, Outcome
from gclab.exercises.trials import check_property, trials
from gclab.exercises.verdict import CheckItem, CheckResult
from gclab.grading import wire
from gclab.grading.reference_code import GCLAB_DIR, answer_code, checked_names, forbidden_code
from gclab.grading.sandbox import Sandbox, SandboxBroken
from gclab.grading.view import view_for

#: The grader's lock: the engine's references use torch's global RNG, one thread at a time (a
#: :class:`SandboxRunner` releases it while the sandbox works)
LOCK = threading.Lock()
#: Seconds a call into the sandbox may take beyond the exercise's own time limit.
CALL_SLACK = 20.0
_RUN_SECRET = secrets.token_hex(16)  # drawn once per grading process: the cases' seeds
_SEEDS: Dict[str, Tuple[int, ...]] = {}  # exercise id -> its seeds in this process

# --------------------------------------------------------------------------------------------
# Running the learner's object in the sandbox: the runner of core.judge
# --------------------------------------------------------------------------------------------
class Answer:
    """Stands for the learner's object in the grader (callable when the object is)."""

    def __init__(self, target: dict, callable_: bool, type_name: str) -> None:
        self.target = target
        self.callable = callable_
        self.type_name = type_name
        self.reference: str | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # only the runner calls it, remotely
        raise RuntimeError("the learner's object lives in the sandbox")

    def stand_in(self) -> Any:
        """What core.judge sees as the learner's object (it only asks callable() and the
        type)."""
        if self.callable:
            return self
        return type(_safe_name(self.type_name), (), {})()


def answer_in(box: Sandbox, target: dict) -> Answer | None:
    """The sandbox's ``target`` (``{"check": id}`` or ``{"name": name}``) as the grader sees
    it, or None when it is not there."""
    box.send({"op": "describe", "target": target})
    info, _ = box.receive(CALL_SLACK)
    if not info.get("found"):
        return None
    return Answer(target, bool(info.get("callable")), str(info.get("type", "object")))


def _safe_name(name: str) -> str:
    name = re.sub(r"[^\w.]", "_", str(name))[:60]
    return name or "object"


def _exception(type_name: str, message: str) -> BaseException:
    name = _safe_name(type_name)
    builtin = getattr(builtins, name, None)
    if isinstance(builtin, type) and issubclass(builtin, BaseException):
        if builtin is SystemExit:
            return SystemExit()
        try:
            return builtin(message)
        except Exception:  # noqa: BLE001
            pass
    return type(name, (Exception,), {})(message)


def _pickled(payload: Any) -> bytes | None:
    """The grader's inputs as bytes for the sandbox (pickle, else cloudpickle), or None."""
    try:
        return pickle.dumps(payload, protocol=4)
    except Exception:  # noqa: BLE001 - lambdas and local functions
        pass
    try:
        import cloudpickle

        return cloudpickle.dumps(payload, protocol=4)
    except Exception:  # noqa: BLE001
        return None


def _strings(sent: Any, most: int, chars: int) -> List[str]:
    """The sandbox's strings in ``sent`` (at most ``most``, each cut to ``chars``)."""
    items = sent if isinstance(sent, list) else []
    return [item[:chars] for item in items if isinstance(item, str)][:most]


def _count(x: Any) -> int:
    try:
        return max(0, int(x))
    except (TypeError, ValueError, OverflowError):
        return 0


class SandboxRunner:
    """The :class:`gclab.exercises.runner.Runner` of ``gclab grade``: the learner's object lives
    in the sandbox, each :class:`Request` is one message, and the worker performs it with
    :func:`gclab.exercises.calls.perform` (the code ``check`` uses)."""

    def __init__(self, box: Sandbox, answer: Answer, forbidden: List[list]) -> None:
        self.box = box
        self.answer = answer
        self.forbidden = forbidden

    def _ask(self, ex: Exercise, header: dict, payload: Any, out: CappedStream) -> tuple:
        """``(reply header, decoded data)``: the data decoded outside the batch's lock, within
        this submission's own time (a :class:`wire.WireError` when it could not be)."""
        # grader -> sandbox may be pickled (the grader's own objects, e.g. a network to probe);
        # sandbox -> grader is data only (wire.loads, no pickle)
        blob = _pickled(payload) if payload is not None else b""
        if blob is None:
            return {"outcome": "broken", "message": "its inputs could not be sent"}, None
        header = {
            "op": "call",
            "target": self.answer.target,
            "kind": ex.kind,
            "time_limit": ex.time_limit,
            "forbidden": self.forbidden,
            **header,
        }
        value: Any = None
        LOCK.release()  # the sandbox works; other notebooks' graders may compute meanwhile
        try:
            self.box.send(header, blob)
            reply, data = self.box.receive(ex.time_limit + CALL_SLACK)
            if data:
                try:
                    value = wire.loads(data, self.box.deadline)
                except wire.WireError as exc:
                    value = exc
        finally:
            LOCK.acquire()
        out.add(str(reply.get("printed_text", ""))[:2000], _count(reply.get("printed", 0)),
                _count(reply.get("warned", 0)), _strings(reply.get("warnings"), 3, 300),
                _strings(reply.get("changes"), 5, 200))
        if reply.get("reference") and self.answer.reference is None:
            self.answer.reference = str(reply["reference"])[:120]
        return reply, value

    def _outcome(self, reply: dict, value: Any) -> Tuple[Outcome, Any]:
        kind = reply.get("outcome")
        if kind == "ok":
            if isinstance(value, wire.WireError) or value is None:
                why = f"its output could not be read ({value or 'no data'})"
                return Outcome(error=RuntimeError(why)), None
            return Outcome(value=None), value
        if kind == "timeout":
            return Outcome(timed_out=True), None
        if kind == "error":
            exc = _exception(str(reply.get("type", "Exception")), str(reply.get("message", "")))
            return Outcome(error=exc, tb=str(reply.get("where", ""))), None
        if kind == "unsendable":
            msg = "returned something that cannot be graded: " + str(reply.get("message", ""))
            return Outcome(error=_exception("ValueError", msg)), None
        msg = str(reply.get("message", "")) or "the sandbox could not run it"
        return Outcome(error=_exception("RuntimeError", msg)), None

    def play(self, ex: Exercise, obj: Any, request: Request, out: CappedStream) -> Played:
        """Send ``request`` to the sandbox; its reply as a :class:`Played` (the inputs as the
        learner's code left them rebuilt here, modules from the grader's own copies)."""
        header = {"call_it": request.call_it, "apart": request.apart}
        payload = {
            "value": None,
            "function": (request.args, request.kwargs),
            "module": (request.args, request.kwargs, dict(request.state or {}), request.inputs),
        }[ex.kind]
        reply, data = self._ask(ex, header, payload, out)
        if reply.get("outcome") == "refused":
            refusal = (str(reply.get("refusal", ""))[:40], str(reply.get("detail", ""))[:1000])
            return Played(Outcome(), refusal, _skeleton(data) if data is not None else None)
        outcome, result = self._outcome(reply, data)
        if result is None:
            return Played(outcome)
        if ex.kind == "value":
            outcome.value = _part(result, 1)[0]
            return Played(outcome)
        if ex.kind == "function":
            outcome.value, args, kwargs = _part(result, 3)
            sent = (request.args, request.kwargs)
            return Played(outcome, inputs_after=_rehydrate(sent, (args, kwargs)))
        outcome.value, inputs = _part(result, 2)
        return Played(outcome, inputs_after=_rehydrate(request.inputs, inputs))

    def fresh_module(self, ex: Exercise, obj: Any, case: Case, out: CappedStream) -> Any:
        """The sandbox builds the learner's module afresh and sends its tree as data; this is
        its skeleton (no learner code), or None."""
        reply, data = self._ask(ex, {"op": "structure"}, (case.args, case.kwargs), out)
        if reply.get("outcome") != "ok" or data is None:
            return None
        return _skeleton(data)


class MalformedReply(ValueError):
    """The sandbox's reply does not have the shape of an answer."""


def _part(result: Any, n: int) -> tuple:
    """``result`` as the tuple of ``n`` parts the worker sends; MalformedReply otherwise."""
    if not isinstance(result, tuple) or len(result) != n:
        raise MalformedReply(f"expected {n} parts, got a {type(result).__name__}")
    return result


def _skeleton(data: Any) -> Any:
    from gclab.grading import skeleton

    if isinstance(data, wire.WireError):
        return None
    try:
        return skeleton.rebuild(data)
    except Exception:  # noqa: BLE001 - a malformed description: no structure to check
        return None


def _rehydrate(original: Any, returned: Any) -> Any:
    """The inputs as the sandbox left them, with every nn.Module (sent back as its state_dict)
    rebuilt from the grader's own copy, for the mutation check."""
    if isinstance(returned, wire.ModuleState):
        try:
            module = copy.deepcopy(original)
            module.load_state_dict(dict(returned), strict=True)
            return module
        except Exception:  # noqa: BLE001 - a changed architecture counts as a mutation
            return wire.Opaque("nn.Module")
    if isinstance(original, (tuple, list)) and isinstance(returned, (tuple, list)):
        if len(original) == len(returned):
            return type(returned)(_rehydrate(o, r) for o, r in zip(original, returned))
    if isinstance(original, dict) and isinstance(returned, dict) and (
            original.keys() == returned.keys()):
        return {k: _rehydrate(original[k], returned[k]) for k in returned}
    return returned


def secret_seeds(ex) -> Tuple[int, ...]:
    """The seeds ``ex``'s cases are drawn with in this grading run: as many as the exercise
    names, derived from a secret drawn once per process, so that no table of answers made
    beforehand matches them (the same for every notebook of one batch). Seeds whose cases the
    reference itself does not pass (a property such as "sums to 1" that a draw can break) are
    skipped; after a few such draws the exercise's own seeds are used. Call under the lock."""
    if ex.id in _SEEDS:
        return _SEEDS[ex.id]
    chosen = tuple(ex.seeds)
    for attempt in range(4):
        digest = hashlib.sha256(f"{_RUN_SECRET}:{ex.id}:{attempt}".encode()).digest()
        first = int.from_bytes(digest[:4], "big") % (2**31 - 1000)
        seeds = tuple(first + k for k in range(len(ex.seeds)))
        if ex.kind == "value" or _reference_passes(ex, seeds):
            chosen = seeds
            break
    _SEEDS[ex.id] = chosen
    return chosen


def _reference_passes(ex, seeds: Tuple[int, ...]) -> bool:
    """Whether the reference's own outputs on the cases of ``seeds`` have every property."""
    drawn = copy.copy(ex)
    drawn.seeds = seeds
    try:
        for trial in trials(drawn):
            for prop in ex.properties:
                if not check_property(ex, prop, trial.expected, trial.case)[0]:
                    return False
    except Exception:  # noqa: BLE001 - cases that break the reference are no cases
        return False
    return True


def in_view(keys: List[list], box: Sandbox) -> List[list]:
    """Tripwire keys (file, line, qualname) as the sandbox sees them: (file in its view,
    qualname)."""
    out = []
    for filename, _line, qualname in keys:
        try:
            rel = Path(filename).resolve().relative_to(Path(GCLAB_DIR).resolve())
        except ValueError:
            continue
        out.append([box.view_file(rel), qualname])
    return out


def remote_check(box: Sandbox, ex, target: dict):
    """The verdict (a CheckResult) on the sandbox's ``target`` for exercise ``ex``, or None when
    the target is not there. Its cases are drawn with :func:`secret_seeds`."""
    answer = answer_in(box, target)
    if answer is None:
        return None
    drawn = copy.copy(ex)
    with LOCK:  # drawing the seeds runs the reference, which uses torch's global RNG
        drawn.seeds = secret_seeds(ex)
        forbidden = forbidden_code(ex, trials(ex)) if ex.kind != "value" else []
        try:
            result = judge(drawn, answer.stand_in(),
                           runner=SandboxRunner(box, answer, in_view(forbidden, box)))
        except SandboxBroken:
            raise
        except Exception as exc:  # noqa: BLE001 - a reply that is not an answer: its verdict
            why = f"the sandbox's reply could not be read ({type(exc).__name__})"
            return CheckResult(ex.id, ex.title, "failed", [CheckItem("ran", False, why)], why)
    if answer.reference:
        result.status = "failed"
        # a wrong build (SEBlock handed in whole) still says what the exercise asked for
        structure = {p.name for p in ex.structure}
        result.diagnosis = next((c.message for c in result.checks
                                 if c.name in structure and not c.passed), None)
        result.message = (
            f"uses the reference implementation (it calls gclab's {answer.reference}); "
            "write your own"
        )
    return result


# --------------------------------------------------------------------------------------------
# One notebook
# --------------------------------------------------------------------------------------------
@dataclass
class SandboxRun:
    """How one notebook's run ended and the verdicts computed on it."""

    outcome: str  # "completed" | "kernel died" | "timed out" | "error"
    detail: str = ""
    cell: int | None = None
    seconds: float = 0.0
    verdicts: Dict[str, Any] = field(default_factory=dict)  # id -> CheckResult
    output: str = ""
    memory: str = ""  # why the memory limit may be the cause of what went wrong ("" if not)
    disk: str = ""  # which limit of its folder (bytes, files) it reached ("" if none)


def run_and_grade(
    cells: List[str],
    lesson: str,
    exercises: List[Any],
    timeout: float,
    memory: int,
    use_bwrap: bool | None = None,
) -> SandboxRun:
    """Execute the code ``cells`` in a sandbox and grade ``exercises`` (Exercise objects)."""
    wanted = {ex.id: ex for ex in exercises}
    names = checked_names(lesson)
    run = SandboxRun("error")
    current = None  # the exercise being checked, if any
    start = time.monotonic()
    with LOCK:
        answers = answer_code(exercises)
    view = view_for(lesson, answers)
    with Sandbox(timeout, memory, use_bwrap=use_bwrap, view=view) as box:
        try:
            box.send({"op": "run", "cells": cells})
            while True:
                header, _ = box.receive()
                ev = header.get("ev")
                if ev == "cell":
                    n = header.get("n")
                    run.cell = n if isinstance(n, int) and 0 < n <= len(cells) else run.cell
                elif ev == "check":
                    ex = wanted.get(header.get("id"))
                    if ex is not None:
                        current = ex
                        result = remote_check(box, ex, {"check": ex.id})
                        current = None
                        if result is not None:
                            run.verdicts[ex.id] = result
                    box.send({"op": "resume"})
                elif ev == "end":
                    for ex in exercises:  # no check ran: the name the lesson checks
                        if ex.id not in run.verdicts and ex.id in names:
                            current = ex
                            result = remote_check(box, ex, {"name": names[ex.id]})
                            current = None
                            if result is not None:
                                run.verdicts[ex.id] = result
                    run.outcome = "completed"
                    box.send({"op": "exit"})
                    break
        except SandboxBroken as exc:
            run.outcome = exc.outcome
            run.detail = exc.detail
            if current is not None:  # it broke while one of its calls ran: that one failed
                why = {"timed out": f"did not return within its time limit ({exc.detail})",
                       "kernel died": "the kernel died while it ran"}.get(
                    exc.outcome, f"the sandbox broke while it ran ({exc.detail})")
                run.verdicts[current.id] = CheckResult(
                    current.id, current.title, "failed", [CheckItem("ran", False, why)], why)
            if exc.outcome == "timed out" and time.monotonic() >= box.deadline - 0.01:
                run.detail = f"stopped after the time limit of {timeout:g} s"
        run.output = box.output_tail()
        run.memory = box.memory_cause(run.outcome == "kernel died")
        run.disk = box.disk_cause()
    run.seconds = time.monotonic() - start
    return run
