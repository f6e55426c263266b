"""``hydra.sweeper.backend=ray``: sweeps whose workers are Ray tasks, against a real Ray head.

Each test that needs a cluster starts ``ray start --head`` on 127.0.0.1 with its own port
and temp dir, in a process group of its own, and stops that group (never ``ray stop``,
which would stop every Ray instance of the machine); whatever Ray started outside the
group is found by the temp dir in its command line and ended by pid.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import test_server
from tests.conftest import NO_VALIDATION, Store, mid_training, run_module
from tests.test_server import MlflowServer, free_port
from tests.test_sweep import TINY, assert_agree, ok, runs_of, study

# The tracking-server fixtures (a server on PostgreSQL, a second database for the study).
server = test_server.server
study_url = test_server.study_url

RAY = [Path(sys.executable).with_name("ray").as_posix()]
SECRET_DB = "r4y-db-s3cret"
SECRET_HTTP = "r4y-http-s3cret"


def pids_mentioning(text: str) -> list[int]:
    """Live processes with ``text`` (our own temp dir) in their command line or environment.

    Ray renames its workers (``ray::task-name``), but they inherit the environment, which
    names the test's token file in that dir.
    """
    found = []
    needle = text.encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            seen = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in seen and state != "Z":
            found.append(int(proc.name))
    return found


def end_processes_of(temp_dir: str) -> None:
    for pid in pids_mentioning(temp_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class RayHead:
    """``ray start --head --block`` in its own process group; ``stop`` ends what it started."""

    temp_dir: str
    port: int
    proc: subprocess.Popen[bytes] | None = None
    nodes: list[subprocess.Popen[bytes]] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(Path(self.temp_dir) / "head.log", "wb")  # noqa: SIM115 - kept for the run
        self.proc = subprocess.Popen(
            [
                *RAY,
                "start",
                "--head",
                "--block",
                f"--port={self.port}",
                "--node-ip-address=127.0.0.1",
                f"--temp-dir={self.temp_dir}",
                "--num-cpus=2",
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=ray_env(self.temp_dir),
        )
        self.wait_for_nodes(1)

    def add_node(self) -> None:
        """A second raylet on this machine: a cluster of two nodes."""
        log = open(Path(self.temp_dir) / "node.log", "wb")  # noqa: SIM115
        node = subprocess.Popen(
            [
                *RAY,
                "start",
                "--block",
                f"--address={self.address}",
                "--num-cpus=1",
                f"--temp-dir={self.temp_dir}",
                "--disable-usage-stats",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=ray_env(self.temp_dir),
        )
        self.nodes = [*(self.nodes or []), node]
        self.wait_for_nodes(2)

    def wait_for_nodes(self, count: int, timeout: float = 90) -> None:
        probe = (
            "import sys\nfrom ray._raylet import GcsClient\n"
            f"c = GcsClient(address='{self.address}')\n"
            "alive = [n for n in c.get_all_node_info().values() if n.state == 0]\n"
            f"sys.exit(0 if len(alive) >= {count} else 1)\n"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                done = subprocess.run(
                    [sys.executable, "-c", probe],
                    capture_output=True,
                    timeout=30,
                    env=ray_env(self.temp_dir),
                )
                if done.returncode == 0:
                    return
            except (OSError, subprocess.TimeoutExpired):
                pass
            time.sleep(0.5)
        raise AssertionError(f"the Ray cluster did not reach {count} node(s)\n{self.log()}")

    def log(self) -> str:
        path = Path(self.temp_dir) / "head.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def entrypoints(self) -> list[str]:
        """The command lines Ray recorded for the jobs (drivers) it has seen."""
        code = (
            "from ray._raylet import GcsClient\n"
            f"c = GcsClient(address='{self.address}')\n"
            "for job in c.get_all_job_info().values(): print(job.entrypoint)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            env=ray_env(self.temp_dir),
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    def stop(self) -> None:
        for proc in [*(self.nodes or []), self.proc]:
            if proc is None or proc.poll() is not None:
                continue
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*(self.nodes or []), self.proc]:
            if proc is None:
                continue
            try:  # Ray drains for up to 30 s on SIGTERM; a test has nothing left to drain
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            # The rest of its group (raylet, GCS), should the leader have gone first.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        # Ray workers run in process groups of their own; they carry the temp dir in argv.
        deadline = time.monotonic() + 10
        while pids_mentioning(self.temp_dir) and time.monotonic() < deadline:
            time.sleep(0.5)
        end_processes_of(self.temp_dir)


def ray_env(temp_dir: str) -> dict[str, str]:
    """Token authentication on, with a token of the test's own (not ``~/.ray``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_"))}
    env.update(auth_env(temp_dir), RAY_USAGE_STATS_ENABLED="0")
    return env


