"""``hydra/sweeper=pg``: hands ``-m`` runs to :mod:`pg.sweep`.

Hydra imports every module under ``hydra_plugins`` on each start, ``--help`` included, so
this file imports nothing heavy; the engine (Optuna, MLflow, torch) loads in ``sweep``.
"""

from __future__ import annotations

from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

# A plain node, not a dataclass: pg.sweep.spec checks the keys itself so a typo in a sweep
# file gets one clear message instead of a composition traceback.
ConfigStore.instance().store(
    group="hydra/sweeper",
    name="pg",
    node={"_target_": "hydra_plugins.pg_sweeper.pg_sweeper.PgSweeper"},
    provider="pg",
)


class PgSweeper(Sweeper):
    """Optuna ask/tell sweeps with pruning, seeds per trial and worker processes."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self,
        *,
        hydra_context: HydraContext,
        task_function: TaskFunction,
        config: DictConfig,
    ) -> None:
        self.hydra_context = hydra_context
        self.config = config

    def sweep(self, arguments: list[str]) -> Any:
        from pg.sweep.engine import run_from_hydra

        assert self.config is not None
        return run_from_hydra(self.settings, self.config, list(arguments))
