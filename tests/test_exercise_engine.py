"""The exercise engine (gclab.exercises.core) on tiny exercises registered here.

Each robustness promise of docs/exercises.md gets a test: learner code that raises, returns
None / the wrong shape / the wrong dtype / NaN, mutates its input, runs forever, or prints
megabytes gets a failing verdict with a message, and nothing passes falsely.
"""

from __future__ import annotations

import itertools
import json
import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

from gclab.exercises import compare, registry, trials
from gclab.exercises.core import check
from gclab.exercises.registry import Case, Exercise, Property, catalog, hint
from gclab.exercises.verdict import CheckResult


# --------------------------------------------------------------------------- tiny exercises
def ref_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_axis0(x):
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def softmax_naive(x):
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_cases(rng):
    return [
        Case(args=(rng.standard_normal((2, 3, 5)),), label="(2,3,5)"),
        Case(args=(rng.standard_normal((4, 6)) * 400.0,), label="large logits (4,6)"),
    ]


def _rows_sum_to_one(out, x):
    return np.allclose(np.sum(out, axis=-1), 1.0)


TINY = []  # registered for this module's tests only (see the fixture below)
TINY.append(
    Exercise(
        id="engine.softmax",
        notebook="engine_tests",
        title="softmax over the last axis",
        reference=ref_softmax,
        cases=_softmax_cases,
        rtol=1e-9,
        mistakes={
            "softmax over the wrong axis": softmax_axis0,
            "no max subtraction": softmax_naive,
        },
        properties=[Property("rows sum to 1", _rows_sum_to_one)],
        hints=("concept", "shapes", "pseudo-code"),
        time_limit=0.5,
    )
)

TINY.append(
    Exercise(
        id="engine.answer",
        notebook="engine_tests",
        title="a value",
        kind="value",
        reference=lambda: 42,
        mistakes={"off by one": lambda: 41, "halved": lambda: 21},
        hints=("a", "b", "c"),
        time_limit=0.5,
    )
)


class RefScale(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x):
        return x * self.weight.view(1, -1, 1, 1)


class ScaleNoWeightOnBatch(RefScale):
    def forward(self, x):  # broadcasts over the wrong axis
        return x * self.weight.view(1, 1, 1, -1)[..., : x.shape[-1]]


class ScaleWithResidual(RefScale):
    def forward(self, x):
        return x + x * self.weight.view(1, -1, 1, 1)


class WrongParams(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(channels))

    def forward(self, x):
        return x


TINY.append(
    Exercise(
        id="engine.module",
        notebook="engine_tests",
        title="channel scaling module",
        kind="module",
        reference=RefScale,
        cases=lambda rng: [
            Case(args=(3,), inputs=(torch.as_tensor(rng.standard_normal((2, 3, 4, 3))),))
        ],
        mistakes={"a residual that should not be there": ScaleWithResidual},
        hints=("a", "b", "c"),
    )
)


@pytest.fixture(autouse=True, scope="module")
def tiny_exercises():
    """Register the tiny exercises for this module only, so the catalog the other tests see
    (tests/test_exercises_all.py) holds only the course's exercises."""
    for e in TINY:
        registry.register(e)
    yield
    for e in TINY:
        registry.unregister(e.id)


@pytest.fixture
def log_path(tmp_path, monkeypatch):
    path = tmp_path / "grade.jsonl"
    monkeypatch.setenv("GCLAB_GRADE_LOG", str(path))
    return path


# --------------------------------------------------------------------------- correct answers
def test_reference_passes_and_says_which_checks_ran():
    result = check("engine.softmax", ref_softmax)
    assert isinstance(result, CheckResult)
    assert result.passed and result.status == "passed" and bool(result)
    assert result.diagnosis is None
    # 2 cases x 2 seeds, the mutation check and the property
    assert len(result.checks) == 6 and all(c.passed for c in result.checks)
    assert result.message.startswith("6 public checks passed")
    assert "all checks" not in str(result).lower()
    names = [c.name for c in result.checks]
    assert "inputs not mutated" in names and "rows sum to 1" in names
    assert "1e-09" in result.message  # the stated tolerance


def test_an_independent_correct_solution_passes():
    """Not the reference object: scipy-free softmax written another way."""

    def learner(x):
        shifted = x - np.max(x, axis=-1)[..., None]
        return np.exp(shifted) / np.exp(shifted).sum(-1)[..., None]

    assert check("engine.softmax", learner).passed


