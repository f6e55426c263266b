"""Algorithm registry: config names map to classes (no import strings from YAML)."""

from __future__ import annotations

from torch import nn

from pg.core.algos.base import Algorithm, DivergenceError
from pg.core.algos.pg import PolicyGradient
from pg.core.algos.reinforce import Reinforce
from pg.core.config import AlgoConfig

ALGORITHMS: dict[str, type[Algorithm]] = {"reinforce": Reinforce, "pg": PolicyGradient}


def make_algorithm(cfg: AlgoConfig, policy: nn.Module) -> Algorithm:
    return ALGORITHMS[cfg.name](cfg, policy)


__all__ = ["ALGORITHMS", "Algorithm", "DivergenceError", "make_algorithm"]
