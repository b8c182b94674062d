r"""The exercise engine: register exercises, check learner code, diagnose mistakes, give hints.

Learner side::

    >>> from gclab.exercises import check, hint, catalog
    >>> result = check("rf.theoretical", theoretical_rf)   # CheckResult (HTML in Jupyter)
    >>> result.passed, result.status, result.diagnosis
    (False, 'failed', 'off by one: forgot the 1 (the centre pixel itself)')
    >>> hint("rf.theoretical", level=2)                     # 1 concept, 2 shapes, 3 pseudo-code

Author side: one content module per notebook (``gclab/exercises/lessons/nbNN_slug.py``) calls
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

The stages: :func:`judge` runs the learner's object on every trial (:mod:`gclab.exercises.trials`)
through a :class:`~gclab.exercises.runner.Runner` (here, or in ``gclab grade``'s sandbox),
summarises what it found into checks, and, when a check failed, asks the strategies of
:mod:`gclab.exercises.causes` for the likely cause.

Grading hook: when the environment variable ``GCLAB_GRADE_LOG`` names a file, every
:func:`check` appends one JSON line ``{"id", "status", "passed", "message", ...}`` to it.
"""


import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List

from gclab.exercises import globalstate
from gclab.exercises.causes import Evidence, likely_cause, worst_case
from gclab.exercises.compare import clone, compare_outputs, mutation, torch_module, typename
from gclab.exercises.registry import Case, Exercise, get
from gclab.exercises.runner import LocalRunner, Runner, attempt
from gclab.exercises.running import MAX_PRINTED_CHARS, CappedStream, describe_error
from gclab.exercises.trials import Trial, check_property, trials
from gclab.exercises.verdict import CheckItem, CheckResult

__all__ = ["check", "judge"]


def check(exercise_id: str, obj: Any) -> CheckResult:
    """Check the learner's ``obj`` (a function, a value, or an ``nn.Module`` class) for one
    exercise and return a :class:`CheckResult` (``.passed``, ``.status``, ``.checks``,
    ``.diagnosis``); it renders as a coloured box in Jupyter and as text elsewhere.

    Example::

        >>> check("rf.layers_to_cover", lambda n, kernel=3: (n - 2) // (kernel - 1) + 1).passed
        True
    """
    ex = get(exercise_id)
    # the learner's state, where the engine may switch it (see globalstate.engine_state)
    learner = globalstate.snapshot() if globalstate.in_main_thread() else None
    result = judge(ex, obj, learner_state=learner)
    if result.status == "failed" and learner is not None:
        _blame_state(ex, obj, learner, result)
    _log(ex, result)
    result.show_now()
    return result


def _blame_state(ex: Exercise, obj: Any, learner: Dict[str, Any], result: CheckResult) -> None:
    """When the learner's global state differs from the engine's and the same code passes in
    the engine's state, that state is the cause: say so (the verdict stays a fail, since the
    code fails where the learner runs it)."""
    settings = globalstate.departures(learner)
    if not settings:
        return
    if not judge(ex, obj).passed:  # the learner's code in the engine's state
        return
    which = "that setting is" if len(settings) == 1 else "one of these settings is"
    result.diagnosis = (
        f"your notebook set {' and '.join(settings)}; in the default state your code passes "
        f"every public check, so {which} the cause: undo it (restart the kernel, or set it "
        "back) or limit it to a `with` block")


def judge(ex: Exercise, obj: Any, runner: Runner | None = None,
          learner_state: Dict[str, Any] | None = None) -> CheckResult:
    """The verdict on ``obj`` for ``ex``: run it on every trial, summarise, diagnose.

    ``runner`` says where the learner's object lives (default :class:`LocalRunner`: here;
    ``gclab grade`` passes one that asks its sandbox, so that this function and the references
    run where no learner code does). Everything but the learner's calls runs in the engine's
    global state; the learner's calls run in ``learner_state`` (a
    :func:`globalstate.snapshot`), or in the engine's when None."""
    with globalstate.engine_state():
        out = CappedStream()
        out.state = learner_state
        ev = Evidence(ex, obj, runner or LocalRunner(), out)
        checks: List[CheckItem] = []
        drawn = trials(ex)
        stop = _wrong_kind(ex, obj, checks) or _run(ev, drawn, checks)
        if stop is not None:
            return _result(ex, out, checks, stop)
        return _result(ex, out, checks, _summarise(ev, checks))