def test_value_exercise_accepts_value_or_zero_arg_callable():
    assert check("engine.answer", 42).passed
    assert check("engine.answer", 42.0).passed
    assert check("engine.answer", lambda: 42).passed
    wrong = check("engine.answer", 41)
    assert wrong.status == "failed" and wrong.diagnosis == "off by one"
    assert "41" in wrong.message and "42" in wrong.message
    assert check("engine.answer", "42").status == "failed"


def test_module_exercise_copies_reference_weights_and_diagnoses():
    assert check("engine.module", RefScale).passed
    bad = check("engine.module", ScaleWithResidual)
    assert bad.status == "failed" and bad.diagnosis == "a residual that should not be there"


def test_module_with_other_parameter_names_fails_with_the_state_dict_message():
    result = check("engine.module", WrongParams)
    assert result.status == "failed"
    assert "state_dict" in result.message and "gain" in result.message


def test_module_exercise_rejects_a_non_module():
    result = check("engine.module", lambda channels: "not a module")
    assert result.status == "failed" and "nn.Module" in result.message


# --------------------------------------------------------------------------- diagnosis
def test_diagnosis_names_the_mistake_by_output_not_by_code():
    def my_softmax(x):  # written differently from the registered variant, same mistake
        m = x.max(0)
        e = np.exp(x - m)
        return e / e.sum(0)

    result = check("engine.softmax", my_softmax)
    assert result.status == "failed"
    assert result.diagnosis == "softmax over the wrong axis"
    assert "Likely cause: softmax over the wrong axis" in str(result)
    assert "softmax over the wrong axis" in result._repr_html_()


def test_no_diagnosis_for_an_unrelated_wrong_answer():
    # other logits: still rows of weights along the right axis, no pattern to name
    def other(x):
        return ref_softmax(np.abs(x) ** 1.5) * 0.5 + 0.5 / x.shape[-1]

    result = check("engine.softmax", other)
    assert result.status == "failed" and result.diagnosis is None, result.diagnosis
    failed = [c for c in result.checks if not c.passed]
    assert any("relative error" in c.message for c in failed)


# --------------------------------------------------------------------------- robustness
def test_not_implemented_stub(log_path):
    def stub(x):
        raise NotImplementedError("exercise engine.softmax: your code here")

    result = check("engine.softmax", stub)
    assert result.status == "not implemented" and not result.passed
    assert result.message == "not yet implemented"
    record = json.loads(log_path.read_text().splitlines()[-1])
    assert record["id"] == "engine.softmax" and record["status"] == "not implemented"


def test_learner_exception_is_reported_with_type_message_and_line():
    def broken(x):
        return x.reshape(7, 7)

    result = check("engine.softmax", broken)
    assert result.status == "failed"
    assert "raised ValueError" in result.message and "reshape" in result.message
    assert "line" in result.message


@pytest.mark.parametrize(
    "learner,expected",
    [
        (lambda x: None, "is None"),
        (lambda x: ref_softmax(x)[..., :-1], "has shape"),
        (lambda x: ref_softmax(x).astype(np.float32), "dtype float32"),
        (lambda x: ref_softmax(x) * np.nan, "NaN"),
        (lambda x: ref_softmax(x).tolist(), "expected a numpy.ndarray"),
        (lambda x: torch.as_tensor(ref_softmax(x)), "expected a numpy.ndarray"),
        (lambda x: (ref_softmax(x), 1), "expected a numpy.ndarray"),
    ],
    ids=["none", "shape", "dtype", "nan", "list", "tensor", "tuple"],
)
def test_wrong_outputs_fail_with_a_message(learner, expected):
    result = check("engine.softmax", learner)
    assert result.status == "failed" and not result.passed
    assert expected in result.message


def test_input_mutation_fails_even_when_the_output_is_right():
    def in_place(x):
        x -= x.max(axis=-1, keepdims=True)  # modifies the caller's array
        np.exp(x, out=x)
        x /= x.sum(axis=-1, keepdims=True)
        return x

    result = check("engine.softmax", in_place)
    assert result.status == "failed"
    mutation = next(c for c in result.checks if c.name == "inputs not mutated")
    assert not mutation.passed and "in place" in mutation.message
    # the values themselves were right: the failure is the mutation alone
    assert all(c.passed for c in result.checks if c.name.startswith("output on"))


