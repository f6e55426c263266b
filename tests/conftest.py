"""Shared fixtures: real MLflow stores in temp dirs, the CLI as a subprocess, PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pg.core import metrics as metric_names

# Tests started in the background by a non-interactive shell inherit SIGINT ignored, and
# so would every command they start: the Ctrl-C tests would find it ignored. Python's own
# handler here makes the commands start with the default, as from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parent.parent
PG_HOST = os.environ.get("PG_TEST_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("PG_TEST_PORT", "5432"))
PG_USER = os.environ.get("PG_TEST_USER", "postgres")

# Every metric a training loop must log (names from pg/metrics.py), written out here as
# the test-side spec rather than taken from the code under test.
TRAINING_METRICS = (
    metric_names.EP_RETURN,
    metric_names.EP_LENGTH,
    metric_names.EP_RETURN_100,
    metric_names.EPISODES,
    metric_names.LOSS_POLICY,
    metric_names.LOSS_ENTROPY,
    metric_names.LOSS_TOTAL,
    metric_names.ENTROPY,
    metric_names.KL,
    metric_names.GRAD_L2,
    metric_names.GRAD_MAX,
    metric_names.GRAD_VAR,
    metric_names.BASELINE,
    metric_names.EVAL_RETURN,
    metric_names.SPS,
)

# Short budgets that still exercise every part of the loop.
FAST = [
    "train.max_steps=3000",
    "train.eval_every=0",
    "train.eval_episodes=2",
    "train.log_every=500",
    "train.report_every=1000",
]
# A search without the validation stage (the default sweep file turns it on): for tests
# about something else, so they do not pay for six more trainings.
NO_VALIDATION = ["hydra.sweeper.validate.top_k=0"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run tests marked slow")


# The modules that take longest, started first: pytest's workers (./dev.sh test runs two,
# a module each at a time) then end together on the short ones instead of one finishing
# a long module alone.
LONGEST_FIRST = (
    "test_sweep_ray",  # Ray heads; a Ray worker killed mid-trial
    "test_reproduce",
    "test_sweep_validation",  # kill -9 mid-validation, then resume
    "test_server",  # tracking servers, one restarted mid-run
    "test_analysis",  # builds a store of runs and sweeps first
    "test_sweep",
    "test_multirun",
    "test_ui_browser",
    "test_presets",
    "test_validation_properties",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: same order within
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow test: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@dataclass
class Store:
    """A fresh embedded store: PG_HOME points the CLI at it."""

    home: Path

    @property
    def db(self) -> Path:
        return self.home / "mlruns" / "mlflow.db"

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.db}"

    def client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def runs(self, experiment: str = "pg") -> list:  # type: ignore[type-arg]
        client = self.client()
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return []
        return list(client.search_runs([exp.experiment_id], max_results=10_000))

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env.update(PG_HOME=str(self.home), PYTHONUNBUFFERED="1", **extra)
        return env


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite database with its tables already created.

    Creating and migrating a new store takes MLflow several seconds; copying this file is
    instant, so every test still gets its own real store.
    """
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def fresh_store(tmp_path: Path) -> Store:
    """A home with no store at all: the first run has to create it."""
    home = tmp_path / "home"
    home.mkdir()
    return Store(home)


@pytest.fixture
def store(fresh_store: Store, migrated_db: Path) -> Store:
    """A home whose store exists (tables created) but holds no experiment or run yet."""
    fresh_store.db.parent.mkdir(parents=True)
    shutil.copyfile(migrated_db, fresh_store.db)
    return fresh_store


def start_sweep(store: Store, args: list[str], *, capture: bool = False) -> subprocess.Popen[str]:
    """``python -m pg.run args`` started in its own process group, to be killed mid-run by
    :func:`kill_group`; ``capture``: its output on ``stdout`` (stderr merged), to be read."""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "pg.run", *args],
        cwd=store.home,
        env=store.env(),
        stdout=out,
        stderr=subprocess.STDOUT if capture else subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def follow(proc: subprocess.Popen[str]) -> tuple[list[str], threading.Thread]:
    """The lines of a :func:`start_sweep` with ``capture``, read as they come by a thread
    (its pipe never fills): the list so far, and the thread to join once it has ended."""
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout or []), daemon=True)
    reader.start()
    return output, reader


def kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the process group :func:`start_sweep` made (the sweep and its workers; a
    record process has a group of its own and drains by itself), and reap the sweep."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def owner_pid(trial: Any) -> int | None:
    """The process id in a trial's ``pg.owner`` (``host:pid``); None before it has one."""
    owner = str(trial.system_attrs.get("pg.owner", ""))
    return int(owner.rsplit(":", 1)[1]) if ":" in owner else None


def mid_training(trial: Any, reports: int) -> bool:
    """A trial whose run exists and that has under half of its ``reports`` in: a kill now
    lands mid-training. Counted in reports, not seconds, so a slow machine cannot make the
    window pass unseen; and the run id, which can first be known at the run's end (a
    worker's first trial, its record process still importing MLflow), is not enough by
    itself: a kill then would land between the run's end and Optuna's tell."""
    return (
        trial.state.name == "RUNNING"
        and "pg.run_id" in trial.system_attrs
        and len(trial.intermediate_values) < reports // 2
    )


def sigkill_a_worker(
    sweep: subprocess.Popen[str],
    trials: Callable[[], list[Any]],
    ready: Callable[[Any], bool],
    timeout: float,
    missing: str,
    output: list[str],
) -> tuple[Any, int]:
    """SIGKILL the worker process (not the sweep's own) that owns the first of ``trials()``
    to be ``ready``, polling until one is: ``(trial, pid)``.  None before ``timeout`` or
    the sweep's end fails the test with ``missing`` and the sweep's ``output`` so far."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and sweep.poll() is None:
        time.sleep(0.1)
        for trial in trials():
            pid = owner_pid(trial)
            if ready(trial) and pid is not None and pid != sweep.pid:
                os.kill(pid, signal.SIGKILL)
                return trial, pid
    raise AssertionError(missing + "\n" + "".join(output))


def run_module(
    module: str, args: list[str], store: Store, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module args`` the way a user would, inside the store's home."""
    return run_python(["-m", module, *args], store, timeout, **env)


def run_python(
    args: list[str], store: Store, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python args`` (``-m module …`` or ``-c script …``) inside the store's home."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=store.home,
        env=store.env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def pg_server_up() -> bool:
    import psycopg2

    try:
        psycopg2.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=3
        ).close()
        return True
    except psycopg2.OperationalError:
        return False


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A uniquely named PostgreSQL database, dropped afterwards.

    On a laptop without a server the test is skipped with that reason; in CI a missing
    server is a failure, since there the multi-machine path must really run.
    """
    if not pg_server_up():
        message = f"no PostgreSQL server answers on {PG_HOST}:{PG_PORT}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with temporary_database("pg_test") as url:
        yield url


@contextlib.contextmanager
def temporary_database(prefix: str) -> Iterator[str]:
    """Create a uniquely named PostgreSQL database and drop it (with its sessions) after."""
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextlib.contextmanager
def sql_statements(study: Any) -> Iterator[list[str]]:
    """Every SQL statement an Optuna study's database engine runs inside the block."""
    import sqlalchemy

    seen: list[str] = []
    engine = study._storage._backend.engine

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sqlalchemy.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", record)
