"""Issue 10, section 2: every exercise's cases can tell a wrong answer from a right one.

Maps: even and odd sizes, H != W, B = 1 and B > 1 (and one channel where the exercise allows
it), so a centre half a pixel off, H/W swapped or the batch mixed in cannot pass. Softmax: every
exercise whose computation contains a softmax has a case with large logits, so an exp without
max-subtraction overflows there (the learner simulation checks that such code fails).
"""

from __future__ import annotations

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
