"""Collecting from a real vector env: NEXT_STEP autoreset rows, step counts, sampling."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from pg.core.config import EnvConfig
from pg.core.envs import make_vec_env, obs_dtype, space_shapes
from pg.core.policy import MLPPolicy
from pg.core.rollout import Collector, RolloutBuffer, evaluate


def head(net: MLPPolicy) -> nn.Linear:
    last = net.net[-1]
    assert isinstance(last, nn.Linear)
    return last


def biased_policy(p_right: float) -> MLPPolicy:
    """Acts right with probability ``p_right`` whatever it observes."""
    net = MLPPolicy(4, (8,), 2)
    with torch.no_grad():
        for param in net.parameters():
            param.zero_()
        head(net).bias.copy_(torch.tensor([math.log(1 - p_right), math.log(p_right)]))
    return net


def collector(policy: MLPPolicy, num_envs: int = 4, seed: int = 0) -> Collector:
    env = make_vec_env(EnvConfig(num_envs=num_envs))
    shape, _ = space_shapes(env)
    return Collector(env, policy, np.random.default_rng(seed), seed, shape, obs_dtype(env))


def test_vector_env_and_shapes() -> None:
    env = make_vec_env(EnvConfig(num_envs=3))
    assert env.num_envs == 3
    assert space_shapes(env) == ((4,), 2)
    assert obs_dtype(env) == np.float32
    env.close()


def test_reset_step_after_done_is_not_a_transition() -> None:
    torch.manual_seed(0)
    col = collector(MLPPolicy(4, (8,), 2), num_envs=4)
    returns: list[float] = []
    lengths: list[int] = []
    for _ in range(200):
        finished = col.step()
        returns += finished.returns
        lengths += finished.lengths
    buf = col.buffer
    dones, live = buf.view("dones"), buf.view("live")
    assert len(returns) > 4
    # The row after every episode end is the autoreset step: never live, never a done.
    t_end, i_end = np.nonzero(dones[:-1])
    assert not live[t_end + 1, i_end].any()
    assert not (dones & ~live).any()
    # Only real transitions count as env steps.
    assert col.steps == int(live.sum())
    assert col.steps == sum(lengths) + int(col.ep_length.sum())
    # CartPole pays 1 per step: a return is its length, and the buffer agrees.
    assert returns == [float(n) for n in lengths]
    assert buf.pending_episodes == len(returns)
    assert float(buf.view("rewards")[live].sum()) == pytest.approx(
        sum(returns) + col.ep_return.sum()
    )


def test_actions_follow_the_policy_probabilities() -> None:
    col = collector(biased_policy(0.8), num_envs=8)
    obs = np.zeros((8, 4), dtype=np.float32)
    actions = np.concatenate([col.act(obs) for _ in range(1000)])
    assert set(np.unique(actions)) <= {0, 1}
    # 8000 draws: standard error 0.0045
    assert actions.mean() == pytest.approx(0.8, abs=0.02)


def test_acting_uses_updated_weights() -> None:
    policy = biased_policy(0.5)
    col = collector(policy, num_envs=8)
    with torch.no_grad():
        head(policy).bias.copy_(torch.tensor([0.0, -30.0]))  # always left now
    col.policy_changed()
    obs = np.zeros((8, 4), dtype=np.float32)
    assert not np.concatenate([col.act(obs) for _ in range(50)]).any()


def test_same_seed_same_actions() -> None:
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        col = collector(MLPPolicy(4, (8,), 2), seed=5)
        for _ in range(50):
            col.step()
        runs.append(col.buffer.view("actions").copy())
    np.testing.assert_array_equal(runs[0], runs[1])


def test_buffer_grows_and_drops_consumed_leading_rows() -> None:
    buf = RolloutBuffer(2, (1,), np.dtype(np.float32))
    for t in range(300):  # past the initial capacity of 256
        buf.add(
            np.array([[t], [t]], np.float32),
            np.array([0, 1]),
            np.array([1.0, 2.0]),
            np.array([False, False]),
            np.array([True, True]),
        )
    assert buf.size == 300
    mask = np.zeros((300, 2), dtype=bool)
    mask[:100, 0] = True
    buf.consume(mask)
    assert buf.size == 300  # env 1 still needs row 0
    mask = np.zeros((300, 2), dtype=bool)
    mask[:150, 1] = True
    buf.consume(mask)
    # Rows 0..99 are dead in both columns now and are dropped.
    assert buf.size == 200
    assert buf.view("obs")[0, 0, 0] == 100.0
    assert not buf.view("live")[:50, 1].any() and buf.view("live")[:, 0].all()


def greedy_return(seed: int, policy: MLPPolicy) -> float:
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        with torch.no_grad():
            action = int(policy(torch.as_tensor(obs).unsqueeze(0)).argmax())
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        done = terminated or truncated
    env.close()
    return total


def test_evaluate_is_the_mean_greedy_return_of_one_episode_per_env() -> None:
    torch.manual_seed(3)
    policy = MLPPolicy(4, (8,), 2)
    # The per-env (sync) vector env seeds sub-env i with seed + i, like single envs.
    env = make_vec_env(EnvConfig(num_envs=3, max_episode_steps=500))
    value = evaluate(env, policy, 3, seed=10)
    env.close()
    expected = np.mean([greedy_return(10 + i, policy) for i in range(3)])
    assert value == pytest.approx(expected)


def test_two_action_sampling_is_the_inverse_cdf_draw_exactly() -> None:
    """The two-action shortcut must pick what the general inverse-CDF draw picks.

    Identical actions for the same seed are what keeps old runs reproducible, so the
    comparison is exact, over logits from tiny to overflowing differences.
    """
    col = collector(MLPPolicy(4, (8,), 2), num_envs=64)
    draws = np.random.default_rng(11)
    for scale in (1e-3, 1.0, 10.0, 100.0):
        for _ in range(50):
            logits = (draws.standard_normal((64, 2)) * scale).astype(np.float32)
            col.actor = lambda obs, lg=logits: lg.copy()  # type: ignore[assignment,misc]
            col.rng = np.random.default_rng(3)
            got = col.act(np.zeros((64, 4), dtype=np.float32))
            shifted = logits - logits.max(axis=1, keepdims=True)
            cdf = np.cumsum(np.exp(shifted), axis=1)
            u = np.random.default_rng(3).random((64, 1)) * cdf[:, -1:]
            np.testing.assert_array_equal(got, (u > cdf).sum(axis=1))