@dataclass
class _Verdict:
    """How a check ends: its status, message, diagnosis and the checks it did not run."""

    status: str
    message: str
    diagnosis: str | None = None
    not_run: int = 0


def _wrong_kind(ex: Exercise, obj: Any, checks: List[CheckItem]) -> _Verdict | None:
    """What kind of object did the learner hand in?"""
    if ex.kind == "function" and not callable(obj):
        checks.append(
            CheckItem("is a function", False, f"got a {typename(obj)} object, expected a function")
        )
        return _Verdict("failed", f"expected a function, got a {typename(obj)} object")
    if ex.kind == "module" and not callable(obj):
        checks.append(
            CheckItem(
                "is a module class", False, f"got a {typename(obj)}, expected an nn.Module class"
            )
        )
        return _Verdict("failed", f"expected an nn.Module class, got a {typename(obj)}")
    return None


def _run(ev: Evidence, drawn: List[Trial], checks: List[CheckItem]) -> _Verdict | None:
    """Run the learner's object on every trial, recording outputs, comparisons, the first
    mutation and the failing properties in ``ev``; a verdict when a run ends the check."""
    ex = ev.ex
    # the checks after the output ones: structure, the mutation check and the properties
    after = (0 if ex.kind == "value" else 1) + len(ex.properties) + len(ex.structure)
    if ex.structure:
        ev.structure = _check_structure(ev, drawn[0].case)
    for k, trial in enumerate(drawn):
        if ev.needs_formula and trial.case.closed_form:
            continue  # the same size under another seed: it would fail the same way, as slowly
        run = attempt(ev.runner, ex, ev.obj, trial, ev.out)
        left = len(drawn) - k - 1 + after
        if run.build_error is not None:
            checks.append(CheckItem(trial.label, False, run.build_error.message))
            checks.extend(ev.structure)  # what is wrong with the build says more than the keys
            wrong_build = next((c.message for c in ev.structure if not c.passed), None)
            return _Verdict("failed", run.build_error.message,
                            wrong_build or run.build_error.diagnosis,
                            left - len(ev.structure))
        if run.failed:
            if isinstance(run.outcome.error, NotImplementedError):
                checks.append(CheckItem(trial.label, False, "not yet implemented"))
                return _Verdict("not implemented", "not yet implemented", not_run=left)
            msg = describe_error(run.outcome, ex.time_limit)
            if trial.case.closed_form:  # computed where only a formula gets: the others go on
                ev.needs_formula.append(CheckItem(trial.label, False, _numerical(trial.case, msg)))
                continue
            checks.append(CheckItem(trial.label, False, msg))
            return _Verdict("failed", msg, not_run=left)
        if ex.kind == "value" and callable(run.value) and not callable(trial.expected):
            msg = f"got a {typename(run.value)}; pass the value itself (or call your function)"
            checks.append(CheckItem(trial.label, False, msg))
            return _Verdict("failed", msg)
        checks.append(_record(ev, trial, run))
    return None


def _record(ev: Evidence, trial: Trial, run: Any) -> CheckItem:
    """Compare one output with the reference's, look for a mutated input and failing
    properties; the output's check item."""
    ex, actual = ev.ex, run.value
    where = trial.label.replace("output on ", "", 1)
    ev.outputs.append(actual)
    ev.done.append(trial)
    cmp = compare_outputs(trial.expected, actual, ex.rtol, ex.atol)
    ev.cmps.append(cmp)
    if ex.kind != "value" and not ev.mutated:
        change = mutation(run.inputs_before, run.inputs_after)
        if change:
            ev.mutated.append((where, change))
    for prop in ex.properties:
        if prop.name in ev.prop_fail:
            continue
        ok, why = check_property(ex, prop, actual, trial.case)
        if not ok:
            ev.prop_fail[prop.name] = f"fails on {where}" + (f": {why}" if why else "")
    if cmp.ok:
        return CheckItem(trial.label, True, f"matches the reference ({cmp.message})")
    ev.failures += 1
    return CheckItem(trial.label, False, cmp.message)


