"""``python reaper.py CMD...``: run CMD as a child and, when it ends (or this process gets
SIGTERM), kill every process it left behind.

Used by ``gclab grade`` where bubblewrap is missing. The reaper is a child-subreaper (Linux
``prctl(PR_SET_CHILD_SUBREAPER)``), so processes that double-fork or call ``setsid`` are
re-parented to it instead of to init, and it can find and kill them. Imports nothing of gclab
(it runs as a script); :mod:`gclab.grading.sandbox` uses its functions for ``gclab grade``'s
own process too.
"""

import os
import signal
import subprocess
import sys
from typing import List, Sequence


def become_subreaper() -> bool:
    """Make this process a child-subreaper (Linux): orphans of its descendants come to it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def children_of(pid: int) -> List[int]:
    """The direct children of ``pid`` (Linux /proc)."""
    kids = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return kids
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            kids.append(int(entry))
    return kids


def kill_children(pid: int, keep: Sequence[int] = (), rounds: int = 50) -> int:
    """SIGKILL and reap every child of ``pid`` (except ``keep``) until none is left."""
    killed = 0
    for _ in range(rounds):
        kids = [k for k in children_of(pid) if k not in keep]
        if not kids:
            break
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        for k in kids:
            try:
                os.waitpid(k, 0)
            except ChildProcessError:
                pass
    return killed


def main(cmd: list) -> int:
    become_subreaper()
    child = subprocess.Popen(cmd, close_fds=False)

    def stop(signum, frame):  # noqa: ARG001
        kill_children(os.getpid(), rounds=100)
        os._exit(1)

    signal.signal(signal.SIGTERM, stop)
    code = child.wait()
    kill_children(os.getpid(), rounds=100)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
