"""The training loop: seed -> envs -> policy/algorithm -> collect/update/log -> evaluate.

It knows nothing of MLflow or Optuna: metrics go to any :class:`MetricSink` and the
objective is offered to an optional ``on_report(step, value)`` hook, which may raise to
stop training (a sweeper's pruner does).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np
import torch
from torch import nn

from pg.core import metrics as m
from pg.core.algos import make_algorithm
from pg.core.collection import resume_collection
from pg.core.config import Config
from pg.core.envs import make_vec_env, obs_dtype, space_shapes
from pg.core.memory import reuse_freed_memory
from pg.core.policy import PolicySpec, build_policy, make_spec
from pg.core.progress import Progress
from pg.core.rollout import Collector, evaluate
from pg.core.seeding import EVAL_SEED_OFFSET, seed_everything

ReportHook = Callable[[int, float], None]
T = TypeVar("T")


class MetricSink(Protocol):
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...


class NullSink:
    """Discards metrics: training without tracking."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        return None


@dataclass
class TrainResult:
    objective: float
    steps: int
    episodes: int
    solved: bool
    seconds: float
    policy: nn.Module
    spec: PolicySpec
    episode_steps: list[int] = field(default_factory=list)
    episode_returns: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_returns: list[float] = field(default_factory=list)


class _Averager:
    """Means of update statistics between two logging points."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1

    def pop(self) -> dict[str, float]:
        out = {k: v / self.count for k, v in self.sums.items()} if self.count else {}
        self.sums, self.count = {}, 0
        return out


Report = tuple[int, float]  # (env steps, objective value so far)


def train(
    cfg: Config,
    sink: MetricSink | None = None,
    on_report: ReportHook | None = None,
) -> TrainResult:
    """Train one policy with ``cfg`` and return its objective and artefacts."""
    return drive(training(cfg, sink), on_report)


def drive(gen: Generator[Report, None, T], on_report: ReportHook | None) -> T:
    """Run a report generator to its end, showing each report to ``on_report``.

    An exception from the hook is thrown into the generator first, so the training's
    clean-up (closing envs, ending the MLflow run with the right status) happens before
    it propagates.
    """
    while True:
        try:
            step, value = next(gen)
        except StopIteration as done:
            result: T = done.value
            return result
        if on_report is not None:
            try:
                on_report(step, value)
            except BaseException as exc:
                with_suppressed_close(gen, exc)
                raise


def with_suppressed_close(gen: Generator[Report, None, object], exc: BaseException) -> None:
    """Throw ``exc`` into ``gen`` so its clean-up runs; re-raise only a different error."""
    try:
        gen.throw(exc)
    except BaseException as raised:
        if raised is not exc:
            raise


def training(cfg: Config, sink: MetricSink | None = None) -> Generator[Report, None, TrainResult]:
    """Train one policy, yielding ``(env steps, objective)`` every ``train.report_every`` steps.

    A caller that wants to stop early (a pruner) throws an exception into the generator;
    the environments are closed and the exception propagates.  Several generators can be
    advanced in lockstep, which is how a sweep trial averages seeds at each report point.
    """
    sink = sink or NullSink()
    torch.set_num_threads(cfg.train.torch_threads)
    reuse_freed_memory()
    resume_collection()
    rng = seed_everything(cfg.seed)
    env = make_vec_env(cfg.env)
    eval_env = make_vec_env(cfg.env, num_envs=cfg.train.eval_episodes)
    obs_shape, n_actions = space_shapes(env)
    spec = make_spec(cfg.model, obs_shape, n_actions)
    policy = build_policy(spec)
    algo = make_algorithm(cfg.algo, policy)
    collector = Collector(env, policy, rng, cfg.seed, obs_shape, obs_dtype(env))

    tc = cfg.train
    target = tc.target_return
    last100: deque[float] = deque(maxlen=100)
    result = TrainResult(math.nan, 0, 0, False, 0.0, policy, spec)
    averager = _Averager()
    next_log, next_report = tc.log_every, tc.report_every
    next_eval = tc.eval_every if tc.eval_every > 0 else None
    start = time.perf_counter()
    progress = Progress(enabled=tc.progress, total=tc.max_steps)

    def objective_value() -> float:
        if tc.objective == m.EVAL_RETURN:
            return result.eval_returns[-1] if result.eval_returns else math.nan
        return float(np.mean(last100)) if last100 else math.nan

    def log_window(step: int, elapsed: float) -> None:
        """Update statistics averaged since the last log, with the episode counters."""
        stats = averager.pop()
        stats[m.EPISODES] = float(len(result.episode_returns))
        stats[m.SPS] = step / max(elapsed, 1e-9)
        if last100:
            stats[m.EP_RETURN_100] = float(np.mean(last100))
        sink.log_metrics(stats, step)

    def run_eval(step: int) -> None:
        value = evaluate(eval_env, policy, tc.eval_episodes, cfg.seed + EVAL_SEED_OFFSET)
        result.eval_steps.append(step)
        result.eval_returns.append(value)
        sink.log_metrics({m.EVAL_RETURN: value}, step)

    try:
        with progress:
            while collector.steps < tc.max_steps:
                finished = collector.step()
                steps = collector.steps
                for ret, length in zip(finished.returns, finished.lengths, strict=True):
                    last100.append(ret)
                    result.episode_steps.append(steps)
                    result.episode_returns.append(ret)
                    sink.log_metrics({m.EP_RETURN: ret, m.EP_LENGTH: float(length)}, steps)

                batch = algo.ready_batch(collector.buffer)
                if batch is not None:
                    if _reached(cfg.debug.nan_at_step, steps):
                        batch = batch._replace(returns=batch.returns * math.nan)
                    averager.add(algo.update(batch))
                    collector.policy_changed()
                if _reached(cfg.debug.fail_at_step, steps):
                    raise RuntimeError(f"debug.fail_at_step reached at step {steps}")

                if steps >= next_log:
                    next_log = steps + tc.log_every
                    log_window(steps, time.perf_counter() - start)
                    progress.update(steps, len(result.episode_returns), objective_value())
                if next_eval is not None and steps >= next_eval:
                    next_eval = steps + tc.eval_every
                    run_eval(steps)
                if steps >= next_report:
                    next_report = steps + tc.report_every
                    yield steps, objective_value()
                # The mean only moves when an episode ends: no need to recompute it otherwise.
                if (
                    finished.returns
                    and target is not None
                    and len(last100) == last100.maxlen
                    and float(np.mean(last100)) >= target
                ):
                    result.solved = True
                    break
    except BaseException:
        eval_env.close()  # the final evaluation below will not run
        raise
    finally:
        env.close()
        result.seconds = time.perf_counter() - start

    steps = collector.steps
    result.steps = steps
    result.episodes = len(result.episode_returns)
    log_window(steps, result.seconds)
    try:
        run_eval(steps)
    finally:
        eval_env.close()
    result.objective = objective_value()
    return result


def _reached(at_step: int | None, steps: int) -> bool:
    """Whether a fault-injection step (``debug.*_at_step``) has been reached."""
    return at_step is not None and steps >= at_step
