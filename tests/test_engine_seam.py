"""The engine's seam: ``check`` and ``gclab grade`` run the learner's object the same way.

The same learner code is run by the local runner (in this process) and by the sandbox runner
(in ``gclab grade``'s sandbox, the worker answering each request), trial by trial, and every
:class:`~gclab.exercises.runner.Attempt` must agree: the output, the error (type, message, the
learner's line), a time-out, the build error and its diagnosis, the inputs before and after
(mutation), what was printed and warned. A change to one side only makes this test fail.

Also: importing the engine loads neither a lesson nor torch (the sandbox's worker relies on it).
"""

from __future__ import annotations

import linecache
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch
from torch import nn

from gclab.exercises.registry import Case, Exercise
from gclab.exercises.runner import Attempt, LocalRunner, attempt
from gclab.exercises.running import CappedStream
from gclab.exercises.trials import trials
from gclab.grading.bwrap import bwrap_available
from gclab.grading.grade import DEFAULT_MEMORY
from gclab.grading.sandbox import Sandbox
from gclab.grading.trusted import LOCK, SandboxRunner, answer_in

ROOT = Path(__file__).resolve().parent.parent

# The learner's notebook: one cell, run in the sandbox and (compiled under the same name, its
# lines in linecache) here.
LEARNER = '''\
import numpy as np
import torch
from torch import nn

def right(x, k=2):
    return k * x

def wrong_value(x, k=2):
    return (k + 1) * x

def crash(x, k=2):
    raise ValueError("boom " + str(x.shape))

def wrong_shape(x, k=2):
    return (k * x).reshape(-1, 1)

def mutating(x, k=2):
    x *= k
    return x

def chatty(x, k=2):
    print("look:", x.shape, "x" * 400)
    np.log(-np.ones(2))
    return k * x

def endless(x, k=2):
    while True:
        pass

def no_args():
    return 1

def returns_none(x, k=2):
    x.sum()

ANSWER_WRONG = 41

def answer_called():
    print("computing")
    return 42

class RightBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.lin = nn.Linear(c, 2)

    def forward(self, x):
        return self.lin(x)

class DoubledBlock(RightBlock):
    def forward(self, x):
        return 2 * self.lin(x)

class MutatingBlock(RightBlock):
    def forward(self, x):
        x.mul_(2)
        return self.lin(x)

class ExtraLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.lin = nn.Linear(c, 2)
        self.norm = nn.LayerNorm(2)

    def forward(self, x):
        return self.norm(self.lin(x))

class Renamed(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.linear = nn.Linear(c, 2)

    def forward(self, x):
        return self.linear(x)

def not_a_module(c):
    return np.zeros(c)

def broken_build(c):
    raise RuntimeError("cannot build " + str(c))
'''


class _Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.lin = nn.Linear(c, 2)

    def forward(self, x):
        return self.lin(x)


FUNCTION = Exercise(
    id="seam.double", notebook="seam", title="double", kind="function",
    reference=lambda x, k=2: k * x, time_limit=1.0, seeds=(0,),
    cases=lambda rng: [
        Case(args=(rng.standard_normal((2, 3)),), label="(2,3)"),
        Case(args=(rng.standard_normal(4),), kwargs={"k": 3}, label="(4,) k=3"),
        Case(args=(rng.standard_normal(5),), label="apart", closed_form="a formula only"),
    ],
)
VALUE = Exercise(id="seam.answer", notebook="seam", title="answer", kind="value",
                 reference=lambda: 42)
MODULE = Exercise(
    id="seam.block", notebook="seam", title="block", kind="module", reference=_Block,
    time_limit=2.0, seeds=(0,),
    cases=lambda rng: [Case(args=(3,), label="(4,3)",
                            inputs=(torch.from_numpy(rng.standard_normal((4, 3))).float(),))],
)

RUNS = [
    (FUNCTION, "right"), (FUNCTION, "wrong_value"), (FUNCTION, "crash"),
    (FUNCTION, "wrong_shape"), (FUNCTION, "mutating"), (FUNCTION, "chatty"),
    (FUNCTION, "endless"), (FUNCTION, "no_args"), (FUNCTION, "returns_none"),
    (VALUE, "ANSWER_WRONG"), (VALUE, "answer_called"),
    (MODULE, "RightBlock"), (MODULE, "DoubledBlock"), (MODULE, "MutatingBlock"),
    (MODULE, "ExtraLayer"), (MODULE, "Renamed"), (MODULE, "not_a_module"),
    (MODULE, "broken_build"),
]


def _data(x: Any) -> Any:
    """A comparable picture of an output or inputs: type, dtype, shape and values."""
    if isinstance(x, torch.Tensor):
        return ("tensor", str(x.dtype), tuple(x.shape), x.detach().tolist())
    if isinstance(x, np.ndarray):
        return ("ndarray", str(x.dtype), x.shape, x.tolist())
    if isinstance(x, (tuple, list)):
        return (type(x).__name__, [_data(v) for v in x])
    if isinstance(x, dict):
        return ("dict", {k: _data(v) for k, v in x.items()})
    return x


def _picture(a: Attempt) -> Dict[str, Any]:
    o = a.outcome
    error = None if o.error is None else (type(o.error).__name__, str(o.error))
    return {
        "value": _data(o.value), "error": error, "where": o.tb, "timed_out": o.timed_out,
        "build_error": a.build_error, "before": _data(a.inputs_before),
        "after": _data(a.inputs_after), "printed": a.printed, "printed_chars": a.printed_chars,
        "warned": a.warned, "warnings": a.warnings, "changes": a.changes,
    }


