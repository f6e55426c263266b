"""Property: any override of any key is accepted, or refused in one line naming the key.

Hypothesis generates overrides of every key of the schema (and of keys that do not exist)
with wrong types, out-of-range and huge numbers, NaN/inf, empty and odd strings, odd URIs
and broken grammar, and whole sweep definitions with their search spaces.  The in-process
validation (what ``pg.run`` and the sweeper run before anything is created) must either
accept or raise the one-line error; any other exception fails the test.  A bounded sample
of the same cases goes through the real CLI: exit 0 with a run, or exit 2 with one line, no
traceback, and no store left behind.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from omegaconf.errors import OmegaConfBaseException

from pg.core.checks import check_group_overrides
from pg.core.config import Config, ConfigError, register_configs, to_config
from pg.record.store import resolve_store
from pg.run import explain
from pg.sweep.checks import check_definition
from pg.sweep.spec import SweepError, SweepSpec
from tests.conftest import FAST, ROOT, Store

CONF = str(ROOT / "conf")
# Derandomized: the default suite sees the same cases every time (no flaky CI); the
# examples still come from the strategies below, and `--hypothesis-seed` explores more.
QUICK = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def schema_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every leaf key of the typed schema, dotted (``algo.lr``, ``model.hidden``, ...)."""
    out: list[str] = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if callable(f.default_factory) else f.default
        if dataclasses.is_dataclass(default):
            out += schema_keys(type(default), f"{prefix}{f.name}.")
        else:
            out.append(f"{prefix}{f.name}")
    return out


KEYS = schema_keys()
GROUPS = ["env", "algo", "model", "tracking"]
UNKNOWN = ["algo.foo", "nope", "env.idd", "train.max_step", "+algo.extra"]


def quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


