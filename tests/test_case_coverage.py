"""Issue 10, section 2: every exercise's cases can tell a wrong answer from a right one.

Maps: even and odd sizes, H != W, B = 1 and B > 1 (and one channel where the exercise allows
it), so a centre half a pixel off, H/W swapped or the batch mixed in cannot pass. Softmax: every
exercise whose computation contains a softmax has a case with large logits, so an exp without
max-subtraction overflows there (the learner simulation checks that such code fails).
"""

from __future__ import annotations

import builtins
import inspect
import math
import re
import warnings

import numpy as np
import pytest

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
    import warnings

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


# --------------------------------------------------------------------------- coincidences
# A count or size computed with a rounding rule (``//``, ``int()``, ``math.ceil``, ``round``)
# needs a case where every other rule gives a different answer: with C divisible by r,
# ``round(C / r)`` and ``math.ceil(C / r)`` pass an exercise whose reference truncates. The
# reference runs on traced numbers (int and float subclasses that record each rounding and can
# swap its rule), once as written and once per swapped rule; a swap that never changes any
# case's output is a gap. Divisions of array sizes (H // 2) are covered by the even/odd sizes
# of the map test above.
_ROUNDING = {"mode": None, "seen": set()}
_RULES = {"floor": math.floor, "ceil": math.ceil, "round": round}


def _round(rule, q):
    """Round ``q`` by ``rule``, or by the swapped rule while ``_ROUNDING['mode']`` swaps it."""
    _ROUNDING["seen"].add(rule)
    mode = _ROUNDING["mode"]
    return _RULES[mode[1] if mode and mode[0] == rule else rule](q)


class _Traced:
    """Arithmetic that keeps the trace: every result of traced numbers is traced again."""

    def _op(self, other, fn):
        if isinstance(other, bool) or not isinstance(other, (int, float)):
            return NotImplemented
        return _trace(fn(self._plain(), other._plain() if isinstance(other, _Traced) else other))

    def __add__(self, o): return self._op(o, lambda a, b: a + b)  # noqa: E704
    def __radd__(self, o): return self._op(o, lambda a, b: b + a)  # noqa: E704
    def __sub__(self, o): return self._op(o, lambda a, b: a - b)  # noqa: E704
    def __rsub__(self, o): return self._op(o, lambda a, b: b - a)  # noqa: E704
    def __mul__(self, o): return self._op(o, lambda a, b: a * b)  # noqa: E704
    def __rmul__(self, o): return self._op(o, lambda a, b: b * a)  # noqa: E704
    def __truediv__(self, o): return self._op(o, lambda a, b: a / b)  # noqa: E704
    def __rtruediv__(self, o): return self._op(o, lambda a, b: b / a)  # noqa: E704
    def __floordiv__(self, o): return self._op(o, lambda a, b: _round("floor", a / b))  # noqa: E704
    def __rfloordiv__(self, o): return self._op(o, lambda a, b: _round("floor", b / a))  # noqa: E704


class _TInt(_Traced, int):
    __hash__ = int.__hash__

    def _plain(self):
        return int.__int__(self)


class _TFloat(_Traced, float):
    __hash__ = float.__hash__

    def _plain(self):
        return float.__float__(self)

    def __int__(self):
        q = self._plain()
        return int(_round("floor", q)) if q >= 0 else int(q)

    def __floor__(self):
        return int(_round("floor", self._plain()))

    def __ceil__(self):
        return int(_round("ceil", self._plain()))

    def __round__(self, n=None):
        return int(_round("round", self._plain())) if n is None else round(self._plain(), n)


class _IntMeta(type):
    def __instancecheck__(cls, obj):
        return isinstance(obj, builtins.int)


class _traced_int(builtins.int, metaclass=_IntMeta):
    """``int`` inside the reference's module: ``int(traced int)`` keeps the trace."""

    def __new__(cls, x=0, *rest):
        return x if isinstance(x, _TInt) and not rest else builtins.int(x, *rest)


def _trace(v):
    if isinstance(v, bool) or isinstance(v, _Traced):
        return v
    if isinstance(v, int):
        return _TInt(v)
    if isinstance(v, float):
        return _TFloat(v)
    if isinstance(v, (list, tuple)):
        return type(v)(_trace(x) for x in v)
    if isinstance(v, dict):
        return {k: _trace(x) for k, x in v.items()}
    return v


