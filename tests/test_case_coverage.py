"""Every exercise's cases can tell a wrong answer from a right one.

Maps: even and odd sizes, H != W, B = 1 and B > 1 (and one channel where the exercise allows
it), so a centre half a pixel off, H/W swapped or the batch mixed in cannot pass. Softmax: every
exercise whose computation contains a softmax has a case with large logits, so an exp without
max-subtraction overflows there (the learner simulation checks that such code fails). No
coincidence a wrong answer can hide behind: N != N' for (B, N, N') maps, every number argument
varies, every array has a case whose sizes all differ, no square input is symmetric and no
batch repeats one item. Derivation exercises' mistakes evaluate on their derivation case.
Rounding rules: test_case_rounding.py; labels and names against their evidence:
test_case_labels.py.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from _case_tools import WITH_CASES, all_cases, arrays, bound_arguments  # tests/ on sys.path

from gclab.exercises import catalog, get

# exercises where a map of one channel is a valid input (no channel reduction to int(C * r))
ONE_CHANNEL = {"nl.to_positions", "nl.conv1x1", "nl.max_pool2x2", "snl.attention", "snl.pool",
               "se.squeeze", "gc.fusion", "rf.erf"}

# exercises defined on one image (the ERF of the centre output of x (1, C, H, W))
ONE_IMAGE = {"rf.erf"}


def _maps(e):
    """(B, C, H, W) of each case's first 4-d array (function args, module inputs)."""
    out = []
    for seed in e.seeds:
        for case in e.cases(np.random.default_rng(seed)):
            arrays = [a for a in (*case.inputs, *case.args, *case.kwargs.values())
                      if hasattr(a, "shape") and len(a.shape) == 4]
            if arrays:
                out.append(tuple(int(s) for s in arrays[0].shape))
    return out


MAP_EXERCISES = [e.id for e in catalog() if get(e.id).cases is not None and _maps(get(e.id))]


@pytest.mark.parametrize("exercise_id", MAP_EXERCISES)
def test_map_cases_cover_even_odd_non_square_and_both_batch_sizes(exercise_id):
    e = get(exercise_id)
    shapes = [s for s in _maps(e) if s[2] > 1 or s[3] > 1]  # (B, C, 1, 1) vectors: batch only
    all_shapes = _maps(e)
    assert any(s[0] == 1 for s in all_shapes), f"{exercise_id}: no case with B = 1"
    if exercise_id not in ONE_IMAGE:
        assert any(s[0] > 1 for s in all_shapes), f"{exercise_id}: no case with B > 1"
    if not shapes:
        return
    assert any(h != w for _, _, h, w in shapes), f"{exercise_id}: only square maps"
    assert any(h % 2 == 0 for _, _, h, _ in shapes), f"{exercise_id}: H always odd"
    assert any(h % 2 == 1 for _, _, h, _ in shapes), f"{exercise_id}: H always even"
    assert any(w % 2 == 0 for _, _, _, w in shapes), f"{exercise_id}: W always odd"
    assert any(w % 2 == 1 for _, _, _, w in shapes), f"{exercise_id}: W always even"
    if exercise_id in ONE_CHANNEL:
        assert any(c == 1 for _, c, _, _ in shapes), f"{exercise_id}: no one-channel case"


def test_erf_std_maps_are_even_and_odd():
    """rf.erf_std gets a 2-d map: a centre (H - 1) / 2 instead of H // 2 fails on even sizes."""
    shapes = [c.args[0].shape for c in get("rf.erf_std").cases(np.random.default_rng(0))]
    assert any(h % 2 == 0 and w % 2 == 0 for h, w in shapes)
    assert any(h % 2 == 1 for h, _ in shapes) and any(h != w for h, w in shapes)


