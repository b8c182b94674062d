"""What ``gclab grade`` writes and decides around the verdicts:
feedback files that never overwrite each other, learner text escaped in every output format,
copies of the published solutions (or of a classmate) flagged without changing the score, and
which lesson a notebook in a batch is graded as."""

from __future__ import annotations

import csv
import json

import pytest
from gradekit import LEARNERS, SOLUTIONS, code_cells, exercise_cells, write_notebook

from gclab.grading.grade import grade_many
from gclab.grading.gradebook import feedback_names, write_feedback, write_gradebook
from gclab.grading.result import Grade
from gclab.grading.similarity import fingerprint
from gclab.grading.submission import SubmissionError, detect_lesson
from gclab.grading.trusted import SandboxRun

HOSTILE = "<img src=x onerror=alert(document.cookie)>"


def _grade(student: str, text: str = "fine") -> Grade:
    rows = [{"id": "rf.theoretical", "title": "t " + text, "status": "failed", "points": 0,
             "detail": "raised ValueError: " + text, "message": "raised ValueError: " + text,
             "diagnosis": text, "hint": "look again"}]
    run = SandboxRun("kernel died", "the kernel died " + text, cell=2)
    return Grade(f"/class/{student}.ipynb", "00_receptive_fields", run, rows, student,
                 ["a warning " + text])


# ---------------------------------------------------------------- 4. what the grader writes
def test_distinct_students_get_distinct_feedback_files(tmp_path):
    students = ["a b", "a_b", "A_b", "a/b", "..", "a_b-1", "x" * 300]
    results = [_grade(s, f"marker-{i}") for i, s in enumerate(students)]
    paths = write_feedback(results, tmp_path)
    assert len({p.name.lower() for p in paths}) == len(students), paths
    assert all(p.parent == tmp_path for p in paths)
    for i, p in enumerate(paths):
        assert f"marker-{i}" in p.read_text()
    assert feedback_names(["alice", "bob"]) == ["alice", "bob"]  # plain names stay readable


def test_everything_a_submission_controls_is_html_escaped_in_every_output(tmp_path):
    g = _grade(HOSTILE, HOSTILE)
    g.run.outcome, g.run.detail = "error", "malformed " + HOSTILE
    json_path = write_gradebook([g], tmp_path / "grades.csv")
    write_feedback([g], tmp_path / "fb")
    outputs = {"table": g.table(), "feedback": g.feedback(),
               "csv": (tmp_path / "grades.csv").read_text(), "json": json_path.read_text(),
               "file": next((tmp_path / "fb").iterdir()).read_text()}
    for name, text in outputs.items():
        assert "<img" not in text and "<" not in text.replace("<a ", ""), (name, text)
    assert "&lt;img" in outputs["csv"] and "&lt;img" in outputs["feedback"]


# ---------------------------------------------------------------- 6. which lesson
def test_a_single_notebook_with_no_recognisable_lesson_asks_for_it(tmp_path):
    path = tmp_path / "00_receptive_fields.ipynb"
    meta = {"gclab": {"lesson": "00_receptive_fields"}}
    with pytest.raises(SubmissionError, match="pass --lesson"):
        detect_lesson(path, ["x = 1"], meta, None)
    lesson, warnings = detect_lesson(path, ["x = 1"], meta, None, "04_simplified_nl")
    assert lesson == "04_simplified_nl" and "most of the batch" in warnings[0]


@pytest.mark.slow
def test_a_batch_says_which_submission_disagrees_on_the_lesson(tmp_path):
    stub4 = code_cells(LEARNERS / "04_simplified_nl.ipynb")[0] + "\n" + \
        'def attention_pool(x, alpha):\n    raise NotImplementedError\n' \
        'check("snl.pool", attention_pool)'
    lesson0 = exercise_cells(SOLUTIONS / "00_receptive_fields.ipynb")
    paths = [write_notebook(tmp_path / f"s{i}.ipynb", [stub4]) for i in range(2)]
    paths.append(write_notebook(tmp_path / "odd.ipynb", lesson0))  # no metadata at all
    results = grade_many(paths, timeout=240, jobs=2, progress=False)
    odd = results[2]
    assert odd.lesson == "00_receptive_fields"
    assert any("most of the batch" in w and "04_simplified_nl" in w for w in odd.warnings), \
        odd.warnings
    assert not any("most of the batch" in w for g in results[:2] for w in g.warnings)
    forced = grade_many(paths[2:], timeout=240, lesson="04", progress=False)[0]
    assert forced.lesson == "04_simplified_nl"  # the instructor's --lesson decides


# ---------------------------------------------------------------- 5. published solutions
def test_fingerprints_ignore_comments_and_layout_but_not_code():
    a = "def f(x):\n    # mine\n    return (x * 2).sum(axis=0) + 1\n"
    b = "def f(x):\n\n    return (x*2).sum(axis=0)+1  # copied\n"
    c = "def f(x):\n    return (2 * x).sum(axis=0) + 1\n"
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)


@pytest.mark.slow
def test_the_published_solutions_handed_in_are_flagged_without_changing_the_score(tmp_path):
    lesson = "00_receptive_fields"
    solved = exercise_cells(SOLUTIONS / f"{lesson}.ipynb")
    own = code_cells(LEARNERS / f"{lesson}.ipynb")[:1]  # nothing written: nothing copied
    paths = [write_notebook(tmp_path / "alice.ipynb", solved, lesson),
             write_notebook(tmp_path / "bob.ipynb", solved, lesson),
             write_notebook(tmp_path / "carol.ipynb", own, lesson)]
    results = {g.student: g for g in grade_many(paths, timeout=240, jobs=2, progress=False)}
    alice = results["alice"]
    assert alice.ok, alice.table()  # the score is the instructor's to change
    assert any("published solution" in f for f in alice.flags), alice.flags
    assert any("bob" in f for f in alice.flags) and "carol" not in str(alice.flags), alice.flags
    assert results["carol"].flags == []
    out = tmp_path / "grades.csv"
    json_path = write_gradebook(list(results.values()), out)
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["flag"] for r in rows if r["student"] == "alice")
    assert not any(r["flag"] for r in rows if r["student"] == "carol")
    assert json.loads(json_path.read_text())[0]["flags"]
    assert "published solution" in alice.table()
