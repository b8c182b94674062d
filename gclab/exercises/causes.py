"""The likely cause of a failed check: an ordered list of strategies.

Each strategy reads the :class:`Evidence` a check gathered and returns a sentence or None; the
first sentence is the verdict's diagnosis (:func:`likely_cause`). In order
(:data:`STRATEGIES`): a wrong type or container in the headlined case; the registered mistakes
whose outputs the learner's match on every case; a batch contrast (right on each image alone);
the generic detectors across the cases (:mod:`gclab.exercises.across`); a closed form not
derived; a wrong build; a mutated input; a property's reason.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from gclab.exercises import across, probe
from gclab.exercises.compare import Mismatch, compare_outputs
from gclab.exercises.mismatch import explain_mismatch
from gclab.exercises.observe import Observation, case_quantities
from gclab.exercises.registry import Case, Exercise
from gclab.exercises.runner import Runner, attempt
from gclab.exercises.running import CappedStream
from gclab.exercises.trials import Trial, run_reference
from gclab.exercises.verdict import CheckItem

__all__ = ["Evidence", "STRATEGIES", "likely_cause", "worst_case"]


@dataclass
class Evidence:
    """What a check found: the trials that gave an output (``done``) with the learner's
    ``outputs`` and their comparisons ``cmps``; ``failures`` (wrong outputs); ``mutated``
    (``(where, what)`` of the first input changed); ``prop_fail`` (property name -> why);
    ``needs_formula`` (cases only a formula reaches, where the call failed); ``structure`` (the
    build's checks); and what is needed to run more (``runner``, ``obj``, ``out``)."""

    ex: Exercise
    obj: Any
    runner: Runner
    out: CappedStream
    done: List[Trial] = field(default_factory=list)
    outputs: List[Any] = field(default_factory=list)
    cmps: List[Mismatch] = field(default_factory=list)
    failures: int = 0
    mutated: List[Tuple[str, str]] = field(default_factory=list)
    prop_fail: Dict[str, str] = field(default_factory=dict)
    needs_formula: List[CheckItem] = field(default_factory=list)
    structure: List[CheckItem] = field(default_factory=list)


def worst_case(cmps: List[Mismatch]) -> int | None:
    """The index of the failing comparison to headline: a wrong structure (type, shape, dtype,
    NaN) before a wrong value, and among wrong values the largest relative error."""
    bad = [i for i, c in enumerate(cmps) if not c.ok]
    if not bad:
        return None
    return min(bad, key=lambda j: (0 if not cmps[j].value_only else 1, -cmps[j].error))


# --------------------------------------------------------------------------------------------
# The strategies, in order
# --------------------------------------------------------------------------------------------
def headline_mismatch(ev: Evidence) -> str | None:
    """The worst failing case has the wrong type, container or dtype: that is the cause, and
    nothing numeric may follow (values of a wrong type were never compared)."""
    i = worst_case(ev.cmps)
    if i is None or ev.cmps[i].kind not in ("type", "container", "dtype"):
        return None
    try:
        return explain_mismatch(ev.outputs[i], ev.done[i].expected, ev.cmps[i].kind,
                                ev.cmps[i].message)
    except Exception:  # noqa: BLE001 - a verdict never crashes on odd outputs
        return None


def registered_mistakes(ev: Evidence) -> str | None:
    """The names of the mistakes whose outputs the learner's output matches on every case
    (several that give the same output are all named: "A, or B")."""
    if not ev.failures:
        return None
    with np.errstate(all="ignore"):
        names = list(_matching_mistakes(ev.ex, ev.done, ev.outputs))
    return ", or ".join(names) if names else None


def _matching_mistakes(ex: Exercise, done: List[Trial], outputs: List[Any]):
    if len(outputs) != len(done):
        return
    for name, variant in ex.mistakes.items():
        try:
            for trial, actual in zip(done, outputs):
                if ex.kind == "value":
                    wrong = variant()
                else:
                    wrong = run_reference(ex, variant, trial.case, trial.seed)
                if not compare_outputs(wrong, actual, ex.rtol, ex.atol, equal_nan=True).ok:
                    break
            else:
                yield name
        except Exception:  # noqa: BLE001 - a variant that crashes on these inputs matches nothing
            continue


def batch_contrast(ev: Evidence) -> str | None:
    """The failing cases cut into single images, run by the learner and the reference
    (:func:`probe.batch_contrast`)."""
    if not ev.failures:
        return None
    ex = ev.ex
    failing = [t for t, c in zip(ev.done, ev.cmps) if not c.ok]
    seed = failing[0].seed if failing else 0

    def learner(case: Case) -> Any:
        run = attempt(ev.runner, ex, ev.obj, Trial("probe", case, None, seed), ev.out)
        if run.failed:
            raise RuntimeError("the learner's code failed on a single image")
        return run.value

    def same(expected: Any, actual: Any) -> bool:
        return compare_outputs(expected, actual, ex.rtol, ex.atol).ok

    return probe.batch_contrast(ex.kind, [t.case for t in failing],
                                lambda case: run_reference(ex, ex.reference, case, seed),
                                learner, same)


def across_cases(ev: Evidence) -> str | None:
    """The generic detectors on every case, summed up in one sentence."""
    if not ev.failures:
        return None
    try:  # the detectors only read arrays, but a verdict must never crash on them
        with np.errstate(all="ignore"):
            return across.explain(observations(ev.ex, ev.done, ev.outputs, ev.cmps))
    except Exception:  # noqa: BLE001
        return None


def closed_form_not_derived(ev: Evidence) -> str | None:
    """Right where it could compute, but a case only a formula reaches failed."""
    if ev.needs_formula and not ev.failures:
        return ev.needs_formula[0].message
    return None


def wrong_build(ev: Evidence) -> str | None:
    """Right outputs, wrong build (SEBlock itself, a zero init, ...)."""
    return next((c.message for c in ev.structure if not c.passed), None)


def mutated_input(ev: Evidence) -> str | None:
    """The values may be right; what the code did to its inputs is the cause."""
    return f"your code {ev.mutated[0][1]}" if ev.mutated else None


def property_reason(ev: Evidence) -> str | None:
    """Right values, a property says why (a float count)."""
    if ev.failures:
        return None
    why = [ev.prop_fail[p.name].split(": ", 1)[1] for p in ev.ex.properties
           if p.name in ev.prop_fail and ": " in ev.prop_fail[p.name]]
    return why[0] if why and "could not be evaluated" not in why[0] else None


#: The strategies in the order they are tried; the first sentence is the diagnosis.
STRATEGIES: Tuple[Callable[[Evidence], str | None], ...] = (
    headline_mismatch,
    registered_mistakes,
    batch_contrast,
    across_cases,
    closed_form_not_derived,
    wrong_build,
    mutated_input,
    property_reason,
)


def likely_cause(ev: Evidence) -> str | None:
    """The first strategy's sentence, or None when none applies."""
    for strategy in STRATEGIES:
        cause = strategy(ev)
        if cause is not None:
            return cause
    return None


# --------------------------------------------------------------------------------------------
# What the generic detectors see
# --------------------------------------------------------------------------------------------
#: An integer argument's name -> the symbol the lessons use for it (a factor or a count
#: off by one of these is named in the learner's terms).
_LEARNER_NAMES = {"channels": "C", "in_channels": "C", "height": "H", "width": "W",
                  "reduction": "r", "planes": "P"}


def observations(ex: Exercise, done: List[Trial], outputs: List[Any],
                 cmps: List[Mismatch]) -> List[Observation]:
    """What the generic detectors see of each case (see :mod:`gclab.exercises.diagnose`)."""
    obs = []
    names = _arg_names(ex)
    for trial, actual, cmp in zip(done, outputs, cmps):
        case = trial.case
        inputs = case.inputs if ex.kind == "module" else (*case.args, *case.kwargs.values())
        settings, sizes = {}, {}
        if ex.kind == "function":
            named = {**dict(zip(names, case.args)), **case.kwargs}
            settings = {k: v for k, v in named.items() if isinstance(v, (str, bool))}
            sizes = {_LEARNER_NAMES.get(k, k): v for k, v in named.items()
                     if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))}
        obs.append(
            Observation(
                actual=actual,
                expected=trial.expected,
                inputs=inputs,
                quantities=case_quantities(inputs, {**sizes, **case.meta}),
                passed=cmp.ok,
                label=trial.label.replace("output on ", "", 1),
                error=cmp.error if cmp.value_only else float("inf"),
                settings=settings,
            )
        )
    return obs


def _arg_names(ex: Exercise) -> List[str]:
    """The reference's parameter names (for naming a case's settings: ``position``)."""
    try:
        return list(inspect.signature(ex.reference).parameters)
    except (TypeError, ValueError):
        return []
