"""``gclab grade`` holds no answer in the sandbox: a submission that hands in gclab's own
blocks (or the pieces they are built from) for the exercises that ask the learner to build
them gets no points, however it calls them (subclassing, the framework's pieces, from a thread,
with the profiler switched off first).

Each hostile notebook starts with its lesson's own first cell (the imports the learner copy
has); all are graded in one ``grade_many`` (module fixture). The lesson's own solution grades
100 % (tests/test_grade_solutions.py) with the same answer-free view.
"""

from __future__ import annotations

import pytest
from gradekit import SOLUTIONS, code_cells, write_notebook

from gclab.grading.grade import grade_many

pytestmark = pytest.mark.slow

L4, L5, L6 = "04_simplified_nl", "05_gc_block", "06_se_framework"
L7, L8 = "07_experiments", "08_gclab_in_your_project"


def _head(lesson: str) -> str:
    return code_cells(SOLUTIONS / f"{lesson}.ipynb")[0] + "\nimport sys, threading\n"


IN_THREAD = '''
def in_thread(fn, *args):
    """Run fn in a new thread with the profiler off there too; its value or None."""
    box = []
    def work():
        sys.setprofile(None)
        box.append(fn(*args))
    t = threading.Thread(target=work)
    t.start()
    t.join()
    return box[0] if box else None
'''

GC_MODULE = '''
def gc_module(params):
    """gclab's GCBlock holding ``params`` (a GCBlock state_dict as arrays)."""
    c = params["context_modeling.conv_mask.weight"].shape[1]
    fus = tuple(f for f in ("add", "mul") if f"transform.{f}.0.weight" in params)
    p = params[f"transform.{fus[0]}.0.weight"].shape[0]
    m = GCBlock(c, planes=p, fusions=fus).double().eval()
    m.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    return m
'''

