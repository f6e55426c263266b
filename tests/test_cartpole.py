"""pg's CartPole stepper gives gymnasium's env's floats bit for bit, and refuses what it
refuses: every recorded CartPole history depends on it."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

from pg.core.cartpole import CartPoleStepper, faster
from pg.core.config import to_config
from pg.core.envs import make_vec_env


def _trace(env: Any, seed: int, steps: int, dtype: type = np.int64) -> list[bytes]:
    """Every output of ``steps`` random steps (resets and truncations included), as bytes."""
    rng = np.random.default_rng(seed + 100)
    obs, _ = env.reset(seed=seed)
    out = [obs.tobytes()]
    for _ in range(steps):
        actions = rng.integers(0, 2, size=env.num_envs).astype(dtype)
        obs, reward, terminated, truncated, info = env.step(actions)
        assert info == {}
        out += [obs.tobytes(), reward.tobytes(), terminated.tobytes(), truncated.tobytes()]
        out.append(repr((obs.dtype, obs.shape, obs.strides, reward.dtype)).encode())
    return out


def _pair(num_envs: int, **kwargs: Any) -> tuple[Any, Any]:
    def make() -> Any:
        return gym.make_vec(
            "CartPole-v1", num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs
        )

    stock, ours = make(), faster(make())
    assert type(stock) is CartPoleVectorEnv and type(ours) is CartPoleStepper
    return stock, ours


@pytest.mark.parametrize("num_envs", [1, 7, 32])
@pytest.mark.parametrize("seed", [0, 3])
def test_the_same_bytes_as_gymnasium(num_envs: int, seed: int) -> None:
    stock, ours = _pair(num_envs)
    assert _trace(ours, seed, 1500) == _trace(stock, seed, 1500)


@pytest.mark.parametrize("kwargs", [{"max_episode_steps": 12}, {"sutton_barto_reward": True}])
def test_truncation_and_the_other_reward_are_the_same_too(kwargs: dict[str, Any]) -> None:
    stock, ours = _pair(5, **kwargs)
    theirs = _trace(stock, 1, 600, dtype=np.int32)
    assert _trace(ours, 1, 600, dtype=np.int32) == theirs
    if "max_episode_steps" in kwargs:  # the short limit did cut episodes
        truncated = theirs[4::5]
        assert any(np.frombuffer(t, dtype=bool).any() for t in truncated)


def test_an_action_gymnasium_refuses_is_refused() -> None:
    _, ours = _pair(3)
    ours.reset(seed=0)
    for bad in ([0, 1, 2], [0, -1, 1], [0.0, 1.0, 0.0], [0, 1], [[0, 1, 0]]):
        with pytest.raises(AssertionError, match="invalid"):
            ours.step(np.array(bad))
    stock, _ = _pair(3)
    stock.reset(seed=0)
    for good in (np.array([0, 1, 1], dtype=np.uint8), np.array([True, False, True])):
        pairs = zip(ours.step(good)[:4], stock.step(good)[:4], strict=True)
        assert all(np.array_equal(a, b) for a, b in pairs)


def test_training_steps_cartpole_with_it_and_other_envs_as_before() -> None:
    cartpole = to_config({"tracking": {"enabled": False}})
    assert type(make_vec_env(cartpole.env)) is CartPoleStepper
    assert type(make_vec_env(cartpole.env, num_envs=5)) is CartPoleStepper
    acrobot = to_config({"env": {"id": "Acrobot-v1"}, "tracking": {"enabled": False}})
    assert not isinstance(make_vec_env(acrobot.env), CartPoleVectorEnv)
