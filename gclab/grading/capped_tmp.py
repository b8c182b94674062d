"""Start a command with a tmpfs of capped size AND file count mounted on a directory.

``python capped_tmp.py DIR BYTES FILES -- COMMAND...``: enters a new user and mount namespace
(this process only: the host's mounts do not change), mounts a tmpfs on ``DIR`` with
``size=BYTES,nr_inodes=FILES``, and execs ``COMMAND`` (bubblewrap, which binds ``DIR`` as the
sandbox's ``/tmp``). bubblewrap's own ``--size`` caps bytes but not the number of files; a
tmpfs's ``nr_inodes`` caps both. Exit status 111 when the namespace or the mount cannot be
made (the caller then falls back to bubblewrap's own tmpfs). Run as a script: it imports
nothing from gclab.
"""

from __future__ import annotations

import ctypes
import os
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 16384, 1 << 18
CANNOT = 111


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def enter_and_mount(directory: str, size: int, files: int) -> None:
    """Raise OSError when the namespace or the mount cannot be made."""
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
    try:
        _write("/proc/self/setgroups", "deny")
    except FileNotFoundError:
        pass
    _write("/proc/self/uid_map", f"0 {uid} 1")
    _write("/proc/self/gid_map", f"0 {gid} 1")
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    options = f"size={size},nr_inodes={files},mode=0755".encode()
    if libc.mount(b"tmpfs", directory.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options) != 0:
        raise OSError(ctypes.get_errno(), f"mount tmpfs on {directory}")


def main(argv: list) -> int:
    if len(argv) < 6 or argv[4] != "--":
        print("usage: capped_tmp.py DIR BYTES FILES -- COMMAND...", file=sys.stderr)
        return 2
    directory, size, files, command = argv[1], int(argv[2]), int(argv[3]), argv[5:]
    try:
        enter_and_mount(directory, size, files)
    except OSError as exc:
        print(f"capped_tmp: {exc}", file=sys.stderr)
        return CANNOT
    os.execvp(command[0], command)
    return CANNOT


if __name__ == "__main__":
    sys.exit(main(sys.argv))
