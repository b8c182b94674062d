"""``gclab grade`` against a hostile notebook: the sandbox holds no answers,
sees nothing but the submission, cannot take the machine's resources, and what it sends back
cannot hurt the grader or a neighbour in the batch.

The hostile notebooks are graded together, two at a time, beside an honest lesson-4 solution, by
one ``grade_many`` in a module fixture; each test looks at its own notebook's result. Each probe
reports what it saw in the message of an exception its answer raises (the grader shows it).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import pytest
from gradekit import ROOT, SOLUTIONS, code_cells, exercise_cells, write_notebook

from gclab.grading import limits
from gclab.grading.bwrap import bwrap_available
from gclab.grading.grade import grade, grade_many

pytestmark = pytest.mark.slow
needs_bwrap = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap (bwrap) not usable "
                                 "here: install it with scripts/sandbox-deps.sh")
needs_cgroup = pytest.mark.skipif(limits.available() is None, reason="no writable cgroup here")

L0, L4 = "00_receptive_fields", "04_simplified_nl"
HEAD4 = code_cells(SOLUTIONS / f"{L4}.ipynb")[0]
HEAD0 = "import os, sys, glob, subprocess, time\nfrom gclab.exercises import check\n"
PARAMS = ("params = {'context_modeling.conv_mask.weight': w_k.reshape(1, -1, 1, 1),\n"
          "          'context_modeling.conv_mask.bias': np.array([b_k])}\n")

REACH = [HEAD4, """
import inspect, gclab.exercises.lessons.nb04_simplified_nl as nb04
try:  # the reference's source, run here
    ns = dict(vars(nb04))
    exec(inspect.getsource(nb04.ref_forward), ns)
    forward = ns["ref_forward"]
except Exception as e:
    forward = None
check("snl.forward", forward)
""", """
import sys
def attention_weights(x, w_k, b_k):
    sys.setprofile(None)  # the tripwire off, then gclab's own block
""" + "    " + PARAMS.replace("\n", "\n    ") + """\
return gnp.snl_block.context_modeling(x, params)[1]
check("snl.attention", attention_weights)
""", """
from gclab.exercises import get
snl_params = get("snl.params").reference()  # a value read from the registry
check("snl.params", snl_params)
""", """
snl_param_count = nb04.snl_param_count
check("snl.param_count", snl_param_count)
"""]


def _probe(name: str, ex_id: str, body: str) -> str:
    """A cell that runs ``body`` (it appends what it sees to ``out``), then hands in an answer
    that reports it."""
    return (f"out = []\n{body.strip()}\nseen_{name} = ' '.join(out)\n"
            f"def {name}(*args, **kwargs):\n    raise ValueError('PROBE ' + seen_{name})\n"
            f"check({ex_id!r}, {name})\n")


def _exists(label: str, path: str) -> str:
    return f"out.append({label!r} + (':Y' if os.path.exists({path!r}) else ':n'))"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("isolation")
    marker = f"gclab-test-{uuid.uuid4().hex[:8]}"
    gradebook = f"/var/tmp/{marker}.csv"
    with open(gradebook, "w") as fh:
        fh.write("student,points\n")
    sock_path = f"/var/tmp/{marker}.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(5)
    srv.settimeout(0.5)
    hits: list = []
    done = threading.Event()

    def serve():
        while not done.is_set():
            try:
                conn, _ = srv.accept()
                hits.append(conn.recv(100))
                conn.close()
            except OSError:
                continue

    threading.Thread(target=serve, daemon=True).start()
    classmate = tmp / "classmate.ipynb"
    host = "\n".join([
        _exists("shadow", "/etc/shadow"), _exists("vartmp", gradebook), _exists("home", "/home"),
        _exists("run", "/run"), _exists("class", str(classmate)),
        _exists("repo", str(ROOT / "pyproject.toml")), _exists("git", str(ROOT / ".git")),
        _exists("solutions", str(SOLUTIONS / f"{L4}.ipynb")),
        _exists("sources", str(ROOT / "notebooks" / "src" / f"{L4}.py")),
        "import socket",
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)",
        "try:",
        f"    s.connect({sock_path!r}); s.send(b'hello'); out.append('sock:connected')",
        "except OSError as e:",
        "    out.append('sock:' + type(e).__name__)",
    ])
    pids = """