SPECIAL_NUMBERS = [0, -1, 1, 2**31, 2**63 - 1, 2**63, 2**64, 10**30, 10**400]
SPECIAL_FLOATS = ["nan", "inf", "-inf", "1e308", "1e-320", "-0.0", "1e400"]
ODD_URIS = [
    "localhost:5000",
    "./mlruns",
    "/tmp/mlruns",
    "file:///tmp/mlruns",
    "ftp://host/x",
    "sqlite://x.db",
    "sqlite:///",
    "http://",
    "http://h:99999",
    "https://u:pw@host:5000",
    "postgresql://u:pw@127.0.0.1:1/db",
    "mysql+nodriver://h/db",
    "s3://bucket/x",
    "databricks",
    "HTTP://host",
    "",
]
uri_parts = st.builds(
    lambda scheme, host, port, path: f"{scheme}{host}{port}{path}",
    st.sampled_from(["http://", "https://", "sqlite:///", "postgresql://", "ftp://", "", "x://"]),
    st.text(alphabet="abcxyz.-_:@0123456789", max_size=12),
    st.sampled_from(["", ":0", ":5000", ":65536", ":abc"]),
    st.sampled_from(["", "/", "/db", "/a b", "/../x"]),
)
values = st.one_of(
    st.integers(-(10**6), 10**7).map(str),
    st.sampled_from(SPECIAL_NUMBERS).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(SPECIAL_FLOATS),
    st.sampled_from(["true", "false", "null", "", "''", "[]", "{}", "[1,2]", "[0]", "[-5]"]),
    st.lists(st.integers(-3, 2**70), max_size=3).map(lambda xs: "[" + ",".join(map(str, xs)) + "]"),
    st.text(max_size=20).map(quoted),
    st.text(alphabet="abc()[]{},=:$'\"\\ -_.", max_size=10),
    st.sampled_from(ODD_URIS).map(quoted),
    uri_parts.map(quoted),
    st.sampled_from(["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "reinforce", "pg", "conv"]),
    st.sampled_from(["rollout/ep_return_100", "eval/return", "${env.target_return}", "${nope}"]),
)
overrides = st.builds(
    lambda key, value: f"{key}={value}",
    st.one_of(st.sampled_from(KEYS), st.sampled_from(GROUPS), st.sampled_from(UNKNOWN)),
    values,
)


@pytest.fixture(scope="module")
def hydra_conf() -> Iterator[None]:
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        yield


def validate(args: list[str]) -> str | None:
    """What ``pg.run`` does before creating anything: ``None`` if accepted, else its line."""
    try:
        check_group_overrides(args)
        config = to_config(compose(config_name="config", overrides=args))
        resolve_store(config.tracking)
    except ConfigError as exc:
        return str(exc)
    except (HydraException, OmegaConfBaseException) as exc:
        code, line = explain(exc, sweep=False)
        assert code == 2, line
        return line.removeprefix("pg: invalid configuration: ")
    return None


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


@QUICK
@given(override=overrides)
@example(override="seed=99999999999999999999999")
@example(override="env.num_envs=100000000")
@example(override="tracking.uri='localhost:5000'")
@example(override="algo.lr=nan")
def test_any_override_is_accepted_or_refused_in_one_line(hydra_conf: None, override: str) -> None:
    line = validate([override])
    event("accepted" if line is None else "refused")
    if line is None:
        return
    assert "\n" not in line and line.strip(), line
    assert len(line) < 600, line
    key = key_of(override)
    # The line names the key (a group's key is named as its folder, e.g. 'env/nope').
    assert key in line or key.split(".")[0] in line, (override, line)


# -- sweep definitions ------------------------------------------------------------------
SWEEP_KEYS = [f.name for f in dataclasses.fields(SweepSpec)]
python_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 50),
    st.sampled_from([0, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["tpe", "random", "median", "none", "maximize", "minimize", "abc", ""]),
    st.sampled_from(["sqlite:////tmp/x.db", "localhost:5432", "./o", "http://h:1", "ftp://x"]),
    st.lists(st.integers(0, 3), max_size=2),
)
options = st.dictionaries(
    st.sampled_from(["name", "seed", "n_startup_trials", "n_warmup_steps", "min_resource", "x"]),
    python_values,
    max_size=3,
)
number = st.one_of(
    st.integers(-3, 5000).map(str),
    st.sampled_from(["0", "1e-4", "0.5", "1", "nan", "inf", "-inf", "1e400", str(2**70)]),
)
sweep_values = st.one_of(
    st.builds(lambda a, b: f"interval({a},{b})", number, number),
    st.builds(lambda a, b: f"tag(log,interval({a},{b}))", number, number),
    st.builds(lambda a, b: f"tag(int,interval({a},{b}))", number, number),
    st.builds(lambda a, b, c: f"range({a},{b},{c})", number, number, number),
    st.lists(number, min_size=1, max_size=3).map(lambda xs: "choice(" + ",".join(xs) + ")"),
    st.lists(number, min_size=2, max_size=3).map(",".join),
    st.sampled_from(["choice()", "interval(1,", "range(", "tag(x,interval(0,1))", "a,,b"]),
    st.sampled_from(["choice(reinforce,pg)", "choice(cartpole,acrobot)", "choice(mlp,nope)"]),
    number,
)
SPACE_KEYS = ["algo.lr", "algo.gamma", "algo.batch_size", "env.num_envs", "seed", "algo", "env"]
sweep_lines = st.builds(
    lambda k, v: f"{k}={v}", st.sampled_from([*SPACE_KEYS, "nope.key"]), sweep_values
)
sweep_settings = st.fixed_dictionaries(
    {"params": st.just({"algo.lr": "interval(0.001, 0.1)"})},
    optional={
        **{
            k: st.one_of(st.just(getattr(SweepSpec(), k)), python_values)
            for k in SWEEP_KEYS
            if k not in ("params", "fixed", "sampler", "pruner")
        },
        "fixed": st.one_of(
            st.dictionaries(st.sampled_from(SPACE_KEYS), number, max_size=2), python_values
        ),
        "sampler": options,
        "pruner": options,
    },
)


@QUICK
@given(settings_=sweep_settings, arguments=st.lists(sweep_lines, max_size=3))
@example(settings_={"n_trials": "abc"}, arguments=[])
@example(settings_={"seeds": "abc"}, arguments=[])
@example(settings_={}, arguments=["algo.lr=interval(1,"])
@example(settings_={"n_trails": 3}, arguments=[])
def test_any_sweep_definition_is_accepted_or_refused_in_one_line(
    hydra_conf: None, settings_: dict[str, Any], arguments: list[str]
) -> None:
    try:
        check_definition(dict(settings_), list(arguments), "config")
        event("accepted")
    except SweepError as exc:
        message = str(exc)
        event(f"refused: {message.split(' ')[0]}")
        assert "\n" not in message and message.strip(), message
        named = [*settings_, *(key_of(a) for a in arguments)]
        for opts in (settings_.get("sampler"), settings_.get("pruner")):
            if isinstance(opts, dict):
                named += [str(k) for k in opts]
        assert any(k in message for k in named) or "search space is empty" in message, (
            settings_,
            arguments,
            message,
        )


# -- the same cases through the real CLI -------------------------------------------------
def cheap(args: list[str]) -> bool:
    """Whether an accepted override keeps the run small enough to train here."""
    config = to_config(compose(config_name="config", overrides=args))
    return (
        config.train.max_steps <= 5000
        and config.env.num_envs <= 64
        and config.train.eval_episodes <= 8
        and config.env.id == "CartPole-v1"
        and max(config.model.hidden, default=0) <= 512
        and config.tracking.uri is None
        and config.tracking.enabled
        and (config.train.target_return is None or not math.isinf(config.train.target_return))
        and config.debug.fail_at_step is None
        and config.debug.nan_at_step is None
    )


@settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(override=overrides)
@example(override="seed=3")
@example(override="tracking.uri='localhost:5000'")
def test_cli_sample_runs_or_refuses_in_one_line(hydra_conf: None, override: str) -> None:
    args = [*FAST, override]
    line = validate(args)
    assume(line is not None or cheap(args))
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))
        proc = subprocess.run(
            [sys.executable, "-m", "pg.run", *args],
            cwd=tmp,
            env=store.env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr
        if line is None:
            assert proc.returncode == 0, proc.stderr
            assert len(store.runs()) == 1
            return
        stderr = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2, proc.stderr
        assert stderr == [f"pg: invalid configuration: {line}"], (stderr, line)
        assert sorted(p.name for p in Path(tmp).iterdir()) == []  # no store, no outputs/
