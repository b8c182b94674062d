"""The class report of ``gclab grade --report``: counts against a planted class, escaping of
everything a submission controls, no learner code.

The planted class is twenty submissions of lesson 0 made from the committed solution and
learner copies, as tests/test_grade_batch.py makes its class, with the registered mistakes of
two exercises planted a known number of times and one exercise left undone by everyone."""

from __future__ import annotations

import csv
import html.parser
from types import SimpleNamespace

import pytest
from gradekit import LEARNERS, SOLUTIONS, exercise_cells, ids_in, write_notebook

from gclab.exercises import catalog
from gclab.grading.class_report import (
    csv_field,
    md_escape,
    summarise,
    to_html,
    to_markdown,
    write_report,
)
from gclab.grading.grade import main

LESSON = "00_receptive_fields"
IDS = [e.id for e in catalog(notebook=LESSON)]
MARKER = "LEARNER_CODE_MARKER_7731"  # a comment in every planted submission's code

# registered mistakes of lesson 0 (gclab/exercises/lessons/nb00_receptive_fields.py), as code
ROUNDED_DOWN = ("def layers_to_cover(size, kernel=3):\n    return (size - 1) // (kernel - 1)\n"
                'check("rf.layers_to_cover", layers_to_cover)')
NO_CENTRE = ("def layers_to_cover(size, kernel=3):\n    return math.ceil(size / (kernel - 1))\n"
             'check("rf.layers_to_cover", layers_to_cover)')
NO_STRIDES = ("def theoretical_rf(kernels, strides):\n"
              "    return 1 + sum(int(k) - 1 for k in kernels)\n"
              'check("rf.theoretical", theoretical_rf)')
CAUSE_DOWN = "rounded down instead of up"
CAUSE_CENTRE = "forgot the centre pixel"
CAUSE_STRIDES = "forgot the stride product"
HOSTILE = ['<img src=x onerror=alert(1)>', '"quote\'d"', "=HYPERLINK(1)", "+cmd", "-2", "@SUM(1)"]


def _planted_class(tmp_path):
    solved = exercise_cells(SOLUTIONS / f"{LESSON}.ipynb")
    learner = exercise_cells(LEARNERS / f"{LESSON}.ipynb")
    at = {i: k for k, c in enumerate(solved) for i in ids_in(c)}
    plan = ([("theoretical", NO_STRIDES)] * 4 + [("layers", ROUNDED_DOWN)] * 5
            + [("layers", NO_CENTRE)] * 3 + [(None, None)] * 8)
    paths = []
    for n, (which, code) in enumerate(plan):
        cells = [solved[0] + f"\n# {MARKER}"] + list(solved[1:])
        if which == "theoretical":
            cells[at["rf.theoretical"]] = code
        elif which == "layers":
            cells[at["rf.layers_to_cover"]] = code
        # nobody does the last exercise: the learner copy's stub stays
        cells[at["rf.growth_exponent"]] = learner[at["rf.growth_exponent"]]
        name = HOSTILE[n] if n < len(HOSTILE) else f"student{n:02d}"
        paths.append(write_notebook(tmp_path / "subs" / f"{name}.ipynb", cells, LESSON))
    return paths


@pytest.mark.slow
def test_report_of_a_planted_class_counts_what_was_planted(tmp_path, capsys):
    paths = _planted_class(tmp_path)
    assert len(paths) == 20
    report = tmp_path / "out" / "report.html"
    rc = main([*map(str, paths), "--lesson", "00", "--jobs", "2", "--timeout", "240",
               "--quiet", "--report", str(report)])
    out = capsys.readouterr().out
    assert rc == 1  # growth_exponent is not implemented anywhere
    assert "class report:" in out and str(report) in out

    with open(report.with_suffix(".csv"), newline="", encoding="utf-8") as fh:
        rows = {r["exercise"]: r for r in csv.DictReader(fh)}
    # course order: the order the lesson checks them in, not the registry's
    assert list(rows)[:2] == ["rf.theoretical", "rf.layers_to_cover"]
    assert list(rows)[-1] == "rf.growth_exponent" and set(rows) == set(IDS)
    assert rows["rf.theoretical"]["passed"] == "16" and rows["rf.theoretical"]["failed"] == "4"
    assert rows["rf.layers_to_cover"]["passed"] == "12"
    assert rows["rf.layers_to_cover"]["failed"] == "8"
    causes = rows["rf.layers_to_cover"]["causes"]
    assert causes.startswith(f"5 {CAUSE_DOWN}"), causes  # most common first
    assert f"3 {CAUSE_CENTRE}" in causes
    assert rows["rf.theoretical"]["causes"].startswith(f"4 {CAUSE_STRIDES}")
    assert rows["rf.growth_exponent"]["not_implemented"] == "20"
    assert rows["rf.growth_exponent"]["passed"] == "0"
    for ex in set(IDS) - {"rf.theoretical", "rf.layers_to_cover", "rf.growth_exponent"}:
        assert rows[ex]["passed"] == "20", (ex, rows[ex])

    md = report.with_suffix(".md").read_text(encoding="utf-8")
    assert "**Nobody passed:** `rf.growth\\_exponent`" in md
    assert "![pass rate per exercise](report.png)" in md
    assert "Median time per notebook:** lesson 00\\_receptive\\_fields:" in md
    page = report.read_text(encoding="utf-8")
    assert "5 &times; rounded down instead of up" in page
    assert "data:image/png;base64," in page
    assert report.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    for text in (page, md, report.with_suffix(".csv").read_text(encoding="utf-8")):
        assert MARKER not in text  # no learner code
        assert "math.ceil" not in text and "np.polyfit" not in text  # no solution
    _assert_inert_html(page)
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