def test_endless_loop_times_out_and_the_caller_survives():
    def forever(x):
        while True:
            pass

    start = time.monotonic()
    result = check("engine.softmax", forever)
    elapsed = time.monotonic() - start
    assert result.status == "failed" and "time limit of 0.5 s" in result.message
    assert elapsed < 5, f"the time limit did not stop the loop ({elapsed:.1f} s)"
    assert check("engine.softmax", ref_softmax).passed  # the engine still works afterwards


def test_time_limit_survives_code_that_swallows_one_alarm():
    """The alarm re-fires every 50 ms, so ``except Exception``-style swallowing (even of a
    BaseException, once) does not keep the loop alive. (Code that swallows BaseException in
    an endless loop cannot be stopped from inside the process; ``gclab grade`` bounds that with
    its subprocess timeout.)"""

    def stubborn(x):
        try:
            while True:
                pass
        except BaseException:  # noqa: BLE001 - swallows the first alarm on purpose
            pass
        while True:
            pass

    result = check("engine.softmax", stubborn)
    assert result.status == "failed" and "time limit" in result.message


def test_time_limit_outside_the_main_thread_uses_the_thread_fallback():
    box = {}

    def forever(x):
        time.sleep(3)
        return ref_softmax(x)

    def run():
        box["result"] = check("engine.softmax", forever)

    worker = threading.Thread(target=run)
    start = time.monotonic()
    worker.start()
    worker.join(10)
    assert not worker.is_alive()
    assert box["result"].status == "failed" and "time limit" in box["result"].message
    assert time.monotonic() - start < 2.5


def test_megabytes_of_printing_fail_and_are_not_shown(capsys):
    def chatty(x):
        for _ in range(60_000):
            print("debugging output that goes on and on")
        return ref_softmax(x)

    result = check("engine.softmax", chatty)
    captured = capsys.readouterr()
    assert len(captured.out) < 1000, "the learner's prints leaked to the real stdout"
    assert result.status == "failed"
    assert result.printed > 2_000_000
    assert "printed" in result.message and "limit" in result.message
    assert len(str(result)) < 5000


def test_a_little_printing_is_allowed_and_reported():
    def polite(x):
        print("shape", x.shape)
        return ref_softmax(x)

    result = check("engine.softmax", polite)
    assert result.passed and result.printed > 0
    assert "printed" in str(result)


def test_sys_exit_in_learner_code_does_not_kill_the_caller():
    import sys

    result = check("engine.softmax", lambda x: sys.exit(3))
    assert result.status == "failed" and "sys.exit" in result.message


def test_not_a_function():
    result = check("engine.softmax", np.zeros(3))
    assert result.status == "failed" and "expected a function" in result.message


# --------------------------------------------------------------------------- comparison
def test_relative_error_is_cs231n_with_atol_floor():
    a = np.array([1.0, 2.0, 0.0])
    b = np.array([1.0, 2.0 * (1 + 1e-6), 1e-6])
    # max_i |a-b| / max(1e-8, |a|+|b|): the 0 vs 1e-6 element has relative error 1
    assert compare.rel_error(a, b, atol=0.0) == pytest.approx(1.0)
    # ... unless its absolute difference is under atol; then the 2 vs 2(1+1e-6) one is the max
    expected = abs(2.0 - 2.0 * (1 + 1e-6)) / (2.0 + 2.0 * (1 + 1e-6))
    assert compare.rel_error(a, b, atol=1.5e-6) == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------------- display, log, api
def test_html_and_text_display():
    passed = check("engine.softmax", ref_softmax)
    failed = check("engine.softmax", softmax_axis0)
    html = failed._repr_html_()
    assert 'class="gclab-verdict gclab-verdict-failed"' in html
    assert 'class="gclab-verdict gclab-verdict-passed"' in passed._repr_html_()
    assert "<script" not in html
    text = str(failed)
    assert text.startswith("[FAIL] engine.softmax") and repr(failed) == text
    assert 'hint("engine.softmax", level=1)' in text


def test_html_escapes_learner_text():
    result = check("engine.softmax", lambda x: (_ for _ in ()).throw(ValueError("<b>x</b>")))
    assert "<b>x</b>" not in result._repr_html_() and "&lt;b&gt;" in result._repr_html_()


