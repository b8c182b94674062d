"""``gclab grade --help`` and ``gclab notebooks --help`` on a bare install (no nbformat,
IPython or jupyter): the help works, a real run says which extra to install (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCKER = '''
import sys
class _Block:
    names = ("nbformat", "nbclient", "IPython", "jupytext", "jupyter_client", "ipykernel",
             "matplotlib", "sklearn", "scipy", "nbgrader", "traitlets")
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, _Block())
'''


def _bare(tmp_path, *args):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    return subprocess.run([sys.executable, "-m", "gclab.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_help_works_without_the_course_extra(tmp_path):
    for command in ("grade", "notebooks"):
        proc = _bare(tmp_path, command, "--help")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"usage: gclab {command}")


def test_running_without_the_course_extra_names_it(tmp_path):
    proc = _bare(tmp_path, "grade", str(ROOT / "notebooks" / "04_simplified_nl.ipynb"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("gclab grade: gclab grade needs the Python package 'IPython', "
                                   'which is not installed: pip install "gclab[course]"')
    proc = _bare(tmp_path, "notebooks", "--check")
    assert proc.returncode == 2
    assert "needs the Python package 'nbformat'" in proc.stderr
    assert "Traceback" not in proc.stderr