def auth_env(temp_dir: str) -> dict[str, str]:
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(Path(temp_dir) / "auth_token")}


@pytest.fixture
def ray_temp() -> Iterator[str]:
    # Short: Ray's socket paths under it must stay below the 107-byte limit of AF_UNIX.
    path = tempfile.mkdtemp(prefix="pgray-", dir="/tmp")
    token = Path(path) / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    try:
        yield path
    finally:
        end_processes_of(path)
        shutil.rmtree(path, ignore_errors=True)


# Ports a Ray head takes by default for its other components: a free port that happens to
# be one of them makes `ray start` refuse ("used by other components").
RAY_DEFAULT_PORTS = {6379, 8265, 10001, 52365}


def head_port() -> int:
    while (port := free_port()) in RAY_DEFAULT_PORTS:
        pass
    return port


@pytest.fixture
def ray_head(ray_temp: str) -> Iterator[RayHead]:
    head = RayHead(ray_temp, head_port())
    head.start()
    try:
        yield head
    finally:
        head.stop()
    assert not pids_mentioning(ray_temp), "a Ray process outlived the test"


def ray_sweep(
    store: Store,
    *args: str,
    address: str | None,
    temp_dir: str,
    timeout: float = 300,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    extra = {**auth_env(temp_dir), **({"RAY_ADDRESS": address} if address else {})}
    return run_module(
        "pg.run",
        ["-m", *TINY, "hydra.sweeper.backend=ray", *args],
        store,
        timeout=timeout,
        **extra,
        **env,
    )


# -- a sweep on a cluster, PostgreSQL study, MLflow tracking server -----------------


@pytest.mark.postgres
def test_ray_sweep_postgres_and_server_exact_trials_nested_and_pruned(
    ray_head: RayHead, server: MlflowServer, study_url: str, fresh_store: Store
) -> None:
    import optuna

    storage = study_url.replace("postgres@", f"postgres:{SECRET_DB}@", 1)
    tracking = server.url.replace("http://", f"http://alice:{SECRET_HTTP}@")
    done = ray_sweep(
        fresh_store,
        "hydra.sweeper.workers=2",
        "hydra.sweeper.n_trials=6",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=cluster",
        "tracking=server",
        f"tracking.uri={tracking}",
        # Trial n draws slice n of one stream (seed 17; pg.sweep.draws), whichever worker
        # asks: 500, 10, 10, 500, 10, 10.
        # A 10-step episode returns at most 10, so every 10-step trial is pruned at its
        # first report past 1000 steps; a 500-step one (a near-random policy's episodes
        # last ~20 steps) never is.  (The median pruner could also prune a slow 500-step
        # trial, depending on which others had finished: it did once in a CI run.)
        "hydra.sweeper.sampler.name=random",
        "hydra.sweeper.sampler.seed=17",
        "hydra.sweeper.pruner.name=threshold",
        "+hydra.sweeper.pruner.lower=11",
        "hydra.sweeper.pruner.n_warmup_steps=1000",
        "env.max_episode_steps=500,10",
        # The validation stage runs on the same Ray workers: the best trial on 2 fresh seeds.
        "hydra.sweeper.validate.top_k=1",
        "hydra.sweeper.validate.seeds=2",
        address=ray_head.address,
        temp_dir=ray_head.temp_dir,
    )
    out = ok(done)
    assert f"Ray cluster {ray_head.address}" in out
    st = optuna.load_study(study_name="cluster", storage=study_url)
    trials = st.get_trials()
    assert sorted(t.number for t in trials) == list(range(6))
    states = {t.number: t.state.name for t in trials}
    assert "PRUNED" in states.values(), states
    for t in trials:
        expected = "COMPLETE" if t.params["env.max_episode_steps"] == 500 else "PRUNED"
        assert t.state.name == expected, (t.number, t.params, t.state.name)
        if expected == "PRUNED":
            assert t.user_attrs["env_steps"] < 2000
    # The trials really ran in two Ray worker processes, not in the controller.
    owners = {t.system_attrs["pg.owner"] for t in trials}
    assert len(owners) == 2, owners
    assert not any(o.endswith(f":{os.getpid()}") for o in owners)
    assert out.count("pg: trial ") == 6

    client = server.client()
    exp = client.get_experiment_by_name("pg")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("pg.kind") == "sweep"]
    trial_runs = [r for r in runs if r.data.tags.get("pg.kind") == "trial"]
    numbers = sorted(int(r.data.tags["pg.trial_number"]) for r in trial_runs)
    assert numbers == list(range(6)), "one MLflow run per trial, no duplicates"
    for run in trial_runs:
        trial = trials[int(run.data.tags["pg.trial_number"])]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["pg.trial_state"] == trial.state.name
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        # A pruned trial is the sweep working: FINISHED, with pg.trial_state=PRUNED.
        finished = trial.state.name in ("COMPLETE", "PRUNED")
        assert run.info.status == ("FINISHED" if finished else "KILLED")
        # The worker got the URI without user info (not merely redacted when logged).
        assert run.data.params["tracking.uri"] == server.url
    assert parent.info.status == "FINISHED"
    names = {f.path for f in client.list_artifacts(parent.info.run_id, "sweep")}
    assert {"sweep/trials.csv", "sweep/best_params.yaml", "sweep/validation.csv"} <= names
    assert parent.data.tags["pg.best_trial"] == str(st.best_trial.number)
    validation = [r for r in runs if r.data.tags.get("pg.kind") == "validation"]
    assert sorted(r.data.tags["pg.seed"] for r in validation) == ["1", "2"]
    assert {r.data.tags["mlflow.parentRunId"] for r in validation} == {parent.info.run_id}
    assert parent.data.tags["pg.validated_best_trial"] == str(st.best_trial.number)
    vst = optuna.load_study(study_name="cluster.validation", storage=study_url)
    v_owners = {t.system_attrs["pg.owner"] for t in vst.get_trials()}
    assert v_owners and not any(o.endswith(f":{os.getpid()}") for o in v_owners)

    # The passwords reached neither the console, MLflow, Ray's job table nor its files.
    for secret in (SECRET_DB, SECRET_HTTP):
        assert secret not in done.stdout + done.stderr
        for run in runs:
            for key, value in [*run.data.params.items(), *run.data.tags.items()]:
                assert secret not in value, (run.info.run_id, key)
    entrypoints = ray_head.entrypoints()
    assert any("hydra.sweeper.backend=ray" in e for e in entrypoints), entrypoints
    assert all(SECRET_DB not in e and SECRET_HTTP not in e for e in entrypoints), entrypoints
    for path in Path(ray_head.temp_dir).rglob("*"):
        if path.is_file() and not path.is_socket():
            data = path.read_bytes()
            assert SECRET_DB.encode() not in data, path
            assert SECRET_HTTP.encode() not in data, path


