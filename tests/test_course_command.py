"""The README's first command, `bash scripts/course.sh`, really starts JupyterLab on the course.

(It once did not: as root, jupyter refuses to start without --allow-root.)
"""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_course_command_serves_the_notebooks(tmp_path):
    port, token = _free_port(), "gclab-test-token"
    cmd = [
        "bash", "scripts/course.sh", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
    ]
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path)}
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    try:
        listing = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                url = f"http://127.0.0.1:{port}/api/contents?token={token}"
                with urllib.request.urlopen(url, timeout=5) as response:
                    listing = json.load(response)
                break
            except OSError:
                time.sleep(0.5)
        output = (tmp_path / "server.log").read_text()
        assert listing is not None, f"JupyterLab did not come up:\n{output[-3000:]}"
        names = {item["name"] for item in listing["content"]}
        # the server's root is notebooks/: the learner copies and the solutions folder
        assert "00_receptive_fields.ipynb" in names and "solutions" in names, names
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
