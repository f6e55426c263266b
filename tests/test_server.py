"""Runs logged through a real MLflow tracking server on PostgreSQL (scripts/mlflow-server).

Each test gets its own database and a server on a free port; the CLI runs as a subprocess
exactly as a user would start it.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    FAST,
    NO_VALIDATION,
    ROOT,
    Store,
    run_module,
    temporary_database,
)

SCRIPT = ROOT / "scripts" / "mlflow-server"
PASSWORD = "s3cret-in-uri"

pytestmark = pytest.mark.postgres


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class MlflowServer:
    """One server started by the project's script, with its own state and artifact dirs."""

    backend: str
    port: int
    state: Path
    artifacts: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, command: str, *extra: str, check: bool = True) -> str:
        done = subprocess.run(
            [
                "bash",
                str(SCRIPT),
                command,
                "--port",
                str(self.port),
                "--state-dir",
                str(self.state),
                "--artifacts",
                str(self.artifacts),
                "--backend",
                self.backend,
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        )
        if check and done.returncode != 0:
            raise AssertionError(f"mlflow-server {command} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout + done.stderr

    def start(self) -> None:
        self.script("start")

    def stop(self) -> None:
        self.script("stop")

    def kill(self) -> None:
        """SIGKILL the whole server (process group), as a crash or OOM kill would."""
        pid = int((self.state / f"mlflow-server-{self.port}.pid").read_text())
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)

    def client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.url)


@pytest.fixture
def server(postgres_url: str, tmp_path: Path) -> Iterator[MlflowServer]:
    srv = MlflowServer(postgres_url, free_port(), tmp_path / "state", tmp_path / "artifacts")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def study_url(postgres_url: str) -> Iterator[str]:
    """A second database for the Optuna study: Optuna and MLflow both keep an
    ``alembic_version`` table, so they cannot share one database."""
    with temporary_database("pg_study") as url:
        yield url


def sweep_through_server(
    server: MlflowServer, study_url: str, store: Store, trials: int, study: str = "team"
) -> subprocess.CompletedProcess[str]:
    """A sweep of ``trials`` trials run by two worker processes, logged to ``server``."""
    return run_module(
        "pg.run",
        [
            "-m",
            "tracking=server",
            f"tracking.uri={server.url}",
            f"hydra.sweeper.storage={study_url}",
            f"hydra.sweeper.study_name={study}",
            f"hydra.sweeper.n_trials={trials}",
            "hydra.sweeper.workers=2",
            "hydra.sweeper.pruner.name=none",
            *FAST,
            *NO_VALIDATION,
        ],
        store,
        timeout=300,
    )


def only_run(client: Any, experiment: str = "pg") -> Any:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def histories(client: Any, run: Any) -> dict[str, set[tuple[int, float]]]:
    """``{metric: {(step, value)}}`` without wall-clock metrics (``time/``, MLflow's
    ``system/``), which differ run to run."""
    out: dict[str, set[tuple[int, float]]] = {}
    for key in run.data.metrics:
        if key.startswith(("time/", "system/")):
            continue
        out[key] = {
            (m.step, round(m.value, 6)) for m in client.get_metric_history(run.info.run_id, key)
        }
    return out


