"""The public API of gclab.nn documents itself: shapes, the equation, an example that runs,
and type hints on every public signature."""

from __future__ import annotations

import doctest
import importlib
import inspect

import pytest
import torch
from torch import nn

import gclab.nn

PUBLIC = {name: getattr(gclab.nn, name) for name in gclab.nn.__all__}
# the blocks and their pieces; gclab.nn also exports placement/checkpoint helpers,
# which need docstrings and type hints like any public name but compute no block equation
CORE_MODULES = {
    "gclab.nn.framework",
    "gclab.nn.gc_block",
    "gclab.nn.se_block",
    "gclab.nn.snl_block",
    "gclab.nn.non_local",
    "gclab.nn.mmcv.convert",
}
CORE = {n: o for n, o in PUBLIC.items() if o.__module__ in CORE_MODULES}
BLOCKS = {n: o for n, o in CORE.items() if inspect.isclass(o) and issubclass(o, nn.Module)}
# things that compute on tensors (blocks, pieces, fusion) state their equation
WITH_EQUATION = {**BLOCKS, "fusion": CORE["fusion"]}

# No known gaps: every block's own docstring has its equation and an example.
EQUATION_GAP: frozenset = frozenset()
EXAMPLE_GAP: frozenset = frozenset()


def _doc(obj) -> str:
    """The object's own docstring (not inherited: what help() shows first)."""
    return obj.__doc__ or ""


def _params(names, gap=frozenset()):
    return [
        pytest.param(
            n,
            marks=pytest.mark.xfail(
                reason="non_local.py's subclass docstrings lack an equation/example of their "
                "own (owned by the Non-local fast-path work; reported)",
                strict=False,
            ),
        )
        if n in gap
        else n
        for n in sorted(names)
    ]


def test_all_names_exist_and_are_public():
    core = {"GCBlock", "SEBlock", "SimplifiedNonLocal2d", "NonLocal1d", "NonLocal2d",
            "NonLocal3d", "GlobalContextFramework", "AttentionPooling", "AveragePooling",
            "Bottleneck", "fusion", "from_mmcv", "mmcv_to_gclab_state_dict"}
    assert core <= set(CORE)
    for name, obj in PUBLIC.items():
        assert not name.startswith("_")
        assert obj.__module__.startswith("gclab.nn"), name


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_public_name_has_a_docstring(name):
    assert len(_doc(PUBLIC[name]).strip()) > 40, f"{name} has no real docstring"


@pytest.mark.parametrize("name", sorted(CORE))
def test_docstring_gives_the_shapes(name):
    doc = _doc(CORE[name])
    assert "(B, C" in doc, f"{name}'s docstring should give the shapes, e.g. (B, C, H, W)"


@pytest.mark.parametrize("name", _params(WITH_EQUATION, EQUATION_GAP))
def test_docstring_gives_the_equation(name):
    doc = _doc(WITH_EQUATION[name])
    assert ":math:" in doc or ".. math::" in doc, f"{name}'s docstring has no equation"


@pytest.mark.parametrize("name", _params(CORE, EXAMPLE_GAP))
def test_docstring_has_an_example(name):
    doc = _doc(CORE[name])
    assert "Example" in doc and ">>>" in doc, f"{name}'s docstring has no >>> example"


def _public_callables():
    """Every public function, and every public method a gclab class defines (not torch's)."""
    for name, obj in sorted(PUBLIC.items()):
        if inspect.isfunction(obj):
            yield name, obj
            continue
        for klass in obj.__mro__:
            if not klass.__module__.startswith("gclab"):
                continue
            for attr, member in vars(klass).items():
                if attr.startswith("_") and attr != "__init__":
                    continue
                if isinstance(member, property):
                    member = member.fget
                if inspect.isfunction(member):
                    yield f"{name}.{attr}", member


CALLABLES = dict(_public_callables())


@pytest.mark.parametrize("name", sorted(CALLABLES))
def test_public_signatures_carry_type_hints(name):
    fn = CALLABLES[name]
    sig = inspect.signature(fn)
    missing = [
        p.name
        for p in sig.parameters.values()
        if p.name not in ("self", "cls")
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and p.annotation is inspect.Parameter.empty
    ]
    assert not missing, f"{name}: parameters without a type hint: {missing}"
    assert sig.return_annotation is not inspect.Signature.empty, f"{name}: no return type hint"


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_every_block_forward_is_checked_for_hints(name):
    """forward is found on the block or a gclab base class, so its hints are checked above."""
    forward = BLOCKS[name].forward
    if forward.__module__.startswith("torch."):  # Bottleneck is an nn.Sequential
        assert issubclass(BLOCKS[name], nn.Sequential), name
        return
    assert forward.__module__ in CORE_MODULES
    assert any(fn is forward for fn in CALLABLES.values()), name


@pytest.mark.parametrize("module", sorted(CORE_MODULES))
def test_docstring_examples_run(module):
    """Every >>> example in the block modules is a doctest that passes."""
    mod = importlib.import_module(module)
    torch.manual_seed(0)
    globs = {**vars(mod), "torch": torch, "nn": nn, **PUBLIC}
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    n_examples = 0
    for test in finder.find(mod, module, globs=globs):
        n_examples += len(test.examples)
        runner.run(test, out=lambda s: None)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctests failed in {module}"
    assert n_examples > 0, f"{module} has no runnable example"
