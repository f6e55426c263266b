"""What the MLflow UI shows of pg's runs, read back with ``MlflowClient``: run names a
person can tell apart, pruned trials that are not failures, the experiment kind that
opens the model-training view, and the command line as the user typed it."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST, NO_VALIDATION, Store, run_module

TINY = [*FAST, "train.max_steps=2000", "train.report_every=500", *NO_VALIDATION]
# Random draws 500, 500, then 10, 10, 10: two complete trials, then three pruned.
PRUNING = [
    "hydra.sweeper.n_trials=5",
    "hydra.sweeper.sampler.name=random",
    "hydra.sweeper.sampler.seed=9",
    "hydra.sweeper.pruner.n_startup_trials=2",
    "hydra.sweeper.pruner.n_warmup_steps=0",
    "env.max_episode_steps=500,10",
    "hydra.sweeper.register_model=cartpole-policy",
]
REFUSED = r"(?i)weights.only|unpickl|unsupported"  # torch's refusal of a code pickle
TRIAL_NAME = re.compile(r"^t\d{3} lr=0\.\d{3,} gamma=0\.\d{3} bs=\d+ max_ep=(10|500)$")


def fresh(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path, name: str) -> Store:
    store = Store(tmp_path_factory.mktemp(name) / "home")
    store.db.parent.mkdir(parents=True)
    shutil.copyfile(migrated_db, store.db)
    return store


def ok(proc: Any) -> str:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return str(proc.stdout)


def by_kind(store: Store, kind: str) -> list[Any]:
    return [r for r in store.runs() if r.data.tags.get("pg.kind") == kind]


@pytest.fixture(scope="module")
def pruned_sweep(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Iterator[Store]:
    """One sweep: two complete trials, three pruned."""
    store = fresh(tmp_path_factory, migrated_db, "pruned")
    ok(run_module("pg.run", ["-m", *TINY, *PRUNING], store))
    yield store


@pytest.fixture(scope="module")
def worker_sweep(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Iterator[Store]:
    """Two workers, two seeds per trial: trials run in a worker process, seeds nested."""
    store = fresh(tmp_path_factory, migrated_db, "workers")
    args = [
        "-m",
        *TINY,
        "hydra.sweeper.workers=2",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.seeds=2",
        "hydra.sweeper.pruner.name=none",
        "seed=5",
    ]
    ok(run_module("pg.run", args, store))
    yield store


def sweep_study(store: Store) -> Any:
    import optuna

    return optuna.load_study(
        study_name="cartpole_reinforce", storage=f"sqlite:///{store.home}/mlruns/optuna.db"
    )


def test_trial_names_are_distinct_and_numbered(pruned_sweep: Store) -> None:
    trials = by_kind(pruned_sweep, "trial")
    names = sorted(r.info.run_name for r in trials)
    assert len(set(names)) == 5
    for run in trials:
        name = run.info.run_name
        assert TRIAL_NAME.match(name), name
        number = int(run.data.tags["pg.trial_number"])
        assert name.startswith(f"t{number:03d} ")
        assert name.endswith(f"max_ep={run.data.params['env.max_episode_steps']}")
    (parent,) = by_kind(pruned_sweep, "sweep")
    assert parent.info.run_name == "sweep cartpole_reinforce"


def test_pruned_trials_end_finished_not_killed(pruned_sweep: Store) -> None:
    states = {}
    for run in by_kind(pruned_sweep, "trial"):
        state = run.data.tags["pg.trial_state"]
        states[int(run.data.tags["pg.trial_number"])] = state
        assert run.info.status == "FINISHED", (state, run.info.status)
        if state == "PRUNED":
            assert run.data.tags["pg.stopped"].startswith("pruned by MedianPruner")
    assert sorted(states.values()) == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED", "PRUNED"]


def test_analysis_counts_pruned_runs_as_stopped(pruned_sweep: Store) -> None:
    """``analysis`` keeps the pruned runs out of its statistics though they are FINISHED."""
    from analysis.loading import load_runs

    frame = load_runs("pg", tracking_uri=pruned_sweep.uri)
    trials = frame[frame["kind"] == "trial"]
    pruned = trials[trials["trial_state"] == "PRUNED"]
    assert len(pruned) == 3 and set(pruned["status"]) == {"FINISHED"}
    assert not pruned["completed"].any()
    assert trials[trials["trial_state"] == "COMPLETE"]["completed"].all()


@pytest.mark.parametrize("sweep", ["pruned_sweep", "worker_sweep"])
def test_trials_record_no_system_metrics(sweep: str, request: pytest.FixtureRequest) -> None:
    """Also in a worker process, which rebuilds the sweep's plan from its job."""
    store: Store = request.getfixturevalue(sweep)
    for run in store.runs():
        assert not [k for k in run.data.metrics if k.startswith("system/")], run.info.run_name


