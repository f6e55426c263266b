"""A sweep definition: what ``sweeps/NAME.yaml`` (``hydra.sweeper``) may hold, checked.

Everything here is checked before a trial or an MLflow run exists, so a typo costs one
message, not a half-made study.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pg.sweep.mode import MODES, SEED
from pg.sweep.space import SpaceError, distribution, entry_line, parse_overrides

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

SAMPLERS = ("tpe", "random", "cmaes", "qmc", "gp", "grid")
PRUNERS = ("median", "hyperband", "successive_halving", "threshold", "wilcoxon", "none")
DIRECTIONS = ("maximize", "minimize")
BACKENDS = ("local", "ray")
RAY_DEFAULTS: dict[str, Any] = {
    "address": None,  # null: RAY_ADDRESS, else a local Ray instance for this sweep
    "num_cpus": 1,  # per worker
    "num_gpus": 0,  # per worker
    "check_timeout": 10,  # seconds the cluster has to answer before the sweep is refused
}

# hydra.sweeper.validate: off unless a sweep file or the command line sets top_k.
VALIDATE_DEFAULTS: dict[str, int] = {"top_k": 0, "seeds": 3}


class SweepError(ValueError):
    """The sweep definition is invalid; nothing has been started."""


# Every trial, before the sweep file and the command line (which win): no progress bars
# (they would interleave), no GIF (the best trial gets one at the end), no system metrics
# (a sampling thread per trial for a chart nobody compares across twenty trials).
QUIET = ["train.progress=false", "train.video=false", "tracking.system_metrics=false"]


@dataclass
class SweepSpec:
    """The settings of one sweep (keys of a sweep file, under ``hydra.sweeper``)."""

    mode: str = "auto"  # auto | grid | search (see pg.sweep.mode.RULE)
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
    max_retries: int = 1  # times a trial orphaned by a dead process runs again (same params)
    backend: str = "local"  # local: worker processes here | ray: Ray tasks on a cluster
    ray: dict[str, Any] = field(default_factory=lambda: dict(RAY_DEFAULTS))
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "tpe", "seed": 0})
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    params: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    register_model: str | None = None  # Model Registry name for the best trial's policy
    # top_k best configurations trained again on seeds fresh seeds (pg.sweep.validation)
    validate: dict[str, Any] = field(default_factory=lambda: dict(VALIDATE_DEFAULTS))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    """A checked sweep: the spec, the Optuna space and the overrides every trial shares."""

    spec: SweepSpec
    space: dict[str, BaseDistribution]
    base_overrides: list[str]  # QUIET, sweep-file fixed values, then the command line's
    mode: str = "search"  # grid | search
    seeds: list[int] | None = None  # a search's seed=a,b,...: every trial runs all of them

    def seed_list(self, base: int) -> list[int]:
        """The seeds each trial trains: the command line's list, else base, base+1, ..."""
        if self.seeds:
            return list(self.seeds)
        return [base + i for i in range(self.spec.seeds)]

    @property
    def grid(self) -> dict[str, list[Any]]:
        """A grid's axes, in command-line order (every distribution is categorical)."""
        return {k: list(getattr(d, "choices", ())) for k, d in self.space.items()}

    @property
    def n_combinations(self) -> int:
        return math.prod(len(v) for v in self.grid.values())


def build_spec(settings: dict[str, Any]) -> SweepSpec:
    known = set(SweepSpec.__dataclass_fields__)
    unknown = sorted(set(settings) - known - {"_target_", "rule"})
    if unknown:
        raise SweepError(
            f"unknown key{'s' if len(unknown) > 1 else ''} in the sweep definition: "
            f"{', '.join(unknown)} (allowed: {', '.join(sorted(known))})"
        )
    values = {k: v for k, v in settings.items() if k in known}
    for key in ("sampler", "pruner"):
        if isinstance(values.get(key), str):
            values[key] = {"name": values[key]}
    for key in ("sampler", "pruner", "params", "fixed", "ray"):
        if key in values and values[key] is None:
            values[key] = {}
        if key in values and not isinstance(values[key], dict):
            raise SweepError(f"{key} must be a mapping, got {values[key]!r}")
    if "ray" in values:
        _check_ray_keys(values["ray"])
        values["ray"] = {**RAY_DEFAULTS, **values["ray"]}
    if "validate" in values:
        from pg.sweep.validation import validate_settings

        values["validate"] = validate_settings(values["validate"])
    spec = SweepSpec(**values)
    _check_spec(spec)
    return spec


def _model_name(name: object) -> bool:
    """A name the Model Registry accepts: refused here, not after the last trial."""
    if not isinstance(name, str) or not name.strip():
        return False
    return not any(c in name for c in "/:") and name != "." and not name.startswith("..")


def _check_spec(spec: SweepSpec) -> None:
    from pg.sweep.settings import _check_types

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise SweepError(message)

    _check_types(spec)
    need(spec.mode in MODES, f"mode={spec.mode!r} must be one of {', '.join(MODES)}")
    need(
        not (spec.mode == "search" and spec.sampler.get("name") == "grid"),
        "mode=search with sampler grid: a grid is not a search; drop one of them",
    )
    need(
        spec.register_model is None or _model_name(spec.register_model),
        f"register_model={spec.register_model!r} must be null or a model name "
        "(no '/' or ':', not '.' or starting with '..')",
    )
    need(
        spec.n_trials is not None or spec.timeout is not None,
        "set n_trials, timeout or both (a sweep needs an end)",
    )
    need(
        spec.direction in DIRECTIONS,
        f"direction={spec.direction!r} must be one of {', '.join(DIRECTIONS)}",
    )
    need(
        0 <= spec.max_failure_rate <= 1 and not math.isnan(spec.max_failure_rate),
        f"max_failure_rate={spec.max_failure_rate} must be in [0, 1]",
    )
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
    need(
        spec.backend in BACKENDS,
        f"backend={spec.backend!r} must be one of {', '.join(BACKENDS)}",
    )
    _check_ray(spec)


