"""Core speed figures, all measured in this one process so they can be compared.

1. The training loop's env steps/s as a ratio to the raw vector env (random actions)
   at the same number of envs.
2. Wall time of a tracked run (embedded MLflow store) vs the same run untracked.
3. Training seconds and env steps until the mean-100 return reaches 475 on CartPole-v1,
   over 5 seeds, with the default configuration.

Usage: .venv/bin/python benchmarks/bench_core.py [--seeds 5] [--steps 100000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pg.core.config import Config, EnvConfig, to_config
from pg.core.envs import make_vec_env
from pg.core.train import train
from pg.experiment import Snapshot, execute


def raw_env_sps(cfg: Config, steps: int, stock: bool = False) -> float:
    """Random actions through the vector env pg trains on, or with ``stock`` through
    gymnasium's own (for CartPole pg steps the same physics in fewer calls)."""
    if stock:
        import gymnasium as gym

        env = gym.make_vec(
            cfg.env.id, num_envs=cfg.env.num_envs, vectorization_mode="vector_entry_point"
        )
    else:
        env = make_vec_env(cfg.env)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    n = env.num_envs
    start = time.perf_counter()
    done = 0
    while done < steps:
        env.step(rng.integers(0, 2, size=n))
        done += n
    elapsed = time.perf_counter() - start
    env.close()
    return done / elapsed


def env_share(cfg: Config) -> tuple[float, float]:
    """Share of a training run's loop time spent in the vector env's own step, and the
    loop's steps/s: both from the same run, so a busy machine cannot skew one side.

    If the env steps as fast inside the loop as alone, this share is the loop/raw ratio.
    """
    import pg.core.train as training

    spent = [0.0]
    make = training.make_vec_env  # type: ignore[attr-defined]

    def timed_env(env_cfg: EnvConfig, num_envs: int | None = None) -> Any:
        env = make(env_cfg, num_envs)
        if num_envs is None:  # the training env (the evaluation one is sized)
            step = env.step

            def timed_step(actions: Any) -> Any:
                start = time.perf_counter()
                out = step(actions)
                spent[0] += time.perf_counter() - start
                return out

            env.step = timed_step  # type: ignore[method-assign]
        return env

    training.make_vec_env = timed_env  # type: ignore[attr-defined,assignment]
    try:
        result = train(cfg)
    finally:
        training.make_vec_env = make  # type: ignore[attr-defined]
    return spent[0] / result.seconds, result.steps / result.seconds


def collection_sps(cfg: Config, steps: int) -> float:
    """The loop's data collection alone: acting, stepping and buffering, no updates."""
    from pg.core.envs import obs_dtype, space_shapes
    from pg.core.policy import build_policy, make_spec
    from pg.core.rollout import Collector

    env = make_vec_env(cfg.env)
    shape, n_actions = space_shapes(env)
    policy = build_policy(make_spec(cfg.model, shape, n_actions))
    collector = Collector(env, policy, np.random.default_rng(0), 0, shape, obs_dtype(env))
    start = time.perf_counter()
    while collector.steps < steps:
        collector.step()
        if collector.buffer.size >= 512:  # keep memory flat, as updates would
            collector.buffer.consume(collector.buffer.view("live").copy())
    elapsed = time.perf_counter() - start
    env.close()
    return collector.steps / elapsed


def fixed_budget(steps: int, seed: int, tracked: bool, home: Path) -> Config:
    return to_config(
        {
            "seed": seed,
            "train": {
                "max_steps": steps,
                "target_return": None,
                "eval_every": 0,
                "progress": False,
            },
            "tracking": {
                "enabled": tracked,
                "uri": f"sqlite:///{home / 'mlflow.db'}",
                "experiment": "bench",
            },
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1_000_000)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        untracked = fixed_budget(args.steps, 0, False, home)
        tracked = fixed_budget(args.steps, 0, True, home)
        # Warm-up: imports, the store's tables, the experiment.
        execute(fixed_budget(2_000, 0, True, home), Snapshot.from_config(tracked))

        raw = raw_env_sps(untracked, args.steps)
        stock = raw_env_sps(untracked, args.steps, stock=True)
        result = train(untracked)
        loop = result.steps / result.seconds
        print(
            f"envs={untracked.env.num_envs}  raw vector env: {raw:,.0f} steps/s "
            f"(gymnasium's own step: {stock:,.0f})"
        )
        print(f"training loop (REINFORCE, updates included): {loop:,.0f} steps/s")
        print(
            f"ratio loop/raw: {loop / raw:.2f}  (target >= 0.50); "
            f"against gymnasium's own step {loop / stock:.2f}"
        )
        collect = collection_sps(untracked, args.steps)
        print(f"collection alone (no updates): {collect:,.0f} steps/s, ratio {collect / raw:.2f}")

        t0 = time.perf_counter()
        train(untracked)
        plain = time.perf_counter() - t0
        t0 = time.perf_counter()
        outcome = execute(tracked, Snapshot.from_config(tracked))
        with_tracking = time.perf_counter() - t0
        print(
            f"{args.steps:,} steps untracked {plain:.2f} s, tracked {with_tracking:.2f} s "
            f"(training part {outcome.result.seconds:.2f} s): "
            f"overhead {100 * (with_tracking / plain - 1):.1f} % of wall time, "
            f"{100 * (outcome.result.seconds / plain - 1):.1f} % inside the loop (target <= 5 %)"
        )

    seconds, steps = [], []
    for seed in range(args.seeds):
        cfg = to_config(
            {"seed": seed, "train": {"progress": False}, "tracking": {"enabled": False}}
        )
        r = train(cfg)
        status = "solved" if r.solved else "NOT solved"
        print(f"seed {seed}: {status} at {r.steps:,} env steps in {r.seconds:.2f} s")
        if r.solved:
            seconds.append(r.seconds)
            steps.append(r.steps)
    if seconds:
        print(
            f"solved {len(seconds)}/{args.seeds}; median {statistics.median(seconds):.2f} s "
            f"and {statistics.median(steps):,.0f} env steps to mean-100 >= 475 (target <= 2 s)"
        )


if __name__ == "__main__":
    main()