def test_grade_log_records_every_check(log_path):
    check("engine.softmax", ref_softmax)
    check("engine.answer", 41)
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(r["id"], r["status"]) for r in lines] == [
        ("engine.softmax", "passed"),
        ("engine.answer", "failed"),
    ]
    assert lines[1]["diagnosis"] == "off by one" and lines[0]["checks_total"] == 6


def test_hint_levels_and_bad_level():
    assert "concept" in hint("engine.softmax", 1) and "pseudo-code" in hint("engine.softmax", 3)
    assert "gclab-hint" in hint("engine.softmax", 2)._repr_html_()
    for bad in (0, 4, "1", 1.0, True):
        with pytest.raises(ValueError, match="1, 2 or 3"):
            hint("engine.softmax", bad)


def test_catalog_lists_registered_exercises():
    mine = catalog(notebook="engine_tests")
    assert [e.id for e in mine] == ["engine.softmax", "engine.answer", "engine.module"]
    assert mine[0].title == "softmax over the last axis"
    assert "engine.softmax" in mine._repr_html_() and "engine.softmax" in str(mine)


def test_unknown_id_suggests_close_ones():
    with pytest.raises(KeyError, match="engine.softmax"):
        check("engine.softmx", ref_softmax)


def test_bad_exercise_definitions_are_rejected():
    with pytest.raises(ValueError, match="kind"):
        Exercise(id="x.y", notebook="n", title="t", kind="lambda", reference=ref_softmax)
    with pytest.raises(ValueError, match="topic"):
        Exercise(id="nodot", notebook="n", title="t", reference=ref_softmax, cases=_softmax_cases)
    with pytest.raises(ValueError, match="cases"):
        Exercise(id="x.y", notebook="n", title="t", reference=ref_softmax)
    with pytest.raises(TypeError, match="reference"):
        Exercise(id="x.y", notebook="n", title="t", reference=None, cases=_softmax_cases)
    with pytest.raises(TypeError, match="Exercise"):
        registry.register({"id": "x.y"})


# ------------------------------------------------------------------ an answer in another form
@pytest.mark.parametrize(
    "form",
    [float, np.float64, np.asarray, lambda v: np.array(v)[()]],
    ids=["float", "numpy scalar", "0-d array", "indexed 0-d"],
)
@pytest.mark.parametrize("expected", [np.asarray(0.25), np.float64(0.25), 0.25],
                         ids=["exp 0-d", "exp np scalar", "exp float"])
def test_a_number_passes_in_every_correct_form(form, expected):
    assert compare.compare_outputs(expected, form(0.25), 1e-9, 0.0).ok
    assert not compare.compare_outputs(expected, form(0.5), 1e-9, 0.0).ok


def test_a_number_is_not_a_one_element_array():
    r = compare.compare_outputs(np.asarray(0.25), np.asarray([0.25]), 1e-9, 0.0)
    assert not r.ok and "shape (1,)" in r.message


def test_mutation_check_sees_requires_grad_dtype_and_shape():
    t = torch.zeros(3, dtype=torch.float64)
    assert "requires_grad" in compare.mutation(t, t.clone().requires_grad_())
    assert "dtype" in compare.mutation(t, t.float())
    assert "shape" in compare.mutation(t, t.reshape(1, 3))
    assert "dtype" in compare.mutation(np.zeros(3), np.zeros(3, np.float32))
    assert compare.mutation(t, t.clone()) is None


def test_restoring_by_arithmetic_is_explained():
    x = np.random.default_rng(0).standard_normal(5)
    y = x.copy()
    h = 1e-5
    for k in range(5):  # the numerical gradient's x[k] += h; x[k] -= 2h; x[k] += h
        y[k] += h
        y[k] -= 2 * h
        y[k] += h
    msg = compare.mutation(x, y)
    assert msg is not None and "rounding" in msg and "old = x[i]" in msg


def test_function_that_turns_on_requires_grad_fails():
    def f(x):
        x.requires_grad_(True)
        return x.detach() * 2

    ex = Exercise(id="engine.flags", notebook="engine_tests", title="double",
                  reference=lambda x: x * 2,
                  cases=lambda rng: [Case(args=(torch.ones(3, dtype=torch.float64),))],
                  mistakes={"a": lambda x: x, "b": lambda x: x * 3})
    registry.register(ex)
    try:
        result = check("engine.flags", f)
    finally:
        registry.unregister("engine.flags")
    assert not result.passed
    assert "requires_grad" in result.message


