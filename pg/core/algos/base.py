"""What every policy-gradient algorithm shares: the loss and the diagnostics of an update.

An algorithm decides two things: when the buffer holds a batch (and which rows), and the
scale that multiplies :math:`\\log \\pi(a|s)`.  The loss is then the same for all:

    L = -mean(scale * log pi(a|s)) - entropy_beta * H(pi)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from pg.core import metrics as m
from pg.core.adam import Adam
from pg.core.config import AlgoConfig
from pg.core.diagnostics import entropy, grad_stats, kl_divergence
from pg.core.rollout import Batch, RolloutBuffer


class DivergenceError(RuntimeError):
    """The loss stopped being a finite number; training cannot recover from that."""


class Algorithm(ABC):
    def __init__(self, cfg: AlgoConfig, policy: nn.Module) -> None:
        self.cfg = cfg
        self.policy = policy
        self.params = list(policy.parameters())  # walking the modules per update cost ~25 us
        self.optimizer = Adam(self.params, lr=cfg.lr)

    @abstractmethod
    def ready_batch(self, buffer: RolloutBuffer) -> Batch | None:
        """Take the next batch out of ``buffer`` if it holds one, else ``None``."""

    def scales(self, returns: NDArray[np.float64]) -> tuple[NDArray[np.float64], float]:
        """Scale per transition and the mean baseline subtracted (0 without one)."""
        return returns, 0.0

    def update(self, batch: Batch) -> dict[str, float]:
        scales, baseline = self.scales(batch.returns)
        scale_t = torch.as_tensor(scales, dtype=torch.float32)
        logits = self.policy(batch.obs)
        log_p = torch.log_softmax(logits, dim=-1)
        log_p_a = log_p.gather(1, batch.actions.unsqueeze(1)).squeeze(1)
        policy_loss = -(scale_t * log_p_a).mean()
        ent = entropy(logits)
        entropy_loss = -self.cfg.entropy_beta * ent
        total = policy_loss + entropy_loss
        total_value = float(total.detach())
        if not math.isfinite(total_value):
            raise DivergenceError(f"loss is {total_value} (policy {float(policy_loss.detach())})")

        self.optimizer.zero_grad()
        total.backward()  # type: ignore[no-untyped-call]
        grads = grad_stats(self.params)
        if self.cfg.clip_grad is not None:
            nn.utils.clip_grad_norm_(self.params, self.cfg.clip_grad)
        self.optimizer.step()

        with torch.no_grad():
            kl = kl_divergence(logits.detach(), self.policy(batch.obs))
        return {
            m.LOSS_POLICY: float(policy_loss.detach()),
            m.LOSS_ENTROPY: float(entropy_loss.detach()),
            m.LOSS_TOTAL: total_value,
            m.ENTROPY: float(ent.detach()),
            m.KL: float(kl),
            m.GRAD_L2: grads["grad_l2"],
            m.GRAD_MAX: grads["grad_max"],
            m.GRAD_VAR: grads["grad_var"],
            m.BASELINE: baseline,
            m.BATCH_SCALE: float(np.mean(scales)),
        }


def gather(buffer: RolloutBuffer, mask: NDArray[np.bool_], returns: NDArray[np.float64]) -> Batch:
    """Rows of ``mask`` (in time, then env order) as tensors, consumed from the buffer."""
    obs = torch.as_tensor(buffer.view("obs")[mask])
    actions = torch.as_tensor(buffer.view("actions")[mask])
    episodes = int(np.count_nonzero(mask & buffer.view("dones")))
    batch = Batch(obs, actions, returns[mask], episodes)
    buffer.consume(mask)
    return batch
