"""The process inside the sandbox of ``gclab grade``: it runs the learner's notebook, and it
calls the learner's objects on inputs the grader sends. Nothing it says is a verdict.

Started by :mod:`gclab.grading.sandbox` with the request channel on fd 0 and the reply channel
on fd 1 (both moved to private descriptors at once; the learner's output goes to the file named
by its argument). It imports gclab from the answer-free view (:mod:`gclab.grading.view`). The
grader first sends ``{"op": "run", "cells": [...]}``. The worker then executes the code cells
in an IPython shell, announcing each (``{"ev": "cell"}``). The notebook's ``check(id, obj)`` is
replaced by a recorder: it keeps ``obj``, tells the grader ``{"ev": "check", "id": ...}`` and
serves the grader's requests until told to resume. At the end it says ``{"ev": "end"}`` and
serves requests until ``{"op": "exit"}``.

Requests: ``describe`` (is the target there, is it callable, its type name) and ``call`` (run
the target on the inputs in the blob with the engine's :func:`gclab.exercises.calls.perform`,
the code a learner's ``check`` uses, under the exercise's time limit, and send back its output
and the inputs as they are afterwards, as data, see :mod:`gclab.grading.wire`; or why the module
could not be used, ``"refused"``, with its tree when its state_dict does not load) and
``structure`` (build a module afresh and send its tree as data,
:func:`gclab.grading.skeleton.describe`, for the exercise's structure checks). The inputs
always come from the grader (its cases, drawn from its secret seed). During a call a stub of
the view that gets called, and the functions the grader names as the exercise's reference
(a profiler, second line), are tripwires: the grader fails the exercise.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys

_OUTPUT_CAP = 2000


def _private_channels(output: str) -> tuple:
    rfd, wfd = os.dup(0), os.dup(1)  # os.dup: not inherited by the learner's subprocesses
    out = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full output file fails writes only
    return rfd, wfd


class _Recorded:
    """What ``check`` returns while grading: the verdict is the grader's, not the notebook's."""

    status = "recorded"
    passed = True

    def __init__(self, exercise_id: str) -> None:
        self.id = exercise_id

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"[gclab grade] {self.id}: recorded; the grader computes the verdict"


class Worker:
    def __init__(self, rfd: int, wfd: int) -> None:
        from gclab.grading import wire

        self.wire = wire
        self.rfd, self.wfd = rfd, wfd
        self.answers: dict = {}
        self.shell = None
        self.serving = False
        pkg = os.path.dirname(os.path.dirname(os.path.abspath(wire.__file__)))
        self.gclab_dir = pkg + os.sep
        self.trusted_callers = {  # the engine's lines that call the learner's object
            os.path.abspath(__file__),
            os.path.join(pkg, "exercises", "running.py"),
            os.path.join(pkg, "exercises", "calls.py"),
        }

    # -- the channel --------------------------------------------------------------------------
    def send(self, header: dict, blob: bytes = b"") -> None:
        self.wire.write_message(self.wfd, header, blob)

    def serve(self, until: str) -> None:
        while True:
            header, blob = self.wire.read_message(self.rfd)
            op = header.get("op")
            if op == until:
                return
            if op == "exit":
                os._exit(0)
            try:
                if op == "describe":
                    self.send(self.describe(header))
                elif op == "call":
                    reply, out = self.call(header, blob)
                    self.send(reply, out)
                elif op == "structure":
                    reply, out = self.structure(header, blob)
                    self.send(reply, out)
                else:
                    self.send({"error": f"unknown op {op!r}"})
            except Exception as exc:  # noqa: BLE001 - the grader learns that this one failed
                self.send({"outcome": "broken", "message": f"{type(exc).__name__}: {exc}"[:500]})

    # -- requests ---------------------------------------------------------------------------
    def target(self, header: dict):
        t = header.get("target") or {}
        if "check" in t and t["check"] in self.answers:
            return True, self.answers[t["check"]]
        name = t.get("name")
        ns = self.shell.user_ns if self.shell is not None else {}
        if isinstance(name, str) and name in ns:
            return True, ns[name]
        return False, None

    def describe(self, header: dict) -> dict:
        found, obj = self.target(header)
        return {
            "found": found,
            "callable": bool(found and callable(obj)),
            "type": _type_name(obj) if found else "",
        }

    def call(self, header: dict, blob: bytes):
        """Perform the grader's request on the target with the engine's own
        :func:`gclab.exercises.calls.perform` (what ``check`` does); send back what it gave."""
        from gclab.exercises.calls import perform
        from gclab.exercises.running import CappedStream, guarded, guarded_apart

        found, obj = self.target(header)
        if not found:
            return {"outcome": "missing"}, b""
        limit = float(header.get("time_limit", 5.0))
        kind = header.get("kind")
        forbidden = {tuple(k) for k in header.get("forbidden", [])}
        hits: list = []
        out = CappedStream()
        request = _request(kind, header, pickle.loads(blob) if blob else ())  # the grader's data
        if request is None:
            return {"outcome": "broken", "message": f"unknown kind {kind!r}"}, b""
        run = guarded_apart if request.apart else guarded

        def guard(fn):
            return run(self._tripwired(fn, forbidden, hits), limit, out)

        played = perform(obj, request, guard)
        reply = _left_behind(out)
        if hits:
            reply["reference"] = hits[0]
        if played.refusal is not None:
            tree = self._tree(played.built, guard) if played.built is not None else b""
            return {**reply, "outcome": "refused", "refusal": played.refusal[0],
                    "detail": played.refusal[1][:1000]}, tree
        outcome = played.outcome
        if outcome.timed_out:
            return {**reply, "outcome": "timeout"}, b""
        if outcome.error is not None:
            exc = outcome.error
            return {
                **reply,
                "outcome": "error",
                "type": _type_name(exc),
                "message": str(exc)[:1000],
                "where": outcome.tb[:300],
            }, b""
        if kind == "function":
            result = (outcome.value, *played.inputs_after)
        elif kind == "module":
            result = (outcome.value, played.inputs_after)
        else:
            result = (outcome.value,)
        return self._data(reply, result, "the output is too large")

    def _data(self, reply: dict, result, too_large: str):
        try:
            data = self.wire.dumps(result)
        except Exception as exc:  # noqa: BLE001
            return {**reply, "outcome": "unsendable", "message": str(exc)[:300]}, b""
        if len(data) > self.wire.MAX_BYTES:
            return {**reply, "outcome": "unsendable", "message": too_large}, b""
        return {**reply, "outcome": "ok"}, data

    def _tree(self, module, guard) -> bytes:
        """The module's tree as data (:func:`gclab.grading.skeleton.describe`), or b"": the
        grader names the layer that differs from the reference's."""
        from gclab.grading import skeleton

        tree = guard(lambda: skeleton.describe(module))
        try:
            if tree.error is None and not tree.timed_out:
                data = self.wire.dumps(tree.value)
                if len(data) <= self.wire.MAX_BYTES:
                    return data
        except Exception:  # noqa: BLE001
            pass
        return b""

    def structure(self, header: dict, blob: bytes):
        """Build the target afresh on the grader's arguments and send its tree as data
        (:func:`gclab.grading.skeleton.describe`): the grader checks its structure."""
        import torch

        from gclab.exercises.running import CappedStream, guarded
        from gclab.grading import skeleton

        found, obj = self.target(header)
        if not found:
            return {"outcome": "missing"}, b""
        limit = float(header.get("time_limit", 5.0))
        forbidden = {tuple(k) for k in header.get("forbidden", [])}
        hits: list = []
        out = CappedStream()
        args, kwargs = pickle.loads(blob) if blob else ((), {})

        def guard(fn):
            return guarded(self._tripwired(fn, forbidden, hits), limit, out)

        built = guard(lambda: obj(*args, **kwargs))
        if built.error is None and not built.timed_out and isinstance(built.value,
                                                                     torch.nn.Module):
            tree = guard(lambda: skeleton.describe(built.value))
        else:
            tree = None
        reply = _left_behind(out)
        if hits:
            reply["reference"] = hits[0]
        if tree is None or tree.error is not None or tree.timed_out:
            return {**reply, "outcome": "none"}, b""
        return self._data(reply, tree.value, "the module is too large")

    def _tripwired(self, fn, forbidden, hits):
        """``fn`` with the tripwires on: a call into gclab's stubs (the answer-free view's
        :data:`gclab.grading.view.CALLED`) or, where the profiler still runs, into the
        ``forbidden`` code is a hit."""
        from gclab.grading import view

        gclab_dir, trusted = self.gclab_dir, self.trusted_callers

        def hook(frame, event, arg):  # noqa: ARG001
            if event != "call":
                return
            code = frame.f_code
            qual = getattr(code, "co_qualname", code.co_name)
            if (code.co_filename, qual) not in forbidden:
                return
            caller = frame.f_back
            where = caller.f_code.co_filename if caller is not None else ""
            if not where.startswith(gclab_dir) or where in trusted:
                hits.append(qual)

        def run():
            del view.CALLED[:]
            if forbidden:
                sys.setprofile(hook)
            try:
                return fn()
            finally:
                if forbidden:
                    sys.setprofile(None)
                if view.CALLED:
                    hits.append(view.CALLED[0])

        return run

    # -- the notebook -------------------------------------------------------------------------
    def run(self) -> None:
        header, _ = self.wire.read_message(self.rfd)
        cells = [c for c in header.get("cells", []) if isinstance(c, str)]
        import gclab.exercises as gx
        from gclab.exercises import core

        def check(exercise_id, obj=None, *_, **__):
            self.answers[str(exercise_id)] = obj
            if self.serving:  # called from inside a graded call: record only
                return _Recorded(str(exercise_id))
            self.send({"ev": "check", "id": str(exercise_id)[:200]})
            self.serving = True
            try:
                self.serve(until="resume")
            finally:
                self.serving = False
            return _Recorded(str(exercise_id))

        gx.check = core.check = check
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        cfg = Config()
        cfg.HistoryManager.enabled = False
        cfg.InteractiveShell.colors = "NoColor"
        self.shell = InteractiveShell.instance(config=cfg)
        self.send({"ev": "ready"})
        for i, source in enumerate(cells):
            self.send({"ev": "cell", "n": i + 1})
            try:
                self.shell.run_cell(source, store_history=False)
            except BaseException:  # noqa: BLE001 - the learner's problem; go on
                pass
        self.send({"ev": "end"})
        self.serving = True
        self.serve(until="exit")


