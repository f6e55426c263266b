"""Vanilla REINFORCE: whole episodes, scale = discounted return Q."""

from __future__ import annotations

import numpy as np

from pg.core.algos.base import Algorithm, gather
from pg.core.returns import discounted_returns_at
from pg.core.rollout import Batch, RolloutBuffer


class Reinforce(Algorithm):
    """``batch_size`` finished episodes per update, ``loss = -mean(Q * log pi)``.

    Episodes are taken in the order they finished; ones that finish together beyond
    ``batch_size`` wait for the next update, so every update sees exactly
    ``batch_size`` episodes.
    """

    def ready_batch(self, buffer: RolloutBuffer) -> Batch | None:
        if buffer.pending_episodes < self.cfg.batch_size:
            return None
        live = buffer.view("live")
        dones = buffer.view("dones")
        ends_t, ends_i = np.nonzero(dones & live)  # row-major: ordered by finishing time
        mask = np.zeros_like(live)
        for t, i in zip(ends_t[: self.cfg.batch_size], ends_i[: self.cfg.batch_size], strict=True):
            mask[: t + 1, i] |= live[: t + 1, i]
        returns = discounted_returns_at(buffer.view("rewards"), dones, mask, self.cfg.gamma)
        return gather(buffer, mask, returns)