ATTACKS = {
    # lesson 4: the SNL pieces of gclab.nn for the NumPy exercises
    "l4_library": (L4, [IN_THREAD, '''
def attention_weights(x, w_k, b_k):
    sys.setprofile(None)
    pool = AttentionPooling(x.shape[1]).double()
    with torch.no_grad():
        pool.conv_mask.weight.copy_(torch.from_numpy(w_k).reshape(1, -1, 1, 1))
        pool.conv_mask.bias.fill_(float(b_k))
        return pool.attention(torch.from_numpy(x)).numpy()
check("snl.attention", attention_weights)
''', '''
def simplified_nonlocal(x, w_k, b_k, w_v, b_v):
    def work():
        m = SimplifiedNonLocal2d(x.shape[1]).double()
        with torch.no_grad():
            m.context_modeling.conv_mask.weight.copy_(torch.from_numpy(w_k).reshape(1, -1, 1, 1))
            m.context_modeling.conv_mask.bias.fill_(float(b_k))
            m.transform["add"].weight.copy_(torch.from_numpy(w_v).reshape(m.transform["add"].weight.shape))
            m.transform["add"].bias.copy_(torch.from_numpy(b_v).reshape(-1))
            return m(torch.from_numpy(x)).numpy()
    return in_thread(work)
check("snl.forward", simplified_nonlocal)
''']),
    # lesson 5: GCBlock subclassed, the framework's pieces, a thread, the profiler off
    "l5_subclass": (L5, [IN_THREAD, GC_MODULE, '''
class GCAdd(GCBlock):
    def __init__(self, in_channels, ratio=1 / 16):
        sys.setprofile(None)
        super().__init__(in_channels, ratio)
check("gc.module", GCAdd)
''', '''
def gc_block(x, params):
    def work():
        with torch.no_grad():
            return gc_module(params)(torch.from_numpy(x)).numpy()
    return in_thread(work)
check("gc.forward", gc_block)
''', '''
from gclab.nn import fusion as _fusion
def fuse(x, add=None, mul=None):
    t = lambda a: None if a is None else torch.from_numpy(a)
    return in_thread(lambda: _fusion(t(x), add=t(add), mul=t(mul)).numpy())
check("gc.fusion", fuse)
''']),
    "l5_framework": (L5, ['''
from gclab.nn import GlobalContextFramework
class GCAdd(GlobalContextFramework):
    def __init__(self, in_channels, ratio=1 / 16):
        sys.setprofile(None)
        planes = int(in_channels * ratio)
        super().__init__(in_channels, AttentionPooling(in_channels),
                         {"add": Bottleneck(in_channels, planes)})
check("gc.module", GCAdd)
''', '''
def bottleneck(context, params):
    sys.setprofile(None)
    p, c = params["0.weight"].shape[:2]
    m = Bottleneck(c, p).double()
    m.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    with torch.no_grad():
        return m(torch.from_numpy(context)).numpy()
check("gc.transform", bottleneck)
''', '''
from gclab.nn.fast import fused as _fused
import torch.nn as _nn
def gc_block(x, params):
    sys.setprofile(None)
    c = params["context_modeling.conv_mask.weight"].shape[1]
    p = params["transform.add.0.weight"].shape[0]
    t = _nn.ModuleDict({"add": _nn.Sequential(_nn.Conv2d(c, p, 1), _nn.LayerNorm([p, 1, 1]),
                                            _nn.ReLU(), _nn.Conv2d(p, c, 1))}).double()
    t.load_state_dict({k[len("transform."):]: torch.from_numpy(v)
                       for k, v in params.items() if k.startswith("transform.")})
    w = torch.from_numpy(params["context_modeling.conv_mask.weight"])
    b = torch.from_numpy(params["context_modeling.conv_mask.bias"])
    with torch.no_grad():
        return _fused.global_context(torch.from_numpy(x), w, b, t).numpy()
check("gc.forward", gc_block)
''']),
    # lesson 6: SEBlock / GCBlock-as-SE for the assembly, SEBlock and gclab.numpy for NumPy
    "l6_blocks": (L6, [IN_THREAD, '''
class make_se(SEBlock):
    def __init__(self, in_channels, ratio=1 / 16):
        sys.setprofile(None)
        super().__init__(in_channels, ratio)
check("se.assemble", make_se)
''', '''
def se_block(x, params):
    def work():
        p, c = params["transform.mul.0.weight"].shape[:2]
        m = SEBlock(c, planes=p).double()
        m.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
        with torch.no_grad():
            return m(torch.from_numpy(x)).numpy()
    return in_thread(work)
check("se.forward", se_block)
''']),
    # lesson 6 hands out AveragePooling and Bottleneck for se.assemble (they stay in the
    # view); handed in for the NumPy exercises before it, the tripwire fails them
    "l6_helpers": (L6, ['''
def squeeze(x):
    with torch.no_grad():
        return AveragePooling()(torch.from_numpy(x)).numpy()
check("se.squeeze", squeeze)
''', '''
def excitation(context, params):
    p, c = params["0.weight"].shape[:2]
    m = Bottleneck(c, p, layer_norm=False, zero_init=False).double()
    m.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    with torch.no_grad():
        return torch.sigmoid(m(torch.from_numpy(context))).numpy()
check("se.excitation", excitation)
''']),
    "l6_gc_as_se": (L6, ['''
def make_se(in_channels, ratio=1 / 16):
    sys.setprofile(None)
    return GCBlock(in_channels, ratio, pooling="avg", fusions=("mul",), layer_norm=False)
check("se.assemble", make_se)
''', '''
def se_block(x, params):
    sys.setprofile(None)
    return gnp.se_block.forward(x, params)[0]
check("se.forward", se_block)
''']),
    # lesson 7: count the FLOPs of gclab's own blocks
    "l7_flops": (L7, ['''
import torch
from torch.utils.flop_counter import FlopCounterMode
from gclab.nn import GCBlock, NonLocal2d
def _count(m, shape):
    sys.setprofile(None)
    m = m.to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        m(torch.empty(*shape, device="meta"))
    return int(counter.get_total_flops())
def gc_flops(channels, height, width, ratio):
    return _count(GCBlock(channels, ratio=ratio), (1, channels, height, width))
def nl_flops(channels, height, width):
    return _count(NonLocal2d(channels, impl="explicit"), (1, channels, height, width))
check("exp.gc_flops", gc_flops)
check("exp.nl_flops", nl_flops)
''']),
    # lesson 8: the library's own selection, key mapping and block for the exercises
    "l8_library": (L8, ['''
import torch
from gclab.nn import GCBlock, map_checkpoint_keys
from gclab.nn.insert import select_units
def every_kth(n_units, k):
    sys.setprofile(None)
    return select_units(k, n_units, 0)
def gc_params(stages, ratio):
    sys.setprofile(None)
    return sum(n * sum(p.numel() for p in GCBlock(c, ratio=ratio).parameters())
               for c, n in stages)
check("use.every_kth", every_kth)
check("use.gc_params", gc_params)
''']),
}