def _request(kind, header: dict, payload):
    """The engine's :class:`~gclab.exercises.calls.Request` for the grader's message, or None
    for a kind the engine does not know."""
    from gclab.exercises.calls import Request

    if kind == "value":
        return Request("value", call_it=bool(header.get("call_it")))
    if kind == "function":
        args, kwargs = payload
        return Request("function", args=args, kwargs=kwargs, apart=bool(header.get("apart")))
    if kind == "module":
        args, kwargs, state, inputs = payload
        return Request("module", args=args, kwargs=kwargs, state=state, inputs=inputs)
    return None


def _left_behind(out) -> dict:
    """What the calls printed, warned and changed, as the reply sends it (the grader caps it)."""
    return {"printed": out.count, "printed_text": out.text[:_OUTPUT_CAP], "warned": out.warned,
            "warnings": [w[:300] for w in out.warnings[:3]],
            "changes": [c[:200] for c in out.changes[:5]]}


def _type_name(x) -> str:
    try:
        import numpy as np

        if isinstance(x, np.ndarray):
            return "numpy.ndarray"
        t = sys.modules.get("torch")
        if t is not None and isinstance(x, t.Tensor):
            return "torch.Tensor"
    except Exception:  # noqa: BLE001
        pass
    name = type(x).__name__
    return name if isinstance(name, str) else "object"


def main() -> int:
    rfd, wfd = _private_channels(sys.argv[1] if len(sys.argv) > 1 else "output.txt")
    Worker(rfd, wfd).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