def _traced_outputs(ex, cases):
    """The reference's outputs (modules: their parameter shapes) on traced arguments."""
    g = getattr(ex.reference, "__globals__", {})
    had = "int" in g
    g["int"] = _traced_int
    try:
        outs = []
        for c in cases:
            out = ex.reference(*_trace(c.args), **_trace(c.kwargs))
            outs.append([tuple(p.shape) for p in out.parameters()] if ex.kind == "module"
                        else out)
        return outs
    finally:
        if not had:
            del g["int"]


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    a, b = (x.detach().numpy() if hasattr(x, "detach") else x for x in (a, b))
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def _all_cases(ex):
    return [c for seed in ex.seeds for c in ex.cases(np.random.default_rng(seed))]


def _rounding_gaps(ex) -> list:
    """'floor -> ceil' for each swap of a rounding rule that no case's output notices."""
    cases = _all_cases(ex)
    _ROUNDING["mode"], _ROUNDING["seen"] = None, set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = _traced_outputs(ex, cases)
        gaps = []
        for rule in sorted(_ROUNDING["seen"]):
            for other in sorted(set(_RULES) - {rule}):
                _ROUNDING["mode"] = (rule, other)
                try:
                    if _same(base, _traced_outputs(ex, cases)):
                        gaps.append(f"{rule} -> {other}")
                except Exception:  # noqa: BLE001 - a swap that breaks the reference is noticed
                    pass
                finally:
                    _ROUNDING["mode"] = None
    return gaps


WITH_CASES = [e.id for e in catalog() if get(e.id).cases is not None]


@pytest.mark.parametrize("exercise_id", WITH_CASES)
def test_every_rounding_rule_is_told_apart(exercise_id):
    gaps = _rounding_gaps(get(exercise_id))
    assert not gaps, (f"{exercise_id}: a learner who rounds differently passes ({', '.join(gaps)}"
                      " changes no case): add a case whose quotient is not an integer, with a "
                      "fraction above 1/2 (and one below, where the reference rounds)")


def test_the_rounding_tracer_finds_a_divisible_only_case():
    """The tracer sees a floor hidden in ``int(C * ratio)`` and ``C // r``, and a gap when
    every case divides evenly."""
    from gclab.exercises.registry import Case, Exercise

    def count(c, ratio):
        return c * int(c * ratio) + c // 4

    def ex(pairs):
        return Exercise(id="t.count", notebook="t", title="t", reference=count,
                        cases=lambda rng: [Case(args=p) for p in pairs])

    assert _rounding_gaps(ex([(16, 0.25), (32, 0.5)])) == ["floor -> ceil", "floor -> round"]
    assert _rounding_gaps(ex([(16, 0.25), (14, 0.25)])) == []  # 3.5: ceil and round give 4


# Maps of shape (..., N, N'): a case with N != N' (a division by N' instead of N, or the two
# axes swapped, passes where every attention is square). Arrays whose last two axes are equal
# by definition are listed with the reason.
SQUARE_BY_DEFINITION = {
    ("nlgrad.softmax_jacobian", "output"): "the Jacobian of a softmax over N entries is N x N",
    ("inside.query_map", "argument 0"): "a query's row is read as a map of the same grid",
    ("snl.forward", "argument 3"): "W_v maps C channels to C channels",
}


def _arrays(value, where):
    if hasattr(value, "shape") and not isinstance(value, (int, float)):
        yield where, tuple(value.shape)
    elif isinstance(value, (list, tuple)):
        for i, x in enumerate(value):
            yield from _arrays(x, f"{where}[{i}]")
    elif isinstance(value, dict):
        for k, x in value.items():
            yield from _arrays(x, f"{where}[{k!r}]")


def _nn_prime_shapes(ex):
    """{where: [shapes]} of the 3-d arrays (B, N, N') among arguments and reference outputs."""
    seen = {}
    for case in _all_cases(ex):
        out = ex.reference(*case.args, **case.kwargs)
        found = [("output" if w == "out" else w, s) for w, s in _arrays(out, "out")]
        for i, a in enumerate(case.args):
            found += list(_arrays(a, f"argument {i}"))
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
    for case in _all_cases(ex):
        found = [w for i, a in enumerate(case.args) for w in _arrays(a, f"argument {i}")]
        found += [w for i, a in enumerate(case.inputs) for w in _arrays(a, f"input {i}")]
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


