"""Every command's options: a bad one is one line naming it, exit 2, and nothing is created.

``pg.run`` and sweeps are covered by test_bad_input.py and test_validation_properties.py;
here are ``pg.reproduce``, ``pg.ui``, ``analysis`` and ``scripts/mlflow-server``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, Store, run_module

SCRIPT = ROOT / "scripts" / "mlflow-server"


def assert_one_line(proc: subprocess.CompletedProcess[str], store: Store, *words: str) -> None:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "usage:" not in proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "hunter2" not in proc.stderr + proc.stdout
    assert sorted(p.name for p in store.home.iterdir()) == []  # no store, no state folder


@pytest.mark.parametrize(
    ("module", "args", "words"),
    [
        ("pg.ui", ["--port", "99999"], ["--port", "1-65535"]),
        ("pg.ui", ["--port", "x"], ["--port"]),
        ("pg.ui", ["--uri", "localhost:5000"], ["--uri", "http://localhost:5000"]),
        ("pg.ui", ["--uri", "./mlruns"], ["--uri", "sqlite:///PATH"]),
        ("pg.ui", ["--host", ""], ["--host"]),
        ("pg.ui", ["--host", "10.0.0.1"], ["--allow-remote"]),
        ("pg.reproduce", ["abc", "--tracking-uri", "localhost:5000"], ["--tracking-uri"]),
        ("pg.reproduce", ["abc", "--tracking-uri", "ftp://u:hunter2@h/x"], ["ftp://"]),
        ("pg.reproduce", [], ["run_id"]),
        ("analysis", ["report", "--experiment", "pg", "--tracking-uri", "ftp://x"], ["ftp://"]),
        ("analysis", ["report", "--sweep", "x", "--storage", "localhost:1"], ["--storage"]),
        ("analysis", ["report", "--experiment", "pg", "--top", "x"], ["--top"]),
        ("analysis", ["report", "--experiment", "pg", "--top", "0"], ["--top"]),
        ("analysis", ["bogus"], ["bogus"]),
    ],
)
def test_python_commands(
    fresh_store: Store, module: str, args: list[str], words: list[str]
) -> None:
    assert_one_line(run_module(module, args, fresh_store, timeout=60), fresh_store, *words)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["start", "--port", "99999"], ["--port", "1-65535"]),
        (["start", "--port"], ["--port needs a value"]),
        (["start", "--timeout", "abc"], ["--timeout"]),
        (["start", "--host", "a b"], ["--host"]),
        (["start", "--host", "10.1.2.3"], ["--allow-remote"]),
        (["start", "--backend", "localhost:5432"], ["--backend", "postgresql://"]),
        (["start", "--backend", "http://h:5000"], ["--backend", "a database"]),
        (["start", "--backend", "postgresql://u:hunter2@h:99999/x"], ["--backend", "port"]),
        (["status", "--bogus"], ["--bogus"]),
        (["frob"], ["frob", "start, stop or status"]),
    ],
)
def test_mlflow_server_script(fresh_store: Store, args: list[str], words: list[str]) -> None:
    env = fresh_store.env(PG_PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    env.pop("PG_SERVER_BACKEND_URI", None)
    proc = subprocess.run(
        [str(SCRIPT), *args],
        cwd=fresh_store.home,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_line(proc, fresh_store, *words)
    assert os.access(SCRIPT, os.X_OK)