def test_worker_trials_record_no_clip_of_their_own(worker_sweep: Store) -> None:
    """Only the best trial gets a clip, made by the sweep at its end: a worker's trials
    are as quiet as the sweep process's (they once each recorded one)."""
    client = worker_sweep.client()
    with_media = [
        run.info.run_name
        for run in worker_sweep.runs()
        if client.list_artifacts(run.info.run_id, "media")
    ]
    assert len(with_media) == 1, with_media


def test_experiment_opens_in_the_training_view(pruned_sweep: Store) -> None:
    exp = pruned_sweep.client().get_experiment_by_name("pg")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_command_as_typed_on_parent_trials_and_seeds(worker_sweep: Store) -> None:
    runs = worker_sweep.runs()
    kinds = sorted(r.data.tags["pg.kind"] for r in runs)
    assert kinds == ["seed"] * 6 + ["sweep"] + ["trial"] * 3
    for run in runs:
        command = run.data.tags["pg.command"]
        assert command.startswith("python -m pg.run -m "), command
        assert "hydra.sweeper.workers=2" in command and "pg.sweep.worker" not in command
    # The trials really ran in two processes, so a worker process's runs were checked.
    owners = {t.system_attrs["pg.owner"] for t in sweep_study(worker_sweep).get_trials()}
    assert len(owners) == 2, owners


def test_seed_runs_named_after_their_trial(worker_sweep: Store) -> None:
    trials = {r.info.run_id: r for r in by_kind(worker_sweep, "trial")}
    for seed in by_kind(worker_sweep, "seed"):
        trial = trials[seed.data.tags["mlflow.parentRunId"]]
        number = int(trial.data.tags["pg.trial_number"])
        assert trial.info.run_name.startswith(f"t{number:03d} lr=")
        assert seed.info.run_name == f"t{number:03d} seed {seed.data.tags['pg.seed']}"


def test_single_run_keeps_its_name(
    tmp_path_factory: pytest.TempPathFactory, migrated_db: Path
) -> None:
    """A single run keeps its name, logs its model and, by default, a clip of it acting."""
    store = fresh(tmp_path_factory, migrated_db, "single")
    ok(run_module("pg.run", FAST, store))
    (run,) = store.runs()
    # MLflow's system metrics, on by default for a single run.
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(
        run.data.metrics
    )
    # Shorter than one sampling interval: the one sample is taken at the end, so its CPU
    # share covers the training (a sample from the start reads psutil's meaningless 0.0).
    assert 0.0 < run.data.metrics["system/cpu_utilization_percentage"] <= 100.0
    assert run.info.run_name == "cartpole-reinforce-s0"
    assert run.data.tags["pg.command"].startswith("python -m pg.run train.max_steps=3000")
    assert len(run.outputs.model_outputs) == 1
    gif = Path(store.client().download_artifacts(run.info.run_id, "media/policy.gif"))
    assert_one_episode(gif, int(run.data.tags["pg.video_steps"]))


def assert_one_episode(gif: Path, steps: int) -> None:
    """The GIF shows the whole episode at CartPole's 50 env steps/s: its frames (every
    other step's, at most 25 a second, and the last) last (steps + 1) x 20 ms in all.

    Identical consecutive frames may be merged by the encoder (their delays add up), so
    the total display time is the exact count."""
    from PIL import Image

    with Image.open(gif) as im:
        n = im.n_frames  # type: ignore[attr-defined]
        total_ms = 0
        for i in range(n):
            im.seek(i)
            total_ms += im.info["duration"]
    assert total_ms == (steps + 1) * 20
    assert 2 <= n <= steps + 1


