"""The sandbox ``gclab grade`` runs a learner's notebook in, and the limits around it.

On Linux with bubblewrap (``bwrap``) the worker (:mod:`gclab.grading.worker`) runs

* seeing only what a notebook needs (:mod:`gclab.grading.bwrap`): the interpreter, an
  answer-free gclab, the course's data, read-only; writable only its ``/tmp`` (HOME and the
  work folder: capped in bytes and files) and a capped ``/dev/shm``,
* without network (``--unshare-net``: not even the host's loopback),
* in its own PID namespace (``--unshare-pid --die-with-parent``): it cannot see or signal the
  grader, and every process it starts dies with it, daemons included,
* in a new session (``--new-session``: no terminal to inject keystrokes into), without
  capabilities (``--cap-drop ALL``), with a scrubbed environment.

Resource limits (:func:`limits_in_force` says which hold here): a control group
(:mod:`gclab.grading.limits`, cgroup v2 or v1) caps the memory of all its processes
together (tmpfs pages included) and the number of its processes and threads; without one,
per-process rlimits (address space, processes of the user) are the fallback. Always: a
per-file size limit, the tmpfs sizes and file count (bubblewrap), and a wall-clock bound: on
expiry the process group and the control group are killed. Output from the sandbox is only
read through the message channel, always with a deadline; the learner's printed output is
read from a file opened as a regular file only, non-blocking, never following a link.

Without bubblewrap (macOS, or a kernel that forbids namespaces) the limits that remain are the
scrubbed environment, the resource limits above, the wall-clock bound and the cleanup: the
worker is started under a small reaper (:mod:`gclab.grading.reaper`) that is a
child-subreaper (Linux ``prctl``), so daemons and double forks are re-parented to it and killed
when the run ends; the grader itself is a subreaper too, as a second net. :func:`protections`
says which protections are active; ``gclab grade`` prints the missing ones.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from gclab.grading import limits, wire
from gclab.grading.bwrap import (
    CAPPED_TMP,
    FILES_LIMIT,
    SHM_LIMIT,
    TMPFS_LIMIT,
    VIEW_MOUNT,
    bwrap_available,
    bwrap_command,
    capped_tmp_available,
)
from gclab.grading.view import view_for

__all__ = ["Sandbox", "SandboxBroken", "limits_in_force", "missing_protections", "protections",
           "read_regular"]

REAPER = Path(__file__).with_name("reaper.py")
FILE_LIMIT = 256 * 2**20  # bytes per file the learner's code may write
AS_SLACK = 2**30  # address space beyond --memory per process, where a cgroup holds the memory
TORCH_NEEDS = 768 * 2**20  # address space importing torch takes (its thread-local data)
_NO_SPACE = re.compile(r"No space left on device|Errno 28|Disk quota exceeded")
_OUT_OF_MEMORY = re.compile(r"MemoryError|failed to map segment|Cannot allocate memory|"
                            r"bad_alloc|out of memory")



ALL_PROTECTIONS = (
    "no network",
    "own PID namespace (cannot see or signal the grader; all its processes die with it)",
    "sees only the interpreter, an answer-free gclab and its own empty folder (read-only "
    "outside it)",
    "empty HOME (instructor's files hidden)",
    "size-capped /tmp and /dev/shm",
    "file-count cap on /tmp",
    "scrubbed environment",
    "memory limit for all its processes together",
    "process limit",
    "wall-clock limit",
    "leftover processes killed",
)


def protections() -> List[str]:
    """The protections active for a run on this machine."""
    group = limits.available()
    kept = ["scrubbed environment", "wall-clock limit"]
    if group:
        kept += ["memory limit for all its processes together", "process limit"]
    if bwrap_available():
        return [p for p in ALL_PROTECTIONS
                if p in kept or p not in ALL_PROTECTIONS[-4:-1]
                and (p != "file-count cap on /tmp" or capped_tmp_available())]
    if _can_subreap() or group:
        kept.append("leftover processes killed")
    return [p for p in ALL_PROTECTIONS if p in kept]


def missing_protections() -> List[str]:
    have = protections()
    return [p for p in ALL_PROTECTIONS if p not in have]


def limits_in_force(memory: int, timeout: float, use_bwrap: bool | None = None,
                    group: str | None | bool = True) -> str:
    """One line: the resource limits a notebook runs under here (``group``: the kind of
    cgroup, :func:`gclab.grading.limits.available` unless given)."""
    use_bwrap = bwrap_available() if use_bwrap is None else use_bwrap
    group = limits.available() if group is True else group
    parts = []
    if group:
        parts.append(f"memory {_size(memory)} for all its processes together, tmpfs included, "
                     f"and {limits.PIDS_MAX} processes/threads ({group})")
        parts.append(f"address space {_size(memory + AS_SLACK)} per process")
    else:
        parts.append(f"memory {_size(memory)} address space per process (rlimit; no cgroup: "
                     "forked processes each get their own)")
        parts.append("processes: " + (f"{limits.PIDS_MAX} more for your user (rlimit)"
                                      if os.getuid() != 0 else "no limit (running as root)"))
    if use_bwrap:
        files = (f" and {FILES_LIMIT} files" if capped_tmp_available()
                 else " (no cap on the number of files here)")
        parts.append(f"/tmp + HOME + work folder {_size(TMPFS_LIMIT)}{files}, /dev/shm "
                     f"{_size(SHM_LIMIT)} (tmpfs)")
    else:
        parts.append("disk: no cap but the file size (no bubblewrap)")
    parts.append(f"each file {_size(FILE_LIMIT)}")
    parts.append(f"wall clock {timeout:g} s")
    return "; ".join(parts)


def _size(n: int) -> str:
    return f"{n / 2**30:.1f}G" if n >= 2**30 else f"{n // 2**20}M"


def _can_subreap() -> bool:
    return sys.platform.startswith("linux")


def _limits(memory: int, group: limits.Group | None):
    nproc = None
    if group is None and os.getuid() != 0:
        nproc = len([p for p in os.listdir("/proc") if p.isdigit()]) + limits.PIDS_MAX

    def preexec():  # runs in the child, before exec
        import resource

        if group is not None:
            group.enter()
        address = memory + AS_SLACK if group is not None else memory
        if memory > 0:
            resource.setrlimit(resource.RLIMIT_AS, (address, address))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if nproc is not None and hasattr(resource, "RLIMIT_NPROC"):
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

    return preexec


def _clean_env(home: str, tmp: str, pythonpath: str) -> Dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    return {
        "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": pythonpath,
        "HOME": home,
        "TMPDIR": tmp,
        "IPYTHONDIR": f"{home}/.ipython",
        "MPLCONFIGDIR": f"{home}/.matplotlib",
        "MPLBACKEND": "Agg",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "TQDM_DISABLE": "1",
    }


def read_regular(path: Path, tail: int) -> str:
    """The last ``tail`` bytes of ``path`` when it is a regular file (opened non-blocking,
    never following a link: a FIFO, a device or a symlink gives "")."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(str(path), flags)
    except OSError:
        return ""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return ""
        os.lseek(fd, max(0, info.st_size - tail), os.SEEK_SET)
        return os.read(fd, tail).decode(errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


class SandboxBroken(RuntimeError):
    """The sandbox died, timed out or said something that is not a valid message."""

    def __init__(self, outcome: str, detail: str = "") -> None:
        super().__init__(detail or outcome)
        self.outcome = outcome  # "kernel died" | "timed out" | "error"
        self.detail = detail


class Sandbox:
    """One sandboxed worker for one notebook. Use as a context manager; all of its processes
    are gone when the ``with`` block ends."""

    def __init__(self, timeout: float, memory: int, use_bwrap: bool | None = None,
                 view: Path | None = None) -> None:
        self.timeout = timeout
        self.memory = memory
        self.use_bwrap = bwrap_available() if use_bwrap is None else use_bwrap
        self.view = view
        self.proc: subprocess.Popen | None = None
        self.group: limits.Group | None = None
        self.deadline = 0.0
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.capped = False  # /tmp capped in files too (capped_tmp)
        self.disk_peak = (0, 0)  # most (files, bytes) seen in use in its /tmp

    # -- life cycle --------------------------------------------------------------------------
    def __enter__(self) -> Sandbox:
        self._tmp = tempfile.TemporaryDirectory(prefix="gclab-sandbox-")
        base = Path(self._tmp.name)
        view = self.view = self.view or view_for("", ())
        self.output = base / "output.txt"
        self.output.touch()
        if self.use_bwrap:
            worker = [sys.executable, "-s",
                      f"{VIEW_MOUNT}/gclab/grading/worker.py", "/tmp/output.txt"]
            if capped_tmp_available():
                tmp = base / "tmp"
                tmp.mkdir()
                cmd = [sys.executable, "-s", str(CAPPED_TMP), str(tmp), str(TMPFS_LIMIT),
                       str(FILES_LIMIT), "--", *bwrap_command(view, self.output, tmp), *worker]
                self.capped = True
            else:
                cmd = bwrap_command(view, self.output) + worker
            env = _clean_env("/tmp/home", "/tmp", VIEW_MOUNT)
            cwd = str(base)
        else:
            work, home = base / "work", base / "home"
            work.mkdir()
            home.mkdir()
            worker = [sys.executable, "-s", str(view / "gclab" / "grading" / "worker.py"),
                      str(self.output)]
            cmd = [sys.executable, "-s", str(REAPER), *worker]
            env = _clean_env(str(home), str(work), str(view))
            cwd = str(work)
        if limits.available() and self.memory > 0:
            try:
                self.group = limits.Group(self.memory)
            except OSError:
                self.group = None
        self.start = time.monotonic()
        self.deadline = self.start + self.timeout
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            start_new_session=True,
            preexec_fn=_limits(self.memory, self.group),
            close_fds=True,
        )
        return self

    def view_file(self, rel: Path) -> str:
        """The path the sandbox's Python sees for ``gclab/<rel>``."""
        if self.use_bwrap:
            return f"{VIEW_MOUNT}/gclab/{Path(rel).as_posix()}"
        return str(Path(self.view) / "gclab" / rel)

    def memory_cause(self, died: bool) -> str:
        """Why the memory limit may be the cause of a kernel that ``died`` or of memory errors
        in the learner's output ("" when nothing says so)."""
        if not (died or _OUT_OF_MEMORY.search(self.output_tail(1 << 16))):
            return ""
        if self.group is not None and self.group.memory_hit():
            return (f"it reached the memory limit ({_size(self.memory)} for all its processes "
                    "together; --memory)")
        if self.group is None and self.memory < TORCH_NEEDS + 256 * 2**20:
            return (f"the memory limit ({_size(self.memory)} address space per process; "
                    f"--memory) is too low: importing torch alone takes about "
                    f"{_size(TORCH_NEEDS)} of it")
        if self.group is None and not died:
            return (f"it ran out of memory under the limit ({_size(self.memory)} address "
                    "space per process; --memory)")
        return ""

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        proc = self.proc
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except (OSError, AttributeError):
                    pass
            if proc.poll() is None and not self.use_bwrap:
                try:
                    proc.send_signal(signal.SIGTERM)  # the reaper kills what its worker left
                    proc.wait(timeout=5)
                except (subprocess.TimeoutExpired, OSError):
                    pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.kill()
            except OSError:
                pass
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        if self.group is not None:
            self.group.close()  # everything it started, wherever it went
            self.group = None
        if self._tmp is not None:
            try:
                self._tmp.cleanup()
            except OSError:
                pass
            self._tmp = None

    # -- messages ----------------------------------------------------------------------------
    def send(self, header: dict, blob: bytes = b"") -> None:
        try:
            wire.write_message(self.proc.stdin.fileno(), header, blob)
        except (OSError, ValueError):
            raise SandboxBroken(self._dead_outcome(), "the kernel stopped") from None

    def receive(self, seconds: float | None = None) -> tuple:
        self._sample_disk()
        deadline = self.deadline
        if seconds is not None:
            deadline = min(deadline, time.monotonic() + seconds)
        try:
            return wire.read_message(self.proc.stdout.fileno(), deadline)
        except wire.ChannelTimeout:
            if time.monotonic() >= self.deadline - 0.01:
                raise SandboxBroken("timed out", "stopped after the time limit") from None
            raise SandboxBroken("timed out", "a check of it did not answer in time") from None
        except wire.ChannelClosed:
            raise SandboxBroken(self._dead_outcome(), "the kernel died") from None
        except wire.WireError as exc:
            raise SandboxBroken("error", f"the sandbox sent a malformed message ({exc})") from None

    def _dead_outcome(self) -> str:
        if time.monotonic() >= self.deadline:
            return "timed out"
        return "kernel died"

    def _sample_disk(self) -> None:
        """Note how many files and bytes the sandbox's /tmp holds (seen through its first
        process's root; nothing when that cannot be read)."""
        if self.proc is None or not self.capped:
            return
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as fh:
                child = fh.read().split()[0]
            st = os.statvfs(f"/proc/{child}/root/tmp")
        except (OSError, IndexError):
            return
        used = (st.f_files - st.f_ffree, (st.f_blocks - st.f_bfree) * st.f_frsize)
        self.disk_peak = tuple(max(a, b) for a, b in zip(self.disk_peak, used))

    def disk_cause(self) -> str:
        """Which limit of its folder the notebook reached, when its output says it ran out of
        space or the peak use seen says so ("" otherwise)."""
        full = _NO_SPACE.search(self.output_tail(1 << 16)) is not None
        files, size = self.disk_peak
        if self.capped and files >= FILES_LIMIT - 1:
            return (f"it reached the file-count limit ({FILES_LIMIT} files and folders in /tmp, "
                    "HOME and the work folder)")
        if full or size >= TMPFS_LIMIT - 2**20:
            return (f"it reached the size limit of its folder ({_size(TMPFS_LIMIT)} for /tmp, "
                    f"HOME and the work folder, {_size(SHM_LIMIT)} for /dev/shm)"
                    + (f", or the file-count limit ({FILES_LIMIT})" if self.capped else ""))
        return ""

    def output_tail(self, n: int = 2000) -> str:
        return read_regular(self.output, n)