def _local_namespace() -> dict:
    filename = "<learner-cell>"
    linecache.cache[filename] = (len(LEARNER), None, LEARNER.splitlines(True), filename)
    ns: dict = {"__name__": "__main__"}
    exec(compile(LEARNER, filename, "exec"), ns)  # noqa: S102 - the test's own learner code
    return ns


@pytest.fixture(scope="module")
def both_sides():
    """Every (exercise, name) -> (local pictures, sandbox pictures), one per trial."""
    ns = _local_namespace()
    found: Dict[tuple, tuple] = {}
    with Sandbox(120, DEFAULT_MEMORY, use_bwrap=bwrap_available()) as box:
        box.send({"op": "run", "cells": [LEARNER]})
        while box.receive()[0].get("ev") != "end":
            pass
        with LOCK:
            for ex, name in RUNS:
                answer = answer_in(box, {"name": name})
                assert answer is not None, name
                remote = SandboxRunner(box, answer, [])
                local_side, sandbox_side = [], []
                for trial in trials(ex):
                    local_side.append(_picture(attempt(LocalRunner(), ex, ns[name], trial,
                                                       CappedStream())))
                    sandbox_side.append(_picture(attempt(remote, ex, answer.stand_in(), trial,
                                                         CappedStream())))
                found[ex.id, name] = (local_side, sandbox_side)
        box.send({"op": "exit"})
    return found


@pytest.mark.parametrize("ex,name", RUNS, ids=[f"{ex.kind}-{name}" for ex, name in RUNS])
def test_the_local_and_the_sandbox_runner_make_the_same_attempt(both_sides, ex, name):
    local_side, sandbox_side = both_sides[ex.id, name]
    assert len(local_side) == len(trials(ex))
    for local, remote in zip(local_side, sandbox_side):
        assert local == remote


def test_the_attempts_say_what_happened(both_sides):
    """The pictures compared above hold what each learner function did (so agreeing on them
    means something)."""
    def first(name: str, ex=FUNCTION) -> Dict[str, Any]:
        return both_sides[ex.id, name][0][0]

    expected = 2 * np.random.default_rng(0).standard_normal((2, 3))
    assert np.allclose(first("right")["value"][3], expected, rtol=0, atol=0)
    assert first("crash")["error"] == ("ValueError", "boom (2, 3)")
    assert first("crash")["where"].startswith("line 12 in crash")
    assert first("endless")["timed_out"]
    assert first("no_args")["error"][0] == "TypeError" and first("no_args")["where"] == ""
    mutated = first("mutating")
    assert mutated["before"] != mutated["after"]
    assert first("right")["before"] == first("right")["after"]
    chatty = first("chatty")
    assert chatty["printed"].startswith("look: (2, 3) xxx") and chatty["printed_chars"] > 400
    assert chatty["warned"] >= 1 and "RuntimeWarning" in chatty["warnings"][0]
    apart = both_sides[FUNCTION.id, "chatty"][0][2]  # the case run apart prints as well
    assert apart["printed"].startswith("look: (5,)")
    assert both_sides[VALUE.id, "ANSWER_WRONG"][0][0]["value"] == 41
    assert both_sides[VALUE.id, "answer_called"][0][0]["printed"] == "computing\n"
    extra = first("ExtraLayer", MODULE)["build_error"]
    assert "an extra LayerNorm (norm)" in extra.message and extra.diagnosis in extra.message
    renamed = first("Renamed", MODULE)["build_error"]
    assert "named differently" in renamed.diagnosis
    assert first("not_a_module", MODULE)["build_error"].message == (
        "building it gave a numpy.ndarray, not an nn.Module")
    assert first("broken_build", MODULE)["error"] == ("RuntimeError", "cannot build 3")
    assert first("MutatingBlock", MODULE)["before"] != first("MutatingBlock", MODULE)["after"]


def _imported_by(module: str) -> List[str]:
    code = ("import sys, importlib; importlib.import_module(sys.argv[1]); "
            "print('\\n'.join(sorted(sys.modules)))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True,
                          env=env, timeout=120, check=True)
    return done.stdout.split()


@pytest.mark.parametrize("module", ["gclab.exercises.running", "gclab.exercises.calls",
                                    "gclab.exercises", "gclab.grading.worker"])
def test_importing_the_engine_loads_no_lesson_and_no_torch(module):
    loaded = _imported_by(module)
    assert module in loaded
    assert "torch" not in loaded
    assert not [m for m in loaded if m.startswith("gclab.exercises.lessons")]


def test_the_first_lookup_loads_every_lesson_and_a_broken_one_fails_loudly(tmp_path):
    code = ("import sys\nfrom gclab.exercises import catalog, get\n"
            "assert not [m for m in sys.modules if m.startswith('gclab.exercises.lessons.nb')]\n"
            "get('rf.theoretical')\n"
            "print(len([m for m in sys.modules if m.startswith('gclab.exercises.lessons.nb')]))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) == len(list((ROOT / "gclab/exercises/lessons").glob(
        "nb[0-9][0-9]_*.py")))
    # a content module that does not import: every lookup says so
    broken = ("import sys, types\nsys.modules['gclab.exercises.lessons.nb03_looking_inside'] = "
              "None\nfrom gclab.exercises import catalog, hint\n"
              "for f in (catalog, lambda: hint('rf.theoretical')):\n"
              "    try:\n        f()\n    except ImportError as e:\n        print('LOUD', e)\n")
    done = subprocess.run([sys.executable, "-c", broken], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.stdout.count("LOUD") == 2, (done.stdout, done.stderr)