def _summarise(ev: Evidence, checks: List[CheckItem]) -> _Verdict:
    """The checks after the outputs (closed forms, structure, mutation, properties), then the
    verdict: passed, or failed with the worst check and the likely cause."""
    ex = ev.ex
    n_out = len(checks)
    checks.extend(ev.needs_formula)
    checks.extend(ev.structure)
    if ex.kind != "value":
        first = ev.mutated[0] if ev.mutated else None
        checks.append(
            CheckItem(
                "inputs not mutated",
                first is None,
                "your code left its inputs unchanged"
                if first is None
                else f"your code {first[1]} (on {first[0]})"
                + ("" if "instead" in first[1] else
                   "; work on a copy or use out-of-place operations"),
            )
        )
    for prop in ex.properties:
        checks.append(CheckItem(prop.name, prop.name not in ev.prop_fail,
                                ev.prop_fail.get(prop.name, "holds on every case")))
    n_bad = sum(not c.passed for c in checks)
    if n_bad == 0:
        return _Verdict("passed", _passed_message(ex, checks, n_out))
    worst = _worst(checks, ev.cmps)
    msg = f"{n_bad} of {len(checks)} public checks failed; worst: {worst.name}: {worst.message}"
    return _Verdict("failed", msg, likely_cause(ev))


def _passed_message(ex: Exercise, checks: List[CheckItem], n_out: int) -> str:
    others = [c.name for c in checks[n_out:]]
    what = (
        "the value matches the reference"
        if ex.kind == "value"
        else f"output matches the reference on {n_out} case{'s' if n_out > 1 else ''} "
        f"({n_out // len(ex.seeds)} cases x {len(ex.seeds)} seeds)"
    )
    what = "; ".join([what, *others])
    msg = f"{len(checks)} public check{'s' if len(checks) != 1 else ''} passed: {what} "
    return msg + (f"(tolerance: relative error <= {ex.rtol:g})" if ex.rtol > 0
                  else "(exact match)")


def _result(ex: Exercise, out: CappedStream, checks: List[CheckItem], v: _Verdict
            ) -> CheckResult:
    """The CheckResult of verdict ``v``; printing past the limit fails a check that passed."""
    status, message, printed = v.status, v.message, out.count
    if printed > MAX_PRINTED_CHARS:
        too_much = (f"your code printed {printed:,} characters (limit {MAX_PRINTED_CHARS:,}); "
                    "remove the print statements")
        checks.append(CheckItem("output size", False, too_much))
        if status == "passed":
            status, message = "failed", too_much
        elif status == "failed":
            message = f"{message}; it also printed {printed:,} characters"
    return CheckResult(
        id=ex.id,
        title=ex.title,
        status=status,
        checks=checks,
        message=message,
        diagnosis=v.diagnosis,
        rtol=ex.rtol,
        printed=printed,
        printed_text=out.text,
        not_run=v.not_run,
        warnings=list(out.warnings),
        warned=out.warned,
        changes=list(out.changes),
    )


def _numerical(case: Case, error: str) -> str:
    """The verdict on a case only a formula reaches, where the learner's call ``error``-ed."""
    how = ("did not finish in time" if error.startswith("did not finish")
           else "ran out of memory" if "MemoryError" in error or "allocate" in error
           else "failed")
    return (f"this check needs the closed form: your code computes the answer numerically and "
            f"{how} here ({error}); {case.closed_form}: derive the formula and return it")


def _check_structure(ev: Evidence, case: Case) -> List[CheckItem]:
    """``ex.structure`` on the learner's freshly built module (before any weights are loaded):
    what the exercise asks for (its type, its parts, its initialisation). A module that cannot
    be built gives no items here; the output checks report that. Under ``gclab grade`` the
    runner's module is a data-only skeleton of the one built in the sandbox
    (:mod:`gclab.grading.skeleton`)."""
    t = torch_module()
    module = ev.runner.fresh_module(ev.ex, ev.obj, case, ev.out)
    if t is None or not isinstance(module, t.nn.Module):
        return []
    items = []
    for prop in ev.ex.structure:
        try:
            ok = prop.fn(module, *clone(case.args), **clone(case.kwargs))
        except Exception as exc:  # noqa: BLE001
            ok = (False, f"could not be checked ({type(exc).__name__}: {exc})")
        if isinstance(ok, tuple):
            ok, why = bool(ok[0]), str(ok[1]) if len(ok) > 1 else ""
        else:
            ok, why = bool(ok), ""
        items.append(CheckItem(prop.name, ok, "as asked" if ok else why or "not so"))
    return items


def _worst(checks: List[CheckItem], cmps: List[Any]) -> CheckItem:
    """The failed check to headline (:func:`gclab.exercises.causes.worst_case` among the
    outputs); then the other checks."""
    i = worst_case(cmps)
    return checks[i] if i is not None else next(c for c in checks if not c.passed)


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
