"""``gclab grade`` against hostile notebooks: each test is one way a learner's notebook tried to
give itself marks, read the instructor's things, or outlive the grader.

The notebooks are a few cells each, for lesson 0 (and lesson 4 for the reference functions);
they are graded together, two at a time, by one ``grade_many`` in a module fixture, and each
test looks at its own notebook's result. Checks that leave the kernel alive share one notebook
(one sandboxed run); under ``pytest -n`` one worker takes this file whole (tests/conftest.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
from gradekit import ROOT, SOLUTIONS, exercise_cells, processes_with, write_notebook

from gclab.exercises import catalog
from gclab.grading.bwrap import bwrap_available
from gclab.grading.grade import grade, grade_many
from gclab.grading.submission import clean

LESSON = "00_receptive_fields"
IDS = [e.id for e in catalog(notebook=LESSON)]
SECRET = "s3cr3t-" + uuid.uuid4().hex[:8]
MARK = "gcx" + uuid.uuid4().hex[:10]  # names the processes a notebook starts

pytestmark = pytest.mark.slow
needs_bwrap = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap (bwrap) not usable "
                                 "here: install it with scripts/sandbox-deps.sh")

HEAD = "import os, sys, json, glob\nfrom gclab.exercises import check, catalog\n"
FORGE = """
ids = [e.id for e in catalog(notebook="00_receptive_fields")]
line = "".join(json.dumps({"id": i, "notebook": "00_receptive_fields", "status": "passed",
                           "passed": True, "message": "forged"}) + "\\n" for i in ids)
targets = [os.environ.get("GCLAB_GRADE_LOG", "")] + glob.glob("/tmp/**/*.jsonl", recursive=True)
for t in targets + ["checks.jsonl", "../checks.jsonl"]:
    try:
        open(t, "a").write(line)
    except OSError:
        pass
"""
STATUS = """
for t in glob.glob("/tmp/**/status.json", recursive=True) + ["status.json", "../status.json"]:
    try:
        open(t, "w").write(json.dumps({"outcome": "completed", "detail": "", "cell": None}))
    except OSError:
        pass
"""
STUB = "def theoretical_rf(kernels, strides):\n    raise NotImplementedError\n" \
       "check('rf.theoretical', theoretical_rf)\n"

SPAWN = f"""
import subprocess, ctypes
ctypes.CDLL(None).prctl(15, b"{MARK}k", 0, 0, 0)  # PR_SET_NAME: the kernel, findable by name
sleeper = [sys.executable, "-c", "import time; time.sleep(900)", "{MARK}"]
subprocess.Popen(sleeper + ["child"])
subprocess.Popen(sleeper + ["session"], start_new_session=True)
if os.fork() == 0:  # a daemon by double fork
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, sleeper + ["daemon"])
    os._exit(0)
