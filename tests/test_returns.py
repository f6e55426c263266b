"""Returns and baselines against values worked out by hand (time-major arrays)."""

from __future__ import annotations

import numpy as np
import pytest

from pg.core.returns import (
    MeanBaseline,
    discounted_returns,
    discounted_returns_at,
    episode_ready,
    nstep_ready,
    nstep_returns,
)

F, T = False, True


def col(values: list[float]) -> np.ndarray:
    """One env column, shape (time, 1)."""
    return np.asarray(values, dtype=np.float64).reshape(-1, 1)


def dcol(values: list[bool]) -> np.ndarray:
    return np.asarray(values, dtype=bool).reshape(-1, 1)


# -- discounted returns --------------------------------------------------------------------


def test_discounted_single_episode() -> None:
    # Q2 = 1, Q1 = 1 + 0.5*1 = 1.5, Q0 = 1 + 0.5*1.5 = 1.75
    q = discounted_returns(col([1, 1, 1]), dcol([F, F, T]), 0.5)
    np.testing.assert_allclose(q[:, 0], [1.75, 1.5, 1.0])


def test_discounted_gamma_one_is_reward_to_go() -> None:
    q = discounted_returns(col([1, 2, 3]), dcol([F, F, T]), 1.0)
    np.testing.assert_allclose(q[:, 0], [6.0, 5.0, 3.0])


def test_discounted_cuts_at_dones_within_one_column() -> None:
    # Episode 1: rewards 1, 2 -> [1 + 0.5*2, 2] = [2, 2]
    # Episode 2: rewards 3, 4 -> [3 + 0.5*4, 4] = [5, 4]; nothing leaks from episode 2 into 1.
    q = discounted_returns(col([1, 2, 3, 4]), dcol([F, T, F, T]), 0.5)
    np.testing.assert_allclose(q[:, 0], [2.0, 2.0, 5.0, 4.0])


def test_discounted_several_env_columns_are_independent() -> None:
    rewards = np.array([[1.0, 1.0], [1.0, 0.0], [1.0, 2.0]])
    dones = np.array([[F, T], [F, F], [T, F]])
    q = discounted_returns(rewards, dones, 0.5)
    # env 0: one episode [1, 1, 1] -> [1.75, 1.5, 1]
    np.testing.assert_allclose(q[:, 0], [1.75, 1.5, 1.0])
    # env 1: episode [1] ends at t0 -> 1; then [0, 2] (unfinished) -> [0 + 0.5*2, 2] = [1, 2]
    np.testing.assert_allclose(q[:, 1], [1.0, 1.0, 2.0])


def test_discounted_unfinished_episode_is_truncated_at_array_end() -> None:
    q = discounted_returns(col([1, 1]), dcol([F, F]), 0.9)
    np.testing.assert_allclose(q[:, 0], [1.9, 1.0])


def test_discounted_at_computes_only_the_masked_episodes() -> None:
    # env 0: episode [1, 2] ends at t1, then [3, 4] runs on; env 1: [5, 6, 7] ends at t2.
    rewards = np.array([[1.0, 5.0], [2.0, 6.0], [3.0, 7.0], [4.0, 8.0]])
    dones = np.array([[F, F], [T, F], [F, T], [F, F]])
    mask = np.array([[T, F], [T, T], [F, T], [F, F]])
    q = discounted_returns_at(rewards, dones, mask, 0.5)
    # env 0: [1 + .5*2, 2] = [2, 2]; env 1 from t1: [6 + .5*7, 7] = [9.5, 7]; rest 0
    assert q.tolist() == [[2.0, 0.0], [2.0, 9.5], [0.0, 7.0], [0.0, 0.0]]
    # An unfinished episode is truncated at the array's end, like the whole recursion.
    unfinished = discounted_returns_at(col([1, 1]), dcol([F, F]), dcol([T, F]), 0.9)
    assert unfinished[0, 0] == 1.9


