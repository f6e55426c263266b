"""Sweep benchmark: what pruning and worker processes buy on a CartPole REINFORCE sweep.

    .venv/bin/python benchmarks/bench_sweep.py [--trials 20] [--parallel-trials 8]

1. The same 20-trial sweep (same sampler seed, same training seeds) with the median pruner
   and with no pruner: wall time and best value of each.
2. Trials per hour with ``workers=2`` against ``workers=1`` (no pruner, so every trial does
   the same work).

Every sweep runs through the real CLI in a fresh ``PG_HOME`` (own MLflow and Optuna
stores).  Times are measured from the first trial's start to the last trial's end as
recorded by Optuna (the CLI's start-up is reported separately), so they compare the
sweep itself.  Other processes on the machine skew wall times: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    label: str
    wall: float  # whole command, start-up included
    span: float  # first trial start -> last trial end
    trials: int
    pruned: int
    best: float
    steps: int  # env steps over all trials


def run_sweep(label: str, args: list[str]) -> Result:
    import optuna

    with tempfile.TemporaryDirectory(prefix="pg-bench-sweep-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env.update(PG_HOME=home, PYTHONUNBUFFERED="1")
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pg.run", "-m", *args],
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"{label}: sweep failed\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(
            study_name="cartpole_reinforce", storage=f"sqlite:///{home}/mlruns/optuna.db"
        )
        trials = study.get_trials()
        starts = [t.datetime_start for t in trials if t.datetime_start]
        ends = [t.datetime_complete for t in trials if t.datetime_complete]
        span = (max(ends) - min(starts)).total_seconds()
        return Result(
            label,
            wall,
            span,
            len(trials),
            sum(t.state.name == "PRUNED" for t in trials),
            float(study.best_value),
            sum(int(t.user_attrs.get("env_steps", 0)) for t in trials),
        )


def show(r: Result) -> None:
    print(
        f"{r.label:<22} {r.trials:>3} trials ({r.pruned:>2} pruned)  sweep {r.span:7.1f} s  "
        f"command {r.wall:7.1f} s  env steps {r.steps:>9,}  best {r.best:7.1f}  "
        f"{3600 * r.trials / r.span:7.0f} trials/h",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--parallel-trials", type=int, default=16)
    parser.add_argument("--max-steps", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3, help="1-vs-2-worker pairs")
    parser.add_argument("--skip-pruning", action="store_true", help="only the workers part")
    ns = parser.parse_args()

    common = [
        f"hydra.sweeper.n_trials={ns.trials}",
        "hydra.sweeper.sampler.seed=0",
        f"train.max_steps={ns.max_steps}",
        "train.report_every=10000",
    ]
    print(f"CPU cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.2f}", flush=True)
    if not ns.skip_pruning:
        pruned = run_sweep("median pruner", [*common, "hydra.sweeper.pruner.name=median"])
        show(pruned)
        plain = run_sweep("no pruner", [*common, "hydra.sweeper.pruner.name=none"])
        show(plain)
        print(
            f"pruning: {plain.span / pruned.span:.2f}x faster (target >= 2x), "
            f"{plain.steps / max(pruned.steps, 1):.2f}x fewer env steps; "
            f"best {pruned.best:.1f} vs {plain.best:.1f}",
            flush=True,
        )

    par = [
        f"hydra.sweeper.n_trials={ns.parallel_trials}",
        "hydra.sweeper.sampler.name=random",
        "hydra.sweeper.pruner.name=none",
        f"train.max_steps={ns.max_steps // 2}",
        "train.target_return=null",  # every trial does the same number of env steps
    ]
    # Interleaved repeats: on a shared machine a single pair can be skewed either way.
    ratios = []
    for _ in range(ns.repeat):
        one = run_sweep("1 worker", [*par, "hydra.sweeper.workers=1"])
        show(one)
        two = run_sweep("2 workers", [*par, "hydra.sweeper.workers=2"])
        show(two)
        ratios.append(one.span / two.span)
    ratios.sort()
    print(
        f"2 workers: {ratios[len(ratios) // 2]:.2f}x the trials/hour of 1 (median of "
        f"{', '.join(f'{r:.2f}' for r in ratios)}; target >= 1.7x); "
        f"load average now {os.getloadavg()[0]:.2f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