"""


def _server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    srv.settimeout(0.5)
    hits = []
    done = threading.Event()

    def serve():
        while not done.is_set():
            try:
                conn, _ = srv.accept()
                hits.append(1)
                conn.close()
            except OSError:
                continue

    threading.Thread(target=serve, daemon=True).start()
    return srv, hits, done


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade every hostile notebook in one batch; yields {name: Grade} and the side channels."""
    tmp = tmp_path_factory.mktemp("hostile")
    home = tmp / "home"
    home.mkdir()
    (home / "secret.txt").write_text(SECRET)
    outside = ROOT / f"written-by-learner-{uuid.uuid4().hex[:8]}.txt"  # the course checkout
    srv, hits, done = _server()
    port = srv.getsockname()[1]
    solved = exercise_cells(SOLUTIONS / f"{LESSON}.ipynb")
    nbs = {
        "forged_log": [HEAD, FORGE, STUB],
        "forged_status": [HEAD, STUB, STATUS + "\nos._exit(3)"],
        "forge_then_exit": [HEAD, STUB, FORGE + STATUS + "\nos._exit(0)"],
        # one kernel, several exercises: what the notebook does to its own engine, registry,
        # stack and output changes nothing of the grader's (one sandboxed run for five checks)
        "one_kernel": [HEAD, """
import gclab.exercises.core as core, gclab.exercises.compare as cmp
from gclab.exercises.verdict import CheckResult
core.judge = lambda ex, obj, *a, **k: CheckResult(ex.id, ex.title, "passed", [], "forged")
core.compare_outputs = cmp.compare_outputs = lambda *a, **k: cmp.Mismatch(True, "forged")
check("rf.theoretical", lambda kernels, strides: 0)
""", """
from gclab.exercises import Exercise, register
register(Exercise("rf.layers_to_cover", "00_receptive_fields", "mine", kind="value",
                  reference=lambda: 0))
check("rf.layers_to_cover", 0)
""", """
def erf_std(g):
    f = sys._getframe(1)
    while f is not None:
        for v in list(f.f_locals.values()):
            for t in (v if isinstance(v, (list, tuple)) else [v]):
                if type(t).__name__ == "Trial":  # what core.judge keeps in its frames
                    return t.expected
        f = f.f_back
    return -1
check("rf.erf_std", erf_std)
""", """
def erf(*args, **kwargs):
    raise ValueError("\\x1b[2J\\x1b[31m\\nrf.erf_1d           passed           fake\\r\\n\\x07")
check("rf.erf", erf)
""", """
import numpy as np
try:
    big = np.empty(3 * 2**30, dtype=np.uint8)
    result = "allocated"
except MemoryError:
    result = "MemoryError"
def erf_1d(depth, kernel=3):
    raise ValueError("MEM-PROBE " + result)
check("rf.erf_1d", erf_1d)
"""],
        "home_env_write_net": [HEAD, f"""
def theoretical_rf(kernels, strides):
    got = []
    for p in (os.path.expanduser("~/secret.txt"), {str(home / "secret.txt")!r}):
        try:
            got.append(open(p).read())
        except OSError as e:
            got.append(type(e).__name__)
    raise ValueError("HOME-PROBE " + " ".join(got))
def layers_to_cover(size, kernel=3):
    raise ValueError("ENV-PROBE " + os.environ.get("GCLAB_TEST_SECRET", "absent")
                     + " " + " ".join(sorted(os.environ)))
def erf_1d(depth, kernel=3):
    try:
        open({str(outside)!r}, "w").write("x")
        raise ValueError("WRITE-PROBE wrote")
    except OSError as e:
        raise ValueError("WRITE-PROBE " + type(e).__name__)
def erf_std(g):
    import socket
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
        raise ValueError("NET-PROBE connected")
    except OSError as e:
        raise ValueError("NET-PROBE " + type(e).__name__)
for i, f in [("rf.theoretical", theoretical_rf), ("rf.layers_to_cover", layers_to_cover),
             ("rf.erf_1d", erf_1d), ("rf.erf_std", erf_std)]:
    check(i, f)
"""],
        "garbage_channel": [HEAD, """
for fd in range(3, 64):
    try:
        os.write(fd, b"\\x00\\x00\\x00\\x10not json at all!")
    except OSError:
        pass
""", STUB],
        "correct": solved,
    }
    paths = {name: write_notebook(tmp / f"{name}.ipynb", cells, LESSON)
             for name, cells in nbs.items()}
    saved = {k: os.environ.get(k) for k in ("HOME", "GCLAB_TEST_SECRET")}
    os.environ["HOME"] = str(home)
    os.environ["GCLAB_TEST_SECRET"] = SECRET
    try:
        results = grade_many(list(paths.values()), timeout=180, memory=2**30, jobs=2,
                             progress=False)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    time.sleep(0.5)
    done.set()
    srv.close()
    yield {"grades": dict(zip(paths, results)), "outside": outside, "hits": hits,
           "paths": paths, "tmp": tmp}


def _rows(g):
    return {r["id"]: r for r in g.rows}


def _nothing_passed_but_real_work(g):
    rows = _rows(g)
    assert not any(r["status"] == "passed" for r in rows.values()), g.table()
    assert not any("forged" in r["detail"] for r in rows.values())


def test_the_solution_still_passes_beside_the_hostile_ones(graded):
    g = graded["grades"]["correct"]
    assert g.ok, g.table()


def test_forged_log_lines_give_nothing(graded):
    g = graded["grades"]["forged_log"]
    _nothing_passed_but_real_work(g)
    assert _rows(g)["rf.theoretical"]["status"] == "not implemented"
    assert g.run.outcome == "completed"


def test_forged_status_file_does_not_hide_a_dead_kernel(graded):
    g = graded["grades"]["forged_status"]
    assert g.run.outcome == "kernel died", g.table()
    assert "ran to the end" not in g.table()
    _nothing_passed_but_real_work(g)


