"""``-m`` as a Hydra user means it: grids run every combination, seeds are never searched.

The real CLI against real stores, as in tests/test_sweep.py.  Budgets are tiny (2,000
env steps, no evaluation but the final one); the grids have 3 or 4 combinations.
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    NO_VALIDATION,
    ROOT,
    Store,
    kill_group,
    mid_training,
    run_module,
    start_sweep,
)

# The default config but a short budget.  Deliberately not FAST: it sets train.eval_every,
# and the point of the first test is that every other key keeps its default.
SHORT = ["train.max_steps=2000", "train.eval_episodes=2", "train.report_every=500"]
OPTUNA_DB = "mlruns/optuna.db"


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def kind(store: Store, name: str) -> list[Any]:
    return [r for r in store.runs() if r.data.tags.get("pg.kind") == name]


def only_study(store: Store) -> Any:
    import optuna

    url = f"sqlite:///{store.home / OPTUNA_DB}"
    (summary,) = optuna.get_all_study_summaries(url)
    return optuna.load_study(study_name=summary.study_name, storage=url)


def default_params(*overrides: str) -> dict[str, str]:
    """What ``python -m pg.run`` (no -m) would train, as MLflow params, via Hydra itself."""
    import importlib

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from pg.core.config import register_configs, to_config
    from pg.experiment import config_params

    importlib.import_module("hydra_plugins.pg_sweeper.pg_sweeper")
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return config_params(to_config(cfg))


def configurations(store: Store, parent_id: str) -> Any:
    import pandas as pd

    path = store.client().download_artifacts(parent_id, "sweep/configurations.csv")
    return pd.read_csv(path)


def test_seed_list_is_a_grid_of_the_default_config(store: Store) -> None:
    """``--multirun seed=0,1,2``: 3 runs, seeds 0-2, default config, one parent, no sampling."""
    out = ok(run_module("pg.run", ["--multirun", "seed=0,1,2", *SHORT], store))
    assert out.splitlines()[0].startswith("pg: grid of 3 combinations: seed (3)"), out
    (parent,) = kind(store, "sweep")
    assert parent.data.tags["pg.sweep_mode"] == "grid"
    trials = kind(store, "trial")
    assert sorted(r.data.params["seed"] for r in trials) == ["0", "1", "2"]
    # A sweep's trials print one line each and record no clip or system metrics (QUIET).
    from pg.sweep.spec import QUIET

    expected = default_params(*SHORT, *QUIET)
    for run in trials:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
        params = dict(run.data.params)
        assert params.pop("seed") == run.data.tags["pg.seed"]
        # lr, gamma, batch size and the sweep file's fixed budget (eval_every: 0) untouched
        assert params == {k: v for k, v in expected.items() if k != "seed"}
    st = only_study(store)
    assert st.study_name.startswith("grid-seed-")
    assert {k for t in st.trials for k in t.params} == {"seed"}
    table = configurations(store, parent.info.run_id)
    assert len(table) == 1 and table["n"][0] == 3 and table["ci95"][0] > 0
    assert "± " in out and "(n=3, seeds 0,1,2)" in out


def test_two_lists_run_each_combination_once_and_group_over_seeds(store: Store) -> None:
    out = ok(run_module("pg.run", ["-m", "algo=reinforce,pg", "seed=0,1", *SHORT], store))
    assert out.splitlines()[0].startswith("pg: grid of 4 combinations"), out
    runs = kind(store, "trial")
    combos = sorted((r.data.params["algo.name"], r.data.params["seed"]) for r in runs)
    assert combos == [("pg", "0"), ("pg", "1"), ("reinforce", "0"), ("reinforce", "1")]
    (parent,) = kind(store, "sweep")
    table = configurations(store, parent.info.run_id)
    assert sorted(table["params.algo"]) == ["pg", "reinforce"]
    assert list(table["n"]) == [2, 2]
    for _, row in table.iterrows():
        mine = [r for r in runs if r.data.params["algo.name"] == row["params.algo"]]
        values = [r.data.metrics["objective"] for r in mine]
        assert row["mean"] == pytest.approx(sum(values) / 2)


def test_kill_9_during_a_grid_then_rerun_runs_each_combination_once(store: Store) -> None:
    # Long enough (~4-5 s a combination, not stopped when solved) for the poll below to
    # catch the second one running.
    args = [
        "-m",
        "seed=0,1,2",
        "train.max_steps=400000",
        "train.target_return=null",
        "train.eval_every=0",
        *SHORT[1:],
    ]
    first = start_sweep(store, args)
    try:
        db = store.home / OPTUNA_DB
        deadline, victim = time.monotonic() + 180, None
        while time.monotonic() < deadline and victim is None:
            time.sleep(0.3)
            if not db.exists():
                continue
            try:
                trials = only_study(store).get_trials()
            except Exception:  # the study is being created
                continue
            running = [t for t in trials if t.state.name == "RUNNING"]
            # 400 k steps report every 500: mid-training is under 400 of its 800 reports.
            if running and running[0].number >= 1 and mid_training(running[0], 800):
                victim = running[0]
        assert victim is not None, "the second combination did not start in time"
    finally:
        kill_group(first)
    before = {t.number: t for t in only_study(store).get_trials()}
    kept = {t.params["seed"]: t for t in before.values() if t.state.name == "COMPLETE"}
    assert kept  # trial 0 finished before the kill

    out = ok(run_module("pg.run", args, store, timeout=400))
    assert f"trial {victim.number} marked FAIL" in out
    assert f"trial {victim.number} queued to run again with the same params" in out
    trials = only_study(store).get_trials()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert sorted(t.params["seed"] for t in complete) == [0, 1, 2]  # each exactly once
    assert len(trials) == 4  # three combinations plus the killed trial, kept as FAIL
    (retry,) = [t for t in trials if "pg.retry_of" in t.user_attrs]
    assert retry.user_attrs["pg.retry_of"] == victim.number
    assert retry.params == victim.params
    for seed, t in kept.items():  # finished combinations were not run again
        (again,) = [c for c in complete if c.params["seed"] == seed]
        assert again.number == t.number
        assert again.user_attrs["mlflow_run_id"] == t.user_attrs["mlflow_run_id"]
    runs = kind(store, "trial")
    assert len(runs) == 4 and len(kind(store, "sweep")) == 1
    (killed,) = [r for r in runs if r.data.tags["pg.trial_number"] == str(victim.number)]
    assert killed.info.status == "KILLED"


def test_a_failing_combination_is_a_result_and_the_grid_goes_on(store: Store) -> None:
    out = ok(run_module("pg.run", ["-m", "debug.nan_at_step=600,null", *SHORT], store))
    states = {
        r.data.params["debug.nan_at_step"]: (r.info.status, r.data.tags["pg.trial_state"])
        for r in kind(store, "trial")
    }
    assert states == {"600": ("FAILED", "FAIL"), "null": ("FINISHED", "COMPLETE")}
    assert "(n=0, 1 not complete)" in out and "no seed completed" in out
    (parent,) = kind(store, "sweep")
    assert parent.info.status == "FINISHED"


@pytest.mark.postgres
def test_two_machines_share_one_grid(store: Store, postgres_url: str) -> None:
    """The same grid command twice at once on one PostgreSQL storage: each combination once."""
    import optuna

    args = ["-m", "seed=0,1,2,3", f"hydra.sweeper.storage={postgres_url}", *SHORT]
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(run_module, "pg.run", args, store)
        time.sleep(1.0)
        second = pool.submit(run_module, "pg.run", args, store)
        outs = [ok(first.result()), ok(second.result())]
    (summary,) = optuna.get_all_study_summaries(postgres_url)
    trials = optuna.load_study(study_name=summary.study_name, storage=postgres_url).trials
    assert sorted(t.params["seed"] for t in trials) == [0, 1, 2, 3]
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert sum(o.count("pg: trial ") for o in outs) == 4
    assert sorted(r.data.params["seed"] for r in kind(store, "trial")) == ["0", "1", "2", "3"]
    assert len(kind(store, "sweep")) == 1  # both commands nest under the study's one parent


def test_a_search_runs_every_trial_on_the_seed_list(store: Store) -> None:
    out = ok(
        run_module(
            "pg.run",
            [
                "-m",
                "algo.lr=tag(log,interval(0.001,0.1))",
                "seed=0,1",
                "hydra.sweeper.n_trials=2",
                "hydra.sweeper.pruner.name=none",
                *SHORT,
                *NO_VALIDATION,
            ],
            store,
        )
    )
    assert out.splitlines()[0].startswith("pg: search: 2 trials, tpe(seed=0) over "), out
    assert "seeds 0,1 per trial" in out.splitlines()[0]
    st = only_study(store)
    assert st.study_name == "cartpole_reinforce"
    assert len(st.trials) == 2
    for t in st.trials:
        assert "seed" not in t.params and "seed" not in t.distributions
        assert {"algo.lr", "algo.gamma", "algo.batch_size"} <= set(t.params)
        mine = [
            r
            for r in kind(store, "seed")
            if r.data.tags["mlflow.parentRunId"] == t.user_attrs["mlflow_run_id"]
        ]
        assert sorted(r.data.tags["pg.seed"] for r in mine) == ["0", "1"]
        assert t.value == pytest.approx(sum(t.user_attrs["seed_values"]) / 2)


def test_hydras_basic_sweeper_runs_normal_tracked_runs(store: Store, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "hydra-sweep"
    out = ok(
        run_module(
            "pg.run",
            ["-m", "hydra/sweeper=basic", "seed=0,1", f"hydra.sweep.dir={sweep_dir}", *SHORT],
            store,
        )
    )
    runs = store.runs()
    assert sorted(r.data.tags["pg.seed"] for r in runs) == ["0", "1"]
    assert {r.data.tags["pg.kind"] for r in runs} == {"run"}
    assert all(r.info.status == "FINISHED" for r in runs)
    assert out.count("pg: MLflow run ") == 2
    # Hydra's launcher writes no copy of the config (hydra.output_subdir is null: a
    # password given on the command line must not land on disk); pg's snapshot is in MLflow.
    assert not list(sweep_dir.rglob("overrides.yaml"))
    assert not (store.home / OPTUNA_DB).exists()  # no study: Hydra's sweeper, not pg's


def test_cfg_hydra_shows_the_rule(store: Store) -> None:
    out = ok(run_module("pg.run", ["--cfg", "hydra"], store))
    assert "mode: auto" in out
    assert "rule: 'mode auto: only comma lists" in out
