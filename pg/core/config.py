"""Typed schema of every setting, registered in Hydra's ConfigStore.

The YAML files under ``conf/`` only fill in values; the dataclasses here decide what keys
exist and what types they have (OmegaConf rejects unknown keys and wrong types while
composing) and ``__post_init__`` checks ranges when the composed config is turned into
objects with :func:`to_config`.  That happens before any environment, network or MLflow
run exists, so a bad value can never leave a half-made run behind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omegaconf import DictConfig

from pg.core.checks import (
    INT_MAX,
    NAME_MAX,
    SEED_MAX,
    TEXT_MAX,
    THREADS_MAX,
    TIMEOUT_MAX,
    _check,
    _finite,
    _name,
    _shown,
)
from pg.core.checks import (
    ConfigError as ConfigError,  # re-exported: the error every caller catches
)

ALGOS = ("reinforce", "pg")
MODELS = ("mlp", "conv")


@dataclass
class EnvConfig:
    """Which gymnasium environment to train on and how to vectorize it."""

    name: str = "cartpole"  # label used in run names and tags
    id: str = "CartPole-v1"  # gymnasium id
    num_envs: int = 32  # environments stepped together by one vector env
    target_return: float | None = 475.0  # the env's "solved" mean-100 return
    atari: bool = False  # AtariPreprocessing + frame stack (pixels in, conv net)
    frame_stack: int = 4
    max_episode_steps: int | None = None  # override the registered time limit

    def __post_init__(self) -> None:
        _name(False, "env.name", self.name)
        _check(self.num_envs >= 1, "env.num_envs", self.num_envs, "an integer >= 1")
        _check(self.frame_stack >= 1, "env.frame_stack", self.frame_stack, "an integer >= 1")
        _check(
            _finite(self.target_return),
            "env.target_return",
            self.target_return,
            "null or a finite number",
        )
        if self.max_episode_steps is not None:
            _check(
                self.max_episode_steps >= 1,
                "env.max_episode_steps",
                self.max_episode_steps,
                "null or an integer >= 1",
            )
        _check(
            len(self.id) <= NAME_MAX and self.id.isprintable(),
            "env.id",
            self.id,
            "a registered gymnasium id (e.g. CartPole-v1, Acrobot-v1, LunarLander-v3)",
        )
        _check(
            self.id in SHIPPED_ENV_IDS or _registered(self.id),
            "env.id",
            self.id,
            "a registered gymnasium id (e.g. CartPole-v1, Acrobot-v1, LunarLander-v3)",
        )


# The ids conf/env/ ships: accepted without importing gymnasium, so validating a config
# (every sweep trial, every bad-input check) stays light.  Others are looked up.
SHIPPED_ENV_IDS = frozenset({"CartPole-v1", "Acrobot-v1", "LunarLander-v3", "PongNoFrameskip-v4"})


def _registered(env_id: str) -> bool:
    from pg.core.envs import known_env_ids

    return env_id in known_env_ids()


@dataclass
class AlgoConfig:
    """Hyper-parameters of the policy-gradient algorithm.

    ``reinforce`` is vanilla REINFORCE: ``batch_size`` whole episodes per update and the
    full discounted return as the scale.  ``pg`` is the improved policy gradient:
    ``batch_size`` transitions per update, ``reward_steps``-step returns minus a running
    mean baseline, and an entropy bonus.
    """

    name: str = "reinforce"
    lr: float = 0.02
    gamma: float = 0.99
    batch_size: int = 16  # episodes (reinforce) or transitions (pg) per update
    entropy_beta: float = 0.0  # weight of the entropy bonus (pg only)
    reward_steps: int = 0  # N of the N-step return; 0 = until episode end
    baseline: bool = False  # subtract the running mean return (pg)
    baseline_window: int | None = None  # null = mean over all returns seen so far
    clip_grad: float | None = None  # max L2 norm of the gradient; null = no clipping

    def __post_init__(self) -> None:
        _check(self.name in ALGOS, "algo.name", self.name, f"one of {', '.join(ALGOS)}")
        _check(math.isfinite(self.lr) and self.lr > 0, "algo.lr", self.lr, "a number in (0, inf)")
        _check(0 < self.gamma <= 1, "algo.gamma", self.gamma, "a number in (0, 1]")
        _check(self.batch_size >= 1, "algo.batch_size", self.batch_size, "an integer >= 1")
        _check(
            math.isfinite(self.entropy_beta) and self.entropy_beta >= 0,
            "algo.entropy_beta",
            self.entropy_beta,
            "a finite number >= 0",
        )
        _check(self.reward_steps >= 0, "algo.reward_steps", self.reward_steps, "an integer >= 0")
        if self.baseline_window is not None:
            _check(
                self.baseline_window >= 1,
                "algo.baseline_window",
                self.baseline_window,
                "null or an integer >= 1",
            )
        if self.clip_grad is not None:
            _check(
                math.isfinite(self.clip_grad) and self.clip_grad > 0,
                "algo.clip_grad",
                self.clip_grad,
                "null or a finite number > 0",
            )
        if self.name == "reinforce":
            # Vanilla REINFORCE has none of the improvements; accepting them silently
            # would make a sweep over them measure nothing.
            for key, value, default in (
                ("entropy_beta", self.entropy_beta, 0.0),
                ("reward_steps", self.reward_steps, 0),
                ("baseline", self.baseline, False),
            ):
                _check(
                    value == default,
                    f"algo.{key}",
                    value,
                    f"{default!r} with algo=reinforce (use algo=pg for this knob)",
                )


@dataclass
class ModelConfig:
    """The policy network: an MLP for vector observations, Lapan's conv net for pixels."""

    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [128])

    def __post_init__(self) -> None:
        _check(self.name in MODELS, "model.name", self.name, f"one of {', '.join(MODELS)}")
        _check(
            all(h >= 1 for h in self.hidden),
            "model.hidden",
            self.hidden,
            "a list of integers >= 1",
        )
        _check(
            self.name != "mlp" or len(self.hidden) >= 1,
            "model.hidden",
            self.hidden,
            "at least one hidden layer for the MLP",
        )