# -- the policy as an MLflow model -----------------------------------------------------
def observations(n: int = 100) -> Any:
    import numpy as np

    rng = np.random.default_rng(0)
    # CartPole's observation ranges: positions, velocities and angles around upright.
    return (rng.normal(size=(n, 4)) * [1.0, 1.0, 0.1, 1.0]).astype(np.float32)


def best_trial_model(store: Store) -> tuple[Any, str]:
    """The best trial's run and the id of the LoggedModel linked to it."""
    (parent,) = by_kind(store, "sweep")
    best = store.client().get_run(parent.data.tags["pg.best_run_id"])
    (output,) = best.outputs.model_outputs
    return best, output.model_id


def test_best_trial_has_a_logged_model_with_its_objective(pruned_sweep: Store) -> None:
    best, model_id = best_trial_model(pruned_sweep)
    model = pruned_sweep.client().get_logged_model(model_id)
    assert model.source_run_id == best.info.run_id
    assert str(model.status) in ("READY", "LoggedModelStatus.READY")
    metrics = {m.key: m.value for m in model.metrics or []}
    assert metrics["objective"] == pytest.approx(best.data.metrics["objective"])
    # Linking the metric to the model kept the run's history at one objective row.
    assert len(pruned_sweep.client().get_metric_history(best.info.run_id, "objective")) == 1
    # Pruned trials stopped before the end: no model for them.
    for run in by_kind(pruned_sweep, "trial"):
        if run.data.tags["pg.trial_state"] == "PRUNED":
            assert not (run.outputs and run.outputs.model_outputs)


def test_the_logged_model_pins_the_installed_versions(pruned_sweep: Store) -> None:
    """What ``pip install -r`` of the model's requirements gets: the versions it ran with."""
    from importlib.metadata import version

    _, model_id = best_trial_model(pruned_sweep)
    model = pruned_sweep.client().get_logged_model(model_id)
    root = Path(model.artifact_location.removeprefix("file://"))
    pins = (root / "requirements.txt").read_text().split()
    for name in ("mlflow", "torch", "numpy", "gymnasium"):
        assert f"{name}=={version(name)}" in pins, pins


def test_model_saves_skip_mlflows_check_of_pg_own_pins() -> None:
    """MLflow checks a saved model's pins against the installed versions on every save;
    pg's pins are the installed versions, so the record process skips it (~6 of ~15 ms
    of CPU per save)."""
    import logging

    import mlflow.utils.environment as environment

    from pg.record.models import skip_dependency_scan

    warnings: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("mlflow.utils.requirements_utils")
    logger.addHandler(handler)
    name = "warn_dependency_requirement_mismatches"  # what MLflow's save_model calls
    check = vars(environment)[name]
    try:
        check(["torch==0.0.1"])
        assert any("mismatch" in w for w in warnings), "MLflow's check warns without the skip"
        warnings.clear()
        skip_dependency_scan()
        vars(environment)[name](["torch==0.0.1"])
        assert warnings == []
    finally:
        logger.removeHandler(handler)
        setattr(environment, name, check)


def test_pyfunc_and_pg_loader_agree_on_100_observations(
    pruned_sweep: Store, tmp_path: Path
) -> None:
    import mlflow
    import numpy as np
    import torch

    from pg.core.policy import load_policy
    from pg.record.models import download_policy

    _, model_id = best_trial_model(pruned_sweep)
    mlflow.set_tracking_uri(pruned_sweep.uri)
    obs = observations()
    actions = mlflow.pyfunc.load_model(f"models:/{model_id}").predict(obs)
    policy = load_policy(download_policy(pruned_sweep.client(), model_id, tmp_path))
    with torch.no_grad():
        ours = policy(torch.as_tensor(obs)).argmax(dim=-1).numpy()
    assert actions.shape == (100,)
    np.testing.assert_array_equal(actions, ours)
    assert set(np.unique(actions)) <= {0, 1}


