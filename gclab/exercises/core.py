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

Grading hook: when the environment variable ``GCLAB_GRADE_LOG`` names a file, every
:func:`check` appends one JSON line ``{"id", "status", "passed", "message", ...}`` to it.
"""



import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import numpy as np

from gclab.exercises import across, globalstate, probe
from gclab.exercises import diagnose as _detect

# The four parts of the engine (compare, registry, running, verdict); core orchestrates them.
from gclab.exercises.compare import (
    _clone,
    _compare,
    _mutation,
    _torch,
    _typename,
)
from gclab.exercises.mismatch import explain_mismatch
from gclab.exercises.registry import Case, Exercise, Property, get
from gclab.exercises.running import (
    MAX_PRINTED_CHARS,
    _CappedStream,
    _describe_error,
    _guarded,
    _guarded_apart,
    _Outcome,
)
from gclab.exercises.verdict import CheckItem, CheckResult

__all__ = ["check"]

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
    with globalstate.engine_state(seed):
        module = factory(*_clone(case.args), **_clone(case.kwargs))
        if ex.randomize:
            _randomize_module(module, seed)
        module.eval()
    return module


def _run_reference(ex: Exercise, fn: Any, case: Case, seed: int) -> Any:
    """The reference's (or a mistake's) output on ``case`` (trusted code: no guard), computed
    in the engine's own global state (:func:`globalstate.engine_state`)."""
    with globalstate.engine_state():
        return _run_reference_here(ex, fn, case, seed)


def _run_reference_here(ex: Exercise, fn: Any, case: Case, seed: int) -> Any:
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
    # the learner's state, where the engine may switch it (see globalstate.engine_state)
    learner = globalstate.snapshot() if globalstate.in_main_thread() else None
    result = _check(ex, obj, learner_state=learner)
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
    if not _check(ex, obj).passed:  # the learner's code in the engine's state
        return
    which = "that setting is" if len(settings) == 1 else "one of these settings is"
    result.diagnosis = (
        f"your notebook set {' and '.join(settings)}; in the default state your code passes "
        f"every public check, so {which} the cause: undo it (restart the kernel, or set it "
        "back) or limit it to a `with` block")


def _check(ex: Exercise, obj: Any, run_learner: Any = None,
           learner_state: Dict[str, Any] | None = None) -> CheckResult:
    """The verdict on ``obj``. ``run_learner(ex, obj, trial, out)`` runs the learner's object
    on one trial (default: here, under :func:`_guarded`; ``gclab grade`` passes one that asks
    its sandbox, so that this function and its references run where no learner code does).
    Everything but the learner's calls runs in the engine's global state; the learner's calls
    run in ``learner_state`` (a :func:`globalstate.snapshot`), or in the engine's when None."""
    with globalstate.engine_state():
        return _check_here(ex, obj, run_learner, learner_state)


