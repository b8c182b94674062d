"""Running the learner's object on one trial: the :class:`Attempt` it produces.

A :class:`Runner` says where the learner's object lives: :class:`LocalRunner` calls it in this
process (a learner's ``check``); ``gclab grade`` has one that asks its sandbox
(:class:`gclab.grading.trusted.SandboxRunner`). Either way :func:`attempt` does everything
else -- copying the inputs, building the reference module, turning a module that does not load
into a :class:`BuildError` that names the layer -- and the learner's calls themselves are
:func:`gclab.exercises.calls.perform` on both sides, so a check and a grade cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Protocol

from gclab.exercises.calls import DOES_NOT_LOAD, NOT_A_MODULE, Played, Request, perform
from gclab.exercises.compare import clone
from gclab.exercises.registry import Case, Exercise
from gclab.exercises.running import CappedStream, Outcome, guarded, guarded_apart
from gclab.exercises.structure import describe_structure
from gclab.exercises.trials import Trial, build_reference

__all__ = ["Attempt", "BuildError", "LocalRunner", "Runner", "attempt", "does_not_load",
           "request_for"]


@dataclass
class BuildError:
    """The learner's module could not be used: ``message`` for the verdict, ``diagnosis`` (what
    is wrong with its layers) when it can be named."""

    message: str
    diagnosis: str | None = None


@dataclass
class Attempt:
    """What one run of the learner's object on one trial produced.

    ``outcome``: its output (``outcome.value``), or the error it raised, or a time-out;
    ``build_error``: the module could not be used (then ``outcome`` is empty);
    ``inputs_before`` / ``inputs_after``: a copy of the inputs as given and the inputs as the
    learner's code left them (for the mutation check; None for values and failed runs);
    ``printed`` (the first characters), ``printed_chars``, ``warned``, ``warnings`` and
    ``changes``: what the run printed, warned and changed in the global settings.
    """

    outcome: Outcome
    build_error: BuildError | None = None
    inputs_before: Any = None
    inputs_after: Any = None
    printed: str = ""
    printed_chars: int = 0
    warned: int = 0
    warnings: List[str] = field(default_factory=list)
    changes: List[str] = field(default_factory=list)

    @property
    def value(self) -> Any:
        return self.outcome.value

    @property
    def failed(self) -> bool:
        """No output: a build error, an exception or a time-out."""
        return (self.build_error is not None or self.outcome.error is not None
                or self.outcome.timed_out)


class Runner(Protocol):
    """Where the learner's object lives. ``play`` performs one :class:`Request` on it (what the
    learner's calls print goes into ``out``); ``fresh_module`` builds the learner's module
    afresh for the structure checks (the module, a data-only skeleton of it, or None)."""

    def play(self, ex: Exercise, obj: Any, request: Request, out: CappedStream) -> Played: ...

    def fresh_module(self, ex: Exercise, obj: Any, case: Case, out: CappedStream) -> Any: ...


class LocalRunner:
    """The learner's object in this process, each call under the limits of
    :func:`gclab.exercises.running.guarded` (a case only a formula reaches: ``guarded_apart``)."""

    def play(self, ex: Exercise, obj: Any, request: Request, out: CappedStream) -> Played:
        run = guarded_apart if request.apart else guarded
        return perform(obj, request, lambda fn: run(fn, ex.time_limit, out))

    def fresh_module(self, ex: Exercise, obj: Any, case: Case, out: CappedStream) -> Any:
        built = guarded(lambda: obj(*clone(case.args), **clone(case.kwargs)), ex.time_limit, out)
        return None if built.error is not None or built.timed_out else built.value


def request_for(ex: Exercise, obj: Any, trial: Trial, state: Any = None) -> Request:
    """The :class:`Request` for one trial, on fresh copies of its inputs (``state``: the
    reference's state_dict, for a module)."""
    case = trial.case
    if ex.kind == "value":
        return Request("value", call_it=callable(obj) and not callable(trial.expected))
    if ex.kind == "function":
        return Request("function", args=clone(case.args), kwargs=clone(case.kwargs),
                       apart=bool(case.closed_form))
    return Request("module", args=clone(case.args), kwargs=clone(case.kwargs), state=state,
                   inputs=clone(case.inputs))


def attempt(runner: Runner, ex: Exercise, obj: Any, trial: Trial, out: CappedStream) -> Attempt:
    """Run the learner's ``obj`` on ``trial`` where ``runner`` says; what the run printed,
    warned and changed is added to ``out`` (the whole check's) and kept in the Attempt."""
    case = trial.case
    reference = None
    if ex.kind == "module":
        reference = build_reference(ex, ex.reference, case, trial.seed)
        request = request_for(ex, obj, trial, reference.state_dict())
    else:
        request = request_for(ex, obj, trial)
    before = {"value": None, "function": (clone(case.args), clone(case.kwargs)),
              "module": clone(case.inputs)}[ex.kind]
    sub = out.fresh()
    played = runner.play(ex, obj, request, sub)
    out.add_stream(sub)
    result = Attempt(played.outcome, printed=sub.text, printed_chars=sub.count,
                     warned=sub.warned, warnings=list(sub.warnings), changes=list(sub.changes))
    if played.refusal is not None:
        result.outcome = Outcome()
        result.build_error = _build_error(played, reference)
    elif not result.failed and ex.kind != "value":
        result.inputs_before, result.inputs_after = before, played.inputs_after
    return result


def _build_error(played: Played, reference: Any) -> BuildError:
    kind, detail = played.refusal
    if kind == NOT_A_MODULE:
        return BuildError(f"building it gave a {detail}, not an nn.Module")
    if kind == DOES_NOT_LOAD:
        return does_not_load(played.built, reference, detail)
    return BuildError(f"it could not be used ({kind}: {detail})"[:600])


def does_not_load(module: Any, reference: Any, error: str) -> BuildError:
    """The verdict on a module whose parameters do not load into the reference's state_dict:
    which layer differs (:func:`describe_structure`) when that can be told, else the error."""
    layers = None
    if module is not None:
        try:
            layers = describe_structure(module, reference)
        except Exception:  # noqa: BLE001 - an odd module: quote the error instead
            layers = None
    if layers:
        return BuildError("its parameters do not load into the reference's state_dict: "
                          + layers, layers)
    text = error.replace("\n\t", " ").replace("\n", " ")
    return BuildError("its parameters do not match the reference's (names/shapes of the "
                      "state_dict): " + text[:400])