def test_not_run_counts_every_check_that_did_not_run():
    def stub(x):
        raise NotImplementedError

    result = check("engine.softmax", stub)
    total = len(result.checks) + result.not_run
    # 2 cases x 2 seeds, the mutation check and the property
    assert total == 2 * 2 + 1 + 1


def test_headline_reports_the_worst_case():
    def f(x):  # right on the small case, badly wrong on the large one
        out = ref_softmax(x)
        return out if np.abs(x).max() < 50 else out[..., ::-1].copy()

    result = check("engine.softmax", f)
    assert "worst: output on large logits" in result.message


def test_two_mistakes_with_the_same_output_are_both_named():
    ex = Exercise(id="engine.twins", notebook="engine_tests", title="x + 1",
                  reference=lambda x: x + 1.0,
                  cases=lambda rng: [Case(args=(rng.standard_normal(4),))],
                  mistakes={"the 1 left out": lambda x: x * 1.0,
                            "both biases forgotten": lambda x: x + 0.0,
                            "doubled": lambda x: 2 * x + 1})
    registry.register(ex)
    try:
        result = check("engine.twins", lambda x: x.copy())
    finally:
        registry.unregister("engine.twins")
    assert result.diagnosis == "the 1 left out, or both biases forgotten"


def test_a_float_count_is_named_by_its_property():
    ex = Exercise(id="engine.count", notebook="engine_tests", title="count", kind="value",
                  reference=lambda: 12, mistakes={"a": lambda: 11, "b": lambda: 13},
                  properties=[Property("a count is an int",
                                       lambda v: (isinstance(v, int), "use // for a count"))])
    registry.register(ex)
    try:
        result = check("engine.count", 12.0)
    finally:
        registry.unregister("engine.count")
    assert not result.passed and result.diagnosis == "use // for a count"


# --------------------------------------------------------------------------- global state
# What a notebook may have done to the process before it calls check(): (set it, the value
# the engine's own code must see, how to read it). The reference of "engine.probe" records
# what it sees; the learner's code must still see the learner's setting.
def _np_err():
    return np.geterr()["under"]


def _filters_error():
    import warnings

    return any(f[0] == "error" for f in warnings.filters)


GLOBAL_STATE = {
    "np.seterr": (lambda tmp: np.seterr(all="raise"), "ignore", _np_err),
    "np.set_printoptions": (lambda tmp: np.set_printoptions(precision=2, legacy="1.13"), 8,
                            lambda: np.get_printoptions()["precision"]),
    "torch.set_default_dtype": (lambda tmp: torch.set_default_dtype(torch.float64),
                                torch.float32, torch.get_default_dtype),
    "torch.set_grad_enabled": (lambda tmp: torch.set_grad_enabled(False), True,
                               torch.is_grad_enabled),
    "torch.autograd.set_detect_anomaly": (lambda tmp: torch.autograd.set_detect_anomaly(True),
                                          False, torch.is_anomaly_enabled),
    "torch.use_deterministic_algorithms": (
        lambda tmp: torch.use_deterministic_algorithms(True), False,
        torch.are_deterministic_algorithms_enabled),
    "torch.set_num_threads": (lambda tmp: torch.set_num_threads(torch.get_num_threads() + 1),
                              None, torch.get_num_threads),
    "warnings.simplefilter('error')": (lambda tmp: __import__("warnings").simplefilter("error"),
                                       False, _filters_error),
}


@pytest.fixture
def learner_state():
    """Undo whatever a test's 'notebook' set (the engine must not have to)."""
    import os
    import warnings

    from gclab.exercises import globalstate

    saved, cwd = globalstate.snapshot(), os.getcwd()
    with warnings.catch_warnings():
        yield
    globalstate.restore(saved)
    os.chdir(cwd)