def _check_here(ex: Exercise, obj: Any, run_learner: Any,
                learner_state: Dict[str, Any] | None) -> CheckResult:
    run = run_learner or _run_learner
    out = _CappedStream()
    out.state = learner_state
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
            warnings=list(out.warnings),
            warned=out.warned,
            changes=list(out.changes),
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
    cmps: List[Any] = []
    failures = 0
    # the checks after the output ones: structure, the mutation check and the properties
    after = (0 if ex.kind == "value" else 1) + len(ex.properties) + len(ex.structure)
    structure = (_check_structure(ex, obj, trials[0].case, out,
                                  getattr(run_learner, "build_skeleton", None))
                 if ex.structure else [])

    def left(k: int) -> int:
        return len(trials) - k - 1 + after
    mutated: List[str] = []
    prop_fail: Dict[str, str] = {}
    done: List[_Trial] = []  # the trials with an output, in the order of outputs and cmps
    needs_formula: List[CheckItem] = []

    for k, trial in enumerate(trials):
        if needs_formula and trial.case.closed_form:
            continue  # the same size under another seed: it would fail the same way, as slowly
        outcome, kept_inputs, passed_inputs, build_error = run(ex, obj, trial, out)
        build_diagnosis = None
        if isinstance(build_error, tuple):
            build_error, build_diagnosis = build_error
        if build_error:
            checks.append(CheckItem(trial.label, False, build_error))
            checks.extend(structure)  # what is wrong with the build says more than the keys
            wrong_build = next((c.message for c in structure if not c.passed), None)
            return finish("failed", build_error, diagnosis=wrong_build or build_diagnosis,
                          not_run=left(k) - len(structure))
        if outcome.error is not None or outcome.timed_out:
            if isinstance(outcome.error, NotImplementedError):
                checks.append(CheckItem(trial.label, False, "not yet implemented"))
                return finish("not implemented", "not yet implemented", not_run=left(k))
            msg = _describe_error(outcome, ex.time_limit)
            if trial.case.closed_form:  # computed where only a formula gets: the other cases go on
                needs_formula.append(CheckItem(trial.label, False, _numerical(trial.case, msg)))
                continue
            checks.append(CheckItem(trial.label, False, msg))
            return finish("failed", msg, not_run=left(k))
        actual = outcome.value
        if ex.kind == "value" and callable(actual) and not callable(trial.expected):
            msg = f"got a {_typename(actual)}; pass the value itself (or call your function)"
            checks.append(CheckItem(trial.label, False, msg))
            return finish("failed", msg)
        outputs.append(actual)
        done.append(trial)
        cmp = _compare(trial.expected, actual, ex.rtol, ex.atol)
        cmps.append(cmp)
        if cmp.ok:
            checks.append(CheckItem(trial.label, True, f"matches the reference ({cmp.message})"))
        else:
            failures += 1
            checks.append(CheckItem(trial.label, False, cmp.message))
        if ex.kind != "value" and not mutated:
            change = _mutation(kept_inputs, passed_inputs)
            if change:
                mutated.append((trial.label.replace("output on ", "", 1), change))
        for prop in ex.properties:
            if prop.name in prop_fail:
                continue
            ok, why = _check_property(ex, prop, actual, trial.case)
            if not ok:
                where = trial.label.replace("output on ", "", 1)
                prop_fail[prop.name] = f"fails on {where}" + (f": {why}" if why else "")

    checks.extend(needs_formula)
    checks.extend(structure)
    if ex.kind != "value":
        checks.append(
            CheckItem(
                "inputs not mutated",
                not mutated,
                "your code left its inputs unchanged"
                if not mutated
                else f"your code {mutated[0][1]} (on {mutated[0][0]})"
                + ("" if "instead" in mutated[0][1] else
                   "; work on a copy or use out-of-place operations"),
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
    headline = _headline_mismatch(done, outputs, cmps)
    if headline is not None:  # a wrong type or container: that is the cause, nothing numeric
        diagnosis = headline
    elif failures:  # wrong outputs (crashes returned earlier): which mistake gives them?
        diagnosis = _diagnose(ex, done, outputs)
        if diagnosis is None:  # right on each image alone?
            diagnosis = _batch_contrast(ex, obj, done, cmps, run, out)
        if diagnosis is None:
            try:  # the detectors only read arrays, but a verdict must never crash on them
                with np.errstate(all="ignore"):
                    diagnosis = across.explain(_observations(ex, done, outputs, cmps))
            except Exception:  # noqa: BLE001
                diagnosis = None
    if diagnosis is None and needs_formula and not failures:  # right, but not derived
        diagnosis = needs_formula[0].message
    if diagnosis is None:  # right outputs, wrong build (SEBlock itself, a zero init, ...)
        diagnosis = next((c.message for c in structure if not c.passed), None)
    if diagnosis is None and mutated:  # the values may be right; what the code did is the cause
        diagnosis = f"your code {mutated[0][1]}"
    if diagnosis is None and not failures:  # right values, a property says why (a float count)
        why = [prop_fail[p.name].split(": ", 1)[1] for p in ex.properties
               if p.name in prop_fail and ": " in prop_fail[p.name]]
        diagnosis = why[0] if why and "could not be evaluated" not in why[0] else None
    worst = _worst(checks, cmps)
    msg = f"{n_bad} of {len(checks)} public checks failed; worst: {worst.name}: "
    msg += worst.message
    return finish("failed", msg, diagnosis)


def _numerical(case: Case, error: str) -> str:
    """The verdict on a case only a formula reaches, where the learner's call ``error``-ed."""
    how = ("did not finish in time" if error.startswith("did not finish")
           else "ran out of memory" if "MemoryError" in error or "allocate" in error
           else "failed")
    return (f"this check needs the closed form: your code computes the answer numerically and "
            f"{how} here ({error}); {case.closed_form}: derive the formula and return it")


def _check_structure(ex: Exercise, obj: Any, case: Case, out: _CappedStream,
                     build: Any = None) -> List[CheckItem]:
    """``ex.structure`` on the learner's freshly built module (before any weights are loaded):
    what the exercise asks for (its type, its parts, its initialisation). A module that cannot
    be built gives no items here; the output checks report that. ``build(ex, case, out)``, when
    given (``gclab grade``), returns the module instead: a data-only skeleton of the one built
    in the sandbox (:mod:`gclab.grading.skeleton`), or None."""
    t = _torch()
    if build is not None:
        module = build(ex, case, out)
    else:
        built = _guarded(lambda: obj(*_clone(case.args), **_clone(case.kwargs)), ex.time_limit,
                         out)
        module = None if built.error is not None or built.timed_out else built.value
    if t is None or not isinstance(module, t.nn.Module):
        return []
    items = []
    for prop in ex.structure:
        try:
            ok = prop.fn(module, *_clone(case.args), **_clone(case.kwargs))
        except Exception as exc:  # noqa: BLE001
            ok = (False, f"could not be checked ({type(exc).__name__}: {exc})")
        if isinstance(ok, tuple):
            ok, why = bool(ok[0]), str(ok[1]) if len(ok) > 1 else ""
        else:
            ok, why = bool(ok), ""
        items.append(CheckItem(prop.name, ok, "as asked" if ok else why or "not so"))
    return items


def _worst(checks: List[CheckItem], cmps: List[Any]) -> CheckItem:
    """The failed check to headline: a wrong structure (type, shape, dtype, NaN) before a wrong
    value, and among wrong values the largest relative error; then the other checks."""
    bad = [(i, c) for i, c in enumerate(checks[: len(cmps)]) if not c.passed]
    if bad:
        def rank(item):
            r = cmps[item[0]]
            return (0 if not r.value_only else 1, -r.error)

        return min(bad, key=rank)[1]
    return next(c for c in checks if not c.passed)


def _batch_contrast(ex: Exercise, obj: Any, trials: List[_Trial], cmps: List[Any], run: Any,
                    out: _CappedStream) -> str | None:
    """The failing cases cut into single images, run by the learner and the reference
    (:func:`probe.batch_contrast`)."""
    failing = [t for t, c in zip(trials, cmps) if not c.ok]
    seed = failing[0].seed if failing else 0

    def learner(case: Case) -> Any:
        outcome, _, _, build_error = run(ex, obj, _Trial("probe", case, None, seed), out)
        if build_error or outcome.error is not None or outcome.timed_out:
            raise RuntimeError("the learner's code failed on a single image")
        return outcome.value

    def same(expected: Any, actual: Any) -> bool:
        return _compare(expected, actual, ex.rtol, ex.atol).ok

    return probe.batch_contrast(ex.kind, [t.case for t in failing],
                                lambda case: _run_reference(ex, ex.reference, case, seed),
                                learner, same)


def _headline_mismatch(trials: List[_Trial], outputs: List[Any], cmps: List[Any]) -> str | None:
    """The cause when the worst failing case has the wrong type, container or dtype."""
    bad = [i for i, c in enumerate(cmps) if not c.ok]
    if not bad:
        return None
    i = min(bad, key=lambda j: (0 if not cmps[j].value_only else 1, -cmps[j].error))
    if cmps[i].kind not in ("type", "container", "dtype"):
        return None
    try:
        return explain_mismatch(outputs[i], trials[i].expected, cmps[i].kind, cmps[i].message)
    except Exception:  # noqa: BLE001 - a verdict never crashes on odd outputs
        return None


def _observations(ex: Exercise, trials: List[_Trial], outputs: List[Any], cmps: List[Any]):
    """What the generic detectors see of each case (see ``gclab.exercises.diagnose``)."""
    obs = []
    names = _arg_names(ex)
    for trial, actual, cmp in zip(trials, outputs, cmps):
        case = trial.case
        inputs = case.inputs if ex.kind == "module" else (*case.args, *case.kwargs.values())
        settings, sizes = {}, {}
        if ex.kind == "function":
            named = {**dict(zip(names, case.args)), **case.kwargs}
            settings = {k: v for k, v in named.items() if isinstance(v, (str, bool))}
            sizes = {_LEARNER_NAMES.get(k, k): v for k, v in named.items()
                     if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))}
        obs.append(
            _detect.Observation(
                actual=actual,
                expected=trial.expected,
                inputs=inputs,
                quantities=_detect.case_quantities(inputs, {**sizes, **case.meta}),
                passed=cmp.ok,
                label=trial.label.replace("output on ", "", 1),
                error=cmp.error if cmp.value_only else float("inf"),
                settings=settings,
            )
        )
    return obs


