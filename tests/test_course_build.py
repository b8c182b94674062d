"""The notebook builder (gclab.course.notebooks): stubs, solution copies, determinism,
staleness check."""

from __future__ import annotations

import ast
import json
import re
import textwrap
from pathlib import Path

import nbformat
import pytest

from gclab.course import notebooks, solutions
from gclab.course.copies import dumps, learner_notebook, lessons, solution_notebook
from gclab.course.notebooks import check_copies
from gclab.course.solutions import BuildError
from gclab.grading import reference_code

ROOT = Path(__file__).resolve().parent.parent

SOURCE = textwrap.dedent(
    """\
    # %% [markdown]
    # # A synthetic lesson
    # Compute $r = 1 + 2L$.

    # %%
    import math

    # %%
    # exercise rf.synthetic_one: return the receptive field of L layers
    def receptive(depth):
        if depth < 0:
            raise ValueError("depth must be >= 0")
        ### BEGIN SOLUTION
        secret_intermediate_value = 2 * depth  # a comment only the solution has
        return 1 + secret_intermediate_value
        ### END SOLUTION


    class Solver:
        def run(self, x):
            for _ in range(1):
                ### BEGIN SOLUTION
                hidden_loop_result = math.sqrt(x) * 12345
                ### END SOLUTION
            return hidden_loop_result

    # %% tags=["raises-exception"]
    ### BEGIN SOLUTION
    top_level_answer = receptive(3) + 1000001
    ### END SOLUTION
    check("rf.synthetic_two", top_level_answer)
    """
)

SOLUTION_LINES = [
    "secret_intermediate_value = 2 * depth  # a comment only the solution has",
    "return 1 + secret_intermediate_value",
    "hidden_loop_result = math.sqrt(x) * 12345",
    "top_level_answer = receptive(3) + 1000001",
]


def _code(nb):
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_learner_copy_replaces_each_region_by_a_stub_at_its_indentation():
    nb = learner_notebook(SOURCE, "99_synthetic")
    code = _code(nb)
    assert len(code) == 3
    fn = code[1].split("\n")
    stub = fn.index(
        '    raise NotImplementedError("exercise rf.synthetic_one: return the receptive '
        'field of L layers")'
    )
    assert fn[stub - 1].startswith('    # YOUR CODE HERE (stuck? hint("rf.synthetic_one"')
    # the second region sits 12 spaces deep, inside a method's loop; no exercise comment in
    # between, so the id comes from the comment above (same cell)
    assert any(line.startswith(" " * 12 + "raise NotImplementedError(") for line in fn)
    # the top-level region takes its id from the check call after it
    assert code[2].split("\n")[1] == (
        'raise NotImplementedError("exercise rf.synthetic_two: your code here")'
    )
    for source in code:
        ast.parse(source)  # every stubbed cell is still valid Python
    # what is outside the regions is kept verbatim
    assert 'raise ValueError("depth must be >= 0")' in code[1]
    assert "return hidden_loop_result" in code[1]


def test_no_solution_text_leaks_into_the_learner_copy():
    text = dumps(learner_notebook(SOURCE, "99_synthetic"))
    for line in SOLUTION_LINES:
        assert line not in text
        assert json.dumps(line)[1:-1] not in text
    # nor any long fragment of a solution line (names, constants, the solution-only comment)
    for token in ("secret_intermediate_value", "12345", "1000001", "only the solution has"):
        assert token not in text
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text


def test_solution_copy_keeps_the_code_and_drops_the_markers():
    nb = solution_notebook(SOURCE, "99_synthetic")
    joined = "\n".join(_code(nb))
    for line in SOLUTION_LINES:
        assert line in joined
    assert "### BEGIN" not in joined and "### END" not in joined
    assert "NotImplementedError" not in joined
    assert nb.cells[-1].metadata["tags"] == ["raises-exception"]


