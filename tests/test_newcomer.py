"""What a newcomer meets first: the README's install text, its NumPy example, the instructor
extra, and the course command's JupyterLab (no "Jupyter news" toast on every load)."""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python < 3.11")

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
CHROMIUM = "/usr/bin/chromium"


def test_readme_says_gclab_installs_from_a_clone_or_git_url_not_pypi():
    bare = re.findall(r"pip install gclab(?![\w\[-])", README)
    assert not bare, "README tells to `pip install gclab`, but gclab is not on PyPI"
    assert "not on PyPI" in README
    assert re.search(r'pip install "gclab\[\w+\] @ git\+', README), "no Git-URL install"
    assert 'pip install -e ".[course]"' in README


def test_readme_gives_the_cpu_torch_index_that_setup_uses():
    setup = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    index = re.search(r"^CPU_INDEX=(\S+)", setup, re.M).group(1)
    pin = re.search(r"^torch==(\S+)", (ROOT / "constraints.txt").read_text(), re.M).group(1)
    assert f"pip install torch=={pin} --index-url {index}" in README


def test_readme_numpy_backward_gets_an_upstream_gradient_not_the_output():
    block = next(b for b in re.findall(r"```python\n(.*?)```", README, re.S)
                 if "gc_block.backward" in b)
    tree = ast.parse(block)
    outputs = {t.elts[0].id for node in ast.walk(tree) if isinstance(node, ast.Assign)
               for t in node.targets if isinstance(t, ast.Tuple)
               and isinstance(node.value, ast.Call) and "forward" in ast.unparse(node.value.func)}
    (call,) = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
               and ast.unparse(n.func).endswith("backward")]
    first = ast.unparse(call.args[0])
    assert outputs and first not in outputs, f"backward({first}, ...) is the forward output"
    assert "dout" in first


def test_instructor_extra_brings_nbgrader_and_the_guide_names_it():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert any(r.startswith("nbgrader") for r in extras["instructor"])
    guide = (ROOT / "docs" / "instructors.md").read_text(encoding="utf-8")
    assert '.[instructor]"' in guide


# --------------------------------------------------------------------------------------------
# scripts/course.sh's JupyterLab, in Chromium
# --------------------------------------------------------------------------------------------
def _course_lab_flags() -> list:
    """The --LabApp.* options that scripts/course.sh passes to ``jupyter lab``."""
    text = (ROOT / "scripts" / "course.sh").read_text(encoding="utf-8").replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if "jupyter lab" in ln and "exec" in ln)
    words = shlex.split(line.replace("$PWD", str(ROOT)), comments=True)
    return [w for w in words if w.startswith("--LabApp.")]


def test_course_command_sets_the_news_off_by_default():
    flags = dict(f.split("=", 1) for f in _course_lab_flags())
    overrides = Path(flags["--LabApp.app_settings_dir"]) / "overrides.json"
    settings = json.loads(overrides.read_text())
    assert settings["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"


@pytest.mark.browser
@pytest.mark.slow
def test_course_jupyterlab_shows_no_news_toast(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; scripts/browser-deps.sh)")
    sync_api = pytest.importorskip("playwright.sync_api")
    env = dict(os.environ)
    for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                     ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                     ("JUPYTERLAB_WORKSPACES_DIR", "workspaces")):
        env[var] = str(tmp_path / sub)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", f"--IdentityProvider.token={token}", "--allow-root",
           f"--ServerApp.root_dir={tmp_path}", *_course_lab_flags()]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "lab did not start"
                time.sleep(0.5)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page()
                page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(base)
                           else r.abort())
                page.goto(f"{base}/lab?token={token}")
                page.wait_for_selector(".jp-LauncherCard", timeout=120_000)
                page.wait_for_timeout(5000)  # the news question comes a moment after load
                toasts = page.locator(".Toastify__toast").all_inner_texts()
            finally:
                browser.close()
        assert not [t for t in toasts if "news" in t.lower()], toasts
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
