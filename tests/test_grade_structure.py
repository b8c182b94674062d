"""``gclab grade`` checks what an exercise asks of a module's structure, as ``check()`` does.

The trusted grader never builds the learner's module: the sandbox builds it and sends its tree
as data, the grader runs the exercise's ``structure`` properties (and ``describe_structure``,
for a state_dict that does not load) on a data-only skeleton of it
(:mod:`gclab.exercises.skeleton`). Lesson 6's ``se.assemble`` is the exercise with structure
properties: SEBlock itself, a GCBlock, GC's zero init must fail there with the verdict that
``check()`` gives in-process, and the correct assembly pass. A few wrong function answers of
the same lesson show that diagnose's detectors (and the registered mistakes) reach grade too.

All variants are graded in one batch, two at a time.
"""

from __future__ import annotations

import pytest
from gradekit import SOLUTIONS, code_cells, write_notebook

from gclab.exercises import core
from gclab.exercises.grade import grade_many

pytestmark = pytest.mark.slow
LESSON = "06_se_framework"

VARIANTS = {
    "right": """
def make_se(in_channels, ratio=1 / 16):
    planes = int(in_channels * ratio)
    excite = Bottleneck(in_channels, planes, layer_norm=False, zero_init=False)
    return GlobalContextFramework(in_channels, AveragePooling(), {"mul": excite})
check("se.assemble", make_se)
def squeeze(x):
    return x.max(axis=(2, 3), keepdims=True)
check("se.squeeze", squeeze)
""",
    "seblock": """
check("se.assemble", SEBlock)
def squeeze(x):
    return x.mean(axis=(2, 3))
check("se.squeeze", squeeze)
""",
    "gcblock": """
def make_se(in_channels, ratio=1 / 16):
    return GCBlock(in_channels, ratio=ratio, pooling="avg", fusions=("mul",))
check("se.assemble", make_se)
def excitation(context, params):
    s = np.einsum("pc,bcij->bpij", params["0.weight"][:, :, 0, 0], context)
    s = s + params["0.bias"][None, :, None, None]
    return np.einsum("cp,bpij->bcij", params["3.weight"][:, :, 0, 0], np.maximum(s, 0)) \\
        + params["3.bias"][None, :, None, None]
check("se.excitation", excitation)
""",
    "zero_init": """
def make_se(in_channels, ratio=1 / 16):
    excite = Bottleneck(in_channels, int(in_channels * ratio), layer_norm=False, zero_init=True)
    return GlobalContextFramework(in_channels, AveragePooling(), {"mul": excite})
check("se.assemble", make_se)
""",
    "own_class": """
class MySE(nn.Module):
    def __init__(self, in_channels, ratio=1 / 16):
        super().__init__()
        p = int(in_channels * ratio)
        self.fc1 = nn.Conv2d(in_channels, p, 1)
        self.fc2 = nn.Conv2d(p, in_channels, 1)
    def forward(self, x):
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))
check("se.assemble", MySE)
""",
    "planes": """
def make_se(in_channels, ratio=1 / 16):
    excite = Bottleneck(in_channels, max(1, in_channels // 16), layer_norm=False,
                        zero_init=False)
    return GlobalContextFramework(in_channels, AveragePooling(), {"mul": excite})
check("se.assemble", make_se)
""",
}


def _in_process(head: str, source: str) -> dict:
    """exercise id -> check()'s CheckResult on the objects ``source`` hands in."""
    got = {}
    ns: dict = {}
    exec(head, ns)  # noqa: S102 - the test's own notebook cells
    ns["check"] = lambda ex_id, obj: got.setdefault(ex_id, obj)
    exec(source, ns)  # noqa: S102
    return {ex_id: core._check(core.get(ex_id), obj) for ex_id, obj in got.items()}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("structure")
    head = code_cells(SOLUTIONS / f"{LESSON}.ipynb")[0]
    paths = [write_notebook(tmp / f"{name}.ipynb", [head, src], LESSON)
             for name, src in VARIANTS.items()]
    grades = grade_many(paths, timeout=300, jobs=2, progress=False)
    return {name: ({r["id"]: r for r in g.rows}, _in_process(head, VARIANTS[name]))
            for name, g in zip(VARIANTS, grades)}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_grade_gives_checks_verdict(graded, name):
    rows, expected = graded[name]
    assert expected, name
    for ex_id, res in expected.items():
        row = rows[ex_id]
        assert row["status"] == res.status, (ex_id, row, res.message)
        assert row["diagnosis"] == res.diagnosis, (ex_id, row, res.message)
        if "uses the reference implementation" in row["message"]:  # the tripwire, too
            assert name in ("seblock", "gcblock"), row
        else:
            assert row["message"] == res.message, (ex_id, row)


def test_the_structure_checks_decide(graded):
    rows = {name: graded[name][0]["se.assemble"] for name in VARIANTS}
    assert rows["right"]["status"] == "passed", rows["right"]
    for name in ("seblock", "gcblock", "zero_init", "own_class", "planes"):
        assert rows[name]["status"] == "failed", rows[name]
        assert rows[name]["diagnosis"], rows[name]
    assert "SEBlock, a named block" in rows["seblock"]["diagnosis"]
    assert "GCBlock, a named block" in rows["gcblock"]["diagnosis"]
    assert "zero_init=True" in rows["zero_init"]["diagnosis"]
    assert "you returned a MySE" in rows["own_class"]["diagnosis"]
    assert "has shape" in rows["planes"]["diagnosis"]  # describe_structure, on the skeleton


def test_detectors_reach_grade(graded):
    assert graded["right"][0]["se.squeeze"]["diagnosis"]  # max pooling: a registered mistake
    assert graded["seblock"][0]["se.squeeze"]["diagnosis"]  # keepdims forgotten: a detector
    assert graded["gcblock"][0]["se.excitation"]["diagnosis"]  # no sigmoid