def _bound_arguments(ex, case):
    """The case's arguments by parameter name, defaults filled in (an omitted kernel is 3)."""
    try:
        sig = inspect.signature(ex.reference)
        bound = sig.bind(*case.args, **case.kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)
    except (TypeError, ValueError):
        return {**{i: a for i, a in enumerate(case.args)}, **case.kwargs}


@pytest.mark.parametrize("exercise_id", WITH_CASES)
def test_every_number_or_switch_argument_varies(exercise_id):
    """A number or flag that is the same on every case lets a hard-coded constant pass
    (kernel 3 in the code where the function gets kernel, use_scale always on); and a map's
    C, like its B, H and W, takes at least two values."""
    ex = get(exercise_id)
    values, channels = {}, set()
    for case in _all_cases(ex):
        for name, v in _bound_arguments(ex, case).items():
            if isinstance(v, (bool, int, float, np.integer, np.floating)):
                values.setdefault(name, set()).add(v)
        maps = [a for a in (*case.inputs, *case.args) if getattr(a, "ndim", 0) == 4]
        if maps:
            channels.add(maps[0].shape[1])
    fixed = {k: v for k, v in values.items() if len(v) < 2}
    assert not fixed, f"{exercise_id}: the same value on every case: {fixed}"
    assert len(channels) != 1, f"{exercise_id}: every map has C = {channels}"


# --------------------------------------------------------------------------- names vs evidence
# A check's name and the evidence it reports must agree: the verdict says "<property>: fails on
# <case label>", so a property named for a subset of cases ("finite for logits of 1e4") must not
# cite a case outside it ("(2,6,3), logits ~1e3"), and a label must describe its case. Checked
# where the case carries the evidence: shapes and sizes in labels against the arrays and
# arguments, "logits ~1eK" against the logits the reference's softmax or attention pooling
# actually receives.
_TUPLE = re.compile(r"\((\d+(?:\s*,\s*\d+)+)\)")
_GRID = re.compile(r"\b(\d+)x(\d+)\b")
_NAMED = re.compile(r"(?<![\w'])(N'|N|Ci|C_i|C|P|B|H|W|ratio|r|s|k|n_units|use_scale|size|"
                    r"depth|kernel|h)(?:\s*=\s*|\s+)(True|False|\d+(?:\.\d+)?)(?![\w.])")
_LOGITS = re.compile(r"logits ~1e(\d+)")


def _evidence(ex, case):
    """{name: value} a label may state about ``case``, from its arguments, meta and arrays."""
    ev = {k: v for k, v in _bound_arguments(ex, case).items()
          if isinstance(k, str) and isinstance(v, (bool, int, float))}
    aliases = {"channels": "C", "in_channels": "C", "reduction": "r", "height": "H",
               "width": "W"}
    ev.update({aliases[k]: v for k, v in list(ev.items()) if k in aliases})
    ev.update({("Ci" if k == "C_i" else k): v for k, v in case.meta.items()})
    arrays = [a for a in (*case.inputs, *case.args) if hasattr(a, "shape")]
    if arrays and len(arrays[0].shape) >= 2:
        ev.setdefault("B", arrays[0].shape[0])
    maps = [a for a in arrays if len(a.shape) == 4]
    if maps:
        ev.setdefault("C", maps[0].shape[1])
        ev.setdefault("H", maps[0].shape[2])
        ev.setdefault("W", maps[0].shape[3])
    if ex.kind == "module":
        ev["C"], ev["ratio"] = case.args[0], case.args[1]
    return ev


def _stated_tuples(ex, case):
    """The shapes of the case's arrays (also nested in dicts) and the tuples among its
    arguments (a list of (channels, units), consecutive ints such as a query's (row, col))."""
    found = {s for _, s in _arrays((*case.inputs, *case.args, case.kwargs), "x")}
    found |= {s[-2:] for s in list(found) if len(s) >= 2}
    flat = [a for a in case.args if isinstance(a, int) and not isinstance(a, bool)]
    found |= {tuple(flat[i:i + n]) for n in (2, 3, 4) for i in range(len(flat) - n + 1)}
    for a in case.args:
        if isinstance(a, (list, tuple)):
            found |= {tuple(x) for x in a if isinstance(x, tuple)}
    return found


