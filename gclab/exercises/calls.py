"""The learner's side of one attempt: build, load and call the learner's object.

:func:`perform` is the only code that calls the learner's object during a check. It runs where
that object lives: in the learner's own process (:class:`gclab.exercises.runner.LocalRunner`)
or, under ``gclab grade``, inside the sandbox (:mod:`gclab.grading.worker`), so a check and a
grade call the object the same way. What to do comes in a :class:`Request` (inputs the trusted
side drew and copied); what happened goes back as a :class:`Played`. The trusted side
(:func:`gclab.exercises.runner.attempt`) turns that into an
:class:`~gclab.exercises.runner.Attempt`.

Importing this module imports neither torch nor any lesson: the module kind imports torch when
it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Tuple

from gclab.exercises.compare import typename
from gclab.exercises.running import Outcome

__all__ = ["NOT_A_MODULE", "DOES_NOT_LOAD", "Played", "Request", "perform"]

#: :attr:`Played.refusal` kinds: what building the learner's module gave is no module, or its
#: parameters do not load into the reference's state_dict.
NOT_A_MODULE = "not a module"
DOES_NOT_LOAD = "does not load"

#: Runs a zero-argument function under the check's limits and returns its Outcome.
Guard = Callable[[Callable[[], Any]], Outcome]


@dataclass
class Request:
    """One call of the learner's object. ``kind`` is the exercise's kind; ``call_it`` (values):
    call the handed-in callable instead of taking it as the value; ``args``/``kwargs``: the
    function's arguments or the module's constructor arguments; ``state``: the reference's
    state_dict to load (modules); ``inputs``: the forward inputs (modules); ``apart``: a case
    only a formula reaches (the call runs in a child process, see ``running.guarded_apart``).
    The learner may change ``args``, ``kwargs`` and ``inputs``: they are the copies it gets."""

    kind: str
    call_it: bool = False
    args: Tuple[Any, ...] = ()
    kwargs: Dict[str, Any] = field(default_factory=dict)
    state: Any = None
    inputs: Tuple[Any, ...] = ()
    apart: bool = False


@dataclass
class Played:
    """What :func:`perform` saw. ``outcome``: the value (or error, or time-out) of the call;
    ``refusal``: ``(kind, detail)`` when the module could not be used (``NOT_A_MODULE`` with
    the built object's type name, ``DOES_NOT_LOAD`` with the error's text), else None;
    ``built``: the learner's module as built (a skeleton of it on the grader's side), for
    naming what is wrong with its layers; ``inputs_after``: the inputs as the learner's code
    left them (``(args, kwargs)`` of a function, the forward inputs of a module)."""

    outcome: Outcome
    refusal: Tuple[str, str] | None = None
    built: Any = None
    inputs_after: Any = None


def perform(obj: Any, request: Request, guard: Guard) -> Played:
    """Call the learner's ``obj`` as ``request`` says, each learner call under ``guard``."""
    if request.kind == "value":
        return Played(guard(obj) if request.call_it else Outcome(value=obj))
    if request.kind == "function":
        args, kwargs = request.args, request.kwargs
        return Played(guard(lambda: obj(*args, **kwargs)), inputs_after=(args, kwargs))
    if request.kind == "module":
        return _module(obj, request, guard)
    raise ValueError(f"unknown exercise kind {request.kind!r}")


def _module(obj: Any, request: Request, guard: Guard) -> Played:
    """Build the learner's module, load the reference's weights into it, run forward."""
    import torch

    args, kwargs = request.args, request.kwargs
    built = guard(lambda: obj(*args, **kwargs))
    if built.error is not None or built.timed_out:
        return Played(built)
    module = built.value
    if not isinstance(module, torch.nn.Module):
        return Played(Outcome(), (NOT_A_MODULE, typename(module)))

    def load():
        module.load_state_dict(request.state, strict=True)
        module.eval()

    loaded = guard(load)
    if loaded.error is not None or loaded.timed_out:
        why = "did not finish in time" if loaded.timed_out else str(loaded.error)
        return Played(Outcome(), (DOES_NOT_LOAD, why), module)
    inputs = request.inputs

    def forward():
        with torch.no_grad():
            return module(*inputs)

    return Played(guard(forward), None, module, inputs)