def test_forge_then_exit_gives_nothing(graded):
    g = graded["grades"]["forge_then_exit"]
    assert g.run.outcome == "kernel died"
    _nothing_passed_but_real_work(g)
    assert _rows(g)["rf.theoretical"]["status"] == "not implemented"
    assert {r["status"] for r in g.rows if r["id"] != "rf.theoretical"} == {"not attempted"}


def test_patching_the_engine_in_the_notebook_changes_nothing(graded):
    rows = _rows(graded["grades"]["one_kernel"])
    assert rows["rf.theoretical"]["status"] == "failed"
    assert "forged" not in rows["rf.theoretical"]["detail"]


def test_registering_a_trivial_exercise_under_a_real_id_changes_nothing(graded):
    rows = _rows(graded["grades"]["one_kernel"])
    assert rows["rf.layers_to_cover"]["status"] == "failed"
    assert "expected a function, got a int" in rows["rf.layers_to_cover"]["detail"]


def test_walking_the_stack_finds_no_expected_output(graded):
    row = _rows(graded["grades"]["one_kernel"])["rf.erf_std"]
    assert row["status"] == "failed"
    assert "is -1, expected" in row["detail"], row  # the walk found nothing to return


def test_escape_codes_and_newlines_do_not_reach_the_table(graded):
    g = graded["grades"]["one_kernel"]
    table = g.table()
    assert "raised ValueError" in _rows(g)["rf.erf"]["detail"]
    assert not any(ch in table for ch in "\x1b\r\x07")
    # one line per exercise: the fake row stays inside rf.erf's line
    assert sum(line.startswith("rf.") for line in table.splitlines()) == len(IDS)
    assert all(len(line) <= 140 for line in table.splitlines())


def test_clean_strips_control_and_format_characters():
    assert clean("a\x1b[31mb\nc\r\u202ed\x00", 100) == "ab c d"
    assert clean("x" * 50, 10) == "xxxxxxx..."


@needs_bwrap
def test_home_is_empty_and_the_instructors_files_unreadable(graded):
    detail = _rows(graded["grades"]["home_env_write_net"])["rf.theoretical"]["detail"]
    assert "HOME-PROBE FileNotFoundError FileNotFoundError" in detail, detail
    assert SECRET not in detail


def test_environment_is_scrubbed(graded):
    detail = _rows(graded["grades"]["home_env_write_net"])["rf.layers_to_cover"]["detail"]
    assert "ENV-PROBE absent" in detail, detail
    assert SECRET not in detail


@needs_bwrap
def test_file_system_is_read_only_outside_the_copy(graded):
    detail = _rows(graded["grades"]["home_env_write_net"])["rf.erf_1d"]["detail"]
    if graded["outside"].is_relative_to("/tmp"):
        # a checkout under /tmp (CI's clean clone) lies inside the sandbox's own tmpfs /tmp:
        # the write may succeed there, in memory that dies with the sandbox
        assert "WRITE-PROBE" in detail, detail
    else:
        assert "WRITE-PROBE OSError" in detail, detail  # read-only file system
    assert not graded["outside"].exists()  # the host's file system is never written


@needs_bwrap
def test_no_network(graded):
    detail = _rows(graded["grades"]["home_env_write_net"])["rf.erf_std"]["detail"]
    assert "NET-PROBE" in detail and "connected" not in detail, detail
    assert graded["hits"] == []


def test_garbage_on_the_channel_is_an_error_of_that_notebook_only(graded):
    g = graded["grades"]["garbage_channel"]
    assert g.run.outcome == "error", g.table()
    assert "malformed message" in g.table()
    assert not any(r["status"] == "passed" for r in g.rows)


def test_memory_limit(graded):
    detail = _rows(graded["grades"]["one_kernel"])["rf.erf_1d"]["detail"]
    assert "MEM-PROBE MemoryError" in detail, detail


