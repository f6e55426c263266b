"""Every config group composes through Hydra's Compose API; every bad value names its key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pg.core.config import Config, ConfigError, register_configs, to_config
from pg.experiment import Snapshot
from tests.conftest import ROOT

CONF = str(ROOT / "conf")


@pytest.fixture(scope="module", autouse=True)
def hydra_conf() -> Iterator[None]:
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        yield


def composed(*overrides: str) -> DictConfig:
    return compose(config_name="config", overrides=list(overrides))


def test_defaults() -> None:
    cfg = to_config(composed())
    assert isinstance(cfg, Config)
    assert (cfg.env.id, cfg.algo.name, cfg.model.name) == ("CartPole-v1", "reinforce", "mlp")
    assert cfg.train.target_return == 475.0  # interpolated from the env
    assert cfg.tracking.uri is None


@pytest.mark.parametrize(
    ("override", "check"),
    [
        ("env=cartpole", lambda c: c.env.id == "CartPole-v1" and c.env.target_return == 475),
        ("env=acrobot", lambda c: c.env.id == "Acrobot-v1" and c.train.target_return == -100),
        ("env=lunarlander", lambda c: c.env.id == "LunarLander-v3"),
        ("algo=reinforce", lambda c: c.algo.name == "reinforce" and c.algo.baseline is False),
        ("algo=pg", lambda c: c.algo.name == "pg" and c.algo.baseline and c.algo.reward_steps > 0),
        ("model=mlp", lambda c: c.model.name == "mlp"),
        ("model=conv", lambda c: c.model.name == "conv"),
        ("tracking=local", lambda c: c.tracking.uri is None and c.tracking.enabled),
        ("tracking=server", lambda c: c.tracking.uri.startswith("http")),
        ("+debug=fast", lambda c: c.train.max_steps == 5000 and c.train.eval_every == 0),
    ],
)
def test_every_group_option_composes_and_validates(override: str, check: object) -> None:
    cfg = to_config(composed(override))
    assert callable(check) and check(cfg)


def test_pong_experiment_composes_with_the_conv_net() -> None:
    cfg = to_config(composed("+experiment=pong"))
    assert cfg.env.atari and cfg.env.id == "PongNoFrameskip-v4"
    assert cfg.model.name == "conv"
    assert cfg.algo.name == "pg" and cfg.algo.clip_grad == 0.1 and cfg.algo.lr == 0.0001


def test_overlays_stack_and_later_one_wins() -> None:
    cfg = to_config(composed("+experiment=pong", "+debug=fast"))
    assert cfg.env.name == "pong" and cfg.train.max_steps == 5000


def test_pong_env_without_conv_model_is_rejected() -> None:
    with pytest.raises(ConfigError, match="model"):
        to_config(composed("env=pong"))


def test_public_knobs_reach_the_typed_config() -> None:
    cfg = to_config(
        composed(
            "seed=7",
            "algo=pg",
            "algo.lr=0.003",
            "algo.gamma=1.0",
            "algo.batch_size=32",
            "algo.entropy_beta=0.1",
            "algo.reward_steps=4",
            "env.num_envs=3",
            "train.max_steps=1234",
            "train.target_return=null",
            "tracking.uri=sqlite:///x.db",
            "tracking.experiment=other",
        )
    )
    assert cfg.seed == 7
    assert (cfg.algo.lr, cfg.algo.gamma, cfg.algo.batch_size) == (0.003, 1.0, 32)
    assert (cfg.algo.entropy_beta, cfg.algo.reward_steps) == (0.1, 4)
    assert cfg.env.num_envs == 3 and cfg.train.max_steps == 1234
    assert cfg.train.target_return is None
    assert (cfg.tracking.uri, cfg.tracking.experiment) == ("sqlite:///x.db", "other")


# Invalid values: (override, key the message must name, words from the allowed range).
INVALID = [
    ("algo.lr=abc", "algo.lr", ""),
    ("algo.foo=1", "algo.foo", ""),
    ("algo.lr=0", "algo.lr", "(0, inf)"),
    ("algo.lr=-0.1", "algo.lr", "(0, inf)"),
    ("algo.gamma=0", "algo.gamma", "(0, 1]"),
    ("algo.gamma=1.5", "algo.gamma", "(0, 1]"),
    ("algo.batch_size=0", "algo.batch_size", ">= 1"),
    ("algo.batch_size=2.5", "algo.batch_size", ""),
    ("env=nope", "env", "cartpole"),
    ("env.id=Nope-v0", "env.id", "registered gymnasium id"),
    ("algo=bogus", "algo", "reinforce"),
    ("algo.name=bogus", "algo.name", "reinforce, pg"),
    ("env.num_envs=0", "env.num_envs", ">= 1"),
    ("seed=-1", "seed", "an integer in [0, "),
    ("algo.entropy_beta=0.1", "algo.entropy_beta", "algo=pg"),  # reinforce has no bonus
]


def validation_error(*overrides: str) -> str:
    """The message a user would see: from composing (types, keys) or from the schema."""
    try:
        to_config(composed(*overrides))
    except (ConfigError, HydraException, OmegaConfBaseException) as exc:
        return str(exc)
    pytest.fail(f"{overrides} was accepted")


@pytest.mark.parametrize(("override", "key", "allowed"), INVALID)
def test_invalid_value_is_rejected_naming_the_key(override: str, key: str, allowed: str) -> None:
    message = validation_error(override)
    assert key in message
    assert allowed in message


def test_gamma_one_is_allowed() -> None:
    assert to_config(composed("algo.gamma=1.0")).algo.gamma == 1.0
    assert to_config(composed("algo.gamma=1")).algo.gamma == 1.0


@pytest.mark.parametrize(
    ("tree", "key"),
    [
        ({"algo": {"lr": "abc"}}, "algo.lr"),
        ({"algo": {"foo": 1}}, "algo.foo"),
        ({"algo": {"lr": 0.0}}, "algo.lr"),
        ({"algo": {"gamma": 0.0}}, "algo.gamma"),
        ({"algo": {"gamma": 1.5}}, "algo.gamma"),
        ({"algo": {"batch_size": 0}}, "algo.batch_size"),
        ({"algo": {"name": "ppo"}}, "algo.name"),
        ({"env": {"id": "Nope-v0"}}, "env.id"),
        ({"train": {"objective": "nope"}}, "train.objective"),
    ],
)
def test_to_config_raises_config_error_naming_the_key(tree: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        to_config(tree)
    assert key in str(info.value)


def test_to_config_accepts_a_plain_dict_and_fills_defaults() -> None:
    cfg = to_config({"seed": 3, "algo": {"lr": 0.5}})
    assert cfg.seed == 3 and cfg.algo.lr == 0.5 and cfg.algo.gamma == 0.99


def test_the_schema_built_once_is_never_changed_by_a_config() -> None:
    """to_config merges every config into one schema built per process: each result is
    what a schema built for it alone gives, and none leaks into the next."""
    first = to_config({"seed": 3, "algo": {"lr": 0.5, "batch_size": 7}})
    with pytest.raises(ConfigError):
        to_config({"algo": {"gamma": 2.0}})  # fails half-way through the merge
    fresh = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), {"seed": 4}))
    assert to_config({"seed": 4}) == fresh
    assert first.algo.lr == 0.5 and to_config({}).algo.lr == Config().algo.lr
    for overrides in (("algo=pg", "seed=5"), ("env=acrobot",), ("+experiment=pong",)):
        tree = composed(*overrides)
        alone = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), tree))
        assert to_config(tree) == alone


def test_snapshot_round_trips_through_to_config() -> None:
    cfg = to_config(composed("algo=pg", "seed=5"))
    snap = Snapshot.from_config(cfg, ["algo=pg", "seed=5"])
    assert isinstance(snap.config_yaml, str)
    tree = OmegaConf.create(snap.config_yaml)
    assert isinstance(tree, DictConfig)
    again = to_config(tree)
    assert again == cfg