def test_discounted_at_equals_the_whole_recursion_bit_for_bit() -> None:
    """Updates use it in place of :func:`discounted_returns`: a run's losses and scales
    must not move by one bit (the reference record and reproductions compare them)."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        t, n = int(rng.integers(1, 60)), int(rng.integers(1, 8))
        rewards = rng.normal(size=(t, n)) * 10
        dones = rng.random((t, n)) < 0.1
        mask = rng.random((t, n)) < 0.3
        gamma = float(rng.uniform(0.9, 1.0))
        whole = discounted_returns(rewards, dones, gamma)
        assert (
            whole[mask].tobytes()
            == discounted_returns_at(rewards, dones, mask, gamma)[mask].tobytes()
        )


# -- n-step returns ------------------------------------------------------------------------

# One column: episode [1, 2, 3] ends at t2, then [4, 5] is still running.
NS_REWARDS = col([1, 2, 3, 4, 5])
NS_DONES = dcol([F, F, T, F, F])


def test_nstep_one_is_the_reward() -> None:
    r = nstep_returns(NS_REWARDS, NS_DONES, 0.5, 1)
    np.testing.assert_allclose(r[:, 0], [1, 2, 3, 4, 5])


def test_nstep_two_stops_at_episode_end() -> None:
    r = nstep_returns(NS_REWARDS, NS_DONES, 0.5, 2)
    # t0: 1 + .5*2 = 2; t1: 2 + .5*3 = 3.5; t2: 3 (done, no 4 added);
    # t3: 4 + .5*5 = 6.5; t4: 5 (window runs off the array)
    np.testing.assert_allclose(r[:, 0], [2.0, 3.5, 3.0, 6.5, 5.0])


def test_nstep_three_stops_at_episode_end() -> None:
    r = nstep_returns(NS_REWARDS, NS_DONES, 0.5, 3)
    # t0: 1 + .5*2 + .25*3 = 2.75; t1: 2 + .5*3 = 3.5 (episode ends at t2); t2: 3;
    # t3: 4 + .5*5 = 6.5; t4: 5
    np.testing.assert_allclose(r[:, 0], [2.75, 3.5, 3.0, 6.5, 5.0])


def test_nstep_with_long_window_equals_discounted_return() -> None:
    rewards = np.array([[1.0, 2.0], [1.0, 0.5], [1.0, 3.0], [2.0, 1.0]])
    dones = np.array([[F, F], [F, T], [T, F], [F, T]])
    np.testing.assert_allclose(
        nstep_returns(rewards, dones, 0.9, 10), discounted_returns(rewards, dones, 0.9)
    )


def test_nstep_several_columns() -> None:
    rewards = np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    dones = np.array([[F, F], [F, F], [T, F], [F, T], [F, F]])
    r = nstep_returns(rewards, dones, 0.5, 3)
    # env 0 ends at t2: [1.75, 1.5, 1, 1 + .5 = 1.5, 1]
    np.testing.assert_allclose(r[:, 0], [1.75, 1.5, 1.0, 1.5, 1.0])
    # env 1 ends at t3: [1.75, 1.75, 1.5, 1, 1]
    np.testing.assert_allclose(r[:, 1], [1.75, 1.75, 1.5, 1.0, 1.0])


def test_nstep_rejects_n_below_one() -> None:
    with pytest.raises(ValueError, match="n must be >= 1"):
        nstep_returns(NS_REWARDS, NS_DONES, 0.5, 0)


# -- readiness masks -----------------------------------------------------------------------


def test_episode_ready_marks_rows_up_to_the_last_done() -> None:
    assert episode_ready(dcol([F, T, F, F]))[:, 0].tolist() == [T, T, F, F]
    assert episode_ready(dcol([F, F, F]))[:, 0].tolist() == [F, F, F]
    both = episode_ready(np.array([[F, F], [T, F], [F, T], [F, F]]))
    assert both.tolist() == [[T, T], [T, T], [F, T], [F, F]]


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, [T, T, T, T, T]),  # every 1-step window lies inside the array
        (2, [T, T, T, T, F]),  # t4 needs t5
        (3, [T, T, T, F, F]),  # t3, t4 need rows past the end and their episode runs on
    ],
)
def test_nstep_ready_windows_inside_the_array(n: int, expected: list[bool]) -> None:
    assert nstep_ready(NS_DONES, n)[:, 0].tolist() == expected


def test_nstep_ready_accepts_tail_rows_whose_episode_ended() -> None:
    # Episode ends at t3: for n = 3, t3 is final although its window runs past the end.
    assert nstep_ready(dcol([F, F, F, T, F]), 3)[:, 0].tolist() == [T, T, T, T, F]
    # n larger than the array: only rows of finished episodes are final.
    assert nstep_ready(dcol([F, T, F]), 5)[:, 0].tolist() == [T, T, F]


def test_ready_rows_do_not_change_when_more_rows_arrive() -> None:
    """A ready entry's n-step return must be final: later data may not alter it."""
    rewards = np.array([[1.0], [2.0], [3.0], [4.0], [5.0], [6.0]])
    dones = dcol([F, F, T, F, F, F])
    short, long_ = rewards[:4], rewards
    for n in (1, 2, 3):
        ready = nstep_ready(dones[:4], n)
        np.testing.assert_allclose(
            nstep_returns(short, dones[:4], 0.5, n)[ready],
            nstep_returns(long_, dones, 0.5, n)[:4][ready],
        )