kids = []
try:
    for i in range(400):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        kids.append(pid)
except OSError as e:
    out.append(type(e).__name__)
out.append(f'PIDS:{len(kids)}')
for k in kids:
    os.kill(k, 9)
    os.waitpid(k, 0)
"""
    shm = """
try:
    with open('/dev/shm/big', 'wb') as f:
        for i in range(20):
            f.write(bytes(2**23))
    out.append('SHM:160M')
except OSError as e:
    out.append('SHM:' + type(e).__name__)
"""
    disk = """
n = 0
try:
    for i in range(3):
        with open(f'big{i}', 'wb') as f:
            for j in range(25):
                f.write(bytes(2**22))
        n += 1
except OSError as e:
    out.append(type(e).__name__)
out.append(f'DISK:{n}x100M')
"""
    memory = """
code = "import time; b = bytearray(350 * 2**20); print('ok', flush=True); time.sleep(30)"
procs = [subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE) for _ in range(3)]
time.sleep(1)
got = [p.stdout.readline().strip() == b'ok' for p in procs]
time.sleep(8)
alive = [p.poll() is None for p in procs]
out.append(f'MEMORY:{sum(g and a for g, a in zip(got, alive))}of3')
"""
    wire_bomb = """
import io, zipfile, json, numpy as _np
import gclab.grading.wire as wire
def bomb(value):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED) as zf:
        with zf.open('a0.npy', 'w', force_zip64=True) as f:
            _np.lib.format.write_array_header_1_0(
                f, {'descr': '|u1', 'fortran_order': False, 'shape': (2**30,)})
            for _ in range(64):
                f.write(bytes(2**24))
        zf.writestr('__tree__.npy', _npy(json.dumps({'nd': 0}).encode()))
    return buf.getvalue()
def refs(value):
    tree = {'list': [{'nd': 0}] * 400000}
    buf = io.BytesIO()
    raw = _np.frombuffer(json.dumps(tree).encode(), _np.uint8)
    _np.savez(buf, a0=_np.zeros(2**19), __tree__=raw)
    return buf.getvalue()
def _npy(data):
    b = io.BytesIO()
    _np.save(b, _np.frombuffer(data, _np.uint8))
    return b.getvalue()
real_dumps = wire.dumps
def attention_weights(x, w_k, b_k):
    wire.dumps = bomb
    return 0
def snl_param_count(channels):
    wire.dumps = refs
    return 0
def simplified_nonlocal(*args):
    wire.dumps = lambda value: real_dumps({'not': 'a tuple'})
    return 0
check("snl.attention", attention_weights)
check("snl.param_count", snl_param_count)
check("snl.forward", simplified_nonlocal)
wire.dumps = real_dumps
"""
    solved4 = exercise_cells(SOLUTIONS / f"{L4}.ipynb")
    pool = next(c for c in code_cells(SOLUTIONS / f"{L4}.ipynb") if "def attention_pool" in c)
    frame = """
