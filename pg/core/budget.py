"""Memory a config will need, estimated before anything is allocated.

A config that asks for more than the machine has (``env.num_envs=100000000``) must fail
with the key and the estimate while composing, not with a NumPy ``_ArrayMemoryError``
after the MLflow run exists.  The figures are lower bounds of what training allocates
up front (the rollout buffer's first 256 rows, the environments, the network with its
Adam state); what a run grows into later is not counted.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pg.core.config import Config

BUFFER_ROWS = 256  # RolloutBuffer's first capacity (pg/core/rollout.py)
ROW_EXTRA = 8 + 8 + 1 + 1  # action int64, reward float64, done, live per env and row
ATARI_FRAME = (84, 84)  # AtariPreprocessing's screen
# Rough memory of one environment object: vectorized classic control costs a few numbers
# per env; a Box2D world or an emulator is a real object each.
ENV_BYTES = {"vector": 256, "box2d": 256 * 1024, "atari": 24 * 2**20, "other": 64 * 1024}
CONV_OUT = 3136  # the conv net's flattened output on 84x84 frames
# Observation shape, dtype size and kind of the ids conf/env/ ships (no env is built).
SHIPPED = {
    "CartPole-v1": ((4,), 4, "vector"),
    "Acrobot-v1": ((6,), 4, "other"),
    "LunarLander-v3": ((8,), 4, "box2d"),
}


@dataclass(frozen=True)
class Need:
    """One estimate: the key that drives it, bytes, and how it was computed."""

    key: str
    value: object
    nbytes: int
    how: str


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:,.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:,.0f} MiB"


def available_memory() -> int:
    """Bytes this process could still get: MemAvailable (Linux), else physical memory."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError):
        return 2**62  # unknown: do not refuse


def _observation(cfg: Config) -> tuple[int, int, str]:
    """Elements per observation, bytes per element, and the env kind."""
    env = cfg.env
    if env.atari or any(m in env.id for m in ("ALE/", "NoFrameskip", "Deterministic")):
        return env.frame_stack * ATARI_FRAME[0] * ATARI_FRAME[1], 1, "atari"
    if env.id in SHIPPED:
        shape, size, kind = SHIPPED[env.id]
        return math.prod(shape), size, kind
    import gymnasium as gym

    try:  # an id from another package: build one env to read its space
        probe = gym.make(env.id)
        try:
            space = probe.observation_space
            elements = math.prod(space.shape or (1,))
            size = space.dtype.itemsize if space.dtype is not None else 8
        finally:
            probe.close()
    except Exception:  # the training itself will report what is wrong with this env
        return 1, 8, "other"
    return elements, size, "other"


def _parameters(cfg: Config, obs_elements: int) -> int:
    """Weights of the policy (an upper bound for the action layer: 18 actions)."""
    actions = 18
    if cfg.model.name == "conv":
        return CONV_OUT * 512 + 512 * actions + 32 * 8 * 8 * cfg.env.frame_stack + 110_000
    sizes = [obs_elements, *cfg.model.hidden, actions]
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


def needs(cfg: Config) -> list[Need]:
    """What training ``cfg`` allocates up front, by the key that drives each part."""
    elements, size, kind = _observation(cfg)
    n = cfg.env.num_envs
    row = elements * size + ROW_EXTRA
    rows = BUFFER_ROWS
    if cfg.algo.name == "pg":  # the buffer doubles until batch_size transitions fit
        rows = max(rows, 2 ** math.ceil(math.log2(max(1, -(-cfg.algo.batch_size // n)))))
    out = [
        Need(
            "env.num_envs",
            n,
            rows * n * row,
            f"a rollout buffer of {rows:,} steps x {n:,} envs x {row:,} B",
        ),
        Need("env.num_envs", n, n * ENV_BYTES[kind], f"{n:,} {kind} environments"),
        Need(
            "train.eval_episodes",
            cfg.train.eval_episodes,
            cfg.train.eval_episodes * (ENV_BYTES[kind] + elements * 4),
            f"{cfg.train.eval_episodes:,} evaluation environments",
        ),
        # weights, gradients, two Adam moments (float32) and the NumPy acting copy
        Need(
            "model.hidden",
            list(cfg.model.hidden),
            _parameters(cfg, elements) * 4 * 5,
            "the policy network with its gradients and optimizer state",
        ),
    ]
    if cfg.algo.name == "pg":
        out.append(
            Need(
                "algo.batch_size",
                cfg.algo.batch_size,
                cfg.algo.batch_size * (elements * 4 + 16) * 2,
                f"update batches of {cfg.algo.batch_size:,} transitions",
            )
        )
    return out


def too_big(cfg: Config, copies: int = 1, budget: int | None = None) -> str | None:
    """A one-line reason when ``copies`` trainings of ``cfg`` cannot fit, else ``None``.

    The message names the key behind the largest part of the estimate, so the user knows
    what to lower.
    """
    parts = needs(cfg)
    total = sum(p.nbytes for p in parts) * copies
    have = available_memory() if budget is None else budget
    if total <= have:
        return None
    worst = max(parts, key=lambda p: p.nbytes)
    times = f" for {copies:,} trainings at once" if copies > 1 else ""
    return (
        f"{worst.key}={worst.value!r} is not allowed: training needs ~{gib(total)} of memory"
        f"{times} ({worst.how}: {gib(worst.nbytes)}), this machine has {gib(have)} available"
    )