#: An integer argument's name -> the symbol the lessons use for it (a factor or a count
#: off by one of these is named in the learner's terms).
_LEARNER_NAMES = {"channels": "C", "in_channels": "C", "height": "H", "width": "W",
                  "reduction": "r", "planes": "P"}


def _arg_names(ex: Exercise) -> List[str]:
    """The reference's parameter names (for naming a case's settings: ``position``)."""
    import inspect

    try:
        return list(inspect.signature(ex.reference).parameters)
    except (TypeError, ValueError):
        return []


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
        guarded = _guarded_apart if case.closed_form else _guarded
        outcome = guarded(lambda: obj(*passed[0], **passed[1]), limit, out)
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
        try:
            layers = _detect.describe_structure(module, ref)
        except Exception:  # noqa: BLE001
            layers = None
        if layers:
            return _Outcome(), None, None, (
                "its parameters do not load into the reference's state_dict: " + layers,
                layers,
            )
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
    """The names of the mistakes whose outputs the learner's output matches on every case
    (several that give the same output are all named: "A, or B"), or None."""
    with np.errstate(all="ignore"):
        names = list(_matching_mistakes(ex, trials, outputs))
    if not names:
        return None
    return ", or ".join(names)


def _matching_mistakes(ex: Exercise, trials: List[_Trial], outputs: List[Any]):
    if len(outputs) != len(trials):
        return
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
                yield name
        except Exception:  # noqa: BLE001 - a variant that crashes on these inputs matches nothing
            continue


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
