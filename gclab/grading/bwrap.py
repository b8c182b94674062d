"""How ``gclab grade`` starts bubblewrap: whether it works here, and what the sandbox sees.

The worker (:mod:`gclab.grading.worker`) sees, read-only, ``/usr`` (and its ``/bin``,
``/lib`` links), the loader's files from ``/etc``, the Python installation and its
site-packages, and :mod:`gclab.grading.view`'s copy of gclab (no answers, no lesson sources,
no ``.git``; a gclab installed in site-packages is covered by that copy too) with the
course's ``data/``. No ``/home``, ``/root``, ``/var``, ``/run`` (no host unix sockets), no
class folder, no checkout. Writable: ``/tmp`` (HOME and the work folder are in it), a tmpfs
capped in bytes and in files (:mod:`gclab.grading.capped_tmp`; where a user namespace of our
own cannot be made, bubblewrap's own tmpfs, capped in bytes only), and a capped ``/dev/shm``;
``/dev`` itself is read-only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

from gclab import paths

__all__ = ["FILES_LIMIT", "SHM_LIMIT", "TMPFS_LIMIT", "VIEW_MOUNT", "bwrap_available",
           "bwrap_command", "capped_tmp_available"]

DATA = paths.DATA  # the course's data, if any
CAPPED_TMP = Path(__file__).with_name("capped_tmp.py")
TMPFS_LIMIT = 256 * 2**20  # bytes of the sandbox's /tmp (RAM): HOME and the work folder
SHM_LIMIT = 64 * 2**20  # bytes of its /dev/shm
FILES_LIMIT = 8192  # files and folders in its /tmp (HOME and the work folder); an honest
#                     notebook makes a few dozen
VIEW_MOUNT = "/gclab"  # where the answer-free gclab is inside the sandbox
ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf")

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


def capped_tmp_available() -> bool:
    """Whether a tmpfs capped in files as well as bytes can be mounted for bubblewrap here
    (a user and mount namespace of our own: :mod:`gclab.grading.capped_tmp`; cached)."""
    if "capped" not in _BWRAP:
        ok = False
        if bwrap_available() and os.environ.get("GCLAB_SANDBOX_CAPPED_TMP") != "none":
            with tempfile.TemporaryDirectory(prefix="gclab-probe-") as d:
                try:
                    exe = str(_BWRAP.get("exe") or "bwrap")
                    ok = subprocess.run(  # bubblewrap itself, inside that namespace
                        [sys.executable, "-s", str(CAPPED_TMP), d, str(2**20), "16", "--",
                         exe, "--ro-bind", "/", "/", "--bind", d, "/tmp", "--unshare-net",
                         "--unshare-pid", "--die-with-parent", "--new-session",
                         "--cap-drop", "ALL", "true"],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, timeout=20).returncode == 0
                except (OSError, subprocess.SubprocessError):
                    ok = False
        _BWRAP["capped"] = ok
    return bool(_BWRAP["capped"])


def _python_dirs() -> List[Path]:
    """The Python installation and its site-packages (not the checkout on sys.path)."""
    dirs = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix),
            Path(sys.executable).parent}
    for p in sys.path:
        if p and ("site-packages" in p or "dist-packages" in p) and Path(p).is_dir():
            dirs.add(Path(p))
    return sorted(dirs, key=lambda p: len(str(p)))


def _bind_ro(cmd: List[str], path: Path, done: set) -> None:
    real = path.resolve()
    for src, dest in ((real, real), (real, path)):
        if str(dest) in done or str(dest).startswith("/usr/"):
            continue
        if any(str(dest).startswith(d.rstrip("/") + "/") for d in done):
            if str(dest) == str(src):
                continue
        cmd += ["--ro-bind", str(src), str(dest)]
        done.add(str(dest))


def bwrap_command(view: Path, output: Path, tmp: Path | None = None) -> List[str]:
    """bubblewrap's arguments; ``tmp``: a capped tmpfs already mounted (:mod:`capped_tmp`)
    to bind as ``/tmp`` instead of bubblewrap's own tmpfs."""
    exe = str(_BWRAP.get("exe") or "bwrap")
    cmd = [exe, "--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64"):
        p = Path("/") / top
        if p.is_symlink():
            cmd += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            cmd += ["--ro-bind", str(p), str(p)]
    for name in ETC:
        if (Path("/etc") / name).exists():
            cmd += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    cmd += [
        "--dev", "/dev",
        "--size", str(SHM_LIMIT), "--tmpfs", "/dev/shm",
        "--remount-ro", "/dev",
        "--proc", "/proc",
        *(["--bind", str(tmp), "/tmp"] if tmp is not None
          else ["--size", str(TMPFS_LIMIT), "--tmpfs", "/tmp"]),
        "--dir", "/tmp/work",
        "--dir", "/tmp/home",
        "--bind", str(output), "/tmp/output.txt",
    ]
    # After the /tmp tmpfs, so that an interpreter or venv under /tmp (a CI clone) is bound
    # on top of it instead of being hidden by it.
    done: set = set()
    for d in _python_dirs():
        _bind_ro(cmd, d, done)
    cmd += ["--ro-bind", str(view), VIEW_MOUNT]
    if DATA.is_dir():
        cmd += ["--ro-bind", str(DATA), f"{VIEW_MOUNT}/data"]
    for d in _python_dirs():  # a gclab installed there: the answer-free copy instead
        if (d / "gclab").is_dir() and "site-packages" in str(d) + "dist-packages":
            cmd += ["--ro-bind", str(view / "gclab"), str(d / "gclab")]
    cmd += [
        "--remount-ro", "/",  # bwrap's own root tmpfs: nothing is written outside /tmp
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
