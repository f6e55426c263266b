"""``python -m pg.run`` as a user runs it, read back from the store with ``MlflowClient``."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir

from pg.core import metrics as m
from pg.core.config import Config, register_configs, to_config
from pg.core.policy import load_policy
from tests.conftest import FAST, ROOT, TRAINING_METRICS, Store, run_module

ARGS = [*FAST, "train.progress=false"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def start_module(module: str, args: list[str], store: Store) -> subprocess.Popen[str]:
    """Like ``run_module`` but returns at once, for concurrent starts and signals."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=store.home,
        env=store.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def artifact_paths(client: Any, run_id: str, path: str | None = None) -> set[str]:
    out: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            out |= artifact_paths(client, run_id, item.path)
        else:
            out.add(item.path)
    return out


def download_text(client: Any, run_id: str, path: str, dst: Path) -> str:
    dst.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(dst))).read_text()


def histories(client: Any, run: Any) -> dict[str, list[tuple[int, float]]]:
    """Every metric's (step, value) history except wall-clock ones."""
    out = {}
    for name in run.data.metrics:
        if name.startswith(m.WALL_CLOCK_PREFIXES):  # time/ and MLflow's system/
            continue
        hist = client.get_metric_history(run.info.run_id, name)
        out[name] = sorted((h.step, h.value) for h in hist)
    return out