def test_copies_are_deterministic_and_carry_lesson_metadata():
    a = dumps(learner_notebook(SOURCE, "99_synthetic"))
    b = dumps(learner_notebook(SOURCE, "99_synthetic"))
    assert a == b
    nb = nbformat.reads(a, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.gclab.lesson == "99_synthetic" and nb.metadata.gclab["copy"] == "learner"
    assert nb.metadata.kernelspec.name == "python3"
    assert "jupytext" not in nb.metadata
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize(
    "bad,message",
    [
        ("# %%\nx = 1\n### END SOLUTION\n", "without"),
        ("# %%\n### BEGIN SOLUTION\nx = 1\n", "has no"),
        ("# %%\n### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "nested"),
        ("# %%\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", "which exercise"),
    ],
    ids=["end-without-begin", "begin-without-end", "nested", "no-exercise-id"],
)
def test_malformed_sources_are_build_errors(bad, message):
    with pytest.raises(BuildError, match=message):
        learner_notebook(bad, "99_bad")


def test_execute_stores_outputs_keeps_tags_and_check_flags_staleness(tmp_path):
    """A whole tiny course under tmp_path: build, --check, edit the source, --check again."""
    src = tmp_path / "notebooks" / "src"
    src.mkdir(parents=True)
    (src / "00_tiny.py").write_text(
        "# %%\n# exercise rf.tiny: answer\ndef answer():\n    ### BEGIN SOLUTION\n"
        "    return 42\n    ### END SOLUTION\n\nprint(answer())\n\n"
        '# %% tags=["raises-exception"]\nraise RuntimeError("designed")\n'
    )
    assert notebooks.main(["--root", str(tmp_path)]) == 0
    assert notebooks.main(["--root", str(tmp_path), "--check"]) == 1  # solution not executed yet
    assert notebooks.main(["--root", str(tmp_path), "--execute"]) == 0
    assert check_copies(tmp_path) == []
    sol = nbformat.read(str(tmp_path / "notebooks" / "solutions" / "00_tiny.ipynb"), 4)
    first, second = [c for c in sol.cells if c.cell_type == "code"]
    assert first.outputs[0]["text"] == "42\n" and first.execution_count == 1
    assert second.outputs[0]["ename"] == "RuntimeError"
    assert second.metadata["tags"] == ["raises-exception"]
    assert "execution" not in first.metadata  # no timestamps
    # regenerating without --execute keeps the outputs of unchanged cells
    before = (tmp_path / "notebooks" / "solutions" / "00_tiny.ipynb").read_text()
    assert notebooks.main(["--root", str(tmp_path)]) == 0
    assert (tmp_path / "notebooks" / "solutions" / "00_tiny.ipynb").read_text() == before
    # a source edit inside a solution region makes the solution copy stale ...
    (src / "00_tiny.py").write_text((src / "00_tiny.py").read_text().replace("42", "43"))
    assert [p for p in check_copies(tmp_path) if "stale" in p] == [
        "notebooks/solutions/00_tiny.ipynb is stale (its cells differ from the source)"
    ]
    # ... and one outside the regions makes both stale
    text = (src / "00_tiny.py").read_text().replace("print(answer())", "print(answer(), 1)")
    (src / "00_tiny.py").write_text(text)
    problems = check_copies(tmp_path)
    assert any("00_tiny.ipynb is stale" in p and "solutions" not in p for p in problems)
    assert any("solutions/00_tiny.ipynb is stale" in p for p in problems)


# --------------------------------------------------------------------------- the repository
def test_the_committed_copies_are_up_to_date():
    """CI fails when a generated copy is stale: run `python -m gclab notebooks --execute`."""
    assert lessons(ROOT), "no lesson sources under notebooks/src"
    problems = check_copies(ROOT)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("lesson", lessons(ROOT), ids=lambda le: le.name)
def test_committed_solution_notebooks_carry_outputs(lesson):
    """nbval never compares a cell that never ran: every code cell of a committed solution
    copy was executed, and every NBVAL_CHECK_OUTPUT cell has an output to compare."""
    if not lesson.solution.exists():
        pytest.fail(f"{lesson.solution.relative_to(ROOT)} is missing")
    nb = nbformat.read(str(lesson.solution), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert code, "a lesson without code cells"
    unexecuted = [i for i, c in enumerate(code) if c.execution_count is None]
    assert not unexecuted, f"unexecuted code cells {unexecuted}"
    for c in code:
        if c.source.lstrip().startswith("# NBVAL_CHECK_OUTPUT"):
            assert c.outputs, f"NBVAL_CHECK_OUTPUT cell without output:\n{c.source[:200]}"
    learner = nbformat.read(str(lesson.learner), as_version=4)
    assert all(not c.get("outputs") for c in learner.cells if c.cell_type == "code")


def test_the_grader_reads_the_regions_and_checks_the_builder_stubs():
    # the grader's view of a source (gclab.grading.reference_code) goes through the same parser
    code = solutions.region_code(SOURCE)
    assert [c.strip() for c in code] == [
        SOLUTION_LINES[0] + "\n    " + SOLUTION_LINES[1], SOLUTION_LINES[2],
        SOLUTION_LINES[3]]
    assert solutions.checked_names(SOURCE) == {"rf.synthetic_two": "top_level_answer"}
    assert solutions.checked_ids(SOURCE) == ["rf.synthetic_two"]
    assert solutions.region_code("### BEGIN SOLUTION\nx = 1\n") == []  # unpaired: no regions
    lesson = next(x for x in lessons() if x.name.startswith("05"))
    text = lesson.source.read_text(encoding="utf-8")
    assert reference_code.checked_names(lesson.name) == solutions.checked_names(text)
    stubbed = {m.group(1) for m in re.finditer(r'NotImplementedError\("exercise ([\w.]+)',
                                                dumps(learner_notebook(text, lesson.name)))}
    assert stubbed <= set(solutions.checked_ids(text))


def _code_strings(tree):
    """String constants of a module that are not docstrings."""
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_one_solution_parser_and_one_notebook_executor():
    markers, executors = set(), set()
    for path in sorted((ROOT / "gclab").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        rel = path.relative_to(ROOT).as_posix()
        if any("BEGIN SOLUTION" in s or "END SOLUTION" in s for s in _code_strings(tree)):
            markers.add(rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    ("nbclient", "nbconvert")):
                if any(a.name in ("NotebookClient", "ExecutePreprocessor") for a in node.names):
                    executors.add(rel)
    assert markers == {"gclab/course/solutions.py"}
    assert executors == {"gclab/course/execute.py"}