import gc
w = next(o for o in gc.get_objects() if type(o).__name__ == 'Worker')
import json
head = json.dumps({'blob': '<img src=x onerror=alert(document.cookie)>'}).encode()
os.write(w.wfd, len(head).to_bytes(4, 'big') + head)
time.sleep(30)
"""
    nbs = {
        "reach_answers": [*REACH, pool, 'check("snl.pool", attention_pool)'],
        "host": [HEAD0, _probe("theoretical_rf", "rf.theoretical", host)],
        "resources": [HEAD0, _probe("theoretical_rf", "rf.theoretical", pids),
                      _probe("layers_to_cover", "rf.layers_to_cover", shm),
                      _probe("erf_1d", "rf.erf_1d", disk)],
        "memory": [HEAD0, _probe("theoretical_rf", "rf.theoretical", memory)],
        "wire": [HEAD4, wire_bomb, pool.replace("attention_pool", "attention_pool2"),
                 'attention_pool = attention_pool2\ncheck("snl.pool", attention_pool)'],
        "frame": [HEAD0, "check('rf.theoretical', None)", frame],
        "honest": code_cells(SOLUTIONS / f"{L4}.ipynb"),
    }
    paths = {name: write_notebook(tmp / f"{name}.ipynb", cells, L4 if cells[0] == HEAD4 or
                                  name == "honest" else L0) for name, cells in nbs.items()}
    write_notebook(classmate, solved4, L4)
    try:
        start = time.monotonic()
        results = grade_many(list(paths.values()), timeout=240, memory=2**30, jobs=2,
                             progress=False)
        seconds = time.monotonic() - start
    finally:
        time.sleep(0.5)
        done.set()
        srv.close()
        for p in (gradebook, sock_path):
            try:
                os.remove(p)
            except OSError:
                pass
    yield {"grades": dict(zip(paths, results)), "hits": hits, "seconds": seconds, "tmp": tmp}


def _rows(g):
    return {r["id"]: r for r in g.rows}


def _probe_text(g, ex_id):
    detail = _rows(g)[ex_id]["detail"]
    assert "PROBE" in detail, g.table()
    return detail.split("PROBE", 1)[1]


# ---------------------------------------------------------------- 1. no answers in the sandbox
def test_the_honest_neighbour_passes_everything(graded):
    g = graded["grades"]["honest"]
    assert g.ok, g.table()


def test_no_answer_can_be_computed_read_or_imported_in_the_sandbox(graded):
    g = graded["grades"]["reach_answers"]
    rows = _rows(g)
    for ex_id in ("snl.forward", "snl.attention", "snl.params", "snl.param_count"):
        assert rows[ex_id]["status"] != "passed", g.table()
    for ex_id in ("snl.attention", "snl.param_count"):  # a stub called: said as such
        assert "uses the reference implementation" in rows[ex_id]["detail"], rows[ex_id]
    assert rows["snl.pool"]["status"] == "passed"  # the learner's own work still counts


def test_cases_are_drawn_from_a_secret_seed_per_run():
    """A table of answers made at home for the exercise's published seeds does not pass."""
    import subprocess
    import sys

    code = ("from gclab.exercises import get\nfrom gclab.grading.trusted import secret_seeds\n"
            "ex = get('snl.attention')\nprint(secret_seeds(ex), tuple(ex.seeds))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, check=True).stdout.split(") (") for _ in range(2)]
    assert runs[0][0] != runs[1][0]  # a new secret each run
    assert runs[0][0].strip("(") != runs[0][1].strip(")\n")  # never the published seeds


def test_a_lookup_table_of_published_cases_does_not_pass(tmp_path):
    from gclab.exercises import get
    from gclab.exercises.trials import trials

    ex = get("snl.attention")
    table = {t.case.args[0].tobytes().hex()[:64]: t.expected.tolist() for t in trials(ex)}
    cell = (f"TABLE = {table!r}\n"
            "def attention_weights(x, w_k, b_k):\n"
            "    return np.array(TABLE[x.tobytes().hex()[:64]])\n"
            'check("snl.attention", attention_weights)')
    path = write_notebook(tmp_path / "table.ipynb", [HEAD4, cell], L4)
    row = _rows(grade(path, timeout=240))["snl.attention"]
    assert row["status"] == "failed", row


# ---------------------------------------------------------------- 2. nothing of the host
@needs_bwrap
def test_the_sandbox_sees_nothing_of_the_host(graded):
    seen = _probe_text(graded["grades"]["host"], "rf.theoretical")
    for label in ("shadow", "vartmp", "home", "run", "class", "repo", "git", "solutions",
                  "sources"):
        assert f"{label}:n" in seen, seen
    assert "sock:connected" not in seen and graded["hits"] == [], seen


# ---------------------------------------------------------------- 3. resources
@needs_cgroup
def test_processes_are_limited(graded):
    seen = _probe_text(graded["grades"]["resources"], "rf.theoretical")
    count = int(seen.split("PIDS:")[1].split()[0])
    assert count <= limits.PIDS_MAX, seen


@needs_bwrap
def test_dev_shm_and_the_work_folder_are_capped(graded):
    rows = _rows(graded["grades"]["resources"])
    shm = rows["rf.layers_to_cover"]["detail"]
    assert "SHM:OSError" in shm, shm
    disk = rows["rf.erf_1d"]["detail"]
    assert "DISK:3x100M" not in disk and "DISK:" in disk, disk


@needs_cgroup
def test_memory_is_limited_for_all_processes_together(graded):
    g = graded["grades"]["memory"]
    if g.run.outcome == "kernel died":  # the kernel itself was killed for memory: said so
        assert "memory limit" in g.table(), g.table()
        return
    seen = _probe_text(g, "rf.theoretical")
    assert "MEMORY:3of3" not in seen, seen


def test_wire_limits_and_malformed_replies_are_that_exercises_verdict(graded):
    g = graded["grades"]["wire"]
    rows = _rows(g)
    for ex_id in ("snl.attention", "snl.param_count", "snl.forward"):
        assert rows[ex_id]["status"] == "failed", g.table()
        assert "could not be read" in rows[ex_id]["detail"], rows[ex_id]
    assert rows["snl.pool"]["status"] == "passed"  # the notebook goes on, its own work counts
    assert g.run.outcome == "completed", g.table()


def test_a_malformed_frame_is_that_notebooks_error_and_its_text_is_escaped(graded):
    g = graded["grades"]["frame"]
    assert g.run.outcome == "error", g.table()
    for text in (g.table(), g.feedback(), str(g.records())):
        assert "<img" not in text, text


def test_a_fifo_in_place_of_the_output_file_does_not_block_grade(tmp_path):
    cell = """
for p in ("output.txt", "../output.txt"):
    try:
        os.remove(p)
    except OSError:
        pass
    try:
        os.mkfifo(p)
    except OSError:
        pass
os._exit(3)
"""
    path = write_notebook(tmp_path / "fifo.ipynb", [HEAD0, cell], L0)
    box: dict = {}
    worker = threading.Thread(target=lambda: box.update(g=grade(path, timeout=60, lesson="00",
                                                                 use_bwrap=False)),
                              daemon=True)
    worker.start()
    worker.join(150)
    assert not worker.is_alive(), "gclab grade blocked on a FIFO"
    assert box["g"].run.outcome == "kernel died"


def test_grade_says_which_limits_are_in_force(tmp_path, capsys):
    from gclab.grading.grade import main

    path = write_notebook(tmp_path / "empty.ipynb", [HEAD0], L0)
    main([str(path), "--lesson", "00", "--timeout", "120", "--memory", "1G"])
    out = capsys.readouterr().out
    assert "limits:" in out and "wall clock 120 s" in out, out
    if limits.available():
        assert "for all its processes together" in out and limits.available() in out


def test_a_memory_limit_too_low_for_torch_is_named_as_the_cause(tmp_path, monkeypatch):
    """Per-process address space (no cgroup): 300M cannot even import torch; the output says
    that the limit is the likely cause instead of only "kernel died"."""
    monkeypatch.setattr(limits, "available", lambda host=limits.HOST: None)
    cells = [HEAD0 + "import torch\nx = torch.ones(3)",
             "def theoretical_rf(kernels, strides):\n    raise NotImplementedError\n"
             "check('rf.theoretical', theoretical_rf)"]
    path = write_notebook(tmp_path / "low.ipynb", cells, L0)
    g = grade(path, timeout=120, lesson="00", memory=300 * 2**20)
    assert "memory limit" in g.table() and "torch" in g.table(), g.table()