# -- baseline ------------------------------------------------------------------------------


def test_mean_baseline_is_the_running_mean_including_itself() -> None:
    b = MeanBaseline()
    np.testing.assert_allclose(b(np.array([1.0, 2.0, 3.0])), [1.0, 1.5, 2.0])
    # State carries over: (1 + 2 + 3 + 6) / 4 = 3
    np.testing.assert_allclose(b(np.array([6.0])), [3.0])
    np.testing.assert_allclose(b(np.array([8.0, 0.0])), [20 / 5, 20 / 6])


def test_mean_baseline_empty_call_keeps_state() -> None:
    b = MeanBaseline()
    b(np.array([2.0, 4.0]))
    assert b(np.array([])).shape == (0,)
    np.testing.assert_allclose(b(np.array([6.0])), [4.0])


def test_windowed_baseline_uses_only_the_last_returns() -> None:
    b = MeanBaseline(window=2)
    # [1], [1, 2], [2, 3]
    np.testing.assert_allclose(b(np.array([1.0, 2.0, 3.0])), [1.0, 1.5, 2.5])
    # the window spans calls: [3, 5]
    np.testing.assert_allclose(b(np.array([5.0])), [4.0])
    # [5, 7], [7, 9]
    np.testing.assert_allclose(b(np.array([7.0, 9.0])), [6.0, 8.0])


def test_windowed_baseline_window_three_across_calls() -> None:
    b = MeanBaseline(window=3)
    np.testing.assert_allclose(b(np.array([1.0, 2.0])), [1.0, 1.5])
    # [1, 2, 3] -> 2, [2, 3, 4] -> 3
    np.testing.assert_allclose(b(np.array([3.0, 4.0])), [2.0, 3.0])
    np.testing.assert_allclose(b(np.array([10.0])), [(3 + 4 + 10) / 3])


def test_window_one_baseline_is_the_return_itself() -> None:
    b = MeanBaseline(window=1)
    np.testing.assert_allclose(b(np.array([3.0, -1.0])), [3.0, -1.0])
    np.testing.assert_allclose(b(np.array([7.0])), [7.0])


def test_large_window_matches_unwindowed() -> None:
    rng = np.random.default_rng(0)
    a, w = MeanBaseline(), MeanBaseline(window=1000)
    for _ in range(4):
        r = rng.normal(size=7)
        np.testing.assert_allclose(a(r), w(r))
