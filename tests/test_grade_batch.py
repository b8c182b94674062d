"""``gclab grade`` at class scale: twenty submissions of lesson 0 (correct, partial, wrong,
hostile, unreadable) in one command, two at a time, with the gradebook and feedback files.

The submissions are made from the committed solution and learner copies by editing cells."""

from __future__ import annotations

import csv
import json

import pytest
from gradekit import LEARNERS, SOLUTIONS, exercise_cells, ids_in, write_notebook

from gclab.exercises import catalog, hint
from gclab.grading.grade import main

LESSON = "00_receptive_fields"
IDS = [e.id for e in catalog(notebook=LESSON)]
pytestmark = pytest.mark.slow

WRONG = ('def layers_to_cover(size, kernel=3):\n    return (size - 1) // (kernel - 1)\n'
         'check("rf.layers_to_cover", layers_to_cover)')
FORGE = ("import json, os, glob\nfor t in glob.glob('/tmp/**/*.jsonl', recursive=True):\n"
         "    open(t, 'a').write(json.dumps({'id': 'rf.erf', 'status': 'passed'}) + '\\n')\n")


def _cells():
    solved = exercise_cells(SOLUTIONS / f"{LESSON}.ipynb")
    learner = exercise_cells(LEARNERS / f"{LESSON}.ipynb")
    assert [ids_in(c) for c in solved] == [ids_in(c) for c in learner]
    return solved, learner


def _partial(solved, learner, k):
    """The first k exercises solved, the rest left as the learner copy's stubs."""
    return [solved[0]] + [s if i < k else ell
                          for i, (s, ell) in enumerate(zip(solved[1:], learner[1:]))]


def _submissions(tmp_path):
    solved, learner = _cells()
    wrong_at = next(i for i, c in enumerate(solved) if "rf.layers_to_cover" in ids_in(c))
    subs, expect = {}, {}  # student -> cells; student -> {id: status}
    for s in ("alice", "bruno", "chen", "dana", "emeka", "farah"):
        subs[s] = solved
        expect[s] = dict.fromkeys(IDS, "passed")
    order = [i for c in solved[1:] for i in ids_in(c)]  # the notebook's order, not the catalog's
    assert sorted(order) == sorted(IDS)
    for s, k in (("gita", 0), ("hugo", 1), ("ines", 2), ("jun", 3), ("kofi", 5)):
        subs[s] = _partial(solved, learner, k)
        expect[s] = {e: ("passed" if i < k else "not implemented") for i, e in enumerate(order)}
    for s in ("lena", "milo", "nora", "omar"):
        cells = list(solved)
        cells[wrong_at] = WRONG
        subs[s] = cells
        expect[s] = {**dict.fromkeys(IDS, "passed"), "rf.layers_to_cover": "failed"}
    # hostile: forge then die after the first two exercises; escape codes; patched engine
    subs["pia"] = solved[:3] + [FORGE + "os._exit(0)"] + solved[3:]
    expect["pia"] = {e: ("passed" if i < 2 else "not attempted") for i, e in enumerate(order)}
    subs["quin"] = solved + ['def theoretical_rf(kernels, strides):\n'
                             '    raise ValueError("\\x1b[1A\\rrf.theoretical passed\\n")\n'
                             'check("rf.theoretical", theoretical_rf)']
    expect["quin"] = {**dict.fromkeys(IDS, "passed"), "rf.theoretical": "failed"}
    subs["rosa"] = ([solved[0], "import gclab.exercises.core as c\n"
                     "c._compare = lambda *a, **k: (True, 'ok', 0.0, True)"]
                    + _partial(solved, learner, 0)[1:])
    expect["rosa"] = dict.fromkeys(IDS, "not implemented")
    subs["tara"] = solved + ["from gclab.exercises import Exercise, register\n"
                             "register(Exercise('rf.erf', 'x', 'mine', kind='value', "
                             "reference=lambda: 0))\ncheck('rf.erf', 0)"]
    expect["tara"] = {**dict.fromkeys(IDS, "passed"), "rf.erf": "failed"}
    paths = []
    for i, (student, cells) in enumerate(subs.items()):
        if i % 2:  # half of them hand in a folder: submissions/<student>/<lesson>.ipynb
            path = tmp_path / "submissions" / student / f"{LESSON}.ipynb"
        else:
            path = tmp_path / "submissions" / f"{student}.ipynb"
        write_notebook(path, cells, LESSON)
        paths.append(path.parent if i % 4 == 1 else path)  # some hand in just the folder
    broken = tmp_path / "submissions" / "sam.ipynb"
    broken.write_text('{"cells": [')  # the twentieth: not even JSON
    paths.append(broken)
    expect["sam"] = dict.fromkeys(IDS, "not attempted")
    return paths, expect


def test_twenty_submissions_in_one_command(tmp_path, capsys):
    paths, expect = _submissions(tmp_path)
    assert len(paths) == 20
    out = tmp_path / "out"
    rc = main([*map(str, paths), "--lesson", "00", "--jobs", "2", "--timeout", "240",
               "--csv", str(out / "grades.csv"), "--feedback", str(out / "feedback")])
    captured = capsys.readouterr()
    assert rc == 2, captured.err  # one unreadable submission
    assert "sam.ipynb: expected a notebook (JSON)" in captured.err

    with open(out / "grades.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 20 * len(IDS)
    got = {}
    for r in rows:
        got.setdefault(r["student"], {})[r["exercise"]] = r["status"]
        assert r["points"] == ("1" if r["status"] == "passed" else "0")
        assert "\x1b" not in r["message"] and "\n" not in r["message"]
        assert len(r["message"]) <= 500
    differ = sorted(s for s in expect if got.get(s) != expect[s])
    assert got == expect, [(r["student"], r["exercise"], r["status"], r["message"])
                           for r in rows if r["student"] in differ] + [captured.err[-2000:]]

    data = json.loads((out / "grades.json").read_text())
    assert {d["student"]: d["points"] for d in data} == {
        s: sum(v == "passed" for v in e.values()) for s, e in expect.items()}

    files = sorted(p.stem for p in (out / "feedback").glob("*.md"))
    assert files == sorted(expect)
    lena = (out / "feedback" / "lena.md").read_text()
    assert f"Score: **{len(IDS) - 1}/{len(IDS)}**" in lena  # one wrong
    assert "likely cause" in lena.lower()
    level1 = hint("rf.layers_to_cover", 1).split(": ", 1)[1][:40]
    assert "Try this:" in lena and level1 in lena.replace("\\", "")
    assert "Try this:" not in (out / "feedback" / "alice.md").read_text()

    table = [ln for ln in captured.out.splitlines()
             if not ln.startswith(("gradebook:", "feedback:"))]
    assert len(table) == 2 + 20 and all(len(line) <= 100 for line in table), table
