"""A sweep definition: what ``sweeps/NAME.yaml`` (``hydra.sweeper``) may hold, checked.

Everything here is checked before a trial or an MLflow run exists, so a typo costs one
message, not a half-made study.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pg.sweep.space import SpaceError, distribution, entry_line, parse_overrides

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

SAMPLERS = ("tpe", "random", "cmaes", "qmc")
PRUNERS = ("median", "hyperband", "none")
DIRECTIONS = ("maximize", "minimize")


class SweepError(ValueError):
    """The sweep definition is invalid; nothing has been started."""


# Every trial, before the sweep file and the command line (which win): no progress bars
# (they would interleave), no GIF (the best trial gets one at the end), no system metrics
# (a sampling thread per trial for a chart nobody compares across twenty trials).
QUIET = ["train.progress=false", "train.video=false", "tracking.system_metrics=false"]


@dataclass
class SweepSpec:
    """The settings of one sweep (keys of a sweep file, under ``hydra.sweeper``)."""

    study_name: str = "cartpole_reinforce"
    storage: str | None = None  # null: sqlite file next to the MLflow store
    n_trials: int | None = 20  # total for the study, over every process and machine
    timeout: float | None = None  # seconds this invocation keeps starting trials
    workers: int = 1
    seeds: int = 1
    direction: str = "maximize"
    objective: str | None = None  # sets train.objective
    max_failure_rate: float = 0.5
    heartbeat_interval: int = 10  # seconds between a running trial's heartbeats
    grace_period: int = 60  # a RUNNING trial silent this long belonged to a dead process
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "tpe", "seed": 0})
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    params: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    register_model: str | None = None  # Model Registry name for the best trial's policy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    """A checked sweep: the spec, the Optuna space and the overrides every trial shares."""

    spec: SweepSpec
    space: dict[str, BaseDistribution]
    base_overrides: list[str]  # sweep-file fixed values, then the command line's own


def build_spec(settings: dict[str, Any]) -> SweepSpec:
    known = set(SweepSpec.__dataclass_fields__)
    unknown = sorted(set(settings) - known - {"_target_"})
    if unknown:
        raise SweepError(
            f"unknown key{'s' if len(unknown) > 1 else ''} in the sweep definition: "
            f"{', '.join(unknown)} (allowed: {', '.join(sorted(known))})"
        )
    values = {k: v for k, v in settings.items() if k in known}
    for key in ("sampler", "pruner"):
        if isinstance(values.get(key), str):
            values[key] = {"name": values[key]}
    for key in ("sampler", "pruner", "params", "fixed"):
        if key in values and values[key] is None:
            values[key] = {}
        if key in values and not isinstance(values[key], dict):
            raise SweepError(f"{key} must be a mapping, got {values[key]!r}")
    spec = SweepSpec(**values)
    _check_spec(spec)
    return spec


def _check_spec(spec: SweepSpec) -> None:
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise SweepError(message)

    need(bool(spec.study_name), "study_name must be a non-empty name")
    need(
        spec.register_model is None
        or (isinstance(spec.register_model, str) and spec.register_model.strip() != ""),
        f"register_model={spec.register_model!r} must be null or a model name",
    )
    need(
        spec.n_trials is not None or spec.timeout is not None,
        "set n_trials, timeout or both (a sweep needs an end)",
    )
    need(spec.n_trials is None or spec.n_trials >= 1, f"n_trials={spec.n_trials} must be >= 1")
    need(spec.timeout is None or spec.timeout > 0, f"timeout={spec.timeout} must be > 0 seconds")
    need(spec.workers >= 1, f"workers={spec.workers} must be >= 1")
    need(spec.seeds >= 1, f"seeds={spec.seeds} must be >= 1")
    need(
        spec.direction in DIRECTIONS,
        f"direction={spec.direction!r} must be one of {', '.join(DIRECTIONS)}",
    )
    need(
        0 <= spec.max_failure_rate <= 1 and not math.isnan(spec.max_failure_rate),
        f"max_failure_rate={spec.max_failure_rate} must be in [0, 1]",
    )
    need(spec.heartbeat_interval >= 1, "heartbeat_interval must be >= 1 second")
    need(
        spec.grace_period > spec.heartbeat_interval,
        "grace_period must be longer than heartbeat_interval",
    )
    sampler = spec.sampler.get("name", "tpe")
    need(
        sampler in SAMPLERS,
        f"unknown sampler {sampler!r}: use one of {', '.join(SAMPLERS)}",
    )
    pruner = spec.pruner.get("name", "median")
    need(pruner in PRUNERS, f"unknown pruner {pruner!r}: use one of {', '.join(PRUNERS)}")


def plan(spec: SweepSpec, arguments: list[str]) -> Plan:
    """Merge the sweep file's space with the command line's.

    A command-line sweep (``algo.lr=0.01,0.001``, ``algo.gamma=interval(0.9,0.99)``)
    replaces the file's entry for that key; a plain command-line value fixes the key
    and removes it from the space.
    """
    try:
        file_params = parse_overrides([entry_line(k, v) for k, v in spec.params.items()])
        cli = parse_overrides(arguments)
        file_fixed = parse_overrides([entry_line(k, v) for k, v in spec.fixed.items()])
    except SpaceError as exc:
        raise SweepError(str(exc)) from None

    space: dict[str, BaseDistribution] = {}
    base: list[str] = []
    for override in file_fixed:
        if override.is_sweep_override():
            raise SweepError(f"fixed: {override.input_line} is a sweep; move it to params")
        base.append(str(override.input_line))
    for override in file_params:
        key = override.get_key_element()
        if not override.is_sweep_override():
            base.append(str(override.input_line))
            continue
        space[key] = _distribution(override)
    for override in cli:
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = _distribution(override)
        else:
            space.pop(key, None)
            base.append(str(override.input_line))
    if not space:
        raise SweepError(
            "the search space is empty: give params in the sweep file or a sweep on the "
            "command line (algo.lr=0.01,0.001 or algo.lr='interval(1e-4,1e-2)')"
        )
    if spec.objective:
        base.insert(0, f"train.objective={spec.objective}")
    return Plan(spec, space, base)


def _distribution(override: Any) -> BaseDistribution:
    try:
        return distribution(override)
    except SpaceError as exc:
        raise SweepError(str(exc)) from None
