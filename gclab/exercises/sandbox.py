"""The sandbox ``gclab grade`` runs a learner's notebook in, and the limits around it.

On Linux with bubblewrap (``bwrap``) the worker (:mod:`gclab.exercises._sandbox_worker`) runs

* without network (``--unshare-net``: not even the host's loopback),
* in its own PID namespace (``--unshare-pid --die-with-parent``): it cannot see or signal the
  grader, and every process it starts dies with it, daemons included,
* with a read-only view of the file system (``--ro-bind / /``), an empty ``/tmp``, an empty
  fresh ``HOME``, the instructor's home and the course's ``notebooks/`` hidden, and one writable
  folder: a throwaway copy of the submission,
* in a new session (``--new-session``: no terminal to inject keystrokes into), without
  capabilities (``--cap-drop ALL``),
* with a scrubbed environment (only PATH, PYTHONPATH, HOME, TMPDIR, LANG and the thread
  variables),
* under an address-space limit (``RLIMIT_AS``, ``--memory``) and a file-size limit.

The whole run has a wall-clock bound: on expiry the bwrap process group is killed, which takes
the namespace with it. Output from the sandbox is only read through the message channel, always
with a deadline, so a process that keeps a pipe open cannot make the grader wait.

Without bubblewrap (macOS, or a kernel that forbids namespaces) the limits that remain are the
scrubbed environment, the memory and file-size limits, the wall-clock bound and the cleanup:
the worker is started under a small reaper (:mod:`gclab.exercises._reaper`) that is a
child-subreaper (Linux ``prctl``), so daemons and double forks are re-parented to it and killed
when the run ends; the grader itself is a subreaper too, as a second net. :func:`protections`
says which protections are active; ``gclab grade`` prints the missing ones.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from . import wire
from ._reaper import become_subreaper, children_of, kill_children  # noqa: F401 (grade uses them)

__all__ = ["Sandbox", "bwrap_available", "protections", "missing_protections"]

PACKAGE_PARENT = Path(__file__).resolve().parent.parent.parent  # the folder holding gclab/
WORKER = Path(__file__).with_name("_sandbox_worker.py")
REAPER = Path(__file__).with_name("_reaper.py")
FILE_LIMIT = 512 * 2**20  # bytes per file the learner's code may write
TMPFS_LIMIT = 256 * 2**20  # bytes of the sandbox's /tmp (RAM) and of its empty HOME

_BWRAP: Dict[str, object] = {}


def bwrap_available() -> bool:
    """Whether bubblewrap is installed and can create the namespaces here (cached)."""
    if os.environ.get("GCLAB_SANDBOX") == "none":
        return False
    if "ok" not in _BWRAP:
        exe = shutil.which("bwrap")
        ok = False
        if exe and sys.platform.startswith("linux"):
            try:
                ok = (
                    subprocess.run(
                        [exe, "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid",
                         "--die-with-parent", "--new-session", "true"],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        timeout=20,
                    ).returncode
                    == 0
                )
            except (OSError, subprocess.SubprocessError):
                ok = False
        _BWRAP.update(ok=ok, exe=exe)
    return bool(_BWRAP["ok"])


ALL_PROTECTIONS = (
    "no network",
    "own PID namespace (cannot see or signal the grader; all its processes die with it)",
    "read-only file system outside a throwaway copy",
    "empty HOME (instructor's files hidden)",
    "scrubbed environment",
    "memory limit",
    "wall-clock limit",
    "leftover processes killed",
)


def protections() -> List[str]:
    """The protections active for a run on this machine."""
    if bwrap_available():
        return list(ALL_PROTECTIONS)
    kept = ["scrubbed environment", "memory limit", "wall-clock limit"]
    if _can_subreap():
        kept.append("leftover processes killed")
    return kept


def missing_protections() -> List[str]:
    have = protections()
    return [p for p in ALL_PROTECTIONS if p not in have]


def _can_subreap() -> bool:
    return sys.platform.startswith("linux")


def _limits(memory: int):
    def preexec():  # runs in the child, before exec (only async-signal-safe-ish calls)
        import resource

        if memory > 0:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return preexec


def _clean_env(home: str, tmp: str) -> Dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    return {
        "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": str(PACKAGE_PARENT),
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


def _under(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def _bwrap_command(work: Path) -> List[str]:
    exe = str(_BWRAP.get("exe") or "bwrap")
    cmd = [
        exe,
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--size", str(TMPFS_LIMIT), "--tmpfs", "/tmp",  # RAM-backed: capped
    ]
    real_home = Path(os.path.expanduser("~"))
    masked = [Path("/tmp")]  # the instructor's /tmp and home are replaced by empty tmpfs
    if str(real_home) not in ("/", "") and real_home.is_dir():
        cmd += ["--size", str(TMPFS_LIMIT), "--tmpfs", str(real_home)]
        masked.append(real_home)
    # what Python and gclab need from inside a masked folder stays visible, read-only (a
    # checkout or a venv under /tmp, as CI's clean clone is, or under the home)
    needed = [Path(sys.prefix), Path(sys.base_prefix), PACKAGE_PARENT, Path(sys.executable)]
    needed += [Path(p) for p in sys.path if p and Path(p).exists()]
    keys = set()
    for p in needed:
        for m in masked:
            if _under(p, m) and p.resolve() != m.resolve():
                keys.add(str(p.resolve()))
    for key in sorted(keys, key=len):  # parents first, so a child bind is not covered again
        cmd += ["--ro-bind", key, key]
    course = PACKAGE_PARENT / "notebooks"
    if course.is_dir():  # the course's solutions are not the learner's to read
        cmd += ["--size", str(2**20), "--tmpfs", str(course)]
    cmd += [
        "--bind", str(work), "/tmp/work",
        "--dir", "/tmp/home",
        "--chdir", "/tmp/work",
        "--unshare-net",
        "--unshare-pid",
        "--as-pid-1",  # no bwrap init holding our pipes: the worker is pid 1, all die with it
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
        "--",
    ]
    return cmd


class SandboxBroken(RuntimeError):
    """The sandbox died, timed out or said something that is not a valid message."""

    def __init__(self, outcome: str, detail: str = "") -> None:
        super().__init__(detail or outcome)
        self.outcome = outcome  # "kernel died" | "timed out" | "error"
        self.detail = detail


class Sandbox:
    """One sandboxed worker for one notebook. Use as a context manager; all of its processes
    are gone when the ``with`` block ends."""

    def __init__(self, timeout: float, memory: int, use_bwrap: bool | None = None) -> None:
        self.timeout = timeout
        self.memory = memory
        self.use_bwrap = bwrap_available() if use_bwrap is None else use_bwrap
        self.proc: subprocess.Popen | None = None
        self.deadline = 0.0
        self._tmp: tempfile.TemporaryDirectory | None = None

    # -- life cycle --------------------------------------------------------------------------
    def __enter__(self) -> Sandbox:
        self._tmp = tempfile.TemporaryDirectory(prefix="gclab-sandbox-")
        base = Path(self._tmp.name)
        work = base / "work"
        work.mkdir()
        worker = [sys.executable, "-s", str(WORKER)]
        if self.use_bwrap:
            cmd = _bwrap_command(work) + worker
            env = _clean_env("/tmp/home", "/tmp")
            cwd = str(work)
        else:
            home = base / "home"
            home.mkdir()
            cmd = [sys.executable, "-s", str(REAPER), *worker]
            env = _clean_env(str(home), str(work))
            cwd = str(work)
        self.work = work
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
            preexec_fn=_limits(self.memory),
            close_fds=True,
        )
        return self

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

    def output_tail(self, n: int = 2000) -> str:
        try:
            with open(self.work / "output.txt", "rb") as fh:
                fh.seek(0, 2)
                size = fh.tell()
                fh.seek(max(0, size - n))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""
