"""Composing one trial's config from ``conf/`` plus overrides, in any process.

The sweep's own process composes through the Hydra instance ``hydra.main`` set up; a
worker process sets up its own from the same config directory.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from pg.core.config import Config, ConfigError, register_configs, to_config
from pg.experiment import Snapshot
from pg.record.config_text import ConfigText
from pg.sweep.spec import SweepError


@dataclass
class Composed:
    config: Config
    snapshot: Snapshot
    raw: DictConfig  # without the hydra node


def ensure_hydra(conf_dir: str) -> None:
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()  # a worker process composes without pg.run's entry point
    if not GlobalHydra.instance().is_initialized():
        initialize_config_dir(config_dir=conf_dir, version_base="1.3")


def compose_trial(config_name: str, overrides: list[str], varying: int = 0) -> Composed:
    """Compose and validate; any problem is a :class:`SweepError` naming the override.

    ``varying``: how many of the last ``overrides`` change from trial to trial (the
    sampled params).  When they only set values (no config group), the others are
    composed once per process and these applied to a copy, as Hydra applies them
    (``tests/test_sweep_units.py`` checks the result is Hydra's own): Hydra's compose
    costs ~0.1-0.2 s, a sizeable part of a short trial.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from pg.core.checks import check_group_overrides

    try:
        check_group_overrides(overrides)
    except ConfigError as exc:
        raise SweepError(str(exc)) from None
    try:
        fixed = overrides[: len(overrides) - varying]
        full = (_set_values(config_name, fixed, overrides[len(fixed) :]) if varying else None) or (
            _compose(config_name, overrides)
        )
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        # ValueError: Hydra's own, e.g. a group given a number (algo=interval(0,1))
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SweepError(f"cannot compose a trial config: {first}") from None
    hydra_node = full.hydra
    choices = {str(k): str(v) for k, v in hydra_node.runtime.choices.items() if v is not None}
    with_hydra = ConfigText.of(hydra_node)  # rendered by the record process, if tracked
    cfg = OmegaConf.masked_copy(full, [str(k) for k in full if k != "hydra"])
    assert isinstance(cfg, DictConfig)
    try:
        config = to_config(cfg)
    except ConfigError as exc:
        raise SweepError(f"invalid trial config ({' '.join(overrides)}): {exc}") from None
    snapshot = Snapshot(ConfigText.of(cfg, resolve=True), list(overrides), with_hydra, choices)
    return Composed(config, snapshot, cfg)


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose

    return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)


_templates: dict[tuple[str, tuple[str, ...]], DictConfig] = {}


def _set_values(config_name: str, fixed: list[str], values: list[str]) -> DictConfig | None:
    """``fixed`` composed once, then ``values`` set as Hydra sets a plain ``key=value``
    override (``OmegaConf.update(..., merge=True)``, then recorded in the hydra node).
    ``None`` when one of them is anything else (a config group, ``+``, ``~``, a package):
    those change what is composed."""
    import copy

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    key = (config_name, tuple(fixed))
    if key not in _templates:
        _templates[key] = _compose(config_name, fixed)
    template = _templates[key]
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(values)
    groups = set(template.hydra.runtime.choices)
    for override in parsed:
        plain = override.type == OverrideType.CHANGE and override.package is None
        if not plain or override.is_sweep_override() or override.key_or_group in groups:
            return None
        if OmegaConf.select(template, override.key_or_group, default=None) is None:
            return None  # not a value Hydra would just replace
    cfg = copy.deepcopy(template)
    for override in parsed:
        try:
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
        except OmegaConfBaseException:
            return None  # Hydra's compose says what is wrong, in its words
        cfg.hydra.overrides.task.append(override.input_line)
    # Hydra's job.override_dirname: every task override but the excluded keys, sorted.
    conf = cfg.hydra.job.config.override_dirname
    task = parser.parse_overrides([str(o) for o in cfg.hydra.overrides.task])
    lines = sorted(str(o.input_line) for o in task if o.key_or_group not in conf.exclude_keys)
    with open_dict(cfg.hydra):
        cfg.hydra.job.override_dirname = conf.item_sep.join(lines).replace("=", conf.kv_sep)
    return cfg


def with_seed(composed: Composed, seed: int) -> Composed:
    """The same trial for another seed (each seed run gets its own snapshot)."""
    raw = composed.raw.copy()
    raw.seed = seed
    snapshot = Snapshot(
        ConfigText.of(raw, resolve=True),
        [*composed.snapshot.overrides, f"seed={seed}"],
        composed.snapshot.hydra_yaml,
        composed.snapshot.choices,
    )
    return Composed(to_config(raw), snapshot, raw)
