"""Resource limits on one graded notebook's processes, all of them together: a control group.

A cgroup counts every process and thread the notebook starts, and every page it holds, tmpfs
(its ``/tmp``, ``/dev/shm``, work folder) included, so forking does not multiply the limit.
:class:`Group` makes one, with ``memory`` and ``pids`` limits, on cgroup v2 (a delegated
subtree: the group is made under this process's own cgroup) or on cgroup v1 (the ``memory``
and ``pids`` hierarchies). Where neither can be written, :func:`available` says so and the
sandbox falls back to per-process rlimits (:mod:`gclab.grading.sandbox`).

The sandbox's child writes its own pid into the group before it execs (:meth:`Group.enter`),
so nothing it starts is ever outside it; :meth:`Group.close` kills what is left and removes it.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

__all__ = ["Group", "Host", "HOST", "available", "forget", "PIDS_MAX"]

PIDS_MAX = 256  # processes + threads of one notebook (an honest one uses about 40)


@dataclass(frozen=True)
class Host:
    """Where this machine's cgroups are described: the files :class:`Group` reads and the
    directory tree it writes (a test points them at a fake tree in a temporary folder)."""

    proc_cgroup: Path = Path("/proc/self/cgroup")  # this process's cgroup per hierarchy
    mounts: Path = Path("/proc/self/mounts")  # where cgroup2 is mounted
    v1_root: Path = Path("/sys/fs/cgroup")  # the v1 hierarchies, one directory each
    remove: Callable[[Path], None] = os.rmdir  # how an empty group is removed


HOST = Host()
_PROBED: Dict[Host, str | None] = {}


def _own_paths(host: Host) -> Dict[str, str]:
    """controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    out: Dict[str, str] = {}
    try:
        text = host.proc_cgroup.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for name in parts[1].split(",") if parts[1] else [""]:
            out[name] = parts[2]
    return out


def _v2_mount(host: Host) -> Path | None:
    try:
        for line in host.mounts.read_text().splitlines():
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return Path(fields[1])
    except OSError:
        pass
    return None


def _v2_parent(host: Host) -> Path | None:
    """This process's own v2 cgroup when its children can get the memory and pids
    controllers (they are in its ``cgroup.controllers``, and enabled or enabled now)."""
    mount = _v2_mount(host)
    own = _own_paths(host).get("")
    if mount is None or own is None:
        return None
    parent = mount / own.lstrip("/")
    try:
        offered = (parent / "cgroup.controllers").read_text().split()
        ctl = (parent / "cgroup.subtree_control").read_text().split()
    except OSError:
        return None
    if not {"memory", "pids"} <= set(offered):
        return None
    if not {"memory", "pids"} <= set(ctl):
        try:  # only allowed where the parent holds no process itself (a delegated subtree)
            (parent / "cgroup.subtree_control").write_text("+memory +pids")
        except OSError:
            return None
    return parent


def _v1_parents(host: Host) -> Dict[str, Path] | None:
    own = _own_paths(host)
    found = {}
    for ctl in ("memory", "pids"):
        base = host.v1_root / ctl
        if ctl not in own or not (base / "cgroup.procs").exists():
            return None
        found[ctl] = base / own[ctl].lstrip("/")
    return found


def _try(kind: str, host: Host) -> bool:
    """Make and remove a probe group of this kind; True when that works here."""
    try:
        g = Group(2**30, kind=kind, host=host)
    except OSError:
        return False
    g.close()
    return True


def available(host: Host = HOST) -> str | None:
    """``"cgroup v2"`` (a delegated subtree offering memory and pids), else ``"cgroup v1"``
    (writable memory and pids hierarchies), else None: which kind of group can be made here
    (probed once per host; ``GCLAB_SANDBOX_CGROUP=none`` says None)."""
    if host not in _PROBED:
        kind = None
        if os.environ.get("GCLAB_SANDBOX_CGROUP") != "none":
            for k in ("cgroup v2", "cgroup v1"):
                if _try(k, host):
                    kind = k
                    break
        _PROBED[host] = kind
    return _PROBED[host]


def forget() -> None:
    """Probe again at the next :func:`available` (after the machine's cgroups changed)."""
    _PROBED.clear()


class Group:
    """One control group with a memory limit (bytes, swap included where the kernel counts
    it) and a pids limit. Raises OSError when it cannot be made."""

    def __init__(self, memory: int, pids: int = PIDS_MAX, kind: str | None = None,
                 host: Host = HOST) -> None:
        kind = kind or available(host)
        name = f"gclab-grade-{uuid.uuid4().hex[:12]}"
        self.kind = kind
        self.host = host
        self.dirs: List[Path] = []
        try:
            if kind == "cgroup v2":
                parent = _v2_parent(host)
                if parent is None:
                    raise OSError("no delegated cgroup v2 subtree with memory and pids")
                d = parent / name
                d.mkdir()
                self.dirs = [d]
                (d / "memory.max").write_text(str(memory))
                _write_if(d / "memory.swap.max", "0")
                (d / "pids.max").write_text(str(pids))
            elif kind == "cgroup v1":
                parents = _v1_parents(host)
                if parents is None:
                    raise OSError("no writable cgroup v1 memory and pids hierarchies")
                for _ctl, parent in parents.items():
                    d = parent / name
                    d.mkdir()
                    self.dirs.append(d)
                mem, pid = self.dirs
                (mem / "memory.limit_in_bytes").write_text(str(memory))
                _write_if(mem / "memory.memsw.limit_in_bytes", str(memory))
                (pid / "pids.max").write_text(str(pids))
            else:
                raise OSError("no cgroup")
        except OSError:
            self.close()
            raise

    def enter(self) -> None:
        """Move the calling process into the group (in a child, before exec)."""
        pid = str(os.getpid())
        for d in self.dirs:
            with open(d / "cgroup.procs", "w") as fh:
                fh.write(pid)

    def memory_hit(self) -> bool:
        """Whether the memory limit was reached (v2 ``memory.events``: max or oom_kill;
        v1: ``memory.failcnt`` or an ``oom_kill`` in ``memory.oom_control``)."""
        for d in self.dirs:
            for fname in ("memory.events", "memory.oom_control"):
                try:
                    text = (d / fname).read_text()
                except OSError:
                    continue
                for line in text.splitlines():
                    k, _, v = line.partition(" ")
                    if k in ("oom_kill", "max", "oom") and v.strip().isdigit() and int(v) > 0:
                        return True
            try:
                if int((d / "memory.failcnt").read_text()) > 0:
                    return True
            except (OSError, ValueError):
                pass
        return False

    def pids(self) -> List[int]:
        out = []
        for d in self.dirs:
            try:
                out += [int(p) for p in (d / "cgroup.procs").read_text().split()]
            except (OSError, ValueError):
                pass
        return sorted(set(out))

    def close(self) -> None:
        """Kill every process left in the group and remove it."""
        for d in self.dirs:
            _write_if(d / "cgroup.kill", "1")
        for _ in range(100):
            left = self.pids()
            if not left:
                break
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.02)
        for d in self.dirs:
            for _ in range(50):
                try:
                    self.host.remove(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        self.dirs = []


def _write_if(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError:
        pass
