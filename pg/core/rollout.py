"""Collecting experience from a vector env into a time-major buffer.

The buffer keeps rows ``[t, env]`` until an algorithm consumes them, so partial episodes
survive across updates and returns can look forward in time without copying.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from pg.core.policy import make_actor


class Batch(NamedTuple):
    """Transitions for one update; ``returns`` is the scale before any baseline."""

    obs: torch.Tensor
    actions: torch.Tensor
    returns: NDArray[np.float64]
    episodes: int  # whole episodes in the batch (0 for transition batches)


class RolloutBuffer:
    """Growing time-major arrays of observations, actions, rewards and episode ends.

    ``live`` marks real transitions not yet consumed: the reset step that NEXT_STEP
    autoreset inserts after each episode is never live.
    """

    def __init__(self, num_envs: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype[Any]) -> None:
        self.num_envs = num_envs
        self.size = 0
        cap = 256
        self.obs = np.zeros((cap, num_envs, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros((cap, num_envs), dtype=np.int64)
        self.rewards = np.zeros((cap, num_envs), dtype=np.float64)
        self.dones = np.zeros((cap, num_envs), dtype=bool)
        self.live = np.zeros((cap, num_envs), dtype=bool)
        self.pending_episodes = 0  # live episode ends not yet consumed

    def add(
        self,
        obs: NDArray[Any],
        actions: NDArray[np.int64],
        rewards: NDArray[np.floating],
        ends: NDArray[np.bool_],
        valid: NDArray[np.bool_],
    ) -> None:
        """Append one step; ``ends`` must already be false where ``valid`` is."""
        if self.size == self.obs.shape[0]:
            self._grow()
        t = self.size
        self.obs[t] = obs
        self.actions[t] = actions
        self.rewards[t] = rewards
        self.dones[t] = ends
        self.live[t] = valid
        self.pending_episodes += int(np.count_nonzero(ends))
        self.size += 1

    def _grow(self) -> None:
        for name in ("obs", "actions", "rewards", "dones", "live"):
            arr = getattr(self, name)
            bigger = np.zeros((arr.shape[0] * 2, *arr.shape[1:]), dtype=arr.dtype)
            bigger[: arr.shape[0]] = arr
            setattr(self, name, bigger)

    def view(self, name: str) -> NDArray[Any]:
        arr: NDArray[Any] = getattr(self, name)[: self.size]
        return arr

    def consume(self, mask: NDArray[np.bool_]) -> None:
        """Mark ``mask`` used and drop leading rows that nothing still needs.

        Returns only look forward in time, so rows before the first live one are dead.
        """
        live = self.view("live")
        self.pending_episodes -= int(np.count_nonzero(mask & self.view("dones")))
        live &= ~mask
        rows_alive = np.flatnonzero(live.any(axis=1))
        first = int(rows_alive[0]) if rows_alive.size else self.size
        if first > 0:
            keep = self.size - first
            for name in ("obs", "actions", "rewards", "dones", "live"):
                arr = getattr(self, name)
                arr[:keep] = arr[first : self.size]
                arr[keep : self.size] = 0
            self.size = keep


@dataclass
class Finished:
    """Episodes that ended during the last collection step."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)


NOTHING_ENDED = Finished()  # shared: the training loop only reads it


class Collector:
    """Steps the vector env with actions sampled from the policy.

    Actions come from the policy's softmax through inverse-CDF sampling with a seeded
    NumPy generator: cheaper than ``torch.distributions`` per step and reproducible.
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv[Any, Any, Any],
        policy: nn.Module,
        rng: np.random.Generator,
        seed: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype[Any],
    ) -> None:
        self.env = env
        self.policy = policy
        self.actor = make_actor(policy)
        self.rng = rng
        self.num_envs = env.num_envs
        self.obs, _ = env.reset(seed=seed)
        self.after_done = np.zeros(self.num_envs, dtype=bool)
        self.ep_return = np.zeros(self.num_envs, dtype=np.float64)
        self.ep_length = np.zeros(self.num_envs, dtype=np.int64)
        self.buffer = RolloutBuffer(self.num_envs, obs_shape, obs_dtype)
        self.steps = 0

    def act(self, obs: NDArray[Any]) -> NDArray[np.int64]:
        logits = self.actor(obs)
        if logits.shape[1] == 2:
            return self._act_binary(logits)
        # Softmax without normalising: sampling against the unnormalised CDF is the same.
        # In place: the same arithmetic without temporary arrays (this runs every step).
        np.subtract(logits, logits.max(axis=1, keepdims=True), out=logits)
        weights = np.exp(logits, out=logits)
        cdf = np.cumsum(weights, axis=1)
        # u <= total, so no more than n_actions - 1 CDF entries lie below it.
        u = self.rng.random((weights.shape[0], 1)) * cdf[:, -1:]
        actions: NDArray[np.int64] = (u > cdf).sum(axis=1)
        return actions

    def _act_binary(self, logits: NDArray[np.float32]) -> NDArray[np.int64]:
        """The inverse-CDF draw above for two actions, in half the NumPy calls.

        Every float is computed as above (the same maximum, differences, exponentials
        and float32 sum ``e0 + e1``, which is what ``cumsum`` gives for two entries) and
        the generator draws the same numbers, so the actions are identical; only the
        axis reductions, which cost more than the arithmetic at this size, are gone.
        """
        first, second = logits[:, 0], logits[:, 1]
        np.subtract(logits, np.maximum(first, second)[:, None], out=logits)
        np.exp(logits, out=logits)
        u = self.rng.random(logits.shape[0]) * (first + second)
        actions: NDArray[np.int64] = (u > first).astype(np.int64)
        return actions

    def policy_changed(self) -> None:
        """Call after every update so acting uses the new weights."""
        self.actor.sync()

    def step(self) -> Finished:
        actions = self.act(self.obs)
        next_obs, rewards, terminated, truncated, _ = self.env.step(actions)
        valid = ~self.after_done
        # The step after an episode end is the autoreset step: no transition, no end.
        ended_now = np.logical_or(terminated, truncated)
        ended_now &= valid
        self.buffer.add(self.obs, actions, rewards, ended_now, valid)
        self.obs = next_obs
        self.steps += int(np.count_nonzero(valid))
        # Rewards of the reset step after an episode (not valid) are not added.
        np.add(self.ep_return, rewards, out=self.ep_return, where=valid)
        self.ep_length += valid
        self.after_done = ended_now
        if not ended_now.any():
            return NOTHING_ENDED
        ended = np.flatnonzero(ended_now)
        finished = Finished(self.ep_return[ended].tolist(), self.ep_length[ended].tolist())
        self.ep_return[ended] = 0.0
        self.ep_length[ended] = 0
        return finished


def evaluate(
    env: gym.vector.VectorEnv[Any, Any, Any], policy: nn.Module, episodes: int, seed: int
) -> float:
    """Mean return of the greedy policy over ``episodes`` episodes, one per sub-env."""
    obs, _ = env.reset(seed=seed)
    n = env.num_envs
    totals = np.zeros(n)
    running = np.ones(n, dtype=bool)
    while running.any():
        with torch.inference_mode():
            actions = policy(torch.as_tensor(obs)).argmax(dim=-1).numpy()
        obs, rewards, terminated, truncated, _ = env.step(actions)
        totals += np.where(running, rewards, 0.0)
        running &= ~np.logical_or(terminated, truncated)
    return float(totals[:episodes].mean())