def test_script_refuses_other_interfaces_without_flag(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(SCRIPT), "start", "--host", "0.0.0.0", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "--allow-remote" in done.stderr
    assert not list(tmp_path.iterdir()), "nothing may be started"


def test_run_logged_through_server_reads_back(server: MlflowServer, fresh_store: Store) -> None:
    store = fresh_store
    assert "running" in server.script("status")
    assert "already running" in server.script("start")
    # One server process plus its single worker: the light flags are in effect.
    pid = int((server.state / f"mlflow-server-{server.port}.pid").read_text())
    group = subprocess.run(
        ["ps", "-o", "pid=", "-g", str(pid)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert 1 <= len(group) <= 3, group

    # Credentials in the URI become basic auth (this server ignores them) and are never logged.
    with_login = server.url.replace("http://", f"http://alice:{PASSWORD}@")
    done = run_module(
        "pg.run", ["tracking=server", f"tracking.uri={with_login}", *FAST], store, timeout=180
    )
    assert done.returncode == 0, done.stderr
    client = server.client()
    run = only_run(client)
    assert run.info.status == "FINISHED"
    assert run.data.tags["pg.kind"] == "run"
    assert run.data.params["algo.name"] == "reinforce"
    assert run.data.params["tracking.uri"] == server.url.replace("http://", "http://alice:***@")
    for key, value in {**run.data.params, **run.data.tags}.items():
        assert PASSWORD not in value, key
    assert PASSWORD not in done.stdout + done.stderr
    assert math.isfinite(run.data.metrics["objective"])
    assert len(client.get_metric_history(run.info.run_id, "rollout/ep_return")) > 10
    listed = {f.path for f in client.list_artifacts(run.info.run_id, "config")}
    assert "config/config.yaml" in listed
    # Artifacts went through the server into its artifact root, not into the client's cwd.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert list(server.artifacts.rglob("config.yaml"))
    assert not (store.home / "mlruns").exists()
    assert not (store.home / "mlartifacts").exists()

    server.stop()
    assert "not running" in server.script("status", check=False)


def test_server_killed_and_restarted_mid_run_loses_no_metric(
    server: MlflowServer, store: Store
) -> None:
    budget = [
        "seed=3",
        "train.max_steps=100000",
        "train.log_every=1000",
        "train.report_every=10000",
        "train.eval_every=50000",
        "train.eval_episodes=2",
    ]
    reference = run_module("pg.run", budget, store, timeout=180)
    assert reference.returncode == 0, reference.stderr
    expected = histories(store.client(), only_run(store.client()))

    proc = subprocess.Popen(
        [sys.executable, "-m", "pg.run", "tracking=server", f"tracking.uri={server.url}", *budget],
        cwd=store.home,
        env=store.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        client = server.client()
        deadline = time.monotonic() + 60
        # Kill as soon as the first metrics have arrived: training is then under way.
        while time.monotonic() < deadline:
            exp = client.get_experiment_by_name("pg")
            runs = client.search_runs([exp.experiment_id]) if exp else []
            if runs and client.get_metric_history(runs[0].info.run_id, "rollout/ep_return"):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the run never logged a metric")
        server.kill()
        killed_at = time.monotonic()
        time.sleep(3)
        assert proc.poll() is None, "the run must survive the outage\n" + "".join(output)
        server.start()
        assert proc.wait(timeout=180) == 0, "".join(output)
        outage = time.monotonic() - killed_at
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(5)

    run = only_run(client)
    assert run.info.status == "FINISHED"
    got = histories(client, run)
    assert set(got) == set(expected)
    for key, points in expected.items():
        assert got[key] == points, f"{key}: {len(got[key])} points, expected {len(points)}"
    assert {"model/policy.pt", "model/spec.json"} <= {
        f.path for f in client.list_artifacts(run.info.run_id, "model")
    }
    assert outage < 120


def test_unreachable_server_fails_fast_and_trains_nothing(fresh_store: Store) -> None:
    store = fresh_store
    port = free_port()  # nothing listens there
    start = time.monotonic()
    done = run_module(
        "pg.run", ["tracking=server", f"tracking.uri=http://127.0.0.1:{port}", *FAST], store
    )
    elapsed = time.monotonic() - start
    assert done.returncode != 0
    assert elapsed < 10, elapsed
    assert "not reachable" in done.stderr
    assert "nothing was trained" in done.stderr
    assert "Traceback" not in done.stderr
    assert "env steps" not in done.stdout
    assert not (store.home / "mlruns").exists()


def test_silent_server_fails_within_timeout(store: Store) -> None:
    """A host that accepts connections but never answers (a hung server, a firewall)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        start = time.monotonic()
        done = run_module(
            "pg.run",
            [
                "tracking=server",
                f"tracking.uri=http://127.0.0.1:{port}",
                "tracking.check_timeout=3",
                *FAST,
            ],
            store,
        )
        elapsed = time.monotonic() - start
    assert done.returncode != 0
    assert elapsed < 10, elapsed
    assert "not reachable" in done.stderr
    assert "env steps" not in done.stdout


def test_unreachable_database_uri_fails_fast(store: Store) -> None:
    uri = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/nowhere"
    start = time.monotonic()
    done = run_module("pg.run", [f"tracking.uri={uri}", *FAST], store)
    elapsed = time.monotonic() - start
    assert done.returncode != 0
    assert elapsed < 10, elapsed
    assert "not reachable" in done.stderr
    assert PASSWORD not in done.stderr + done.stdout
    assert "env steps" not in done.stdout


def test_check_database_url(postgres_url: str) -> None:
    from pg.record.store import StoreUnavailableError, check_database_url

    check_database_url(postgres_url, timeout=5)
    check_database_url("sqlite:////nonexistent/dir/optuna.db", timeout=5)  # created on use
    missing = postgres_url.rsplit("/", 1)[0] + "/no_such_database_here"
    with pytest.raises(StoreUnavailableError, match="does not exist"):
        check_database_url(missing, timeout=5)
    with pytest.raises(StoreUnavailableError) as info:
        check_database_url(f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/x", timeout=5)
    assert PASSWORD not in str(info.value)


def test_password_in_database_uri_is_never_logged(
    postgres_url: str, store: Store, tmp_path: Path
) -> None:
    # Trust authentication ignores the password, so the run works and we can look for it.
    uri = postgres_url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")
    assert PASSWORD in uri
    done = run_module(
        "pg.run",
        [f"tracking.uri={uri}", f"tracking.artifact_root={tmp_path / 'artifacts'}", *FAST],
        store,
        MLFLOW_TRACKING_PASSWORD="s3cret-in-env",
    )
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run = only_run(client)
    assert run.info.status == "FINISHED"
    assert run.data.params["tracking.uri"].startswith("postgresql://postgres:***@")
    for secret in (PASSWORD, "s3cret-in-env"):
        for key, value in {**run.data.params, **run.data.tags}.items():
            assert secret not in value, key
    assert run.info.run_name and PASSWORD not in run.info.run_name

    download = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "dl")))
    files = [p for p in download.rglob("*") if p.is_file()]
    assert any(p.name == "config.yaml" for p in files)
    assert any(p.name == "overrides.yaml" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in (PASSWORD, "s3cret-in-env"):
            assert secret.encode() not in data, path.relative_to(download)


def test_two_process_sweep_through_server(
    server: MlflowServer, study_url: str, fresh_store: Store
) -> None:
    import optuna

    store = fresh_store
    done = sweep_through_server(server, study_url, store, trials=4)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    client = server.client()
    exp = client.get_experiment_by_name("pg")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("pg.kind") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("pg.kind") == "trial"]
    assert len(trials) == 4
    study = optuna.load_study(study_name="team", storage=study_url)
    values = {t.number: t.value for t in study.get_trials()}
    assert sorted(values) == [0, 1, 2, 3]
    for run in trials:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        number = int(run.data.tags["pg.trial_number"])
        assert run.data.metrics["objective"] == pytest.approx(values[number])
        listed = {f.path for f in client.list_artifacts(run.info.run_id, "config")}
        assert "config/config.yaml" in listed
    # Nothing fell back to a local store on this machine.
    assert not (store.home / "mlruns" / "mlflow.db").exists()