@dataclass
class TrainConfig:
    """Budget, stopping rule and the loop's bookkeeping."""

    max_steps: int = 300_000  # environment-step budget
    target_return: float | None = "${env.target_return}"  # type: ignore[assignment]
    eval_every: int = 50_000  # env steps between greedy evaluations (0 = only at the end)
    eval_episodes: int = 5
    log_every: int = 2_000  # env steps between logged update statistics
    report_every: int = 10_000  # env steps between objective reports (pruning)
    objective: str = "rollout/ep_return_100"  # metric returned to a sweeper
    torch_threads: int = 1  # small nets on few cores: more threads only contend
    progress: bool = True  # live progress display (only shown on a terminal)
    video: bool = True  # a GIF of one greedy episode after training (sweeps: best trial only)

    def __post_init__(self) -> None:
        _check(self.max_steps >= 1, "train.max_steps", self.max_steps, "an integer >= 1")
        _check(self.eval_every >= 0, "train.eval_every", self.eval_every, "an integer >= 0")
        _check(
            self.eval_episodes >= 1, "train.eval_episodes", self.eval_episodes, "an integer >= 1"
        )
        _check(self.log_every >= 1, "train.log_every", self.log_every, "an integer >= 1")
        _check(self.report_every >= 1, "train.report_every", self.report_every, "an integer >= 1")
        _check(
            1 <= self.torch_threads <= THREADS_MAX,
            "train.torch_threads",
            self.torch_threads,
            f"an integer in [1, {THREADS_MAX}]",
        )
        _check(
            _finite(self.target_return),
            "train.target_return",
            self.target_return,
            "null or a finite number",
        )
        from pg.core.metrics import OBJECTIVES

        _check(
            self.objective in OBJECTIVES,
            "train.objective",
            self.objective,
            f"one of {', '.join(OBJECTIVES)}",
        )


