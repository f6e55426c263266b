"""Builders of real MLflow stores for the analysis tests (no tests of their own here).

Runs are trained in-process with ``pg.experiment.execute`` (the code path the CLI and the
sweeper use) with tiny budgets; sweeps are made by the real sweeper CLI, so analysis is
tested against the record the sweeper writes, not a copy of its rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SMALL = {
    "max_steps": 3000,
    "eval_every": 0,
    "eval_episodes": 2,
    "log_every": 500,
    "report_every": 1000,
    "progress": False,
}


def make_config(uri: str, experiment: str, seed: int = 0, **algo: Any) -> Any:
    from pg.core.config import to_config

    return to_config(
        {
            "seed": seed,
            "algo": algo,
            "train": SMALL,
            "tracking": {"uri": uri, "experiment": experiment},
        }
    )


def train(uri: str, experiment: str, seed: int, **algo: Any) -> str:
    from pg.experiment import Snapshot, execute

    cfg = make_config(uri, experiment, seed, **algo)
    outcome = execute(cfg, Snapshot.from_config(cfg, [f"seed={seed}"]))
    assert outcome.run_id is not None
    return outcome.run_id


@dataclass
class Sweep:
    run_id: str
    study: str
    storage: str
    trial_runs: dict[int, str] = field(default_factory=dict)  # trial number -> run id
    states: dict[int, str] = field(default_factory=dict)  # trial number -> Optuna state
    params: list[str] = field(default_factory=list)  # the study's parameter names


def build_sweep(home: Path, experiment: str, study_name: str, *args: str) -> Sweep:
    """A sweep made by the real sweeper: ``python -m pg.run -m`` as a subprocess.

    Its trial runs and states are then read back from MLflow and the Optuna study
    directly, so the analysis tests compare against the record as the sweeper wrote it.
    """
    import optuna
    from mlflow.tracking import MlflowClient

    from tests.conftest import FAST, NO_VALIDATION, Store, run_module

    storage = f"sqlite:///{home / (study_name + '.db')}"
    done = run_module(
        "pg.run",
        [
            "-m",
            f"hydra.sweeper.study_name={study_name}",
            f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.sampler.name=random",
            "hydra.sweeper.sampler.seed=3",
            *FAST,
            *NO_VALIDATION,
            "train.progress=false",
            f"tracking.experiment={experiment}",
            *args,
        ],
        Store(home),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"sweep run ([0-9a-f]{32})", done.stdout)
    assert found, done.stdout + done.stderr
    study = optuna.load_study(study_name=study_name, storage=storage)
    sweep = Sweep(found.group(1), study_name, storage)
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
    for trial in study.get_trials():
        sweep.states[trial.number] = trial.state.name
        sweep.trial_runs[trial.number] = _find_trial(client, sweep.run_id, trial.number)
        sweep.params.extend(p for p in trial.params if p not in sweep.params)
    return sweep


def _find_trial(client: Any, parent: str, number: int) -> str:
    runs = client.search_runs(
        [client.get_run(parent).info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent}' and tags.`pg.trial_number` = '{number}'",
    )
    assert len(runs) == 1, runs
    return str(runs[0].info.run_id)


def build_all(home: Path) -> dict[str, Any]:
    """The store every analysis test reads (one build per test module)."""
    db = home / "mlruns" / "mlflow.db"
    uri = f"sqlite:///{db}"
    grid: dict[str, list[str]] = {"0.01": [], "0.03": []}
    for lr in grid:
        for seed in range(3):
            grid[lr].append(train(uri, "grid", seed, lr=float(lr)))
    # Every trial state: crashes come from the space (debug.fail_at_step=1500 fails,
    # 100000 is past the budget), pruning from the median pruner with no warm-up.
    sweep = build_sweep(
        home,
        "sweeps",
        "s1",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.max_failure_rate=0.9",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0",
        "algo.lr=0.001,0.01,0.05",
        "debug.fail_at_step=1500,100000",
    )
    seeded = build_sweep(
        home,
        "sweeps",
        "s2",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.seeds=2",
        "hydra.sweeper.pruner.name=none",
    )
    # As if the study had lived on a PostgreSQL server: the recorded address is redacted,
    # so analysis must rebuild the trials from the MLflow runs.
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=uri).set_tag(
        seeded.run_id, "pg.storage", "postgresql://pg:***@db.example:5432/optuna"
    )
    return {"uri": uri, "grid": grid, "sweep": sweep, "seeded": seeded}
