"""The chapter's improved policy gradient.

Differences from REINFORCE: the batch is ``batch_size`` transitions rather than whole
episodes (updates come sooner), the scale is the ``reward_steps``-step return minus the
running mean of returns (lower variance), and an entropy bonus keeps the policy from
collapsing onto one action too early.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from torch import nn

from pg.core.algos.base import Algorithm, gather
from pg.core.config import AlgoConfig
from pg.core.returns import (
    MeanBaseline,
    discounted_returns_at,
    episode_ready,
    nstep_ready,
    nstep_returns,
)
from pg.core.rollout import Batch, RolloutBuffer


class PolicyGradient(Algorithm):
    def __init__(self, cfg: AlgoConfig, policy: nn.Module) -> None:
        super().__init__(cfg, policy)
        self.baseline = MeanBaseline(cfg.baseline_window) if cfg.baseline else None

    def ready_batch(self, buffer: RolloutBuffer) -> Batch | None:
        n = self.cfg.reward_steps
        live = buffer.view("live")
        # Cheap upper bound first: this runs after every env step.
        if np.count_nonzero(live) < self.cfg.batch_size:
            return None
        dones = buffer.view("dones")
        ready = (nstep_ready(dones, n) if n > 0 else episode_ready(dones)) & live
        if np.count_nonzero(ready) < self.cfg.batch_size:
            return None
        rows, cols = np.nonzero(ready)
        mask = np.zeros_like(live)
        mask[rows[: self.cfg.batch_size], cols[: self.cfg.batch_size]] = True
        rewards = buffer.view("rewards")
        gamma = self.cfg.gamma
        returns = (
            nstep_returns(rewards, dones, gamma, n)
            if n > 0
            else discounted_returns_at(rewards, dones, mask, gamma)
        )
        return gather(buffer, mask, returns)

    def scales(self, returns: NDArray[np.float64]) -> tuple[NDArray[np.float64], float]:
        if self.baseline is None:
            return returns, 0.0
        b = self.baseline(returns)
        return returns - b, float(b.mean())