class Boom:
    """Unpickling this writes a marker file: proof that pickled code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "pickled code ran"))


def test_a_tampered_pickle_is_never_executed(pruned_sweep: Store, tmp_path: Path) -> None:
    """Weights replaced by a malicious pickle, plus a cloudpickled "model" dropped next to
    the model code: loading refuses the weights and never runs either pickle."""
    import pickle

    import mlflow
    import torch

    from pg.core.policy import load_policy

    # The other complete trial's model: the best one stays intact for the other tests.
    best, _ = best_trial_model(pruned_sweep)
    (other,) = [
        r
        for r in by_kind(pruned_sweep, "trial")
        if r.data.tags["pg.trial_state"] == "COMPLETE" and r.info.run_id != best.info.run_id
    ]
    (output,) = other.outputs.model_outputs
    model_id = output.model_id
    model = pruned_sweep.client().get_logged_model(model_id)
    root = Path(model.artifact_location.removeprefix("file://"))
    weights = root / "artifacts" / "policy" / "policy.pt"
    assert weights.is_file()
    marker = tmp_path / "pwned"
    evil = pickle.dumps(Boom(marker))
    # torch.save's zip layout with a malicious data.pkl, and a bare pickle as well.
    torch.save(Boom(marker), weights)
    (root / "python_model.pkl").write_bytes(evil)
    mlflow.set_tracking_uri(pruned_sweep.uri)
    with pytest.raises(Exception, match=REFUSED):
        mlflow.pyfunc.load_model(f"models:/{model_id}")
    with pytest.raises(Exception, match=REFUSED):
        load_policy(weights.parent)
    weights.write_bytes(evil)
    with pytest.raises(Exception):  # noqa: B017 - any refusal; what matters is the marker
        load_policy(weights.parent)
    assert not marker.exists(), "a pickle in the model was executed"


# -- the best trial's clip and the Model Registry ---------------------------------------
def greedy_episode_length(policy: Any, seed: int, max_steps: int) -> int:
    """Played here with gymnasium itself, not with pg's renderer."""
    import gymnasium as gym
    import torch

    env = gym.make("CartPole-v1", max_episode_steps=max_steps)
    obs, _ = env.reset(seed=seed)
    steps, done = 0, False
    while not done:
        with torch.no_grad():
            action = int(policy(torch.as_tensor(obs[None])).argmax(dim=-1)[0])
        obs, _, terminated, truncated, _ = env.step(action)
        steps, done = steps + 1, terminated or truncated
    return steps


def test_best_trial_alone_has_a_clip_of_one_episode(pruned_sweep: Store, tmp_path: Path) -> None:
    from pg.core.policy import load_policy
    from pg.record.models import download_policy

    client = pruned_sweep.client()
    best, model_id = best_trial_model(pruned_sweep)
    for run in by_kind(pruned_sweep, "trial"):
        media = [f.path for f in client.list_artifacts(run.info.run_id, "media")]
        assert media == (["media/policy.gif"] if run.info.run_id == best.info.run_id else [])
    policy = load_policy(download_policy(client, model_id, tmp_path / "model"))
    max_steps = int(best.data.params["env.max_episode_steps"])
    steps = greedy_episode_length(policy, int(best.data.tags["pg.seed"]), max_steps)
    assert best.data.tags["pg.video_steps"] == str(steps)
    gif = Path(client.download_artifacts(best.info.run_id, "media/policy.gif", str(tmp_path)))
    assert_one_episode(gif, steps)


def test_register_model_creates_version_1_with_tags(pruned_sweep: Store) -> None:
    import mlflow

    st = sweep_study(pruned_sweep)
    client = pruned_sweep.client()
    (version,) = client.search_model_versions("name = 'cartpole-policy'")
    assert version.version in (1, "1")
    best, model_id = best_trial_model(pruned_sweep)
    assert version.run_id == best.info.run_id
    assert version.tags["pg.study"] == "cartpole_reinforce"
    assert version.tags["pg.trial_number"] == str(st.best_trial.number)
    assert float(version.tags["pg.best_value"]) == pytest.approx(st.best_trial.value)
    assert version.tags["pg.model_id"] == model_id
    mlflow.set_tracking_uri(pruned_sweep.uri)
    actions = mlflow.pyfunc.load_model("models:/cartpole-policy/1").predict(observations(5))
    assert actions.shape == (5,)


@pytest.mark.parametrize("name", ["''", "team/policy", "policy:v1", "..policy"])
def test_register_model_needs_a_name_the_registry_takes(store: Store, name: str) -> None:
    """Refused before any trial: the Model Registry would refuse it after the last one."""
    proc = run_module("pg.run", ["-m", *TINY, f"hydra.sweeper.register_model={name}"], store)
    assert proc.returncode == 2, proc.stderr
    assert "register_model" in proc.stderr and "model name" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not store.runs()