# --------------------------------------------------------------------------- se.assemble
def test_se_assemble_refuses_the_named_blocks_and_gc_init():
    """"Assemble it from the parts, not SEBlock itself": SEBlock, a GCBlock and a Bottleneck
    with GC's zero init fail, although random weights would make their outputs right."""
    import torch

    from gclab.exercises import check
    from gclab.nn import AveragePooling, Bottleneck, GCBlock, GlobalContextFramework, SEBlock

    def se_block(c, ratio):
        return SEBlock(c, ratio=ratio)

    def gc_block(c, ratio):
        return GCBlock(c, ratio=ratio, pooling="avg", fusions=("mul",))

    def zero_init(c, ratio):
        b = Bottleneck(c, int(c * ratio), layer_norm=False, zero_init=True)
        return GlobalContextFramework(c, AveragePooling(), {"mul": b})

    for wrong, word in ((se_block, "named block"), (gc_block, "GCBlock"), (zero_init, "zero")):
        result = check("se.assemble", wrong)
        assert not result.passed, wrong.__name__
        assert result.diagnosis and word in result.diagnosis, (wrong.__name__, str(result))
    # the reference is SEBlock's twin: same keys, same forward
    ref = get("se.assemble").reference(16, 1 / 4)
    named = SEBlock(16, ratio=1 / 4)
    for p in named.parameters():
        torch.nn.init.normal_(p, std=0.3)
    ref.load_state_dict(named.state_dict(), strict=True)
    x = torch.randn(2, 16, 3, 5)
    assert torch.equal(ref(x), named(x))


# --------------------------------------------------------------------------- softmax
# every exercise whose computation contains a softmax (the learner writes one somewhere inside)
SOFTMAX_EXERCISES = ["nl.softmax", "nl.embedded_gaussian", "nl.context_modeling", "nl.forward",
                     "nlgrad.block_backward", "snl.attention", "snl.forward", "gc.forward",
                     "gc.module"]


def test_every_softmax_exercise_fails_a_softmax_without_max_subtraction():
    """The learner simulation holds, for each of these exercises, code whose softmax skips the
    max-subtraction; each must fail (the cases' logits reach ~1e3, where exp overflows)."""

    from learner_sim import WRONG, load

    from gclab.exercises import check

    load()
    for eid in SOFTMAX_EXERCISES:
        naive = [i for i in WRONG if i.exercise == eid
                 and ("naive" in i.what or "max subtraction" in i.what)]
        assert naive, f"no naive-softmax implementation of {eid} in tests/learner_sim"
        for impl in naive:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                result = check(eid, impl.obj)
            assert not result.passed, f"{eid}: {impl.what} passes"
            assert "overflow" in (result.diagnosis or "") or "NaN" in result.message, (
                eid, str(result))


# --------------------------------------------------------------------------- verdict texts
def test_gc_forward_headline_is_the_worst_case():
    """Average pooling in gc.forward: the first case (P = 2, the LayerNorm nearly removes the
    context) is off by ~1e-4 only; the headline quotes the worst case instead."""
    import gclab.numpy as gnp
    from gclab.exercises import check

    def avg_gc(x, params):
        fusions = tuple(f for f in ("add", "mul") if f"transform.{f}.0.weight" in params)
        rest = {k: v for k, v in params.items() if not k.startswith("context_modeling.")}
        return gnp.gc_block.forward(x, rest, pooling="avg", fusions=fusions)[0]

    result = check("gc.forward", avg_gc)
    assert not result.passed
    worst = result.message.split("worst: ", 1)[1]
    errors = [float(c.message.split("relative error ")[1].split(" ")[0])
              for c in result.checks if not c.passed and "relative error" in c.message]
    assert f"relative error {max(errors):.2g}" in worst


def test_module_structure_is_explained_not_the_state_dict_keys():
    from torch import nn

    from gclab.exercises import check
    from gclab.nn import AttentionPooling

    class ExtraNorm(nn.Module):
        def __init__(self, c, ratio=1 / 16):
            super().__init__()
            p = int(c * ratio)
            self.context_modeling = AttentionPooling(c)
            self.transform = nn.ModuleDict({"add": nn.Sequential(
                nn.Conv2d(c, p, 1), nn.LayerNorm([p, 1, 1]), nn.ReLU(), nn.Conv2d(p, c, 1),
                nn.LayerNorm([c, 1, 1]))})

        def forward(self, x):
            return x + self.transform["add"](self.context_modeling(x))

    class ReluFirst(ExtraNorm):
        def __init__(self, c, ratio=1 / 16):
            super().__init__(c, ratio)
            p = int(c * ratio)
            self.transform["add"] = nn.Sequential(nn.Conv2d(c, p, 1), nn.ReLU(),
                                                  nn.LayerNorm([p, 1, 1]), nn.Conv2d(p, c, 1))

    r = check("gc.module", ExtraNorm)
    assert not r.passed and "an extra LayerNorm" in r.message and "Missing key" not in r.message
    r = check("gc.module", ReluFirst)
    assert not r.passed and "different order" in r.diagnosis


