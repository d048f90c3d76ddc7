"""make lab's script (tools/lab.sh) starts JupyterLab headless, also as root, and serves chapters as notebooks."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str, method: str = "GET"):
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


@pytest.mark.slow
def test_lab_serves_a_chapter_as_a_notebook(tmp_path):
    port, token = _free_port(), "soundloc-test"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(["bash", str(REPO / "tools" / "lab.sh"), str(Path(sys.executable).parent), "--no-browser",
                             "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
                             f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):  # poll the status API until the server answers (or it died)
            assert proc.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
            try:
                _get(f"{base}/api/status", token)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer in 120 s:\n" + (tmp_path / "lab.log").read_text()[-3000:])
        nb = _get(f"{base}/api/contents/00_data.py?type=notebook&content=1", token)
        assert nb["type"] == "notebook" and nb["name"] == "00_data.py"
        cells = nb["content"]["cells"]
        assert cells[0]["source"].startswith("# 00 · The data")
        assert any("parameters" in c["metadata"].get("tags", []) for c in cells)
        hidden = _get(f"{base}/api/contents/11_teaching.py?type=notebook&content=1", token)["content"]["cells"]
        assert sum(bool(c["metadata"].get("jupyter", {}).get("outputs_hidden")) for c in hidden) == 5
        viewers = _get(f"{base}/lab/api/settings/@jupyterlab/docmanager-extension:plugin", token)
        default = viewers["schema"]["properties"]["defaultViewers"]["default"]  # tools/lab/overrides.json applied
        assert default["python"] == "Jupytext Notebook"  # so a double click opens a chapter as a notebook
        _get(f"{base}/api/shutdown", token, method="POST")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        log.close()
    if os.getuid() == 0:
        assert "--allow-root" in (REPO / "tools" / "lab.sh").read_text()