def _label_problems(ex, case):
    label, problems = case.label, []
    tuples = _stated_tuples(ex, case)
    for m in _TUPLE.finditer(label):
        t = tuple(int(v) for v in m.group(1).split(","))
        if t not in tuples:
            problems.append(f"{label!r} states {t}, which no array or argument of the case has")
    if "conv" not in label and " models" not in label:
        for m in _GRID.finditer(label):
            t = (int(m.group(1)), int(m.group(2)))
            if t not in tuples:
                problems.append(f"{label!r} states {t[0]}x{t[1]}, which the case does not have")
    ev = _evidence(ex, case)
    for m in _NAMED.finditer(label):
        name, said = m.group(1), m.group(2)
        name = "Ci" if name == "C_i" else name
        if name not in ev:
            continue  # nothing to check it against
        true = ev[name]
        ok = (str(true) == said if isinstance(true, bool)
              else math.isclose(float(said), float(true), rel_tol=0.01))
        if not ok:
            problems.append(f"{label!r} says {name} = {said}; the case has {true}")
    return problems


@pytest.mark.parametrize("exercise_id", WITH_CASES)
def test_case_labels_describe_their_cases(exercise_id):
    ex = get(exercise_id)
    problems = [p for case in _all_cases(ex) for p in _label_problems(ex, case)]
    assert not problems, f"{exercise_id}:\n  " + "\n  ".join(problems)


class _LogitRecorder:
    """Records max |logits| reaching gclab's softmax, attention pooling and torch.softmax
    while the reference runs (rebinding the functions in every module that holds them)."""

    def __init__(self):
        import torch

        import gclab.numpy.ops as ops

        self.seen: list = []
        picks = [(ops.softmax_forward, 0), (ops.softmax, 0), (ops.attention_pool_forward, 1),
                 (torch.softmax, 0), (torch.nn.functional.softmax, 0)]
        self.wrapped = {id(f): (f, self._wrap(f, i)) for f, i in picks}
        self.saved = []

    def _wrap(self, fn, index):
        def recorded(*args, **kwargs):
            z = args[index]
            z = z.detach().numpy() if hasattr(z, "detach") else np.asarray(z)
            self.seen.append(float(np.max(np.abs(z))))
            return fn(*args, **kwargs)
        return recorded

    def __enter__(self):
        import sys

        import torch

        for mod in list(sys.modules.values()):
            name = getattr(mod, "__name__", "") or ""
            if not (name.startswith("gclab") or mod is torch or name == "torch.nn.functional"):
                continue
            for attr, value in list(vars(mod).items()):
                pair = self.wrapped.get(id(value))
                if pair is not None and value is pair[0]:
                    self.saved.append((mod, attr, value))
                    setattr(mod, attr, pair[1])
        return self

    def __exit__(self, *exc):
        for mod, attr, value in self.saved:
            setattr(mod, attr, value)


def _logit_claims(ex):
    """(label, claimed exponent K, the largest |logit| the reference's softmax saw or None)."""
    from gclab.exercises.core import _run_reference

    out = []
    for seed in ex.seeds:
        for i, case in enumerate(ex.cases(np.random.default_rng(seed))):
            m = _LOGITS.search(case.label)
            if not m:
                continue
            with _LogitRecorder() as rec, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _run_reference(ex, ex.reference, case, seed * 1000 + i)
            out.append((case.label, int(m.group(1)), max(rec.seen) if rec.seen else None))
    return out


LOGIT_CLAIMS = [e.id for e in catalog() if get(e.id).cases is not None
                and any(_LOGITS.search(c.label) for c in _all_cases(get(e.id)))]


@pytest.mark.parametrize("exercise_id", LOGIT_CLAIMS)
def test_logits_in_a_label_are_the_logits_the_reference_sees(exercise_id):
    for label, k, seen in _logit_claims(get(exercise_id)):
        if seen is None:
            continue  # no softmax in this exercise's reference (the pairwise logits of dot_product)
        assert 10 ** (k - 0.5) <= seen < 10 ** (k + 1), (
            f"{exercise_id}: {label!r} claims logits ~1e{k}; the reference's softmax sees "
            f"{seen:.3g}")