@pytest.mark.parametrize("setting", list(GLOBAL_STATE))
def test_the_reference_runs_in_the_engines_state_and_the_learner_in_its_own(
        setting, learner_state, tmp_path):
    put, engine_value, read = GLOBAL_STATE[setting]
    threads = torch.get_num_threads()
    seen = {}

    def reference(x):
        seen["reference"] = read()
        return x * 2.0

    def learner(x):
        seen["learner"] = read()
        return x * 2.0

    registry.register(Exercise(id="engine.probe", notebook="engine_tests", title="probe",
                           reference=reference, cases=lambda rng: [Case(args=(np.ones(3),))],
                           mistakes={"halved": lambda x: x, "same": lambda x: x * 1.0},
                           seeds=(0,)))
    try:
        put(tmp_path)
        mine = read()
        result = check("engine.probe", learner)
        assert read() == mine, "check() changed the learner's setting"
    finally:
        registry.unregister("engine.probe")
    expected = {"torch.set_num_threads": threads}.get(setting, engine_value)
    assert seen["reference"] == expected, f"the reference saw the learner's {setting}"
    assert seen["learner"] == mine, f"the learner's code did not run with its own {setting}"
    assert result.passed, str(result)


def test_check_leaves_the_learners_random_generators_alone():
    import random

    def reference(x):  # trusted code that draws: its draws must not be the learner's
        return x + 0 * torch.rand(1).item() + 0 * np.random.rand() + 0 * random.random()

    registry.register(Exercise(id="engine.draws", notebook="engine_tests", title="draws",
                           reference=reference, cases=lambda rng: [Case(args=(np.ones(3),))],
                           mistakes={"a": lambda x: x * 0, "b": lambda x: x * 3}))
    try:
        torch.manual_seed(7)
        np.random.seed(7)
        random.seed(7)
        expected = (torch.rand(1).item(), np.random.rand(), random.random())
        torch.manual_seed(7)
        np.random.seed(7)
        random.seed(7)
        assert not check("engine.draws", lambda x: x * 5).passed  # references and mistakes run
        assert (torch.rand(1).item(), np.random.rand(), random.random()) == expected
    finally:
        registry.unregister("engine.draws")


def test_the_verdict_names_the_learners_numpy_error_state_as_the_cause(learner_state):
    """After np.seterr(all='raise') a correct softmax underflows in exp: check() returns a
    verdict (it used to raise from gclab's own reference) that names the setting."""
    from gclab.exercises import get

    np.seterr(all="raise")
    result = check("nl.softmax", get("nl.softmax").reference)
    assert result.status == "failed"
    assert "np.seterr(all='raise')" in result.diagnosis, result.diagnosis
    assert np.geterr()["under"] == "raise"
    result = check("snl.attention", get("snl.attention").reference)  # used to raise
    assert result.passed or "np.seterr(all='raise')" in result.diagnosis, str(result)


def test_the_verdict_names_the_learners_default_dtype_as_the_cause(learner_state):
    from gclab.exercises import get

    torch.set_default_dtype(torch.float64)
    for exercise in ("gc.module", "se.assemble"):
        result = check(exercise, get(exercise).reference)
        assert result.status == "failed"
        assert "torch.set_default_dtype(torch.float64)" in result.diagnosis, result.diagnosis
    assert torch.get_default_dtype() == torch.float64


def test_settings_a_learners_call_changes_are_named_and_put_back(learner_state, tmp_path):
    import os

    here = os.getcwd()

    threads = torch.get_num_threads()

    def restless(x):
        os.chdir(tmp_path)
        torch.set_num_threads(threads + 1)
        np.seterr(over="raise")
        return ref_softmax(x)

    result = check("engine.softmax", restless)
    assert (os.getcwd(), torch.get_num_threads(), np.geterr()["over"]) == (here, threads, "warn")
    text = str(result)
    for name in ("the working directory", "torch's thread count", "NumPy's error state"):
        assert name in text, text
    assert "put it back" in text


def test_warnings_are_not_counted_as_printing_and_the_first_is_shown(learner_state):
    import warnings

    warnings.simplefilter("default")
    result = check("engine.softmax", softmax_naive)  # overflows on the large logits
    assert result.printed == 0, "NumPy's warnings were counted as printed characters"
    assert result.warned >= 1
    assert "RuntimeWarning: overflow encountered in exp" in result.warnings[0]
    text = str(result)
    assert "characters" not in text
    assert "warning" in text and "RuntimeWarning: overflow encountered in exp" in text