def test_another_lessons_notebook_is_graded_as_the_lesson_asked_for(tmp_path):
    cells = exercise_cells(SOLUTIONS / f"{LESSON}.ipynb")
    path = write_notebook(tmp_path / "04_simplified_nl.ipynb", cells, LESSON)
    g = grade(path, timeout=180, lesson="04")
    assert g.lesson == "04_simplified_nl"
    assert g.passed == 0 and not g.ok
    assert any("lesson 00_receptive_fields" in w for w in g.warnings), g.warnings
    # and without --lesson: recognised from its checks, with a warning about its name
    path.write_text(path.read_text().replace(LESSON, "04_simplified_nl"))
    from gclab.grading.submission import detect_lesson, read_notebook

    cells_, meta = read_notebook(path)
    lesson, warnings = detect_lesson(path, cells_, meta, None)
    assert lesson == LESSON
    assert any("metadata says lesson 04" in w for w in warnings)
    assert any("file name says 04_simplified_nl" in w for w in warnings)


def test_the_reference_handed_in_is_not_passed(tmp_path):
    cells = exercise_cells(SOLUTIONS / "04_simplified_nl.ipynb")
    pool = next(c for c in code_cells_04() if "def attention_pool" in c)
    hostile = [
        cells[0],
        "import gclab.exercises.lessons.nb04_simplified_nl as nb04\n"
        'check("snl.forward", nb04.ref_forward)',
        "def attention_weights(x, w_k, b_k):\n"
        "    params = {'context_modeling.conv_mask.weight': w_k.reshape(1, -1, 1, 1),\n"
        "              'context_modeling.conv_mask.bias': np.array([b_k])}\n"
        "    return gnp.snl_block.context_modeling(x, params)[1]\n"
        'check("snl.attention", attention_weights)',
        pool,  # the learner's own, which uses numpy only: passes
        'check("snl.pool", attention_pool)',
    ]
    path = write_notebook(tmp_path / "ref.ipynb", hostile)
    rows = _rows(grade(path, timeout=240))
    for ex_id in ("snl.forward", "snl.attention"):
        assert rows[ex_id]["status"] == "failed"
        assert "uses the reference implementation" in rows[ex_id]["detail"], rows[ex_id]
    assert rows["snl.pool"]["status"] == "passed", rows["snl.pool"]


def code_cells_04():
    from gradekit import code_cells

    return code_cells(SOLUTIONS / "04_simplified_nl.ipynb")


STUCK_TIMEOUT = 15  # the notebook's run limit: enough to grade the stub before the hang


def _stuck_notebook(tmp_path):
    return write_notebook(tmp_path / "stuck.ipynb", [HEAD, SPAWN, STUB,
                          'import re\nre.match(r"(a+)+$", "a" * 64 + "b")  # one C call'])


@pytest.mark.parametrize("use_bwrap", [
    pytest.param(True, marks=needs_bwrap, id="bwrap"),
    pytest.param(False, id="fallback"),
])
def test_a_stuck_c_call_is_stopped_and_no_process_survives(tmp_path, use_bwrap):
    path = _stuck_notebook(tmp_path)
    start = time.monotonic()
    g = grade(path, timeout=STUCK_TIMEOUT, use_bwrap=use_bwrap)  # the regex burns a core
    took = time.monotonic() - start
    assert took < STUCK_TIMEOUT + 30, f"grade took {took:.0f} s"
    assert g.run.outcome == "timed out", g.table()
    assert _rows(g)["rf.theoretical"]["status"] == "not implemented"  # graded before the hang
    time.sleep(0.5)
    assert processes_with(MARK) == []  # kernel, child, new session, double-forked daemon


@needs_bwrap
def test_the_sandbox_cannot_write_into_grades_output(tmp_path):
    cell = """
def theoretical_rf(kernels, strides):
    n = 0
    for pid in os.listdir("/proc"):
        for fd in ("1", "2"):
            try:
                with open(f"/proc/{pid}/fd/{fd}", "w") as fh:
                    fh.write("PWNED\\n")
                n += 1
            except OSError:
                pass
    raise ValueError(f"PROC-PROBE {n}")
check("rf.theoretical", theoretical_rf)
"""
    path = write_notebook(tmp_path / "proc.ipynb", [HEAD, cell])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "gclab.cli", "grade", str(path), "--timeout",
                           "180"], capture_output=True, text=True, env=env, timeout=400)
    assert "PROC-PROBE" in proc.stdout, proc.stdout + proc.stderr
    assert "PWNED" not in proc.stdout and "PWNED" not in proc.stderr


