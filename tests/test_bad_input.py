"""Bad input is one line naming the key and what is allowed, exit 2, and nothing is made.

The cases here are the ones a new user hit (issue 17): tracking URIs MLflow cannot use,
integers past 64 bits, sizes the machine cannot hold, sweep settings of the wrong type and
Hydra grammar errors in sweep overrides.
"""

from __future__ import annotations

import pytest

from pg.core.budget import too_big
from pg.core.config import ConfigError, to_config
from pg.record.store import location_for, study_storage_problem, tracking_uri_problem
from pg.sweep.spec import SweepError, build_spec
from tests.conftest import Store, run_module


@pytest.mark.parametrize(
    "uri",
    [
        "sqlite:////tmp/x/mlflow.db",
        "sqlite:///relative.db",
        "http://127.0.0.1:5000",
        "https://mlflow.example.com/prefix",
        "postgresql://user@db:5432/mlflow",
        "postgresql+psycopg2://user:pw@db/mlflow",
        "mysql://u@h/db",
    ],
)
def test_usable_tracking_uris_pass(uri: str) -> None:
    assert tracking_uri_problem(uri) is None


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("localhost:5000", "http://localhost:5000"),
        ("./mlruns", "file store"),
        ("/abs/mlruns", "file store"),
        ("ftp://host/x", "ftp:// is not supported"),
        ("sqlite://x.db", "sqlite:///PATH"),
        ("sqlite:///", "sqlite:///PATH"),
        ("http://", "needs a host"),
        ("http://h:99999", "port"),
        ("", "empty"),
    ],
)
def test_unusable_tracking_uris_name_the_key_and_the_forms(uri: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        location_for(uri)
    message = str(info.value)
    assert message.startswith("tracking.uri=")
    assert words in message
    assert "sqlite:///PATH/mlflow.db" in message and "http(s)://HOST:PORT" in message
    assert "\n" not in message


def test_environment_uri_is_named_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "localhost:5000")
    with pytest.raises(ConfigError, match=r"^MLFLOW_TRACKING_URI"):
        location_for(None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # exported but empty: not set
    assert location_for(None).uri.endswith("mlflow.db")


def test_password_in_a_refused_uri_is_not_shown() -> None:
    with pytest.raises(ConfigError) as info:
        location_for("ftp://user:hunter2@host/x")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("localhost:5432", "host:port"),
        ("./optuna", "database URL"),
        ("http://h:5000", "not a tracking server"),
        ("ftp://h/x", "not supported"),
    ],
)
def test_unusable_study_storages_are_refused(url: str, words: str) -> None:
    problem = study_storage_problem(url)
    assert problem is not None and words in problem
    assert study_storage_problem("sqlite:////tmp/o.db") is None


@pytest.mark.parametrize(
    ("tree", "key"),
    [
        ({"seed": 2**64}, "seed"),
        ({"seed": 10**5000}, "seed"),
        ({"train": {"max_steps": 2**70}}, "train.max_steps"),
        ({"model": {"hidden": [2**80]}}, "model.hidden"),
        ({"algo": {"name": "pg", "entropy_beta": float("inf")}}, "algo.entropy_beta"),
        ({"algo": {"name": "pg", "clip_grad": float("nan")}}, "algo.clip_grad"),
        ({"train": {"target_return": float("nan")}}, "train.target_return"),
        ({"train": {"torch_threads": 10**6}}, "train.torch_threads"),
        ({"tracking": {"check_timeout": 1e300}}, "tracking.check_timeout"),
        ({"tracking": {"experiment": "a\nb"}}, "tracking.experiment"),
        ({"tracking": {"run_name": "x" * 300}}, "tracking.run_name"),
        ({"env": {"name": ""}}, "env.name"),
        ({"debug": {"fail_at_step": -1}}, "debug.fail_at_step"),
    ],
)
def test_values_the_code_cannot_hold_are_refused(tree: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        to_config(tree)
    message = str(info.value)
    assert message.startswith(f"{key}=") and "is not allowed" in message
    assert len(message) < 300


def test_memory_estimate_names_the_key_and_the_size() -> None:
    with pytest.raises(ConfigError) as info:
        to_config({"env": {"num_envs": 100_000_000}})
    message = str(info.value)
    assert message.startswith("env.num_envs=100000000 is not allowed")
    assert "GiB" in message and "available" in message
    # the same estimate, against a budget we choose: the default config fits in 100 MiB
    small = to_config({})
    assert too_big(small, budget=100 * 2**20) is None
    assert too_big(small, budget=2**10) is not None


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"n_trials": "abc"}, "hydra.sweeper.n_trials"),
        ({"seeds": "abc"}, "hydra.sweeper.seeds"),
        ({"seeds": True}, "hydra.sweeper.seeds"),
        ({"workers": 10**9}, "hydra.sweeper.workers"),
        ({"timeout": float("inf")}, "hydra.sweeper.timeout"),
        ({"max_failure_rate": "x"}, "hydra.sweeper.max_failure_rate"),
        ({"heartbeat_interval": 1.5}, "hydra.sweeper.heartbeat_interval"),
        ({"study_name": ""}, "hydra.sweeper.study_name"),
        ({"storage": "localhost:5432"}, "hydra.sweeper.storage"),
        ({"sampler": {"name": "tpe", "seed": "abc"}}, "hydra.sweeper.sampler.seed"),
        ({"sampler": {"name": "tpe", "seed": 2**40}}, "hydra.sweeper.sampler.seed"),
        ({"max_retries": "x"}, "hydra.sweeper.max_retries"),
    ],
)
def test_sweep_settings_of_the_wrong_type_name_the_key(
    settings: dict[str, object], key: str
) -> None:
    with pytest.raises(SweepError) as info:
        build_spec(settings)
    assert str(info.value).startswith(f"{key}=")