# -- a Ray worker process killed mid-trial -------------------------------------------


def test_killed_ray_worker_fails_its_trial_and_the_sweep_goes_on(
    ray_head: RayHead, store: Store
) -> None:
    """A single-node cluster may keep the SQLite study and embedded store."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pg.run",
            "-m",
            *TINY,
            *NO_VALIDATION,
            "hydra.sweeper.backend=ray",
            "hydra.sweeper.workers=2",
            "hydra.sweeper.n_trials=4",
            "hydra.sweeper.pruner.name=none",
            # Long enough that the kill below lands mid-training (under half of its
            # reports in), not after the run has ended and before Optuna is told (its
            # record is then whole: FINISHED, not KILLED).
            "train.max_steps=400000",
            "train.report_every=1000",
            "train.target_return=null",
        ],
        cwd=store.home,
        env=store.env(RAY_ADDRESS=ray_head.address, **auth_env(ray_head.temp_dir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        victim, owner = None, ""
        deadline = time.monotonic() + 120
        db = store.home / "mlruns" / "optuna.db"
        while victim is None and time.monotonic() < deadline:
            time.sleep(0.3)
            # Only once the sweep has created the study: opening it first would race.
            if not db.exists() or not any("pg: workers are Ray" in line for line in output):
                continue
            try:
                running = [t for t in study(store).get_trials() if t.state.name == "RUNNING"]
            except Exception:
                continue
            for t in running:  # mid-training: under 200 of its 400 reports
                if mid_training(t, 400) and "pg.owner" in t.system_attrs:
                    victim, owner = t.number, t.system_attrs["pg.owner"]
                    break
        assert victim is not None, "no trial started in time\n" + "".join(output)
        pid = int(owner.rsplit(":", 1)[1])
        assert pid != proc.pid
        assert Path(f"/proc/{pid}/cmdline").read_text().startswith("ray::pg-sweep-")
        os.kill(pid, signal.SIGKILL)
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(5)
    text = "".join(output)
    assert code == 0, text[-4000:]
    assert "Ray worker" in text and "died" in text
    st = study(store)
    trials = st.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3, 4], "n_trials and one retry"
    dead = trials[victim]
    assert dead.state.name == "FAIL"
    assert dead.system_attrs["pg.reason"].startswith(f"orphaned: Ray worker {owner} died")
    others = [t for t in trials if t.number != victim]
    assert all(t.state.name == "COMPLETE" for t in others), [t.state.name for t in others]
    (retry,) = [t for t in trials if t.user_attrs.get("pg.retry_of") == victim]
    assert retry.params == dead.params
    assert f"trial {victim} marked FAIL" in text
    assert f"trial {victim} queued to run again with the same params (retry 1 of 1)" in text
    runs = runs_of(store, "trial")
    assert len(runs) == 5
    (killed,) = [r for r in runs if r.data.tags["pg.trial_number"] == str(victim)]
    assert killed.info.status == "KILLED"
    assert killed.data.tags["pg.stopped"].startswith("orphaned: Ray worker")
    assert_agree(store, st)


# -- no RAY_ADDRESS: a local instance for the sweep -----------------------------------


def test_without_address_a_local_instance_runs_the_sweep_and_is_shut_down(
    store: Store, ray_temp: str
) -> None:
    done = ray_sweep(
        store,
        "hydra.sweeper.workers=2",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.pruner.name=none",
        *NO_VALIDATION,
        address=None,
        temp_dir=ray_temp,
        RAY_TMPDIR=ray_temp,
    )
    out = ok(done)
    assert "local Ray instance started for this sweep" in out
    st = study(store)
    assert [t.state.name for t in st.get_trials()] == ["COMPLETE"] * 3
    owners = {t.system_attrs["pg.owner"] for t in st.get_trials()}
    assert all(o.rsplit(":", 1)[1].isdigit() for o in owners)
    assert_agree(store, st)
    assert out.count("pg: trial ") == 3
    assert list(Path(ray_temp).iterdir()), "the instance did not use RAY_TMPDIR"
    deadline = time.monotonic() + 15
    while pids_mentioning(ray_temp) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not pids_mentioning(ray_temp), "the local Ray instance outlived the sweep"


# -- checks before anything starts ---------------------------------------------------


def refused(done: subprocess.CompletedProcess[str], expected: str, store: Store) -> None:
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("pg: invalid sweep:")]
    assert len(lines) == 1, done.stderr[-2000:]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in done.stderr
    assert "pg: trial" not in done.stdout
    assert not (store.home / "mlruns").exists(), "no store or study may be created"


def test_unreachable_cluster_is_refused_before_anything_starts(
    fresh_store: Store, ray_temp: str
) -> None:
    start = time.monotonic()
    address = f"127.0.0.1:{free_port()}"
    done = ray_sweep(fresh_store, address=address, temp_dir=ray_temp, timeout=120)
    refused(done, "does not answer", fresh_store)
    assert time.monotonic() - start < 30


def test_silent_cluster_is_refused_within_the_check_timeout(
    fresh_store: Store, ray_temp: str
) -> None:
    with socket.socket() as silent:  # accepts connections, never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        done = ray_sweep(
            fresh_store,
            "hydra.sweeper.ray.check_timeout=3",
            address=address,
            temp_dir=ray_temp,
            timeout=120,
        )
        elapsed = time.monotonic() - start
    refused(done, "did not answer within 3 s", fresh_store)
    assert elapsed < 30, elapsed


def test_sqlite_on_a_two_node_cluster_is_refused(ray_head: RayHead, fresh_store: Store) -> None:
    ray_head.add_node()
    done = ray_sweep(fresh_store, address=ray_head.address, temp_dir=ray_head.temp_dir, timeout=120)
    refused(done, "has 2 nodes", fresh_store)
    assert "use a PostgreSQL storage" in done.stderr
    assert "use a tracking server" in done.stderr


def test_missing_ray_package_is_refused(fresh_store: Store, tmp_path: Path) -> None:
    """An environment where ``import ray`` fails, as after ``pip uninstall ray``."""
    shadow = tmp_path / "no-ray" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    path = os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])
    done = ray_sweep(
        fresh_store, address=None, temp_dir=str(tmp_path), timeout=120, PYTHONPATH=path
    )
    refused(done, "needs the ray package", fresh_store)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("hydra.sweeper.backend=slurm", "backend='slurm' must be one of local, ray"),
        ("hydra.sweeper.ray.num_cpus=0", "ray.num_cpus=0 must be a number > 0"),
        ("hydra.sweeper.ray.num_gpus=-1", "ray.num_gpus=-1 must be a number >= 0"),
        ("+hydra.sweeper.ray.adress=x", "unknown key under ray: adress"),
        ("hydra.sweeper.ray.check_timeout=0", "ray.check_timeout=0 must be"),
    ],
)
def test_bad_ray_settings(override: str, expected: str) -> None:
    import yaml

    from pg.sweep.spec import SweepError, build_spec
    from tests.conftest import ROOT

    settings: dict[str, Any] = yaml.safe_load((ROOT / "sweeps/cartpole_reinforce.yaml").read_text())
    key, _, raw = override.lstrip("+").partition("=")
    value = yaml.safe_load(raw)
    parts = key.split(".")[2:]
    target = settings
    for part in parts[:-1]:
        target = target[part]
    target[parts[-1]] = value
    with pytest.raises(SweepError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        build_spec(settings)


def test_passwords_are_stripped_for_workers() -> None:
    from pg.sweep.ray_backend import without_passwords

    text, env = without_passwords(
        '{"storage": "postgresql://bob:p%40ss@db:5432/optuna", '
        '"args": ["tracking.uri=http://alice:pw@mlflow:5000"]}'
    )
    assert "p%40ss" not in text and "pw@" not in text
    assert "postgresql://bob@db:5432/optuna" in text
    assert "tracking.uri=http://mlflow:5000" in text
    assert env == {
        "PGPASSWORD": "p@ss",
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": "pw",
    }


# -- Ctrl-C on the controller, then resume ---------------------------------------------


@pytest.mark.slow  # Ray 2.60's core can abort on a cancel racing a task's completion
def test_ctrl_c_cancels_ray_workers_and_the_same_command_resumes(
    store: Store, ray_temp: str
) -> None:
    """SIGINT to the controller's whole process group, as a terminal's Ctrl-C sends it."""
    args = [
        "-m",
        *TINY,
        *NO_VALIDATION,
        "hydra.sweeper.backend=ray",
        "hydra.sweeper.workers=2",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.pruner.name=none",
    ]
    env = store.env(RAY_TMPDIR=ray_temp, **auth_env(ray_temp))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pg.run",
            *args,
            # Long enough that both trials are seen mid-training (under half of their
            # reports in) before either ends: a Ctrl-C then interrupts both.
            "train.max_steps=400000",
            "train.report_every=1000",
            "train.target_return=null",
        ],
        cwd=store.home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        running: list[Any] = []
        while len(running) < 2 and time.monotonic() < deadline:
            time.sleep(0.3)
            if not any("pg: workers are Ray" in line for line in output):
                continue
            try:
                trials = study(store).get_trials()
            except Exception:
                continue
            running = [t for t in trials if mid_training(t, 400)]
        assert len(running) == 2, "two trials never ran at once\n" + "".join(output)
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        reader.join(5)
    text = "".join(output)
    assert code == 130, text[-4000:]
    assert "run the same command to continue" in text
    st = study(store)
    interrupted = {t.number for t in running}
    for t in st.get_trials():
        assert t.state.name != "RUNNING", t.number
        if t.number in interrupted:
            assert t.state.name == "FAIL"
            assert t.system_attrs["pg.reason"].startswith("interrupted"), t.system_attrs
    killed = [
        r for r in runs_of(store, "trial") if int(r.data.tags["pg.trial_number"]) in interrupted
    ]
    assert len(killed) == 2
    assert all(r.info.status == "KILLED" for r in killed), [r.info.status for r in killed]
    (parent,) = runs_of(store, "sweep")
    assert parent.info.status == "KILLED"
    deadline = time.monotonic() + 15
    while pids_mentioning(ray_temp) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not pids_mentioning(ray_temp), "the local Ray instance outlived Ctrl-C"

    again = run_module(
        "pg.run",
        [*args, "train.max_steps=1500"],
        store,
        timeout=300,
        **{k: v for k, v in env.items() if k.startswith("RAY_")},
    )
    ok(again)
    st = study(store)
    trials = st.get_trials()
    # Each interrupted trial ran again with its params; n_trials ran to their own end.
    for number in interrupted:
        (retry,) = [t for t in trials if t.user_attrs.get("pg.retry_of") == number]
        assert retry.params == trials[number].params and retry.state.name == "COMPLETE"
    assert len(trials) == 4 + len(interrupted)
    assert sum(1 for t in trials if t.state.name == "COMPLETE") == 4
    assert len(runs_of(store, "sweep")) == 1
    assert_agree(store, st)
