"""Runs the real `app.py` in a subprocess on a free local port for the app tests (offline, small settings) and for
benchmarks/load_test_space.py (which imports this module from tests/)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = float(os.environ.get("INDI_APP_START_TIMEOUT", "180"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_app(workdir: Path, **env_overrides: str):
    """Starts `python app.py` (cwd `workdir`, so Gradio's caches land there) and yields its URL once it answers."""
    with running_app_process(workdir, **env_overrides) as (url, _):
        yield url


@contextlib.contextmanager
def running_app_process(workdir: Path, **env_overrides: str):
    """`running_app` that also yields the server's `subprocess.Popen` (to watch its memory or whether it is alive):
    yields `(url, process)`; the process is terminated (killed after 15 s) on exit."""
    port = free_port()
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_EXAMPLES_CACHE": str(workdir / "examples_cache"),
        "GRADIO_TEMP_DIR": str(workdir / "gradio_tmp"),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "INDI_APP_THREADS": os.environ.get("INDI_TEST_THREADS", "1"),
        "PYTHONUNBUFFERED": "1",
        **env_overrides,
    }
    url = f"http://127.0.0.1:{port}/"
    log_path = workdir / "app.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "app.py")], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"app.py exited with {process.returncode}:\n{log_path.read_text()}")
                try:
                    with urllib.request.urlopen(url, timeout=5) as response:
                        if response.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"app.py did not answer on {url} in {START_TIMEOUT_S:.0f} s:\n{log_path.read_text()}"
                    )
                time.sleep(0.5)
            yield url, process
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