def completed(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_two_runs_started_together_on_a_new_store_both_succeed(fresh_store: Store) -> None:
    """The first process to touch a new SQLite store creates its tables; two must not race."""
    assert not fresh_store.db.exists()
    args = [*ARGS, "train.max_steps=200"]
    procs = [start_module("pg.run", args, fresh_store) for _ in range(2)]
    for proc in map(completed, procs):
        assert proc.returncode == 0, proc.stderr[-3000:]
    runs = fresh_store.runs()
    assert len(runs) == 2
    assert {r.info.status for r in runs} == {"FINISHED"}


@dataclass
class Trio:
    """A run with seed 0, then another seed-0 run and a seed-1 run side by side."""

    store: Store
    procs: list[subprocess.CompletedProcess[str]]

    def runs_by_seed(self, seed: int) -> list[Any]:
        return [r for r in self.store.runs() if r.data.tags.get("pg.seed") == str(seed)]

    @property
    def run(self) -> Any:
        return min(self.runs_by_seed(0), key=lambda r: r.info.start_time)


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Trio:
    home = tmp_path_factory.mktemp("cli") / "home"
    home.mkdir()
    store = Store(home)
    first = run_module("pg.run", [*ARGS, "seed=0"], store)
    later = [start_module("pg.run", [*ARGS, f"seed={seed}"], store) for seed in (0, 1)]
    return Trio(store, [first, *map(completed, later)])


def test_runs_succeed_and_say_where_they_went(trio: Trio) -> None:
    for proc in trio.procs:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert re.search(r"MLflow run [0-9a-f]{32}", proc.stdout), proc.stdout
        assert str(trio.store.db) in proc.stdout
    runs = trio.store.runs()
    assert len(runs) == 3
    assert {r.info.status for r in runs} == {"FINISHED"}
    # Artifacts sit beside the database, not in the directory the command ran from.
    assert (trio.store.home / "mlruns" / "artifacts").is_dir()


def test_same_seed_same_metric_history_through_the_cli(trio: Trio) -> None:
    client = trio.store.client()
    a, b = trio.runs_by_seed(0)
    (c,) = trio.runs_by_seed(1)
    ha, hb, hc = histories(client, a), histories(client, b), histories(client, c)
    assert m.LOSS_POLICY in ha and m.EP_RETURN in ha
    assert ha == hb
    assert ha != hc
    assert a.data.params == b.data.params


def expected_config(*overrides: str) -> Config:
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return to_config(compose(config_name="config", overrides=list(overrides)))


def test_params_are_the_flattened_config(trio: Trio) -> None:
    params = trio.run.data.params
    cfg = expected_config(*ARGS, "seed=0")
    assert params["algo.lr"] == str(cfg.algo.lr)
    assert params["algo.name"] == "reinforce"
    assert params["algo.gamma"] == str(cfg.algo.gamma)
    assert params["algo.batch_size"] == str(cfg.algo.batch_size)
    assert params["env.id"] == "CartPole-v1"
    assert params["env.num_envs"] == str(cfg.env.num_envs)
    assert params["seed"] == "0"
    assert params["train.max_steps"] == "3000"
    assert params["train.target_return"] == "475.0"  # interpolation resolved
    assert params["model.hidden"] == str(cfg.model.hidden)
    assert params["tracking.uri"] == "null"
    # Every leaf of the schema is there, nothing else.
    leaves = {
        f"{group.name}.{leaf.name}" if is_dataclass(getattr(cfg, group.name)) else group.name
        for group in fields(cfg)
        for leaf in (
            fields(getattr(cfg, group.name)) if is_dataclass(getattr(cfg, group.name)) else [group]
        )
    }
    assert set(params) == leaves


CURVES = [*TRAINING_METRICS, m.OBJECTIVE]


def test_metric_histories_are_stepped_by_env_steps(trio: Trio) -> None:
    client = trio.store.client()
    run = trio.run
    total = int(run.data.tags["pg.steps"])
    assert total >= 3000
    for name in CURVES:
        hist = client.get_metric_history(run.info.run_id, name)
        assert hist, f"no history for {name}"
        steps = [h.step for h in hist]
        assert steps == sorted(steps), name
        assert steps[0] >= 1 and steps[-1] <= total, name
        assert all(math.isfinite(h.value) for h in hist), name
    for name in (m.EP_RETURN_100, m.EPISODES, m.EVAL_RETURN, m.OBJECTIVE, m.SPS):
        assert client.get_metric_history(run.info.run_id, name)[-1].step == total, name
    # Several logging points over the run, not just one at the end.
    assert len(client.get_metric_history(run.info.run_id, m.LOSS_POLICY)) >= 4
    episodes = client.get_metric_history(run.info.run_id, m.EP_RETURN)
    assert len(episodes) == int(run.data.metrics[m.EPISODES])
    objective = run.data.metrics[m.OBJECTIVE]
    assert objective == pytest.approx(run.data.metrics[m.EP_RETURN_100])
    last100 = [h.value for h in episodes][-100:]
    assert objective == pytest.approx(sum(last100) / len(last100))


def test_status_and_tags(trio: Trio) -> None:
    run = trio.run
    tags = run.data.tags
    assert run.info.status == "FINISHED"
    assert tags["pg.kind"] == "run"
    assert (tags["pg.env"], tags["pg.algo"], tags["pg.seed"]) == ("CartPole-v1", "reinforce", "0")
    assert tags["pg.objective"] == m.EP_RETURN_100
    assert tags["pg.solved"] == "false"
    assert tags["pg.reproduce"] == f"python -m pg.reproduce {run.info.run_id}"
    assert tags["pg.reproduce"] in tags["mlflow.note.content"]  # the run's description
    assert "seed=0" in tags["pg.command"] and "train.max_steps=3000" in tags["pg.command"]
    assert tags["pg.version"]
    if (ROOT / ".git").exists():
        commit = tags["pg.git_commit"]
        assert re.fullmatch(r"[0-9a-f]{40}", commit)
        known = subprocess.run(["git", "cat-file", "-e", commit], cwd=ROOT, check=False)
        assert known.returncode == 0
        assert tags["pg.git_dirty"] in ("true", "false")


def test_snapshot_and_environment_artifacts(trio: Trio, tmp_path: Path) -> None:
    client = trio.store.client()
    run_id = trio.run.info.run_id
    assert {
        "config/config.yaml",
        "config/overrides.yaml",
        "config/hydra.yaml",
        "environment/requirements.txt",
        "environment/system.json",
        "model/policy.pt",
        "model/spec.json",
        "plots/learning_curve.png",
    } <= artifact_paths(client, run_id)

    resolved = yaml.safe_load(download_text(client, run_id, "config/config.yaml", tmp_path / "c"))
    cfg = to_config(resolved)
    assert cfg == expected_config(*ARGS, "seed=0")

    overrides = yaml.safe_load(
        download_text(client, run_id, "config/overrides.yaml", tmp_path / "o")
    )
    assert "seed=0" in overrides["overrides"] and "train.max_steps=3000" in overrides["overrides"]
    assert overrides["choices"]["env"] == "cartpole"
    assert overrides["choices"]["algo"] == "reinforce"
    # Hydra's own config, rendered by the record process from the containers it was sent.
    hydra = yaml.safe_load(download_text(client, run_id, "config/hydra.yaml", tmp_path / "h"))
    assert "seed=0" in hydra["overrides"]["task"]
    assert hydra["runtime"]["choices"]["env"] == "cartpole"

    lock = download_text(client, run_id, "environment/requirements.txt", tmp_path / "l")
    # pip-freeze style; the CPU wheel's local version tag may follow.
    assert any(re.fullmatch(r"torch==2\.13\.0(\+cpu)?", line) for line in lock.splitlines())
    system = json.loads(download_text(client, run_id, "environment/system.json", tmp_path / "s"))
    assert system["python"].startswith("3.11")


def test_weights_reload_into_a_policy_that_acts(trio: Trio, tmp_path: Path) -> None:
    client = trio.store.client()
    local = Path(client.download_artifacts(trio.run.info.run_id, "model", str(tmp_path)))
    # A plain state dict: loadable without executing pickled code.
    state = torch.load(local / "policy.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    policy = load_policy(local)
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        with torch.no_grad():
            logits = policy(torch.as_tensor(obs).unsqueeze(0))
        assert logits.shape == (1, 2)
        action = int(logits.argmax(dim=-1))
        assert env.action_space.contains(action)
        obs, *_ = env.step(action)
    env.close()


def test_learning_curve_is_a_png(trio: Trio, tmp_path: Path) -> None:
    client = trio.store.client()
    path = client.download_artifacts(
        trio.run.info.run_id, "plots/learning_curve.png", str(tmp_path)
    )
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000


# -- failures ------------------------------------------------------------------------------


def only_run(store: Store) -> Any:
    runs = store.runs()
    assert len(runs) == 1
    return runs[0]


def test_exception_gives_failed_run_with_the_error(store: Store, tmp_path: Path) -> None:
    proc = run_module("pg.run", [*ARGS, "debug.fail_at_step=1000"], store)
    assert proc.returncode != 0
    run = only_run(store)
    assert run.info.status == "FAILED"
    assert "RuntimeError" in run.data.tags["pg.error"]
    assert "fail_at_step" in run.data.tags["pg.error"]
    client = store.client()
    tb = download_text(client, run.info.run_id, "error/traceback.txt", tmp_path)
    assert "Traceback" in tb and "fail_at_step" in tb
    # Metrics up to the failure were written.
    assert client.get_metric_history(run.info.run_id, m.EP_RETURN)


def test_nan_loss_gives_failed_run_with_divergence_error(store: Store) -> None:
    proc = run_module("pg.run", [*ARGS, "debug.nan_at_step=1000"], store)
    assert proc.returncode != 0
    run = only_run(store)
    assert run.info.status == "FAILED"
    assert "DivergenceError" in run.data.tags["pg.error"]


def test_ctrl_c_gives_killed_run(store: Store) -> None:
    args = [*ARGS, "train.max_steps=5000000", "train.target_return=null"]
    # Create the store first so that polling it below cannot race the run's own creation.
    store.db.parent.mkdir(parents=True, exist_ok=True)
    store.client().search_experiments()
    proc = start_module("pg.run", args, store)
    try:
        deadline = time.monotonic() + 120
        started = False
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            if not store.db.exists():
                continue
            runs = store.runs()
            if runs and store.client().get_metric_history(runs[0].info.run_id, m.EP_RETURN):
                started = True
                break
        assert started, "training never started"
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    run = only_run(store)
    assert run.info.status == "KILLED"
    assert "Ctrl-C" in run.data.tags["pg.stopped"]


# -- invalid configuration -----------------------------------------------------------------

INVALID = [
    ("algo.lr=abc", "algo.lr"),
    ("algo.foo=1", "algo.foo"),
    ("algo.lr=0", "algo.lr"),
    ("algo.gamma=0", "algo.gamma"),
    ("algo.gamma=1.5", "algo.gamma"),
    ("algo.batch_size=0", "algo.batch_size"),
    ("env=nope", "env"),
    ("env.id=Nope-v0", "env.id"),
    ("algo=bogus", "algo"),
    ("algo.name=bogus", "algo.name"),
]


@pytest.mark.parametrize(("override", "key"), INVALID)
def test_invalid_value_exits_nonzero_naming_the_key_without_a_run(
    store: Store, override: str, key: str
) -> None:
    proc = run_module("pg.run", [*ARGS, override], store, timeout=120)
    assert proc.returncode != 0
    assert key in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not store.db.exists() or store.runs() == []