# --------------------------------------------------------------------------------------------
# Escaping and aggregation, on graded notebooks made by hand
# --------------------------------------------------------------------------------------------
def _grade(student, statuses, diagnosis=None, seconds=10.0, error="", outcome="completed"):
    rows = [{"id": i, "title": f"title of {i}", "status": s, "points": int(s == "passed"),
             "diagnosis": diagnosis if s == "failed" else None}
            for i, s in statuses.items()]
    run = SimpleNamespace(outcome=outcome, seconds=seconds, cell=None, detail="")
    return SimpleNamespace(student=student, lesson=LESSON, rows=rows, run=run, error=error)


EVIL = '<script>alert("x")</script>'


def _evil_class():
    return [
        _grade(EVIL, {"rf.theoretical": "failed", "rf.erf": "passed"}, diagnosis=EVIL, seconds=4),
        _grade("=cmd|' /C calc'!A0", {"rf.theoretical": "failed", "rf.erf": "passed"},
               diagnosis="=1+1", seconds=8),
        _grade("@SUM(A1)", {"rf.theoretical": "not implemented", "rf.erf": "failed"},
               diagnosis="-2+3", seconds=30),
        _grade("+x\"'", {}, error='expected a notebook (JSON): <b>"bad"</b>'),
    ]


class _Tags(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.handlers = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.handlers += [k for k, _ in attrs if k.lower().startswith("on")]


def _assert_inert_html(page: str) -> None:
    parser = _Tags()
    parser.feed(page)
    assert "script" not in parser.tags and not parser.handlers
    assert set(parser.tags) <= {"html", "head", "meta", "title", "style", "body", "h1", "h2",
                                "p", "img", "table", "tr", "th", "td", "code", "ul", "li", "b"}
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_html_escapes_ids_and_messages():
    page = to_html(summarise(_evil_class()), plot_png=b"png")
    _assert_inert_html(page)
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;b&gt;&quot;bad&quot;&lt;/b&gt;" in page
    assert "+x&quot;&#x27;" in page


def test_markdown_escapes_ids_and_messages():
    md = to_markdown(summarise(_evil_class()))
    assert "<script>" not in md and "<b>" not in md
    assert md_escape(EVIL) == '\\<script\\>alert("x")\\</script\\>'
    for line in md.splitlines():  # a | in an id cannot add a table column
        if line.startswith("| ") and "student" not in line and "exercise" not in line:
            assert line.replace("\\|", "").count("|") in (5, 7), line
    assert md_escape("a|b\nc") == "a\\|b c"
    assert md_escape("$x$ &amp;") == "\\$x\\$ \\&amp;"  # no math, no entity


def test_csv_fields_cannot_run_as_formulas(tmp_path):
    paths = write_report(_evil_class(), tmp_path / "r.html")
    assert [p.name for p in paths] == ["r.html", "r.md", "r.csv", "r.png"]
    with open(tmp_path / "r.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            for value in row.values():
                assert value[:1] not in ("=", "+", "-", "@", "\t", "\r"), row
    assert csv_field("=1+1") == "'=1+1" and csv_field("-2") == "'-2" and csv_field(3) == 3
    assert csv_field("@A1") == "'@A1" and csv_field("\t=1") == "'=1"  # a tab is a space


def test_counts_causes_nobody_and_medians():
    report = summarise(_evil_class())
    stats = {e.id: e for e in report.exercises}
    assert [e.id for e in report.exercises] == ["rf.theoretical", "rf.erf"]  # course order
    th = stats["rf.theoretical"]
    assert th.counts["failed"] == 2 and th.counts["not implemented"] == 1
    assert th.counts["passed"] == 0 and th.submissions == 3
    assert dict(th.causes) == {EVIL: 1, "=1+1": 1}
    assert stats["rf.erf"].counts["passed"] == 2 and stats["rf.erf"].causes == {"-2+3": 1}
    assert [e.id for e in report.nobody] == ["rf.theoretical"]
    assert report.median_seconds == {LESSON: 8.0}  # the unreadable one does not count
    assert report.students[-1]["outcome"].startswith("unreadable: expected a notebook")


def test_unnamed_failures_are_counted_as_such():
    report = summarise([_grade("a", {"rf.erf": "failed"}), _grade("b", {"rf.erf": "failed"})])
    assert dict(report.exercises[0].causes) == {"no registered mistake matched": 2}


def test_report_argument_wants_an_html_file(tmp_path, capsys):
    rc = main([str(tmp_path / "x.ipynb"), "--report", str(tmp_path / "report.txt")])
    assert rc == 2
    assert "expected a file name ending in .html" in capsys.readouterr().err