def test_hints_and_checks_display_when_called_anywhere_in_a_cell():
    """In a Jupyter kernel, hint(level=1) then hint(level=2) in one cell shows both, and a check()
    that is not the cell's last line shows its verdict; a check() on the last line shows once;
    the returned objects still print as text in plain Python."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    cells = [
        "from gclab.exercises import check, hint, get\n"
        "hint('nl.softmax', level=1)\n"
        "hint('nl.softmax', level=2)\n"
        "check('nl.softmax', get('nl.softmax').reference)\n"
        "done = 1",
        "r = check('nl.softmax', get('nl.softmax').reference)\nr",
        "r",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()

    def html(cell):
        return ["".join(o.get("data", {}).get("text/html", "")) for o in cell.outputs]

    first, last_line, later = (html(c) for c in nb.cells)
    assert sum("hint 1 (concept)" in h for h in first) == 1, first
    assert sum("hint 2 (shapes)" in h for h in first) == 1, first
    assert sum("gclab-verdict-passed" in h for h in first) == 1, first
    assert sum("gclab-verdict-passed" in h for h in last_line) == 1, last_line
    assert sum("gclab-verdict-passed" in h for h in later) == 1, later
    from gclab.exercises import get

    assert "[PASS]" in str(check("nl.softmax", get("nl.softmax").reference))
    assert str(hint("nl.softmax", 2)).startswith("[nl.softmax] hint 2")


# --------------------------------------------------------------------------- causes named right
def _torch_of(exercise):
    from gclab.exercises import get

    ref = get(exercise).reference
    return lambda *a, **k: torch.as_tensor(ref(*a, **k))


def _numpy_module():
    from gclab.nn import GCBlock

    class NumpyOut(GCBlock):
        def forward(self, x):
            return super().forward(x).numpy()

    return NumpyOut


@pytest.mark.parametrize("exercise,learner", [
    ("nl.softmax", lambda: _torch_of("nl.softmax")),
    ("nlgrad.softmax_jacobian", lambda: _torch_of("nlgrad.softmax_jacobian")),
    ("gc.layer_norm", lambda: _torch_of("gc.layer_norm")),
    ("rf.erf", lambda: _torch_of("rf.erf")),
    ("gc.module", _numpy_module),
])
def test_a_wrong_type_is_the_cause_and_no_numeric_guess_follows(exercise, learner):
    result = check(exercise, learner())
    assert result.status == "failed"
    assert "expected a" in result.message  # the headline: the type
    assert result.diagnosis is not None and "wrong type" in result.diagnosis, result.diagnosis
    for numeric in ("eps", "precision", "factor", "constant"):
        assert numeric not in result.diagnosis, result.diagnosis


def test_two_results_in_the_wrong_order_are_named_so():
    from gclab.exercises import get

    ref = get("nlgrad.scale_backward").reference
    result = check("nlgrad.scale_backward", lambda dout, u, s: ref(dout, u, s)[::-1])
    assert "wrong order" in result.diagnosis, result.diagnosis


@pytest.mark.parametrize("exercise,learner,wrong_cause,right_cause", [
    ("nlgrad.maxpool_backward",
     lambda: registry.get("nlgrad.maxpool_backward").mistakes[
         "the mask compares with the whole map's max, not each window's"],
     "H and W swapped", "whole map's max"),
    ("nl.dot_product", lambda: (lambda th, ph: th @ ph / th.shape[2]), "B = 1", "C_i"),
    ("se.squeeze", lambda: (lambda x: np.broadcast_to(
        x.mean(axis=(1, 2, 3), keepdims=True), x.shape[:2] + (1, 1)).copy()),
     "batch axis", "axis 1"),
    ("nlgrad.dot_product_backward", lambda: (lambda d, th, ph: (
        d @ ph.transpose(0, 2, 1) / th.shape[2], th.transpose(0, 2, 1) @ d / th.shape[2])),
     "factor 2", "C_i"),
    ("gc.add_fusion_backward", lambda: (lambda dout: (
        np.ones_like(dout), dout.sum(axis=(2, 3), keepdims=True))),
     "times 0", "everywhere"),
    ("snl.param_count", lambda: (lambda c: c + c * c + c), "boundary", "bias"),
])
def test_the_issues_misnamed_causes_are_named_right(exercise, learner, wrong_cause, right_cause):
    result = check(exercise, learner())
    assert result.status == "failed" and result.diagnosis is not None, str(result)
    assert wrong_cause not in result.diagnosis, result.diagnosis
    assert right_cause in result.diagnosis, result.diagnosis


def test_right_on_each_image_alone_names_the_batch_axis():
    """No two drawn cases differ in B alone, so the engine makes the contrast itself: each
    failing batched case cut into single images, where this learner is right."""
    def batch_mean(x):  # averages over the batch too: right only for one image
        return np.broadcast_to(x.mean(axis=(0, 2, 3), keepdims=True),
                               x.shape[:2] + (1, 1)).copy()

    result = check("se.squeeze", batch_mean)
    assert result.diagnosis is not None and "each image alone" in result.diagnosis, str(result)


def test_no_exercise_raises_in_a_hostile_notebook_state(learner_state, tmp_path):
    """Every exercise of the course, its reference handed in after the notebook changed every
    global setting at once: check() returns a verdict; a failing one names the settings."""
    import os
    import warnings

    from gclab.exercises import get

    np.seterr(all="raise")
    np.set_printoptions(precision=2, legacy="1.13")
    torch.set_default_dtype(torch.float64)
    torch.set_grad_enabled(False)
    torch.autograd.set_detect_anomaly(True)
    warnings.simplefilter("error")
    os.chdir(tmp_path)
    unexplained = []
    for entry in catalog():
        if entry.notebook == "engine_tests":
            continue
        result = check(entry.id, get(entry.id).reference)  # must not raise
        if not result.passed and "your notebook set" not in (result.diagnosis or ""):
            unexplained.append(f"{entry.id}: {result.message} / {result.diagnosis}")
    assert not unexplained, "\n".join(unexplained)


def test_checks_in_worker_threads_leave_the_process_state_alone():
    """gclab grade checks in worker threads: process-wide settings (the working directory, the
    warnings filters, torch's default dtype) are never switched there, so no thread can leave
    another's switch behind, and no subprocess started meanwhile inherits one."""
    import os
    import warnings

    before = (os.getcwd(), list(warnings.filters), torch.get_default_dtype())
    seen = []

    def reference(x):
        seen.append(os.getcwd())
        return x * 2.0

    registry.register(Exercise(id="engine.threads", notebook="engine_tests", title="threads",
                           reference=reference, cases=lambda rng: [Case(args=(np.ones(3),))],
                           mistakes={"a": lambda x: x, "b": lambda x: x * 3}))
    try:
        workers = [threading.Thread(target=lambda: [check("engine.threads", lambda x: x * 2.0)
                                                    for _ in range(5)]) for _ in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        registry.unregister("engine.threads")
    assert (os.getcwd(), list(warnings.filters), torch.get_default_dtype()) == before
    assert set(seen) == {before[0]}


# ---- a case only a formula reaches ------------------------------------------------------------
def _offsets_variance(depth, kernel=3):
    offsets = np.arange(kernel) - (kernel - 1) / 2  # 7 TiB at kernel 1e12 + 1
    return float(depth * np.mean(offsets**2))


def _summed_in_c(depth, kernel=3):
    squares = sum(map(pow, range(kernel), itertools.repeat(2)))
    mean = sum(range(kernel)) / kernel  # a C loop over 1e12 ints: no signal reaches it
    return depth * (squares / kernel - mean**2)


@pytest.mark.parametrize("answer, how", [(_offsets_variance, "ran out of memory"),
                                         (_summed_in_c, "did not finish")])
def test_a_numerical_answer_to_a_derivation_is_named_and_ends(answer, how):
    """Right on every case it can compute, but only a formula reaches the largest case: the
    verdict says so (not a bare MemoryError), and a loop that ignores the time limit's signal
    is ended all the same (it runs apart, in a forked child)."""
    assert answer(4, 3) == pytest.approx(4 * 8 / 12)
    result = check("rf.erf_variance", answer)
    assert not result.passed
    assert result.diagnosis.startswith("this check needs the closed form: your code computes "
                                       f"the answer numerically and {how}"), result.diagnosis
    assert "1e12 offsets" in result.diagnosis
    assert sum("needs the closed form" in c.message for c in result.checks) == 1


def test_an_answer_on_a_formula_only_case_keeps_its_output_and_printing():
    """The call run apart sends back what it returned and printed."""
    def formula(depth, kernel=3):
        print("derived")
        return depth * (kernel**2 - 1) / 12

    result = check("rf.erf_variance", formula)
    assert result.passed, str(result)
    calls = len(trials.trials(registry.get("rf.erf_variance")))
    assert result.printed == len("derived\n") * calls
    assert result.printed_text.startswith("derived\nderived\n")
