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
