"""Validation benchmark: does the search's winner survive fresh seeds?

    .venv/bin/python benchmarks/bench_validation.py [--sweeps 5] [--top-k 2] [--seeds 3]

Runs the default CartPole REINFORCE sweep (``sweeps/cartpole_reinforce.yaml``: 20 TPE
trials, median pruner, one seed per trial) once per sampler seed 0..N-1, each with its
validation stage (the top ``--top-k`` configurations on ``--seeds`` fresh seeds; the
sweep file's defaults unless given).  For each sweep it reports the search's winner (best
trial value), its validated mean, the validated winner and its validated mean, whether
the two winners differ, and what validation cost next to the search (time from the
first trial's start to the last trial's end, per study).

Every sweep runs through the real CLI in a fresh ``PG_HOME``; results are read back from
the sweep's parent run (``sweep/validation.csv``, ``pg.validated_best_*``) and the two
Optuna studies.  Other processes on the machine skew the times, not the values.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclass
class Outcome:
    sampler_seed: int
    search_best: int  # trial number of the best search value
    search_value: float  # that trial's value in the search (one seed)
    search_best_validated: float  # its mean over the fresh seeds
    search_best_ci: float
    validated_best: int  # trial number of the best validated mean
    validated_mean: float
    validated_ci: float
    search_span: float  # seconds, first trial start -> last trial end
    validation_span: float
    seconds: float  # the whole command

    @property
    def differ(self) -> bool:
        return self.search_best != self.validated_best


def span(study: object) -> float:
    trials = study.get_trials()  # type: ignore[attr-defined]
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else math.nan


def run_one(seed: int, extra: list[str]) -> Outcome:
    import optuna
    import pandas as pd

    from pg.record import names
    from pg.record.reader import Reader

    with tempfile.TemporaryDirectory(prefix="pg-bench-validation-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env.update(PG_HOME=home, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pg.run", "-m", f"hydra.sweeper.sampler.seed={seed}", *extra],
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"sweep {seed} failed\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        found = re.search(r"pg: sweep run ([0-9a-f]{32})", proc.stdout)
        assert found, proc.stdout[-2000:]
        reader = Reader.open(f"sqlite:///{home}/mlruns/mlflow.db")
        parent = reader.run(found.group(1))
        text = reader.text(parent.info.run_id, names.VALIDATION_CSV)
        assert text is not None, "the sweep wrote no validation table"
        table = pd.read_csv(io.StringIO(text)).set_index("trial")
        tags = parent.data.tags
        search_best = int(tags[names.BEST_TRIAL])
        winner = int(tags[names.VALIDATED_BEST_TRIAL])
        url = f"sqlite:///{home}/mlruns/optuna.db"
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        search = optuna.load_study(study_name="cartpole_reinforce", storage=url)
        validation = optuna.load_study(study_name="cartpole_reinforce.validation", storage=url)
        return Outcome(
            seed,
            search_best,
            float(tags[names.BEST_VALUE]),
            float(table.loc[search_best, "mean"]),
            float(table.loc[search_best, "ci95"]),
            winner,
            float(table.loc[winner, "mean"]),
            float(table.loc[winner, "ci95"]),
            span(search),
            span(validation),
            seconds,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweeps", type=int, default=5, help="sampler seeds 0..N-1")
    parser.add_argument("--top-k", type=int, help="hydra.sweeper.validate.top_k")
    parser.add_argument("--seeds", type=int, help="hydra.sweeper.validate.seeds")
    args = parser.parse_args()
    extra = []
    if args.top_k is not None:
        extra.append(f"hydra.sweeper.validate.top_k={args.top_k}")
    if args.seeds is not None:
        extra.append(f"hydra.sweeper.validate.seeds={args.seeds}")
    print(
        "| sampler seed | search winner (search value) | its validated mean ± 95% CI | "
        "validated winner | its validated mean ± 95% CI | differ | search s | validation s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    outcomes = []
    for seed in range(args.sweeps):
        o = run_one(seed, extra)
        outcomes.append(o)
        print(
            f"| {seed} | trial {o.search_best} ({o.search_value:.1f}) | "
            f"{o.search_best_validated:.1f} ± {o.search_best_ci:.1f} | trial {o.validated_best} | "
            f"{o.validated_mean:.1f} ± {o.validated_ci:.1f} | {'yes' if o.differ else 'no'} | "
            f"{o.search_span:.0f} | {o.validation_span:.0f} |",
            flush=True,
        )
    n = len(outcomes)
    differ = sum(o.differ for o in outcomes)
    optimism = sum(o.search_value - o.search_best_validated for o in outcomes) / n
    gain = sum(o.validated_mean - o.search_best_validated for o in outcomes) / n
    cost = sum(o.validation_span for o in outcomes) / sum(o.search_span for o in outcomes)
    print()
    print(f"winners differ in {differ} of {n} sweeps")
    print(f"search winner: search value - validated mean = {optimism:+.1f} on average")
    print(f"validated winner's mean - search winner's validated mean = {gain:+.1f} on average")
    print(f"validation time / search time = {cost:.2f}")


if __name__ == "__main__":
    main()
