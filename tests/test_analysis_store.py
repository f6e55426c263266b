"""Builders of real MLflow stores for the analysis tests (no tests of their own here).

Runs are trained in-process with ``pg.run.execute`` (the code path the CLI and the sweeper
use) with tiny budgets; sweeps follow the documented sweep record: an Optuna study driven
by ask/tell, a parent run tagged ``pg.kind=sweep``, trial runs nested under it and, with
several seeds per trial, seed runs nested under the trial run.
"""

from __future__ import annotations

import statistics
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
    from pg.config import to_config

    return to_config(
        {
            "seed": seed,
            "algo": algo,
            "train": SMALL,
            "tracking": {"uri": uri, "experiment": experiment},
        }
    )


def train(uri: str, experiment: str, seed: int, **algo: Any) -> str:
    from pg.run import Snapshot, execute

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
    states: dict[int, str] = field(default_factory=dict)


def build_sweep(
    uri: str,
    experiment: str,
    storage: str,
    study_name: str,
    n_trials: int,
    *,
    seeds: int = 1,
    prune: tuple[int, ...] = (),
    fail: tuple[int, ...] = (),
    record_storage: str | None = None,
) -> Sweep:
    """An ask/tell sweep over ``algo.lr`` and ``algo.batch_size``.

    Trials in ``prune`` are pruned at their first report, those in ``fail`` crash
    (``debug.fail_at_step``), so every trial state appears deterministically.
    """
    import optuna
    from mlflow.tracking import MlflowClient

    from pg import tracking
    from pg.run import Snapshot, execute

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=3),
    )
    base = make_config(uri, experiment)
    tracker = tracking.Tracker(base.tracking)
    client = MlflowClient(tracking_uri=uri)
    parent = tracker.start_run(
        f"sweep-{study_name}",
        {"pg.kind": "sweep", "pg.study": study_name, "pg.storage": record_storage or storage},
        None,
    )
    sweep = Sweep(parent.run_id, study_name, storage)
    with parent:
        for _ in range(n_trials):
            trial = study.ask()
            lr = trial.suggest_float("algo.lr", 1e-3, 1e-1, log=True)
            batch = trial.suggest_int("algo.batch_size", 2, 8)
            n = trial.number
            tags = {
                "pg.kind": "trial",
                "pg.study": study_name,
                "pg.trial_number": str(n),
            }
            debug = {"fail_at_step": 1500} if n in fail else {}

            def hook(step: int, value: float, trial: Any = trial, n: int = n) -> None:
                trial.report(value, step)
                if n in prune:
                    raise tracking.Stopped("pruned by the test's pruner", "KILLED")

            def config(seed: int, lr: float = lr, batch: int = batch, debug: Any = debug) -> Any:
                from pg.config import to_config

                cfg = make_config(uri, experiment, seed, lr=lr, batch_size=batch)
                raw = {"debug": debug, "seed": seed, "algo": {"lr": lr, "batch_size": batch}}
                return to_config({**_as_dict(cfg), **raw}) if debug else cfg

            state = optuna.trial.TrialState.COMPLETE
            value: float | None = None
            if seeds == 1:
                cfg = config(0)
                try:
                    value = execute(
                        cfg,
                        Snapshot.from_config(cfg),
                        parent_run_id=parent.run_id,
                        tags=tags,
                        on_report=hook,
                    ).objective
                except tracking.Stopped:
                    state = optuna.trial.TrialState.PRUNED
                except RuntimeError:
                    state = optuna.trial.TrialState.FAIL
                run_id = _find_trial(client, parent.run_id, n)
            else:
                trial_run = tracker.start_run(f"trial-{n}", tags, parent.run_id)
                with trial_run:
                    flat = tracking.flatten(_as_dict(config(0)))
                    flat.pop("seed")
                    trial_run.log_params(flat)
                    values = []
                    for s in range(seeds):
                        cfg = config(s)
                        try:
                            values.append(
                                execute(
                                    cfg,
                                    Snapshot.from_config(cfg),
                                    parent_run_id=trial_run.run_id,
                                    tags={**tags, "pg.kind": "seed"},
                                ).objective
                            )
                        except RuntimeError:
                            state = optuna.trial.TrialState.FAIL
                    if state == optuna.trial.TrialState.COMPLETE:
                        value = statistics.fmean(values)
                        trial_run.log_metrics({"objective": value}, 0)
                run_id = trial_run.run_id
            if state == optuna.trial.TrialState.COMPLETE:
                study.tell(trial, value)
            else:
                study.tell(trial, state=state)
            client.set_tag(run_id, "pg.trial_state", state.name)
            sweep.trial_runs[n] = run_id
            sweep.states[n] = state.name
    return sweep


def _as_dict(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    out = OmegaConf.to_container(OmegaConf.structured(cfg))
    assert isinstance(out, dict)
    return out  # type: ignore[return-value]


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
    sweep = build_sweep(
        uri,
        "sweeps",
        f"sqlite:///{home / 'study.db'}",
        "s1",
        6,
        prune=(2,),
        fail=(4,),
    )
    seeded = build_sweep(
        uri,
        "sweeps",
        f"sqlite:///{home / 'study2.db'}",
        "s2",
        3,
        seeds=2,
        record_storage="postgresql://pg:***@db.example:5432/optuna",
    )
    return {"uri": uri, "grid": grid, "sweep": sweep, "seeded": seeded}
