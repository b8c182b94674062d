"""gclab.grading.limits on cgroup v2 and v1 trees, and the choice between them.

This machine's cgroup v2 offers no controllers, so the v2 path is exercised against a fake
cgroup v2 tree in a temporary folder (the files the kernel would show: cgroup.controllers,
cgroup.subtree_control, memory.max, pids.max, memory.events, cgroup.procs, cgroup.kill), with
this process's /proc/self/cgroup and mounts replaced by files naming it. Removing a group
removes its interface files, as the kernel's rmdir of a cgroup does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gclab.grading import limits
from gclab.grading.sandbox import limits_in_force


def _host(tmp: Path, v2_controllers: str | None, v1: bool) -> limits.Host:
    """A fake machine: cgroup2 mounted at tmp/unified (this process in /grader, offering
    ``v2_controllers``; None: no cgroup2 at all), and v1 memory/pids hierarchies if ``v1``."""
    mounts, own = [], []
    if v2_controllers is not None:
        parent = tmp / "unified" / "grader"
        parent.mkdir(parents=True)
        (parent / "cgroup.controllers").write_text(v2_controllers + "\n")
        (parent / "cgroup.subtree_control").write_text("\n")
        mounts.append(f"cgroup2 {tmp / 'unified'} cgroup2 rw,nosuid,nodev,noexec 0 0")
        own.append("0::/grader")
    if v1:
        for i, ctl in enumerate(("memory", "pids")):
            d = tmp / "v1" / ctl / "grader"
            d.mkdir(parents=True)
            (tmp / "v1" / ctl / "cgroup.procs").write_text("")
            own.append(f"{i + 4}:{ctl}:/grader")
    (tmp / "mounts").write_text("\n".join(mounts) + "\n")
    (tmp / "cgroup").write_text("\n".join(own) + "\n")
    return limits.Host(proc_cgroup=tmp / "cgroup", mounts=tmp / "mounts", v1_root=tmp / "v1",
                       remove=shutil.rmtree)


@pytest.fixture(autouse=True)
def _fresh_probe():
    limits.forget()
    yield
    limits.forget()


def test_v2_group_writes_its_limits_counts_oom_kills_and_cleans_up(tmp_path):
    host = _host(tmp_path, "cpu io memory pids", v1=False)
    assert limits.available(host) == "cgroup v2"
    parent = tmp_path / "unified" / "grader"
    assert set((parent / "cgroup.subtree_control").read_text().split()) == {"+memory", "+pids"}
    g = limits.Group(3 * 2**30, pids=100, host=host)
    (d,) = g.dirs
    assert d.parent == parent and d.name.startswith("gclab-grade-")
    assert (d / "memory.max").read_text() == str(3 * 2**30)
    assert (d / "memory.swap.max").read_text() == "0"
    assert (d / "pids.max").read_text() == "100"
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
    assert not g.memory_hit()
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\n")
    assert g.memory_hit()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    (d / "cgroup.procs").write_text(f"{child.pid}\n")
    assert g.pids() == [child.pid]
    g.close()
    assert child.wait(timeout=10) == -9  # killed by close
    assert not d.exists() and g.dirs == []


def test_v2_enter_writes_the_callers_pid(tmp_path):
    g = limits.Group(2**30, host=_host(tmp_path, "memory pids", v1=False), kind="cgroup v2")
    g.enter()
    (d,) = g.dirs
    assert (d / "cgroup.procs").read_text() == str(__import__("os").getpid())
    (d / "cgroup.procs").write_text("")  # so that close does not kill this test
    g.close()


def test_v1_group_writes_both_hierarchies(tmp_path):
    host = _host(tmp_path, None, v1=True)
    assert limits.available(host) == "cgroup v1"
    g = limits.Group(2**30, pids=50, host=host)
    mem, pid = g.dirs
    assert (mem / "memory.limit_in_bytes").read_text() == str(2**30)
    assert (pid / "pids.max").read_text() == "50"
    (mem / "memory.failcnt").write_text("3")
    assert g.memory_hit()
    g.close()
    assert not mem.exists() and not pid.exists()


@pytest.mark.parametrize("v2, v1, kind", [
    ("cpu memory pids", True, "cgroup v2"),  # v2 with the controllers: v2
    ("", True, "cgroup v1"),  # v2 without controllers (this machine): v1
    ("cpu io", True, "cgroup v1"),
    (None, True, "cgroup v1"),
    ("", False, None),  # neither
    (None, False, None),
])
def test_the_choice_and_the_line_grade_prints(tmp_path, v2, v1, kind):
    host = _host(tmp_path, v2, v1)
    assert limits.available(host) == kind
    line = limits_in_force(2**30, 60, use_bwrap=True, group=kind)
    if kind:
        assert f"memory 1.0G for all its processes together, tmpfs included, and " \
               f"{limits.PIDS_MAX} processes/threads ({kind})" in line, line
    else:
        assert "address space per process (rlimit; no cgroup" in line, line
    if v2 == "":  # nothing was enabled where the controllers are not offered
        assert (tmp_path / "unified" / "grader" / "cgroup.subtree_control").read_text() == "\n"


def test_no_cgroup_when_the_environment_says_none(tmp_path, monkeypatch):
    monkeypatch.setenv("GCLAB_SANDBOX_CGROUP", "none")
    assert limits.available(_host(tmp_path, "memory pids", v1=True)) is None


# ------------------------------------------------------------------ the number of files
needs_capped_tmp = pytest.mark.skipif(
    not __import__("gclab.grading.bwrap", fromlist=["x"]).capped_tmp_available(),
    reason="no user+mount namespace for a file-capped tmpfs here (bubblewrap missing?)")


@pytest.mark.slow
@needs_capped_tmp
def test_twenty_thousand_files_cannot_be_made_and_grade_says_which_limit(tmp_path):
    from gradekit import write_notebook

    from gclab.grading.bwrap import FILES_LIMIT
    from gclab.grading.grade import grade

    cell = """
import os
made = 0
try:
    for i in range(20000):
        open(f'f{i}', 'w').close()
        made += 1
except OSError as e:
    err = type(e).__name__
def theoretical_rf(kernels, strides):
    raise ValueError(f'MADE {made}')
check('rf.theoretical', theoretical_rf)
"""
    head = "from gclab.exercises import check\n"
    path = write_notebook(tmp_path / "files.ipynb", [head, cell], "00_receptive_fields")
    g = grade(path, timeout=120, lesson="00")
    detail = {r["id"]: r for r in g.rows}["rf.theoretical"]["detail"]
    made = int(detail.split("MADE ")[1].split()[0].strip("'\")"))
    assert made < FILES_LIMIT <= 20000, detail
    assert "file-count limit" in g.table(), g.table()
    assert f"and {FILES_LIMIT} files" in g.limits, g.limits
