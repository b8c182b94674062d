"""``python _reaper.py CMD...``: run CMD as a child and, when it ends (or this process gets
SIGTERM), kill every process it left behind.

Used by ``gclab grade`` where bubblewrap is missing. The reaper is a child-subreaper (Linux
``prctl(PR_SET_CHILD_SUBREAPER)``), so processes that double-fork or call ``setsid`` are
re-parented to it instead of to init, and it can find and kill them. Imports nothing of gclab.
"""

import os
import signal
import subprocess
import sys


def _subreaper() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _children() -> list:
    me, kids = os.getpid(), []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                kids.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return kids


def _kill_all() -> None:
    for _ in range(100):
        kids = _children()
        if not kids:
            return
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for k in kids:
            try:
                os.waitpid(k, 0)
            except ChildProcessError:
                pass


def main(cmd: list) -> int:
    _subreaper()
    child = subprocess.Popen(cmd, close_fds=False)

    def stop(signum, frame):  # noqa: ARG001
        _kill_all()
        os._exit(1)

    signal.signal(signal.SIGTERM, stop)
    code = child.wait()
    _kill_all()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
