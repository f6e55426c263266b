"""The algorithms on hand-made buffers: which rows form a batch, and the loss they get."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
import torch

from pg.core import metrics as m
from pg.core.algos import ALGORITHMS, DivergenceError, make_algorithm
from pg.core.algos.pg import PolicyGradient
from pg.core.algos.reinforce import Reinforce
from pg.core.config import AlgoConfig
from pg.core.policy import MLPPolicy
from pg.core.rollout import Batch, RolloutBuffer

F, T = False, True
OBS_DIM = 4


def policy(seed: int = 0) -> MLPPolicy:
    torch.manual_seed(seed)
    return MLPPolicy(OBS_DIM, (8,), 2)


def fill(rows: list[tuple[list[float], list[bool], list[bool]]], num_envs: int) -> RolloutBuffer:
    """Rows of (rewards, dones, valid); obs encode (t, env) so batch rows can be identified."""
    buf = RolloutBuffer(num_envs, (OBS_DIM,), np.dtype(np.float32))
    for t, (rewards, dones, valid) in enumerate(rows):
        obs = np.array([[t, i, 0.5, -0.5] for i in range(num_envs)], dtype=np.float32)
        actions = np.array([(t + i) % 2 for i in range(num_envs)], dtype=np.int64)
        buf.add(obs, actions, np.array(rewards), np.array(dones), np.array(valid))
    return buf


def ids(batch: Batch) -> list[tuple[int, int]]:
    return [(int(o[0]), int(o[1])) for o in batch.obs]


# Two envs in NEXT_STEP autoreset mode: the step right after a done is the reset step and
# is not a transition (valid=False).
#   env 0: episode A = t0, t1 (done t1); t2 reset; episode C = t3, t4, t5 (done t5)
#   env 1: episode B = t0, t1, t2 (done t2); t3 reset; t4, t5 still running
# Finishing order: A (t1), B (t2), C (t5).
ROWS = [
    ([1.0, 1.0], [F, F], [T, T]),
    ([2.0, 1.0], [T, F], [T, T]),
    ([0.0, 1.0], [F, T], [F, T]),
    ([1.0, 0.0], [F, F], [T, F]),
    ([1.0, 3.0], [F, F], [T, T]),
    ([1.0, 3.0], [T, F], [T, T]),
]


def reinforce(batch_size: int, gamma: float = 0.5, clip_grad: float | None = None) -> Reinforce:
    cfg = AlgoConfig(name="reinforce", batch_size=batch_size, gamma=gamma, clip_grad=clip_grad)
    return Reinforce(cfg, policy())


def test_registry_maps_config_names_to_classes() -> None:
    assert set(ALGORITHMS) == {"reinforce", "pg"}
    assert ALGORITHMS["reinforce"] is Reinforce
    assert ALGORITHMS["pg"] is PolicyGradient
    assert isinstance(make_algorithm(AlgoConfig(name="pg"), policy()), PolicyGradient)


def test_reinforce_takes_whole_episodes_in_finishing_order() -> None:
    buf = fill(ROWS, 2)
    assert buf.pending_episodes == 3
    algo = reinforce(batch_size=2)
    batch = algo.ready_batch(buf)
    assert batch is not None
    assert batch.episodes == 2
    # Episodes A and B (time-major order), no reset rows, nothing of C.
    assert ids(batch) == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 1)]
    # A: [1 + .5*2, 2] = [2, 2]; B: [1 + .5*1 + .25*1, 1.5, 1] = [1.75, 1.5, 1]
    np.testing.assert_allclose(batch.returns, [2.0, 1.75, 2.0, 1.5, 1.0])
    # Actions travel with their observations.
    assert batch.actions.tolist() == [(t + i) % 2 for t, i in ids(batch)]

    # C (complete) and env 1's running episode stay behind.
    assert buf.pending_episodes == 1
    assert algo.ready_batch(buf) is None
    rest = reinforce(batch_size=1).ready_batch(buf)
    assert rest is not None
    assert rest.episodes == 1
    assert ids(rest) == [(3, 0), (4, 0), (5, 0)]
    np.testing.assert_allclose(rest.returns, [1.75, 1.5, 1.0])
    # The partial episode of env 1 is still there and still live.
    live_obs = buf.view("obs")[buf.view("live")]
    assert sorted((int(o[0]), int(o[1])) for o in live_obs) == [(4, 1), (5, 1)]
    assert buf.pending_episodes == 0


def test_reinforce_waits_for_batch_size_episodes() -> None:
    buf = fill(ROWS[:2], 2)  # only A has finished
    assert reinforce(batch_size=2).ready_batch(buf) is None
    assert buf.view("live").sum() == 4  # nothing consumed


def test_reinforce_episodes_finishing_together_beyond_batch_size_wait() -> None:
    rows = [
        ([1.0, 1.0], [F, F], [T, T]),
        ([1.0, 1.0], [T, T], [T, T]),  # both finish at t1
    ]
    buf = fill(rows, 2)
    algo = reinforce(batch_size=1)
    first = algo.ready_batch(buf)
    assert first is not None and first.episodes == 1
    assert ids(first) == [(0, 0), (1, 0)]
    second = algo.ready_batch(buf)
    assert second is not None and ids(second) == [(0, 1), (1, 1)]
    assert algo.ready_batch(buf) is None


def test_partial_episode_keeps_growing_after_a_batch_is_taken() -> None:
    buf = fill(ROWS, 2)
    algo = reinforce(batch_size=3)
    assert algo.ready_batch(buf) is not None  # A, B, C
    # env 1's episode continues and ends at t6 -> its return spans rows from before the cut.
    buf.add(
        np.array([[6, 0, 0.5, -0.5], [6, 1, 0.5, -0.5]], dtype=np.float32),
        np.array([0, 0]),
        np.array([0.0, 1.0]),
        np.array([F, T]),
        np.array([F, T]),  # env 0 is in its reset step after C
    )
    batch = reinforce(batch_size=1).ready_batch(buf)
    assert batch is not None
    assert ids(batch) == [(4, 1), (5, 1), (6, 1)]
    # rewards 3, 3, 1 with gamma .5: [3 + 1.5 + .25, 3 + .5, 1]
    np.testing.assert_allclose(batch.returns, [4.75, 3.5, 1.0])


def independent_log_pi(net: torch.nn.Module, batch: Batch) -> torch.Tensor:
    with torch.no_grad():
        log_p = torch.log_softmax(net(batch.obs), dim=-1)
    return log_p[torch.arange(len(batch.actions)), batch.actions]


def test_reinforce_loss_is_minus_mean_q_log_pi() -> None:
    algo = reinforce(batch_size=2)
    before = copy.deepcopy(algo.policy)
    batch = algo.ready_batch(fill(ROWS, 2))
    assert batch is not None
    log_pi = independent_log_pi(before, batch)
    q = torch.tensor([2.0, 1.75, 2.0, 1.5, 1.0])
    expected = float(-(q * log_pi).mean())
    stats = algo.update(batch)
    assert stats[m.LOSS_POLICY] == pytest.approx(expected, rel=1e-5)
    assert stats[m.LOSS_ENTROPY] == 0.0
    assert stats[m.LOSS_TOTAL] == pytest.approx(expected, rel=1e-5)
    assert stats[m.BASELINE] == 0.0
    assert stats[m.BATCH_SCALE] == pytest.approx(np.mean([2.0, 1.75, 2.0, 1.5, 1.0]))
    # The update moved the weights and the KL measured it.
    changed = any(
        not torch.equal(a, b)
        for a, b in zip(before.parameters(), algo.policy.parameters(), strict=True)
    )
    assert changed
    assert stats[m.KL] > 0.0


def test_update_raises_the_probability_of_positively_scaled_actions() -> None:
    """Gradient ascent on Q * log pi: with positive returns every taken action gets likelier."""
    algo = reinforce(batch_size=2, gamma=0.5)
    before = copy.deepcopy(algo.policy)
    batch = algo.ready_batch(fill(ROWS, 2))
    assert batch is not None
    old = independent_log_pi(before, batch).sum()
    algo.update(batch)
    assert float(independent_log_pi(algo.policy, batch).sum()) > float(old)


def pg_algo(**kw: Any) -> PolicyGradient:
    cfg = AlgoConfig(name="pg", **kw)
    return PolicyGradient(cfg, policy())


def test_pg_scales_are_returns_minus_running_mean_baseline() -> None:
    algo = pg_algo(baseline=True)
    scales, mean_b = algo.scales(np.array([1.0, 2.0, 3.0]))
    # baselines [1, 1.5, 2]
    np.testing.assert_allclose(scales, [0.0, 0.5, 1.0])
    assert mean_b == pytest.approx(1.5)
    scales, mean_b = algo.scales(np.array([6.0]))  # (1 + 2 + 3 + 6) / 4 = 3
    np.testing.assert_allclose(scales, [3.0])
    assert mean_b == pytest.approx(3.0)


def test_pg_without_baseline_scales_are_the_returns() -> None:
    algo = pg_algo(baseline=False)
    scales, mean_b = algo.scales(np.array([1.0, 2.0]))
    np.testing.assert_allclose(scales, [1.0, 2.0])
    assert mean_b == 0.0


def test_pg_windowed_baseline() -> None:
    algo = pg_algo(baseline=True, baseline_window=2)
    scales, _ = algo.scales(np.array([1.0, 3.0, 5.0]))
    np.testing.assert_allclose(scales, [0.0, 1.0, 1.0])  # baselines [1, 2, 4]


def test_pg_loss_has_baseline_and_entropy_term() -> None:
    beta = 0.05
    algo = pg_algo(baseline=True, entropy_beta=beta, batch_size=3, reward_steps=2, gamma=0.5)
    before = copy.deepcopy(algo.policy)
    # One env, rewards 1, 2, 3, 4 and no episode end: 2-step returns of t0..t2 are final.
    buf = fill([([r], [F], [T]) for r in (1.0, 2.0, 3.0, 4.0)], 1)
    batch = algo.ready_batch(buf)
    assert batch is not None
    assert ids(batch) == [(0, 0), (1, 0), (2, 0)]
    # [1 + .5*2, 2 + .5*3, 3 + .5*4]
    np.testing.assert_allclose(batch.returns, [2.0, 3.5, 5.0])
    # baselines [2, 2.75, 3.5] -> scales [0, 0.75, 1.5]
    scale = torch.tensor([0.0, 0.75, 1.5])
    log_pi = independent_log_pi(before, batch)
    with torch.no_grad():
        p = torch.softmax(before(batch.obs), dim=-1)
        h = float(-(p * p.log()).sum(dim=-1).mean())
    stats = algo.update(batch)
    assert stats[m.LOSS_POLICY] == pytest.approx(float(-(scale * log_pi).mean()), rel=1e-5)
    assert stats[m.ENTROPY] == pytest.approx(h, rel=1e-5)
    assert stats[m.LOSS_ENTROPY] == pytest.approx(-beta * h, rel=1e-5)
    assert stats[m.LOSS_TOTAL] == pytest.approx(
        stats[m.LOSS_POLICY] + stats[m.LOSS_ENTROPY], rel=1e-6
    )
    assert stats[m.BASELINE] == pytest.approx(np.mean([2.0, 2.75, 3.5]))
    assert stats[m.BATCH_SCALE] == pytest.approx(0.75)


def add_row(buf: RolloutBuffer, t: int, action: int, reward: float, done: bool) -> None:
    """One more valid step of a single-env buffer."""
    obs = np.array([[t, 0, 0.5, -0.5]], dtype=np.float32)
    buf.add(obs, np.array([action]), np.array([reward]), np.array([done]), np.array([True]))


def test_pg_batch_is_batch_size_ready_transitions() -> None:
    algo = pg_algo(batch_size=3, reward_steps=2, gamma=0.5)
    buf = fill([([1.0], [F], [T]), ([1.0], [F], [T]), ([1.0], [F], [T])], 1)
    # Only t0, t1 have their 2-step window inside the buffer.
    assert algo.ready_batch(buf) is None
    add_row(buf, t=3, action=1, reward=2.0, done=F)
    batch = algo.ready_batch(buf)
    assert batch is not None and ids(batch) == [(0, 0), (1, 0), (2, 0)]
    np.testing.assert_allclose(batch.returns, [1.5, 1.5, 2.0])
    assert batch.episodes == 0
    # t3 waits for t4; once the episode ends at t4 both are final.
    add_row(buf, t=4, action=0, reward=4.0, done=T)
    algo2 = pg_algo(batch_size=2, reward_steps=2, gamma=0.5)
    batch = algo2.ready_batch(buf)
    assert batch is not None and ids(batch) == [(3, 0), (4, 0)]
    np.testing.assert_allclose(batch.returns, [2.0 + 0.5 * 4.0, 4.0])
    assert batch.episodes == 1


def test_pg_reward_steps_zero_means_full_episode_returns() -> None:
    algo = pg_algo(batch_size=5, reward_steps=0, gamma=0.5)
    buf = fill(ROWS, 2)
    batch = algo.ready_batch(buf)
    assert batch is not None
    # Ready rows are those of finished episodes (A, B, C); the first five in time order.
    assert ids(batch) == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 1)]
    np.testing.assert_allclose(batch.returns, [2.0, 1.75, 2.0, 1.5, 1.0])


def test_clip_grad_bounds_the_gradient_norm() -> None:
    clip = 1e-3
    algo = reinforce(batch_size=2, clip_grad=clip)
    batch = algo.ready_batch(fill(ROWS, 2))
    assert batch is not None
    stats = algo.update(batch)
    assert stats[m.GRAD_L2] > 10 * clip  # reported before clipping
    grads = torch.cat([p.grad.reshape(-1) for p in algo.policy.parameters() if p.grad is not None])
    assert float(grads.norm()) <= clip * (1 + 1e-4)


def test_without_clip_grad_the_gradient_is_untouched() -> None:
    algo = reinforce(batch_size=2)
    batch = algo.ready_batch(fill(ROWS, 2))
    assert batch is not None
    stats = algo.update(batch)
    grads = torch.cat([p.grad.reshape(-1) for p in algo.policy.parameters() if p.grad is not None])
    assert float(grads.norm()) == pytest.approx(stats[m.GRAD_L2], rel=1e-5)


def test_nan_loss_raises_divergence_error() -> None:
    algo = reinforce(batch_size=2)
    batch = algo.ready_batch(fill(ROWS, 2))
    assert batch is not None
    with pytest.raises(DivergenceError):
        algo.update(batch._replace(returns=batch.returns * math.nan))
