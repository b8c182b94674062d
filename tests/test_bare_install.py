"""A bare ``pip install -c constraints.txt .`` works from outside the repository, and says what
is missing when an optional package is needed.

One fresh virtual environment (no extras) serves the whole file, in order:

1. bare: the README snippets that name no extra run; every sub-command's ``--help`` answers;
   a command that needs an optional package prints ONE line naming the extra, exit status 2;
2. then the extras that README snippets name (``pip install "gclab[export]"``) are installed
   into the same environment and those snippets run too.

Everything runs with the working directory in a scratch folder and without PYTHONPATH, so the
installed package is what gets imported, not the checkout. To keep the time down, torch (750 MB
unpacked) is linked from the environment running the tests when that is the pinned build; pip
still resolves and installs every other dependency itself. (Measured on the 2-core Intel CI
machine under load: ~1 min for the file.)
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gclab._extras import EXTRA_OF

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)
EXTRA_RE = re.compile(r'pip install "gclab\[([\w,-]+)\]"')
COMMANDS = ("grade", "notebooks", "reproduce", "bench")

pytestmark = pytest.mark.slow


def _pinned_torch() -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        m = re.match(r"\s*torch\s*==\s*([\w.+]+)", line)
        if m:
            return m.group(1)
    raise AssertionError("constraints.txt pins no torch")


class Venv:
    def __init__(self, path: Path, work: Path) -> None:
        self.path, self.work = path, work
        self.bin = path / "bin"
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        self.env["PATH"] = f"{self.bin}{os.pathsep}{self.env.get('PATH', '')}"
        self.timings: dict = {}

    def run(self, *cmd: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), cwd=self.work, env=self.env, capture_output=True,
                              text=True, timeout=timeout, **kw)

    def python(self, code: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return self.run(str(self.bin / "python"), "-c", code, timeout=timeout)

    def pip_install(self, target: str, label: str) -> None:
        start = time.monotonic()
        # --no-compile: no .pyc for sympy & co (what gets installed is the same; saves time).
        # The build keeps pip's isolation: a fresh venv's setuptools 65 has no bdist_wheel.
        proc = self.run(str(self.bin / "python"), "-m", "pip", "install", "-q",
                        "--no-compile", "--disable-pip-version-check",
                        "-c", str(ROOT / "constraints.txt"), target, timeout=900)
        self.timings[label] = time.monotonic() - start
        assert proc.returncode == 0, f"pip install {target} failed:\n{proc.stderr[-3000:]}"


def _link_torch(site: Path) -> bool:
    """Link the running environment's torch into ``site`` when it is the pinned build."""
    try:
        dist = md.distribution("torch")
    except md.PackageNotFoundError:
        return False
    if dist.version.split("+")[0] != _pinned_torch():
        return False
    base = Path(dist.locate_file(""))
    tops = {Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith("..")}
    for top in tops:
        src = base / top
        if src.exists() and not (site / top).exists():
            (site / top).symlink_to(src, target_is_directory=src.is_dir())
    return True


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Venv:
    root = tmp_path_factory.mktemp("bare")
    work = root / "elsewhere"  # outside the repository
    work.mkdir()
    v = Venv(root / "venv", work)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "venv", str(v.path)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    site = Path(v.python("import sysconfig; print(sysconfig.get_paths()['purelib'])")
                .stdout.strip())
    v.timings["linked torch"] = _link_torch(site)
    v.pip_install(str(ROOT), "pip install -c constraints.txt . (no extras)")
    v.timings["venv + bare install"] = time.monotonic() - start
    yield v
    print("\n[bare install timings, s]", json.dumps(v.timings, default=str))


def _snippets():
    """(index, code, extras named in it) for each README python block."""
    for i, code in enumerate(BLOCKS):
        extras = sorted({e for m in EXTRA_RE.findall(code) for e in m.split(",")})
        yield i, code, extras


def _runnable(i: int, code: str) -> str:
    """The README block as a program. Block 0 is notebook usage (``softmax`` is the learner's
    own function): its import line is what a bare install must serve. Block 2 continues the
    quick start (block 1)."""
    if i == 0:
        return "\n".join(line for line in code.splitlines() if line.startswith("from "))
    if i == 2:
        return BLOCKS[1] + "\n" + code
    return code


def test_readme_snippets_without_extras_run_on_a_bare_install(venv):
    bare = [(i, c) for i, c, extras in _snippets() if not extras]
    assert len(bare) >= 3, "README lost its examples"
    for i, code in bare:
        proc = venv.python(_runnable(i, code))
        assert proc.returncode == 0, f"README block {i} failed bare:\n{code}\n{proc.stderr[-3000:]}"
    # and the import is the installed package, not the checkout
    where = venv.python("import gclab; print(gclab.__file__)").stdout.strip()
    assert str(ROOT) not in where and "site-packages" in where, where


def test_installed_package_has_its_data_and_license(venv):
    proc = venv.python(
        "import importlib.metadata as md, importlib.resources as r\n"
        "print(r.files('gclab').joinpath('py.typed').is_file())\n"
        "d = md.distribution('gclab')\n"
        "print(any(str(f).endswith('LICENSE') for f in d.files or ()))"
    )
    assert proc.returncode == 0 and proc.stdout.split() == ["True", "True"], proc.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_help_works_on_a_bare_install(venv, command):
    proc = venv.run(str(venv.bin / "gclab"), command, "--help", timeout=120)
    assert proc.returncode == 0, f"gclab {command} --help, exit {proc.returncode}:\n{proc.stderr}"
    assert f"usage: gclab {command}" in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def _one_line_naming_the_extra(venv, *args: str) -> None:
    proc = venv.run(str(venv.bin / "gclab"), *args, timeout=120)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 2, (args, proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1, (args, lines)
    course = [name for name, extra in EXTRA_OF.items() if extra == "course"]
    assert 'pip install "gclab[course]"' in lines[0], lines
    assert any(repr(name) in lines[0] or name in lines[0] for name in course), lines


def test_missing_extra_is_one_line_naming_it_exit_2(venv):
    _one_line_naming_the_extra(venv, "notebooks", "--check")


def test_grade_names_the_extra_too(venv):
    nb = venv.work / "learner.ipynb"
    nb.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    _one_line_naming_the_extra(venv, "grade", str(nb))


def test_readme_snippets_that_name_an_extra_run_once_it_is_installed(venv):
    """Last in this file: it installs extras into the shared environment."""
    named = [(i, c, extras) for i, c, extras in _snippets() if extras]
    assert named, "the README's export example should say it needs gclab[export]"
    for i, code, extras in named:
        program = _runnable(i, code)
        # before: what the extra brings is missing (so installing it is what makes this pass)
        brings = [name for name, extra in EXTRA_OF.items() if extra in extras]
        probe = f"import importlib.util as u; print([n for n in {brings!r} if not u.find_spec(n)])"
        missing = venv.python(probe)
        assert missing.stdout.strip() == repr(brings), (brings, missing.stdout, missing.stderr)
        venv.pip_install(f"{ROOT}[{','.join(extras)}]", f"pip install .[{','.join(extras)}]")
        proc = venv.python(program)
        assert proc.returncode == 0, f"README block {i} with {extras}:\n{proc.stderr[-3000:]}"
