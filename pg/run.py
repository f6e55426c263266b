"""``python -m pg.run``: one tracked training run (``-m``: a sweep).

Hydra composes ``conf/``; the schema in :mod:`pg.core.config` validates it before anything
is created; :mod:`pg.experiment` does the run.  Exit codes: 0 done, 2 invalid
configuration, 3 the tracking store does not answer (nothing trained).
"""

from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from pg.core.config import ConfigError, register_configs, to_config


def _main(cfg: DictConfig) -> float:
    try:
        config = to_config(cfg)
    except ConfigError as exc:
        print(f"pg: invalid configuration: {exc}", file=sys.stderr)
        sys.exit(2)
    from pg.experiment import Snapshot, execute, summary
    from pg.record.store import StoreUnavailableError, check_reachable, resolve_store

    try:
        if config.tracking.enabled:
            # Before torch and matplotlib load: a dead store is reported in seconds.
            check_reachable(resolve_store(config.tracking), config.tracking.check_timeout)
        outcome = execute(config, Snapshot.from_hydra(cfg))
    except StoreUnavailableError as exc:
        print(f"pg: {exc}; nothing was trained", file=sys.stderr)
        sys.exit(3)
    for line in summary(outcome, config):
        print(f"pg: {line}")
    return outcome.objective


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> Any:
    return _main(cfg)


def main() -> Any:
    # The typed schema must be in Hydra's ConfigStore before Hydra composes.
    register_configs()
    return _hydra_main()


if __name__ == "__main__":
    main()
