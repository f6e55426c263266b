"""Composing one trial's config from ``conf/`` plus overrides, in any process.

The sweep's own process composes through the Hydra instance ``hydra.main`` set up; a
worker process sets up its own from the same config directory.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from pg.core.config import Config, ConfigError, register_configs, to_config
from pg.experiment import Snapshot
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


def compose_trial(config_name: str, overrides: list[str]) -> Composed:
    """Compose and validate; any problem is a :class:`SweepError` naming the override."""
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from pg.core.checks import check_group_overrides

    try:
        check_group_overrides(overrides)
    except ConfigError as exc:
        raise SweepError(str(exc)) from None
    try:
        full = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        # ValueError: Hydra's own, e.g. a group given a number (algo=interval(0,1))
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SweepError(f"cannot compose a trial config: {first}") from None
    hydra_node = full.hydra
    choices = {str(k): str(v) for k, v in hydra_node.runtime.choices.items() if v is not None}
    with_hydra = OmegaConf.to_yaml(hydra_node)
    cfg = OmegaConf.masked_copy(full, [str(k) for k in full if k != "hydra"])
    assert isinstance(cfg, DictConfig)
    try:
        config = to_config(cfg)
    except ConfigError as exc:
        raise SweepError(f"invalid trial config ({' '.join(overrides)}): {exc}") from None
    snapshot = Snapshot(OmegaConf.to_yaml(cfg, resolve=True), list(overrides), with_hydra, choices)
    return Composed(config, snapshot, cfg)


def with_seed(composed: Composed, seed: int) -> Composed:
    """The same trial for another seed (each seed run gets its own snapshot)."""
    raw = composed.raw.copy()
    raw.seed = seed
    snapshot = Snapshot(
        OmegaConf.to_yaml(raw, resolve=True),
        [*composed.snapshot.overrides, f"seed={seed}"],
        composed.snapshot.hydra_yaml,
        composed.snapshot.choices,
    )
    return Composed(to_config(raw), snapshot, raw)
