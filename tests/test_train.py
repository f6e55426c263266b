"""The training loop in-process: determinism, metrics, stopping, fault injection, pong."""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import pairwise
from typing import Any

import pytest
from hydra import compose, initialize_config_dir

from pg.core import metrics as m
from pg.core.algos import DivergenceError
from pg.core.config import Config, register_configs, to_config
from pg.core.train import train
from tests.conftest import FAST, ROOT, TRAINING_METRICS


def config(*overrides: str) -> Config:
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*FAST, "train.progress=false", *overrides])
    return to_config(cfg)


class Recorder:
    """A metric sink that keeps everything, in call order."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.calls.append((step, dict(metrics)))

    def history(self, name: str) -> list[tuple[int, float]]:
        return [(s, d[name]) for s, d in self.calls if name in d]

    def without_time(self) -> list[tuple[int, dict[str, float]]]:
        return [
            (s, {k: v for k, v in d.items() if not k.startswith(m.TIME_PREFIX)})
            for s, d in self.calls
        ]


def same(a: list[tuple[int, dict[str, float]]], b: list[tuple[int, dict[str, float]]]) -> bool:
    """Equal histories, where NaN equals NaN."""
    if len(a) != len(b):
        return False
    for (sa, da), (sb, db) in zip(a, b, strict=True):
        if sa != sb or da.keys() != db.keys():
            return False
        for k in da:
            x, y = da[k], db[k]
            if not (x == y or (math.isnan(x) and math.isnan(y))):
                return False
    return True


@pytest.mark.parametrize("algo", ["reinforce", "pg"])
def test_same_seed_same_history_different_seed_differs(algo: str) -> None:
    runs = []
    for seed in (3, 3, 4):
        rec = Recorder()
        result = train(config(f"algo={algo}", f"seed={seed}"), rec)
        runs.append((rec, result))
    (a, ra), (b, rb), (c, _) = runs
    assert len(a.history(m.LOSS_POLICY)) > 0
    assert same(a.without_time(), b.without_time())
    assert ra.episode_returns == rb.episode_returns
    assert ra.objective == rb.objective
    assert not same(a.without_time(), c.without_time())


def test_metrics_and_steps() -> None:
    rec = Recorder()
    cfg = config("train.eval_episodes=3")
    result = train(cfg, rec)
    steps = [s for s, _ in rec.calls]
    assert steps == sorted(steps), "metric steps must be env steps, never going back"
    assert result.steps >= cfg.train.max_steps and steps[-1] == result.steps
    # No more env steps than the budget plus one vector step.
    assert result.steps < cfg.train.max_steps + cfg.env.num_envs
    names = {k for _, d in rec.calls for k in d}
    for name in TRAINING_METRICS:
        assert name in names, name
    # Episode returns of CartPole equal their lengths (reward 1 per step).
    assert [v for _, v in rec.history(m.EP_RETURN)] == [v for _, v in rec.history(m.EP_LENGTH)]
    assert len(rec.history(m.EP_RETURN)) == result.episodes == len(result.episode_returns)
    # Final mean-100 and the objective agree.
    last100 = result.episode_returns[-100:]
    assert rec.history(m.EP_RETURN_100)[-1][1] == pytest.approx(sum(last100) / len(last100))
    assert result.objective == pytest.approx(sum(last100) / len(last100))
    # eval_every=0: one greedy evaluation at the end, on the eval env.
    assert [s for s, _ in rec.history(m.EVAL_RETURN)] == [result.steps]
    assert rec.history(m.EVAL_RETURN)[0][1] == result.eval_returns[-1]
    assert all(v >= 0 for _, v in rec.history(m.KL))
    assert all(0 <= v <= math.log(2) + 1e-6 for _, v in rec.history(m.ENTROPY))


def test_periodic_evaluation() -> None:
    rec = Recorder()
    result = train(config("train.eval_every=1000"), rec)
    eval_steps = [s for s, _ in rec.history(m.EVAL_RETURN)]
    # Every ~1000 env steps plus the final one at the end of training.
    assert 3 <= len(eval_steps) <= 4
    assert eval_steps[0] >= 1000 and eval_steps[-1] == result.steps
    assert all(b - a >= 1000 for a, b in pairwise(eval_steps[:-1]))
    assert eval_steps == result.eval_steps


def test_eval_objective() -> None:
    result = train(config(f"train.objective={m.EVAL_RETURN}"))
    assert result.objective == result.eval_returns[-1]


def test_stops_when_the_mean_of_100_reaches_the_target() -> None:
    result = train(config("train.target_return=5", "train.max_steps=100000"))
    assert result.solved
    assert result.episodes == 100  # the first moment 100 episodes exist, mean >= 5
    assert result.steps < 100000


def test_not_solved_without_target() -> None:
    result = train(config("train.target_return=null"))
    assert not result.solved


def test_on_report_hook_sees_objective_and_can_stop_training() -> None:
    seen: list[tuple[int, float]] = []

    def hook(step: int, value: float) -> None:
        seen.append((step, value))
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config("train.max_steps=100000", "train.target_return=null"), on_report=hook)
    assert len(seen) == 2
    assert 1000 <= seen[0][0] < seen[1][0] < 3000
    assert all(v > 0 for _, v in seen)


def test_fail_at_step_raises() -> None:
    with pytest.raises(RuntimeError, match="fail_at_step"):
        train(config("debug.fail_at_step=500"))


def test_nan_at_step_raises_divergence() -> None:
    with pytest.raises(DivergenceError):
        train(config("debug.nan_at_step=500"))


def test_trained_policy_is_returned_with_its_spec() -> None:
    result = train(config())
    assert result.spec.model == "mlp" and result.spec.n_actions == 2
    assert result.spec.obs_shape == (4,)


def test_acrobot_runs() -> None:
    rec = Recorder()
    result = train(config("env=acrobot", "train.max_steps=1500", "algo=pg"), rec)
    assert result.steps >= 1500
    assert rec.history(m.LOSS_POLICY)


def test_pong_smoke() -> None:
    """Pixels, frame stack, conv net and the pong hyper-parameters run end to end."""
    rec = Recorder()
    cfg = config(
        "+experiment=pong",
        "train.max_steps=300",
        "env.num_envs=2",
        "env.max_episode_steps=60",
        "train.eval_every=0",
        "train.eval_episodes=1",
        "train.log_every=100",
        "algo.batch_size=32",
    )
    assert cfg.model.name == "conv" and cfg.env.atari
    result = train(cfg, rec)
    assert result.spec.model == "conv" and result.spec.obs_shape == (4, 84, 84)
    losses = rec.history(m.LOSS_TOTAL)
    assert losses and all(math.isfinite(v) for _, v in losses)
    assert rec.history(m.EVAL_RETURN)


@pytest.mark.parametrize("fault", ["debug.fail_at_step=1500", "debug.nan_at_step=1500"])
def test_both_envs_are_closed_when_training_raises(
    fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crashing trial must not leak its evaluation envs (a sweep runs hundreds)."""
    import pg.core.train as train_module

    made: list[str] = []
    closed: list[str] = []
    real: Any = vars(train_module)["make_vec_env"]

    def recording(*args: Any, **kwargs: Any) -> Any:
        env = real(*args, **kwargs)
        name = f"env{len(made)}"
        made.append(name)
        close = env.close

        def closing(**kw: Any) -> None:
            closed.append(name)
            close(**kw)

        env.close = closing
        return env

    monkeypatch.setattr(train_module, "make_vec_env", recording)
    with pytest.raises((RuntimeError, DivergenceError)):
        train(config(fault))
    assert sorted(closed) == made == ["env0", "env1"]