def test_batched_3d_cases_cover_b_1_and_b_above_1():
    """(B, N, D) inputs (attention matrices, position lists): B = 1 and B > 1 both occur."""
    for e in catalog():
        ex = get(e.id)
        if ex.kind != "function" or ex.cases is None or e.id in MAP_EXERCISES:
            continue
        firsts = [next((a for a in c.args if hasattr(a, "shape")), None)
                  for c in ex.cases(np.random.default_rng(0))]
        if not firsts or any(a is None or len(a.shape) != 3 for a in firsts):
            continue
        sizes = {a.shape[0] for a in firsts}
        assert 1 in sizes and any(b > 1 for b in sizes), f"{e.id}: batch sizes {sizes}"


# Maps of shape (..., N, N'): a case with N != N' (a division by N' instead of N, or the two
# axes swapped, passes where every attention is square). Arrays whose last two axes are equal
# by definition are listed with the reason.
SQUARE_BY_DEFINITION = {
    ("nlgrad.softmax_jacobian", "output"): "the Jacobian of a softmax over N entries is N x N",
    ("inside.query_map", "argument 0"): "a query's row is read as a map of the same grid",
    ("snl.forward", "argument 3"): "W_v maps C channels to C channels",
}


def _nn_prime_shapes(ex):
    """{where: [shapes]} of the 3-d arrays (B, N, N') among arguments and reference outputs."""
    seen = {}
    for case in all_cases(ex):
        out = ex.reference(*case.args, **case.kwargs)
        found = [("output" if w == "out" else w, s) for w, s in arrays(out, "out")]
        for i, a in enumerate(case.args):
            found += list(arrays(a, f"argument {i}"))
        for where, shape in found:
            if len(shape) == 3:
                seen.setdefault(where, []).append(shape)
    # (P, 1, 1) parameters are not maps: keep arrays whose last two axes exceed 1 somewhere
    return {w: s for w, s in seen.items() if any(n > 1 or m > 1 for *_, n, m in s)}


FUNCTIONS = [e.id for e in catalog() if get(e.id).kind == "function" and get(e.id).cases]


@pytest.mark.parametrize("exercise_id", FUNCTIONS)
def test_every_n_by_n_prime_map_has_a_case_with_n_not_n_prime(exercise_id):
    for where, shapes in _nn_prime_shapes(get(exercise_id)).items():
        if (exercise_id, where) in SQUARE_BY_DEFINITION:
            continue
        assert any(n != m for *_, n, m in shapes), (
            f"{exercise_id}: {where} is square (N = N') on every case {sorted(set(shapes))}; "
            "add one with N != N' (keys sub-sampled)")


def test_square_by_definition_entries_exist():
    for eid, where in SQUARE_BY_DEFINITION:
        assert where in _nn_prime_shapes(get(eid)) or where in _argument_shapes(get(eid)), (
            eid, where)


def _argument_shapes(ex):
    """{where: [shapes]} of every array among a case's arguments and module inputs."""
    seen = {}
    for case in all_cases(ex):
        found = [w for i, a in enumerate(case.args) for w in arrays(a, f"argument {i}")]
        found += [w for i, a in enumerate(case.inputs) for w in arrays(a, f"input {i}")]
        for where, shape in found:
            seen.setdefault(where, []).append(shape)
    return seen


def _distinct_axes(shape) -> bool:
    sizes = [n for n in shape if n > 1]
    return len(set(sizes)) == len(sizes)


def _same_size_gaps(ex):
    return {w: sorted(set(s)) for w, s in _argument_shapes(ex).items()
            if (ex.id, w) not in SQUARE_BY_DEFINITION
            and any(sum(n > 1 for n in shape) >= 2 for shape in s)
            and not any(_distinct_axes(shape) for shape in s)}


@pytest.mark.parametrize("exercise_id", WITH_CASES)
def test_every_array_has_a_case_whose_axes_all_differ(exercise_id):
    """Two axes of the same size let a transpose or the wrong axis pass (C = H, N = C_i,
    Co = C): every array has a case whose sizes above 1 are pairwise different."""
    gaps = _same_size_gaps(get(exercise_id))
    assert not gaps, f"{exercise_id}: two axes of equal size on every case: {gaps}"


def test_the_same_size_check_finds_c_equal_h():
    from gclab.exercises.registry import Case, Exercise

    def cases(rng):
        return [Case(args=(np.zeros(s),)) for s in ((2, 4, 4, 5), (1, 3, 3, 7))]

    ex = Exercise(id="t.map", notebook="t", title="t", reference=lambda x: x, cases=cases)
    assert "argument 0" in _same_size_gaps(ex)