def test_pruner_options_are_typed() -> None:
    from pg.sweep.factories import make_pruner

    with pytest.raises(SweepError, match=r"hydra\.sweeper\.pruner\.n_startup_trials='abc'"):
        make_pruner(build_spec({"pruner": {"name": "median", "n_startup_trials": "abc"}}))


def assert_refused(result: object, store: Store, *words: str) -> None:
    """Exit 2, one line on stderr naming what is wrong, no traceback, no store made."""
    import subprocess

    assert isinstance(result, subprocess.CompletedProcess)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "HYDRA_FULL_ERROR" not in result.stderr
    for word in words:
        assert word in lines[0]
    assert not (store.home / "mlruns").exists()
    assert not (store.home / "outputs").exists() and not (store.home / "multirun").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["tracking.uri=localhost:5000"], ["tracking.uri", "http://localhost:5000"]),
        (["tracking.uri=./mlruns"], ["tracking.uri", "sqlite:///PATH"]),
        (["seed=99999999999999999999999"], ["seed", "is not allowed"]),
        (["env.num_envs=100000000"], ["env.num_envs", "GiB"]),
        (["seed=abc"], ["seed=abc", "Integer"]),
        (["algo.foo=1"], ["algo.foo"]),
        (["algo.lr=("], ["algo.lr=(", "grammar"]),
    ],
)
def test_cli_run_refuses_in_one_line(fresh_store: Store, args: list[str], words: list[str]) -> None:
    result = run_module("pg.run", ["+debug=fast", *args], fresh_store, timeout=120)
    assert_refused(result, fresh_store, "pg: invalid configuration:", *words)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["hydra.sweeper.n_trials=abc"], ["hydra.sweeper.n_trials"]),
        (["hydra.sweeper.seeds=abc"], ["hydra.sweeper.seeds"]),
        (["algo.lr=interval(1,"], ["algo.lr=interval(1,", "grammar"]),
        (["algo.lr=choice("], ["algo.lr=choice(", "grammar"]),
        (["tracking.uri=ftp://x/y"], ["tracking.uri", "ftp://"]),
        (["hydra.sweeper.seeds=1000", "env.num_envs=100000"], ["env.num_envs", "GiB"]),
        (["+hydra.sweeper.sampler.multivariat=false"], ["sampler 'tpe' has no option multivariat"]),
        (
            ["hydra.sweeper.pruner.name=threshold", "+hydra.sweeper.pruner.lower=abc"],
            ["hydra.sweeper.pruner.lower='abc'", "a finite number"],
        ),
        (["hydra.sweeper.pruner.name=wilcoxon"], ["wilcoxon", "2 or more seeds per trial"]),
        (["hydra.sweeper.max_retries=-1"], ["hydra.sweeper.max_retries=-1", "[0, 100]"]),
    ],
)
def test_cli_sweep_refuses_in_one_line(
    fresh_store: Store, args: list[str], words: list[str]
) -> None:
    result = run_module("pg.run", ["-m", "+debug=fast", *args], fresh_store, timeout=120)
    assert_refused(result, fresh_store, "pg: invalid sweep:", *words)