def _check_ray_keys(ray: dict[str, Any]) -> None:
    unknown = sorted(set(ray) - set(RAY_DEFAULTS))
    if unknown:
        raise SweepError(
            f"unknown key{'s' if len(unknown) > 1 else ''} under ray: "
            f"{', '.join(unknown)} (allowed: {', '.join(RAY_DEFAULTS)})"
        )


def _check_ray(spec: SweepSpec) -> None:
    """The ``ray`` block is checked even with ``backend: local``: a typo is a typo."""
    ray = spec.ray
    address = ray["address"]
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise SweepError(f"ray.address={address!r} must be null, 'auto' or host:port of a Ray head")
    for key, low, strict in (("num_cpus", 0, True), ("num_gpus", 0, False)):
        value = ray[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or math.isnan(value) or value < low or (strict and value == low):
            bound = "> 0" if strict else ">= 0"
            raise SweepError(f"ray.{key}={value!r} must be a number {bound}")
    timeout = ray["check_timeout"]
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not timeout > 0:
        raise SweepError(f"ray.check_timeout={timeout!r} must be a number of seconds > 0")


def plan(spec: SweepSpec, arguments: list[str]) -> Plan:
    """Merge the sweep file's space with the command line's.

    A command-line sweep (``algo.lr=0.01,0.001``, ``algo.gamma=interval(0.9,0.99)``)
    replaces the file's entry for that key; a plain command-line value fixes the key
    and removes it from the space.  ``seed`` is never searched: in a search its list
    becomes the seeds of every trial; in a grid it is an axis like any other.
    """
    grid = spec.mode == "grid" or spec.sampler.get("name") == "grid"
    try:
        file_params = parse_overrides([entry_line(k, v) for k, v in spec.params.items()])
        cli = parse_overrides(arguments)
        file_fixed = parse_overrides([entry_line(k, v) for k, v in spec.fixed.items()])
    except SpaceError as exc:
        raise SweepError(str(exc)) from None

    space: dict[str, BaseDistribution] = {}
    base: list[str] = []
    seeds: list[int] | None = None
    for override in file_fixed:
        if override.is_sweep_override():
            raise SweepError(f"fixed: {override.input_line} is a sweep; move it to params")
        base.append(str(override.input_line))
    for override in [*file_params, *cli]:
        key = override.get_key_element()
        if not override.is_sweep_override():
            space.pop(key, None)
            if key == SEED:
                seeds = None
            base.append(str(override.input_line))
        elif key == SEED and not grid:
            seeds = _seed_values(override)
            space.pop(key, None)
        else:
            space[key] = _grid_axis(override) if grid else _distribution(override)
    if seeds is not None and len(seeds) == 1:
        base.append(f"{SEED}={seeds[0]}")
        seeds = None
    if grid and SEED in space and spec.seeds != 1:
        raise SweepError(
            f"seed is an axis of this grid and seeds={spec.seeds} gives each combination "
            "more seeds: use one of them"
        )
    if seeds is not None and spec.seeds != 1:
        raise SweepError(
            f"seed={','.join(map(str, seeds))} and seeds={spec.seeds} both set a trial's "
            "seeds: give a seed list or hydra.sweeper.seeds, not both"
        )
    if not space:
        raise SweepError(
            "the search space is empty: give params in the sweep file or a sweep on the "
            "command line (algo.lr=0.01,0.001 or algo.lr='interval(1e-4,1e-2)')"
        )
    if spec.objective:
        base.insert(0, f"train.objective={spec.objective}")
    # Quiet in every process that trains the sweep's trials (its own, a worker, a Ray task).
    return Plan(spec, space, [*QUIET, *base], "grid" if grid else "search", seeds)


def _seed_values(override: Any) -> list[int]:
    """``seed=0,1,2`` or ``seed=range(0,3)``: the seeds each trial runs on."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    dist = _distribution(override)
    if isinstance(dist, IntDistribution) and not dist.log:
        return list(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, CategoricalDistribution):
        values = [v for v in dist.choices if isinstance(v, int) and not isinstance(v, bool)]
        if len(values) == len(dist.choices):
            return values
    raise SweepError(
        f"{override.input_line}: seeds are not searched; give integers "
        "(seed=0,1,2 or seed='range(0,3)')"
    )


def _grid_axis(override: Any) -> BaseDistribution:
    """A grid axis: a list, ``choice(...)`` or an int ``range(...)`` (expanded)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    dist = _distribution(override)
    if isinstance(dist, CategoricalDistribution):
        return dist
    if isinstance(dist, IntDistribution) and not dist.log:
        return CategoricalDistribution(list(range(dist.low, dist.high + 1, dist.step)))
    raise SweepError(
        f"{override.input_line}: a grid needs a finite list of values "
        "(a=1,2,3, choice(...) or range(...)); for a search set hydra.sweeper.mode=search"
    )


def _distribution(override: Any) -> BaseDistribution:
    try:
        return distribution(override)
    except SpaceError as exc:
        raise SweepError(str(exc)) from None