@pytest.mark.parametrize("exercise_id", WITH_CASES)
def test_every_number_or_switch_argument_varies(exercise_id):
    """A number or flag that is the same on every case lets a hard-coded constant pass
    (kernel 3 in the code where the function gets kernel, use_scale always on); and a map's
    C, like its B, H and W, takes at least two values."""
    ex = get(exercise_id)
    values, channels = {}, set()
    for case in all_cases(ex):
        for name, v in bound_arguments(ex, case).items():
            if isinstance(v, (bool, int, float, np.integer, np.floating)):
                values.setdefault(name, set()).add(v)
        maps = [a for a in (*case.inputs, *case.args) if getattr(a, "ndim", 0) == 4]
        if maps:
            channels.add(maps[0].shape[1])
    fixed = {k: v for k, v in values.items() if len(v) < 2}
    assert not fixed, f"{exercise_id}: the same value on every case: {fixed}"
    assert len(channels) != 1, f"{exercise_id}: every map has C = {channels}"


def _numeric(a):
    a = a.detach().numpy() if hasattr(a, "detach") else a
    return np.asarray(a, dtype=np.float64)


def _value_coincidences(ex):
    """Inputs whose values let a wrong answer pass: a square matrix equal to its transpose (a
    row read as a column passes), or a batch whose items are all equal (mixing them passes)."""
    found = []
    for case in all_cases(ex):
        for where, a in [*((f"argument {i}", a) for i, a in enumerate(case.args)),
                         *((f"input {i}", a) for i, a in enumerate(case.inputs))]:
            if getattr(a, "ndim", 0) < 2 or getattr(a, "dtype", None) is None:
                continue
            if a.dtype == object or str(a.dtype) == "bool":
                continue
            x = _numeric(a)
            if x.shape[-1] == x.shape[-2] > 1 and np.allclose(x, np.swapaxes(x, -1, -2)):
                found.append(f"{where} of {case.label!r} is symmetric")
            if x.ndim >= 3 and x.shape[0] > 1 and all(np.allclose(x[0], x[b])
                                                        for b in range(1, x.shape[0])):
                found.append(f"{where} of {case.label!r} has identical batch items")
    return found


@pytest.mark.parametrize("exercise_id", WITH_CASES)
def test_no_input_values_coincide(exercise_id):
    found = _value_coincidences(get(exercise_id))
    assert not found, f"{exercise_id}: " + "; ".join(found)


def test_the_value_check_finds_a_symmetric_map_and_a_repeated_batch():
    from gclab.exercises.registry import Case, Exercise

    sym = np.eye(4)[None].repeat(2, axis=0)

    def cases(rng):
        return [Case(args=(sym,), label="eye")]

    ex = Exercise(id="t.sym", notebook="t", title="t", reference=lambda a: a, cases=cases)
    assert len(_value_coincidences(ex)) == 4  # two findings on each of the two seeds


# --------------------------------------------------------------------------- derivation cases
# Derivation exercises have a case only the derivation passes (sizes no array or module can
# reach, gates no m has). Their registered mistakes run on it too: one computed numerically
# would crash there and could never be named, so each mistake must evaluate on every case.
DERIVATION_CASE = re.compile(r"too large|only an expression")
DERIVATION_EXERCISES = [e.id for e in catalog() if get(e.id).cases is not None
                        and any(DERIVATION_CASE.search(c.label) for c in all_cases(get(e.id)))]


def test_the_derivation_exercises_have_their_case():
    assert set(DERIVATION_EXERCISES) >= {"rf.erf_variance", "snl.param_count", "se.param_count",
                                         "gc.sigmoid_grad"}, DERIVATION_EXERCISES


@pytest.mark.parametrize("exercise_id", DERIVATION_EXERCISES)
def test_every_mistake_of_a_derivation_exercise_evaluates_on_every_case(exercise_id):
    ex = get(exercise_id)
    for name, variant in ex.mistakes.items():
        for case in all_cases(ex):
            try:
                with np.errstate(all="ignore"):
                    variant(*case.args, **case.kwargs)
            except Exception as exc:  # noqa: BLE001 - reported as the finding
                pytest.fail(f"{exercise_id}: the mistake {name!r} raises {exc!r} on "
                            f"{case.label!r}; write it as a closed form")