@dataclass
class TrackingConfig:
    """Where the MLflow run goes.

    ``uri: null`` means the embedded store: ``mlruns/mlflow.db`` with artifacts in
    ``mlruns/artifacts`` under the project directory (``$PG_HOME`` if set).
    """

    enabled: bool = True
    uri: str | None = None
    artifact_root: str | None = None  # only used when pg creates the experiment
    experiment: str = "pg"
    run_name: str | None = None
    check_timeout: float = 10.0  # seconds to wait for a server before giving up
    system_metrics: bool = True  # MLflow's CPU/memory sampling (sweeps turn it off per trial)

    def __post_init__(self) -> None:
        _name(False, "tracking.experiment", self.experiment)
        _name(False, "tracking.run_name", self.run_name)
        _check(
            0 < self.check_timeout <= TIMEOUT_MAX,
            "tracking.check_timeout",
            self.check_timeout,
            f"a number of seconds in (0, {TIMEOUT_MAX:g}]",
        )
        # The forms a URI may take are the record layer's rule (pg.record.store); here
        # only what any text must be, shown without the value (it may hold a password).
        for key, text in (
            ("tracking.uri", self.uri),
            ("tracking.artifact_root", self.artifact_root),
        ):
            if text is not None and (len(text) > TEXT_MAX or not text.isprintable()):
                raise ConfigError(
                    f"{key} ({len(text)} characters) is not allowed: printable text of at "
                    f"most {TEXT_MAX} characters"
                )


@dataclass
class DebugConfig:
    """Fault injection, so failure handling can be exercised from the command line."""

    fail_at_step: int | None = None  # raise a RuntimeError once this many env steps ran
    nan_at_step: int | None = None  # make the loss NaN once this many env steps ran

    def __post_init__(self) -> None:
        for key in ("fail_at_step", "nan_at_step"):
            value = getattr(self, key)
            _check(value is None or value >= 0, f"debug.{key}", value, "null or an integer >= 0")


@dataclass
class Config:
    seed: int = 0
    env: EnvConfig = field(default_factory=EnvConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)

    def __post_init__(self) -> None:
        _check(0 <= self.seed <= SEED_MAX, "seed", self.seed, f"an integer in [0, {SEED_MAX}]")
        _integers_fit(self)
        if self.env.atari:
            _check(self.model.name == "conv", "model", self.model.name, "conv for Atari envs")
        from pg.core.budget import too_big

        reason = too_big(self)
        if reason is not None:
            raise ConfigError(reason)


def _integers_fit(cfg: Config) -> None:
    """Every integer fits in 64 bits: beyond that NumPy and torch fail mid-run."""
    for group in (cfg.env, cfg.algo, cfg.model, cfg.train, cfg.debug):
        prefix = type(group).__name__.removesuffix("Config").lower()
        for key, value in vars(group).items():
            values = value if isinstance(value, list) else [value]
            for v in values:
                if isinstance(v, int) and not isinstance(v, bool) and abs(v) > INT_MAX:
                    raise ConfigError(
                        f"{prefix}.{key}={_shown(value)} is not allowed: an integer of at "
                        f"most {INT_MAX} (64 bits)"
                    )


def register_configs() -> None:
    """Make the schema known to Hydra so ``conf/config.yaml`` can extend it."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)


def to_config(cfg: DictConfig | dict[str, Any]) -> Config:
    """Turn a composed config into typed objects, checking every range.

    Raises :class:`ConfigError` with the offending key for any invalid value, whether
    the problem is a type (caught by OmegaConf) or a range (caught by the dataclasses).
    """
    # Imported here: the record process unpickles these dataclasses without OmegaConf
    # (~0.3 s of its start, on the critical path of a tracked run).
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        if not isinstance(cfg, DictConfig):
            cfg = OmegaConf.create(cfg)
        merged = OmegaConf.merge(_schema(), cfg)
        obj = OmegaConf.to_object(merged)
    except ConfigError:
        raise
    except OmegaConfBaseException as exc:
        raise ConfigError(_omegaconf_message(exc)) from None
    except ValueError as exc:  # raised by __post_init__ through OmegaConf
        raise ConfigError(str(exc)) from None
    assert isinstance(obj, Config)
    return obj


@cache
def _schema() -> DictConfig:
    """The schema as OmegaConf's typed config, built once per process: building it walks
    every dataclass and its type hints (~6 ms), a fifth of composing a sweep trial's
    config. ``OmegaConf.merge`` copies its first argument, so this one is never changed."""
    from omegaconf import OmegaConf

    schema: DictConfig = OmegaConf.structured(Config)
    return schema


def _omegaconf_message(exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    key = getattr(exc, "full_key", None)
    return f"{key}: {first}" if key else first