def test_without_bubblewrap_the_verdicts_are_still_the_graders(tmp_path):
    """The fallback (no bwrap): forging, patching, register() and the frame walk still give
    nothing, and the environment is still scrubbed."""
    cell = FORGE + """
import gclab.exercises.core as core
from gclab.exercises import Exercise, register
core.judge = lambda *a, **k: None
register(Exercise("rf.layers_to_cover", "00_receptive_fields", "mine", kind="value",
                  reference=lambda: 0))
check("rf.layers_to_cover", 0)
def theoretical_rf(kernels, strides):
    f = sys._getframe(1)
    while f is not None:
        for v in list(f.f_locals.values()):
            for t in (v if isinstance(v, (list, tuple)) else [v]):
                if type(t).__name__ == "Trial":
                    return t.expected
        f = f.f_back
    raise ValueError("ENV-PROBE " + os.environ.get("GCLAB_TEST_SECRET", "absent"))
check("rf.theoretical", theoretical_rf)
"""
    path = write_notebook(tmp_path / "fallback.ipynb", [HEAD, cell], LESSON)
    os.environ["GCLAB_TEST_SECRET"] = SECRET
    try:
        g = grade(path, timeout=180, use_bwrap=False)
    finally:
        os.environ.pop("GCLAB_TEST_SECRET", None)
    rows = _rows(g)
    assert not any(r["status"] == "passed" for r in rows.values()), g.table()
    assert "ENV-PROBE absent" in rows["rf.theoretical"]["detail"]
    assert "expected a function" in rows["rf.layers_to_cover"]["detail"]


def test_an_answer_stuck_in_one_c_call_fails_and_the_run_stops(tmp_path, monkeypatch):
    """One C call the in-sandbox alarm cannot interrupt (sum over a huge range): the grader's
    own deadline per call (the exercise's limit + a slack, 20 s; 5 s here, as it burns a core
    meanwhile) fails it and ends the run."""
    from gclab.grading import trusted

    monkeypatch.setattr(trusted, "CALL_SLACK", 5.0)
    cell = ('def theoretical_rf(kernels, strides):\n'
            '    return sum(range(10**13))\n'
            'check("rf.theoretical", theoretical_rf)')
    path = write_notebook(tmp_path / "stuck_answer.ipynb", [HEAD, cell], LESSON)
    start = time.monotonic()
    g = grade(path, timeout=150)
    assert time.monotonic() - start < 5 + 5 + 30  # well before --timeout
    row = _rows(g)["rf.theoretical"]
    assert row["status"] == "failed" and "did not return within its time limit" in row["detail"]
    assert g.run.outcome == "timed out"


# ---------------------------------------------------------------- what the sandbox sends back
ANSWERS = {
    "warns": "import warnings\ndef erf_variance(depth, kernel=3):\n"
             "    warnings.warn('derived by hand')\n    return depth * (kernel**2 - 1) / 12\n",
    "loops_in_c": "def erf_variance(depth, kernel=3):\n"
                  "    mean = sum(range(kernel)) / kernel  # a C loop: no signal stops it\n"
                  "    squares = sum(map(pow, range(kernel), [2] * kernel))\n"
                  "    return depth * (squares / kernel - mean**2)\n",
}


@pytest.mark.parametrize("name", list(ANSWERS))
def test_the_sandbox_forwards_warnings_and_ends_a_numerical_derivation(name):
    """A warning the learner's call issued in the sandbox reaches the verdict; a numerical
    answer that loops in C on the case only a formula reaches is ended there (the call runs
    apart), the run completes, and the verdict names the cause."""
    from gclab.exercises import get
    from gclab.grading.trusted import run_and_grade

    cells = [HEAD, ANSWERS[name] + "check('rf.erf_variance', erf_variance)\n"]
    run = run_and_grade(cells, "00_receptive_fields", [get("rf.erf_variance")], timeout=120,
                        memory=4 << 30)
    assert run.outcome == "completed", (run.outcome, run.detail, run.output)
    verdict = run.verdicts["rf.erf_variance"]
    if name == "warns":
        assert verdict.passed, str(verdict)
        assert verdict.warned > 0 and "derived by hand" in verdict.warnings[0], verdict.warnings
    else:
        assert not verdict.passed
        assert verdict.diagnosis.startswith("this check needs the closed form"), verdict.diagnosis
        assert "did not finish" in verdict.diagnosis
