"""``hydra/sweeper=pg``: hands ``-m`` runs to :mod:`pg.sweep`.

Hydra imports every module under ``hydra_plugins`` on each start, ``--help`` included, so
this file imports nothing heavy; the engine (Optuna, MLflow, torch) loads in ``sweep``.

The sweep file (``sweep=NAME``, ``sweeps/NAME.yaml``, package ``hydra.sweeper``) is a
default of this sweeper's own node, not of ``conf/config.yaml``: choosing Hydra's basic
sweeper (``hydra/sweeper=basic``) then leaves it out, instead of merging its keys into
Hydra's typed ``BasicSweeperConf``, which refuses them.  The ``_global_`` step in between
keeps the command-line key ``sweep=NAME`` (a default nested under ``hydra.sweeper``
would be overridden as ``sweep@hydra.sweeper.sweep=NAME``).
"""

from __future__ import annotations

from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from pg.sweep.mode import RULE
from pg.sweep.spec import VALIDATE_DEFAULTS

DEFAULT_SWEEP = "cartpole_reinforce"

# A plain node, not a dataclass: pg.sweep.spec checks the keys itself so a typo in a sweep
# file gets one clear message instead of a composition traceback.
ConfigStore.instance().store(
    group="hydra/sweeper",
    name="pg",
    node={
        "defaults": ["_self_", "/pg_sweeper/sweep_file"],
        "_target_": "hydra_plugins.pg_sweeper.pg_sweeper.PgSweeper",
        "mode": "auto",
        "rule": RULE,  # shown by --cfg hydra; not a setting
        # In every sweep file, so hydra.sweeper.validate.top_k=2 needs no "+".
        "validate": dict(VALIDATE_DEFAULTS),
    },
    provider="pg",
)
ConfigStore.instance().store(
    group="pg_sweeper",
    name="sweep_file",
    node={"defaults": [{"/sweep": DEFAULT_SWEEP}]},
    package="_global_",
    provider="pg",
)


class PgSweeper(Sweeper):
    """Grids and Optuna ask/tell searches with pruning, seeds per trial and workers."""

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