_SUBSET = re.compile(r"\bfor (?:large|small|big|logits|inputs|an? )|\bof 1e\d", re.I)
_UP_TO = re.compile(r"up to ~1e(\d+)")


@pytest.mark.parametrize("exercise_id", [e.id for e in catalog() if get(e.id).properties])
def test_property_names_hold_on_every_case_they_can_cite(exercise_id):
    """A property runs on every case and its failure cites the first case where it fails: its
    name states what holds on all of them ("finite on every case (logits up to ~1e4)"), never
    a subset ("finite for logits of 1e4", which then cited a case with logits ~1e3)."""
    ex = get(exercise_id)
    for prop in ex.properties:
        assert not _SUBSET.search(prop.name), (
            f"{exercise_id}: the property {prop.name!r} names a subset of the cases, but it "
            "runs on (and cites) every case")
        m = _UP_TO.search(prop.name)
        if m:
            seen = [s for _, _, s in _logit_claims(ex) if s is not None]
            assert seen and 10 ** (int(m.group(1)) - 0.5) <= max(seen) < 10 ** (
                int(m.group(1)) + 1), (exercise_id, prop.name, seen)


def test_the_label_checks_catch_a_wrong_label():
    from gclab.exercises.registry import Case

    ex = get("nl.embedded_gaussian")
    th, ph = np.zeros((2, 5, 4)), np.zeros((2, 4, 6))
    good = Case(args=(th, ph), label="N=5, N'=6, Ci=4", meta={"C_i": 4, "N": 5, "N'": 6})
    assert _label_problems(ex, good) == []
    bad = Case(args=(th, ph), label="(2,6,3), N=6", meta={"C_i": 4, "N": 5, "N'": 6})
    assert len(_label_problems(ex, bad)) == 2
    assert _SUBSET.search("finite for logits of 1e4") and not _SUBSET.search(
        "finite on every case (logits up to ~1e4)")


def _numeric(a):
    a = a.detach().numpy() if hasattr(a, "detach") else a
    return np.asarray(a, dtype=np.float64)


def _value_coincidences(ex):
    """Inputs whose values let a wrong answer pass: a square matrix equal to its transpose (a
    row read as a column passes), or a batch whose items are all equal (mixing them passes)."""
    found = []
    for case in _all_cases(ex):
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
                        and any(DERIVATION_CASE.search(c.label) for c in _all_cases(get(e.id)))]


def test_the_derivation_exercises_have_their_case():
    assert set(DERIVATION_EXERCISES) >= {"rf.erf_variance", "snl.param_count", "se.param_count",
                                         "gc.sigmoid_grad"}, DERIVATION_EXERCISES


@pytest.mark.parametrize("exercise_id", DERIVATION_EXERCISES)
def test_every_mistake_of_a_derivation_exercise_evaluates_on_every_case(exercise_id):
    ex = get(exercise_id)
    for name, variant in ex.mistakes.items():
        for case in _all_cases(ex):
            try:
                with np.errstate(all="ignore"):
                    variant(*case.args, **case.kwargs)
            except Exception as exc:  # noqa: BLE001 - reported as the finding
                pytest.fail(f"{exercise_id}: the mistake {name!r} raises {exc!r} on "
                            f"{case.label!r}; write it as a closed form")


_RULE_WORDS = {"floor": re.compile(r"rounded down|round(?:ing)? down|//|floor|int\(\)"),
               "ceil": re.compile(r"round(?:ed)? up|ceil", re.I),
               "round": re.compile(r"rounded to the nearest|round\(\)")}


def _rounding_rules(ex) -> set:
    _ROUNDING["mode"], _ROUNDING["seen"] = None, set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _traced_outputs(ex, _all_cases(ex))
    return set(_ROUNDING["seen"])


@pytest.mark.parametrize("exercise_id", WITH_CASES)
def test_the_hints_name_every_rounding_rule_the_cases_tell_apart(exercise_id):
    """Once the cases tell floor, ceil and round apart, "as an int" is ambiguous: a learner who
    reads it as round() fails. Some hint names the rule the reference uses."""
    ex = get(exercise_id)
    text = "\n".join(ex.hints)
    for rule in _rounding_rules(ex):
        assert _RULE_WORDS[rule].search(text), (
            f"{exercise_id}: the reference rounds by {rule}, and no hint says so")
