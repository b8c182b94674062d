"""Lesson 0 in a real JupyterLab, driven by headless Chromium (Debian's) through playwright.

Starts ``jupyter lab`` on 127.0.0.1 (a free port, a random token, no browser) with a temporary
folder as its root holding a copy of lesson 0's solution notebook with its outputs removed,
opens it, runs all cells from the Run menu, and waits for a checked exercise's verdict (the
``gclab-verdict-passed`` box the engine renders) and a figure (an ``<img>`` output). The copy is
stripped so that whatever appears must come from running it in the browser. Every wait is
bounded; the server and the browser are always stopped. Skipped, with the reason, when Chromium
or playwright is missing (``scripts/browser-deps.sh`` installs them in CI).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "solutions" / "00_receptive_fields.ipynb"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc: subprocess.Popen, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited early with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"jupyter lab did not answer on {url} within {limit:g} s")


_STARTED = """() => [...document.querySelectorAll('.jp-InputPrompt')]
    .some((e) => /\\[(\\*|\\d+)\\]/.test(e.textContent))"""

_SCROLL = """([top]) => {
    const el = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer')
        || document.querySelector('.jp-NotebookPanel .jp-Notebook');
    if (!el) { return 0; }
    el.scrollTop = top;
    return el.scrollHeight;
}"""


def _find_while_scrolling(page, selector: str, limit: float):
    """The first element matching ``selector``, scrolling through the notebook until it shows
    up (JupyterLab may virtualise off-screen cells); bounded by ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        top, height = 0, 1
        while top <= height and time.monotonic() < deadline:
            height = page.evaluate(_SCROLL, [top])
            found = page.locator(selector)
            if found.count():
                return found.first
            page.wait_for_timeout(250)
            top += 400
    raise AssertionError(f"no {selector!r} in the notebook after {limit:g} s")


@pytest.fixture
def lab(tmp_path):
    """A running JupyterLab on loopback: yields (base_url, token); always stopped."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; scripts/browser-deps.sh)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"python playwright is not importable: {exc}")
    if not NOTEBOOK.exists():
        pytest.fail(f"{NOTEBOOK.relative_to(ROOT)} is missing: python -m gclab notebooks --execute")

    root = tmp_path / "lab"
    root.mkdir()
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, str(root / NOTEBOOK.name))

    # render every cell (JupyterLab 4 virtualises long notebooks: off-screen outputs would
    # not be in the DOM)
    tracker = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    # and start the notebook's default kernel without asking (a "Select kernel" dialog once
    # blocked every click of a clean-clone run)
    (tracker / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none", "autoStartDefaultKernel": True}))

    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    for var, sub in (
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTERLAB_SETTINGS_DIR", "settings"),
        ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
    ):
        env[var] = str(tmp_path / sub)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("MPLBACKEND", None)  # the kernel must use the inline backend to show figures
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--allow-root",  # CI containers run as root
        "--LabApp.news_url=None",
        "--LabApp.extension_manager=readonly",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    log = open(tmp_path / "jupyter.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(f"{base}/api/status?token={token}", proc, limit=90)
        yield base, token
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=15)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def test_lesson0_runs_in_jupyterlab_and_shows_a_verdict_and_a_figure(lab, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    base, token = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            # loopback only: refuse anything that is not our server
            page.route(
                "**/*",
                lambda route: (
                    route.continue_() if route.request.url.startswith(base) else route.abort()
                ),
            )
            page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}")
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
            # wait until the kernel is up before running (status shown in the toolbar)
            page.wait_for_selector(
                ".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']",
                timeout=120_000,
            )
            # Run > Run All Cells; a click that lands before the kernel session is wired up
            # is lost (seen under load), so retry until a cell shows [*] or [n]; once, under
            # load in CI, a started run showed no verdict within 240 s, so a run that shows
            # none within 120 s is started once more before the test gives up
            def accept_kernel_dialog() -> None:
                # JupyterLab asks "Select kernel for: ..." when the session lost its kernel
                # (a kernel that was slow to start under load, seen once in a clean-clone
                # run): its modal intercepts every click. Accept the default (Python 3) and
                # wait for that kernel to be idle.
                dialog = page.locator(".jp-Dialog")
                if dialog.count() and dialog.first.is_visible():
                    dialog.locator(".jp-mod-accept").first.click()
                    page.wait_for_selector(
                        ".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']",
                        timeout=120_000,
                    )

            def run_all() -> bool:
                for _attempt in range(3):
                    accept_kernel_dialog()
                    page.locator(".jp-NotebookPanel .jp-Cell").first.click()  # focus it
                    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                    page.get_by_role("menuitem", name="Run All Cells").first.click(timeout=15_000)
                    try:
                        page.wait_for_function(_STARTED, timeout=45_000)
                        return True
                    except PlaywrightTimeout:
                        continue
                return False

            run_all()
            try:
                try:
                    verdict = _find_while_scrolling(
                        page, ".gclab-verdict.gclab-verdict-passed", 120)
                except AssertionError:
                    accept_kernel_dialog()
                    run_all()
                    verdict = _find_while_scrolling(
                        page, ".gclab-verdict.gclab-verdict-passed", 120)
                assert verdict.get_attribute("data-exercise").startswith("rf.")
                figure = _find_while_scrolling(page, ".jp-OutputArea-output img", 120)
                assert figure.get_attribute("src").startswith("data:image/png")
            finally:  # kept under pytest's tmp_path for a look after a failure
                page.screenshot(path=str(tmp_path / "lesson0.png"))
                outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
                (tmp_path / "outputs.txt").write_text("\n----\n".join(outputs))
        finally:
            browser.close()
