"""What a check runs the learner's object on, and the trusted side's own computations.

:func:`trials` draws an exercise's cases (one :class:`Trial` per seed and case) with the
reference's output on each; :func:`run_reference` runs the reference or a registered mistake on
a case; :func:`build_reference` builds the reference module whose weights the learner's module
gets; :func:`check_property` evaluates a :class:`~gclab.exercises.registry.Property`. All of it
is trusted code (no learner code runs here), computed in the engine's own global state
(:func:`gclab.exercises.globalstate.engine_state`); ``gclab grade`` calls it in the grader's
process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Tuple

import numpy as np

from gclab.exercises import globalstate
from gclab.exercises.compare import clone, torch_module
from gclab.exercises.registry import Case, Exercise, Property

__all__ = ["Trial", "build_reference", "check_property", "load_into", "run_reference",
           "trials"]


@dataclass
class Trial:
    """One (seed, case) of a check: its inputs and the reference output."""

    label: str
    case: Case
    expected: Any
    seed: int


def trials(ex: Exercise) -> List[Trial]:
    """Every (seed, case) of ``ex`` with the reference's output, in the order a check runs them."""
    if ex.kind == "value":
        return [Trial("value", Case(label="value"), ex.reference(), 0)]
    drawn: List[Trial] = []
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
            expected = run_reference(ex, ex.reference, case, seed * 1000 + i)
            drawn.append(Trial(label, case, expected, seed * 1000 + i))
    return drawn


def _seed_torch(seed: int) -> None:
    t = torch_module()
    if t is not None:
        t.manual_seed(seed)


def _randomize_module(module: Any, seed: int) -> None:
    t = torch_module()
    gen = t.Generator().manual_seed(seed)
    with t.no_grad():
        for p in module.parameters():
            p.copy_(t.randn(p.shape, generator=gen, dtype=t.float64).to(p.dtype) * 0.3)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(t.randn(b.shape, generator=gen, dtype=t.float64).to(b.dtype) * 0.3)
            elif name.endswith("running_var"):
                b.copy_(t.rand(b.shape, generator=gen, dtype=t.float64).to(b.dtype) + 0.5)


def build_reference(ex: Exercise, factory: Any, case: Case, seed: int) -> Any:
    """The module ``factory`` builds from ``case``'s constructor arguments, in eval mode, with
    random parameters drawn from ``seed`` when ``ex.randomize``."""
    with globalstate.engine_state(seed):
        module = factory(*clone(case.args), **clone(case.kwargs))
        if ex.randomize:
            _randomize_module(module, seed)
        module.eval()
    return module


def run_reference(ex: Exercise, fn: Any, case: Case, seed: int) -> Any:
    """The reference's (or a mistake's) output on ``case`` (trusted code: no guard), computed
    in the engine's own global state (:func:`globalstate.engine_state`)."""
    with globalstate.engine_state():
        return _run_reference_here(ex, fn, case, seed)


def _run_reference_here(ex: Exercise, fn: Any, case: Case, seed: int) -> Any:
    if ex.kind == "function":
        return fn(*clone(case.args), **clone(case.kwargs))
    if ex.kind == "value":
        return fn()
    t = torch_module()
    ref = build_reference(ex, ex.reference, case, seed)
    module = (
        ref
        if fn is ex.reference
        else load_into(fn(*clone(case.args), **clone(case.kwargs)), ref)
    )
    with t.no_grad():
        return module(*clone(case.inputs))


def load_into(module: Any, reference: Any) -> Any:
    """``module`` with ``reference``'s state_dict loaded (strict), in eval mode."""
    module.load_state_dict(reference.state_dict(), strict=True)
    module.eval()
    return module


def check_property(ex: Exercise, prop: Property, actual: Any, case: Case) -> Tuple[bool, str]:
    """``(holds, why)`` of ``prop`` on the output ``actual`` of ``case``; a property that raises
    fails, saying so."""
    try:
        if ex.kind == "function":
            ok = prop.fn(actual, *clone(case.args), **clone(case.kwargs))
        elif ex.kind == "module":
            ok = prop.fn(actual, *clone(case.inputs))
        else:
            ok = prop.fn(actual)
    except Exception as exc:  # noqa: BLE001 - a property that cannot be evaluated fails
        return False, f"could not be evaluated ({type(exc).__name__}: {exc})"
    if isinstance(ok, tuple):
        return bool(ok[0]), str(ok[1]) if len(ok) > 1 else ""
    return bool(ok), ""