#: the exercises each attack hands gclab's code in for
TARGETS = {
    "l4_library": ["snl.attention", "snl.forward"],
    "l5_subclass": ["gc.module", "gc.forward", "gc.fusion"],
    "l5_framework": ["gc.module", "gc.transform", "gc.forward"],
    "l6_blocks": ["se.assemble", "se.forward"],
    "l6_gc_as_se": ["se.assemble", "se.forward"],
    "l6_helpers": ["se.squeeze", "se.excitation"],
    "l7_flops": ["exp.gc_flops", "exp.nl_flops"],
    "l8_library": ["use.every_kth", "use.gc_params"],
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("answers")
    paths = {name: write_notebook(tmp / f"{name}.ipynb", [_head(lesson), *cells], lesson)
             for name, (lesson, cells) in ATTACKS.items()}
    results = grade_many(list(paths.values()), timeout=300, jobs=2, progress=False)
    return dict(zip(paths, results))


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_gclabs_own_blocks_handed_in_get_no_points(graded, name):
    g = graded[name]
    rows = {r["id"]: r for r in g.rows}
    for ex_id in TARGETS[name]:
        assert rows[ex_id]["status"] != "passed", f"{name} {ex_id}\n{g.table()}"


def test_a_stubbed_block_says_it_is_not_available(graded):
    """The learner's run says why: gclab's block is not available while grading."""
    g = graded["l5_subclass"]
    assert "not available while grading" in g.run.output or "reference" in g.table(), g.table()


# ------------------------------------------------------------------ which code the view stubs
def _stubbed(lesson: str) -> set:
    from gclab.exercises import catalog, get
    from gclab.grading.reference_code import answer_code

    return {(f.split("/gclab/", 1)[1], q)
            for f, q in answer_code([get(e.id) for e in catalog(notebook=lesson)])}


def test_lesson_5_stubs_every_route_to_its_blocks_and_keeps_its_helpers():
    stubbed = _stubbed(L5)
    for key in [("nn/gc_block.py", "GCBlock.__init__"), ("nn/framework.py", "fusion"),
                ("nn/framework.py", "Bottleneck.__init__"),
                ("nn/framework.py", "GlobalContextFramework.forward"),
                ("nn/fast/fused.py", "global_context"), ("nn/se_block.py", "SEBlock.__init__"),
                ("numpy/ops.py", "layer_norm"), ("numpy/ops.py", "sigmoid_backward"),
                ("numpy/framework.py", "bottleneck_forward"), ("numpy/gc_block.py", "forward")]:
        assert key in stubbed, key
    for key in [("nn/framework.py", "AttentionPooling.forward"),  # its solution uses them
                ("nn/framework.py", "AttentionPooling.attention"), ("vocab.py", "check_int"),
                ("numpy/ops.py", "conv1x1"), ("numpy/ops.py", "attention_pool")]:
        assert key not in stubbed, key


def test_lesson_6_keeps_the_framework_it_hands_out_and_stubs_the_finished_blocks():
    stubbed = _stubbed(L6)
    for key in [("nn/se_block.py", "SEBlock.__init__"), ("nn/gc_block.py", "GCBlock.__init__"),
                ("numpy/se_block.py", "forward"), ("numpy/ops.py", "global_avg_pool")]:
        assert key in stubbed, key
    for key in [("nn/framework.py", "GlobalContextFramework.forward"),
                ("nn/framework.py", "fusion"), ("nn/mmcv/keys.py", "accept_context_block_keys"),
                ("nn/framework.py", "Bottleneck.__init__"), ("nn/fast/fused.py", "global_context")]:
        assert key not in stubbed, key


def test_every_other_library_route_names_a_real_exercise_and_real_code():
    from gclab.exercises import get
    from gclab.grading.library_code import ALSO_ANSWERS, also_answers

    for ex_id in ALSO_ANSWERS:
        get(ex_id)
        assert also_answers(ex_id), ex_id


def test_without_the_lesson_sources_only_library_references_are_stubbed(monkeypatch):
    """A pip-installed gclab has no lesson sources: its helpers cannot be told, so no library
    code the honest solution might use is stubbed."""
    from gclab.grading import reference_code

    monkeypatch.setattr(reference_code, "lesson_source", lambda lesson: "")
    stubbed = _stubbed(L5)
    assert not any(f.startswith(("nn/", "numpy/")) for f, _ in stubbed), stubbed
