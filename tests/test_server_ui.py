"""``python -m pg.ui``: the MLflow UI on the project's own store, light and on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.conftest import Store, run_module
from tests.test_server import free_port


def test_ui_refuses_other_interfaces_without_flag(store: Store) -> None:
    done = run_module("pg.ui", ["--host", "0.0.0.0"], store, timeout=60)
    assert done.returncode != 0
    assert "--allow-remote" in done.stderr


def test_ui_serves_the_project_store(store: Store) -> None:
    store.client().create_experiment("seen-in-ui")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pg.ui", "--port", str(port)],
        cwd=store.home,
        env=store.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the worker goes down with it
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline() + proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in first
        assert str(store.db) in first
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert proc.poll() is None, "pg.ui exited early"
            assert time.monotonic() < deadline, "pg.ui did not answer in 90 s"
            time.sleep(0.3)
        request = urllib.request.Request(
            f"{url}/api/2.0/mlflow/experiments/search",
            data=json.dumps({"max_results": 50}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            names = {e["name"] for e in json.load(resp)["experiments"]}
        assert "seen-in-ui" in names
        # The light flags: the server and one worker, not a pool of ~15 processes.
        group = subprocess.run(
            ["ps", "-o", "pid=", "-g", str(proc.pid)], capture_output=True, text=True, check=True
        ).stdout.split()
        assert 1 <= len(group) <= 3, group
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
