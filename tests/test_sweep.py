"""``python -m pg.run -m``: the Optuna sweep, run as a user would, against real stores."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    FAST,
    NO_VALIDATION,
    Store,
    kill_group,
    mid_training,
    run_module,
    start_sweep,
)

# One report per 500 steps of a 2,000-step budget: four chances to prune.
TINY = [*FAST, "train.max_steps=2000", "train.report_every=500"]
PRUNE_NOW = ["hydra.sweeper.pruner.n_startup_trials=2", "hydra.sweeper.pruner.n_warmup_steps=0"]


def sweep(store: Store, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return run_module("pg.run", ["-m", *TINY, *NO_VALIDATION, *args], store, timeout=timeout)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def study(store: Store, name: str = "cartpole_reinforce", url: str | None = None) -> Any:
    import optuna

    return optuna.load_study(
        study_name=name, storage=url or f"sqlite:///{store.home}/mlruns/optuna.db"
    )


def runs_of(store: Store, kind: str) -> list[Any]:
    return [r for r in store.runs() if r.data.tags.get("pg.kind") == kind]


def objective(store: Store, run_id: str) -> float:
    history = store.client().get_metric_history(run_id, "objective")
    assert history, f"run {run_id} has no objective"
    return float(history[-1].value)


def assert_agree(store: Store, st: Any) -> None:
    """Optuna and MLflow tell the same story: one trial run per trial, same state/value."""
    trials = {t.number: t for t in st.get_trials()}
    runs = {int(r.data.tags["pg.trial_number"]): r for r in runs_of(store, "trial")}
    assert sorted(runs) == sorted(trials)
    (parent,) = runs_of(store, "sweep")
    for number, trial in trials.items():
        run = runs[number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["pg.study"] == st.study_name
        assert run.data.tags["pg.trial_state"] == trial.state.name
        if trial.state.name in ("COMPLETE", "PRUNED"):
            assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
            assert objective(store, run.info.run_id) == pytest.approx(trial.value)
        # Pruning is the sweep working: FINISHED, with pg.trial_state saying PRUNED.
        expected = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": ("FAILED", "KILLED")}
        assert run.info.status in expected[trial.state.name]


def test_sweep_prunes_records_and_agrees(store: Store) -> None:
    """Episodes capped at 10 steps score ~half of uncapped ones: the median pruner stops them."""
    out = ok(
        sweep(
            store,
            "hydra.sweeper.n_trials=5",
            "hydra.sweeper.sampler.name=random",
            "hydra.sweeper.sampler.seed=9",  # draws 500, 500, then 10, 10, 10
            *PRUNE_NOW,
            "env.max_episode_steps=500,10",  # a comma list: a categorical choice
        )
    )
    # The study file on this local disk commits to SQLite's write-ahead log, folded back
    # into the file when the sweep's processes end (nothing of it is left beside it).
    db = store.home / "mlruns" / "optuna.db"
    assert sorted(p.name for p in db.parent.glob("optuna.db*")) == ["optuna.db"]
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    with contextlib.closing(sqlite3.connect(store.db)) as conn:  # see pg.record.local_sqlite
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    st = study(store)
    trials = st.get_trials()
    assert len(trials) == 5
    states = [t.state.name for t in trials]
    assert states == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED", "PRUNED"], states
    for t in trials:
        if t.state.name == "PRUNED":
            assert t.params["env.max_episode_steps"] == 10
            assert t.user_attrs["env_steps"] < 2000  # stopped early
        if t.state.name == "COMPLETE":
            assert t.user_attrs["env_steps"] >= 2000
    assert_agree(store, st)
    assert out.count("pg: trial ") == 5
    assert out.splitlines()[-1].startswith(f"pg: best trial {st.best_trial.number}: value")

    (parent,) = runs_of(store, "sweep")
    tags = parent.data.tags
    assert parent.info.status == "FINISHED"
    assert tags["pg.study"] == "cartpole_reinforce"
    assert tags["pg.best_trial"] == str(st.best_trial.number)
    assert tags["pg.best_run_id"] == st.best_trial.user_attrs["mlflow_run_id"]
    client = store.client()
    names = {f.path for f in client.list_artifacts(parent.info.run_id, "sweep")}
    assert {
        "sweep/trials.csv",
        "sweep/best_params.yaml",
        "sweep/optimization_history.png",
        "sweep/definition.yaml",
    } <= names
    best = Path(client.download_artifacts(parent.info.run_id, "sweep/best_params.yaml"))
    import yaml

    best_doc = yaml.safe_load(best.read_text())
    assert "env.max_episode_steps=500" in best_doc["overrides"]
    # A single-seed trial run is a complete training run (snapshot, weights).
    trial_run = client.get_run(st.best_trial.user_attrs["mlflow_run_id"])
    files = {f.path for f in client.list_artifacts(trial_run.info.run_id, "config")}
    assert "config/config.yaml" in files
    assert trial_run.data.params["env.max_episode_steps"] == "500"


def test_multi_seed_value_is_mean_of_seed_runs(store: Store) -> None:
    ok(
        sweep(
            store,
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.seeds=2",
            "hydra.sweeper.pruner.name=none",
            "seed=5",
        )
    )
    st = study(store)
    trials = st.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    seeds = runs_of(store, "seed")
    assert len(seeds) == 4
    for t in trials:
        trial_run = t.user_attrs["mlflow_run_id"]
        mine = [r for r in seeds if r.data.tags["mlflow.parentRunId"] == trial_run]
        assert sorted(r.data.tags["pg.seed"] for r in mine) == ["5", "6"]
        values = [objective(store, r.info.run_id) for r in mine]
        assert t.value == pytest.approx(sum(values) / 2)
        assert sorted(t.user_attrs["seed_values"]) == pytest.approx(sorted(values))
        assert all(r.data.tags["pg.trial_state"] == "COMPLETE" for r in mine)
        assert "seed" not in store.client().get_run(trial_run).data.params
        # The trial run keeps the seed-mean curve at every report point.
        curve = store.client().get_metric_history(trial_run, "rollout/ep_return_100")
        assert len(curve) >= 3
    assert_agree(store, st)


def test_nan_trial_fails_and_sweep_goes_on(store: Store) -> None:
    out = ok(
        sweep(
            store,
            "hydra.sweeper.n_trials=4",
            "hydra.sweeper.sampler.name=random",
            "hydra.sweeper.pruner.name=none",
            "hydra.sweeper.max_failure_rate=1.0",
            "debug.nan_at_step=600,null",
        )
    )
    st = study(store)
    trials = st.get_trials()
    assert len(trials) == 4
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert failed and len(failed) < 4, [t.state.name for t in trials]
    for t in failed:
        assert t.params["debug.nan_at_step"] == 600
        assert "Divergence" in t.system_attrs["pg.reason"]
    # Failed by itself: a result, not run again.
    assert not any("pg.retry_of" in t.user_attrs for t in trials)
    assert "queued to run again" not in out
    runs = {int(r.data.tags["pg.trial_number"]): r for r in runs_of(store, "trial")}
    for t in failed:
        run = runs[t.number]
        assert run.info.status == "FAILED"
        assert "Divergence" in run.data.tags["pg.error"]
    assert "FAIL" in out
    assert_agree(store, st)


def test_too_many_failures_stop_the_sweep(store: Store) -> None:
    proc = sweep(
        store,
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.max_failure_rate=0.2",
        "debug.fail_at_step=100",
    )
    assert proc.returncode == 1
    assert "failed" in proc.stderr
    st = study(store)
    assert len(st.get_trials()) == 2  # more than 0.2 * 6 failures: stop asking
    (parent,) = runs_of(store, "sweep")
    assert parent.info.status == "FAILED"


def test_kill_9_then_resume_keeps_exactly_n_trials(store: Store) -> None:
    args = [
        "-m",
        *TINY,
        *NO_VALIDATION,
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.pruner.name=none",
        # Long enough to be killed mid-trial: no stop on solving (a fast machine solved
        # 300k-step trials within the second the test once waited before the kill).
        "train.max_steps=1000000",
        "train.target_return=null",
        "train.report_every=1000",
    ]
    first = start_sweep(store, args)
    try:
        db = store.home / "mlruns" / "optuna.db"
        deadline = time.monotonic() + 120
        victim = None
        while time.monotonic() < deadline and victim is None:
            time.sleep(0.5)
            if not db.exists():
                continue
            try:
                running = [t for t in study(store).get_trials() if t.state.name == "RUNNING"]
            except Exception:
                continue
            # Mid-training (under 500 of its 1000 reports), not merely with its run id
            # known, which can first be the case at the run's end: the kill then landed
            # after the trial had completed.
            if running and mid_training(running[0], 1000):
                victim = running[0].number
        assert victim is not None, "no trial started in time"
    finally:
        kill_group(first)

    out = ok(
        sweep(
            store,
            "hydra.sweeper.n_trials=4",
            "hydra.sweeper.pruner.name=none",
            "train.max_steps=1500",
            timeout=300,
        )
    )
    assert f"trial {victim} marked FAIL" in out
    assert f"trial {victim} queued to run again with the same params (retry 1 of 1)" in out
    st = study(store)
    trials = st.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3, 4]  # n_trials plus one retry
    orphan = trials[victim]
    assert orphan.state.name == "FAIL"
    assert orphan.system_attrs["pg.reason"].startswith("orphaned")
    (retry,) = [t for t in trials if t.user_attrs.get("pg.retry_of") == victim]
    assert retry.params == orphan.params and retry.state.name == "COMPLETE"
    assert f"(retry of trial {victim})" in out
    # n_trials trials that ran to their own end; the orphan is not one of them
    assert sum(1 for t in trials if t.state.name == "COMPLETE") == 4
    runs = runs_of(store, "trial")
    assert len(runs) == 5  # the orphan's run is kept (KILLED); no other trial ran twice
    (killed,) = [r for r in runs if r.data.tags["pg.trial_number"] == str(victim)]
    assert killed.info.status == "KILLED"
    assert killed.data.tags["pg.trial_state"] == "FAIL"
    (again,) = [r for r in runs if r.data.tags["pg.trial_number"] == str(retry.number)]
    assert again.data.tags["pg.retry_of"] == str(victim)
    assert len(runs_of(store, "sweep")) == 1  # the resumed sweep reopens its parent run
    assert_agree(store, st)


@pytest.mark.postgres
def test_two_processes_share_one_postgres_study(store: Store, postgres_url: str) -> None:
    """Two sweep commands (one with 2 worker processes) on one study: exactly n_trials."""
    common = [
        "hydra.sweeper.n_trials=5",
        "hydra.sweeper.pruner.name=none",
        f"hydra.sweeper.storage={postgres_url}",
        "hydra.sweeper.study_name=shared",
    ]
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(sweep, store, *common, "hydra.sweeper.workers=2")
        time.sleep(1.0)
        b = pool.submit(sweep, store, *common)
        outs = [ok(a.result()), ok(b.result())]
    st = study(store, "shared", postgres_url)
    trials = st.get_trials()
    assert sorted(t.number for t in trials) == list(range(5))
    assert all(t.state.name == "COMPLETE" for t in trials)
    runs = runs_of(store, "trial")
    assert sorted(int(r.data.tags["pg.trial_number"]) for r in runs) == list(range(5))
    assert sum(o.count("pg: trial ") for o in outs) == 5
    assert_agree(store, st)
    assert postgres_url.split("@")[-1] in runs_of(store, "sweep")[0].data.tags["pg.storage"]


BAD_SWEEPS = {
    "unknown key": (["+hydra.sweeper.n_trails=3"], "unknown key"),
    "empty space": (["~hydra.sweeper.params"], "search space is empty"),
    "bad grammar": (["sweep=broken"], "not valid override grammar"),
    "unknown sampler": (["hydra.sweeper.sampler.name=annealing"], "unknown sampler"),
    "unknown pruner": (["hydra.sweeper.pruner.name=patient"], "unknown pruner"),
    "bad trial config": (["algo.lr=-1,0.1"], "algo.lr"),
    "unreachable storage": (
        ["hydra.sweeper.storage=postgresql://postgres:s3cret@127.0.0.1:1/nowhere"],
        "cannot open storage",
    ),
}


def test_bad_sweep_definitions_fail_before_anything_starts(store: Store, tmp_path: Path) -> None:
    extra = tmp_path / "extra" / "sweep"
    extra.mkdir(parents=True)
    (extra / "broken.yaml").write_text(
        "# @package hydra.sweeper\nstudy_name: broken\nn_trials: 2\n"
        "params:\n  algo.lr: interval(0.1\n"
    )
    search = f"hydra.searchpath=[file://{extra.parent}]"

    def attempt(case: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        args, _ = BAD_SWEEPS[case]
        return case, sweep(store, search, *args, timeout=120)

    started = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(attempt, BAD_SWEEPS))
    for case, proc in results:
        expected = BAD_SWEEPS[case][1]
        assert proc.returncode != 0, case
        assert "pg: invalid sweep:" in proc.stderr, (case, proc.stderr[-2000:])
        assert expected in proc.stderr, (case, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, case
        assert "pg: trial" not in proc.stdout, case
        if case == "unreachable storage":
            assert "s3cret" not in proc.stderr + proc.stdout
    assert store.runs() == []  # no MLflow run was created
    assert time.monotonic() - started < 120


def test_plain_run_is_unchanged_by_the_sweep_group(store: Store) -> None:
    """Without -m the sweep file has no effect on the config (it lives under hydra.sweeper)."""
    proc = run_module("pg.run", ["--cfg", "job"], store)
    assert proc.returncode == 0, proc.stderr
    assert "study_name" not in proc.stdout and "train:" in proc.stdout


def test_storage_password_never_reaches_mlflow(store: Store, postgres_url: str) -> None:
    """Trust authentication ignores the password, so the sweep runs and we can look for it."""
    secret = "sw33p-s3cret"
    url = postgres_url.replace("postgres@", f"postgres:{secret}@", 1)
    out = ok(
        sweep(
            store,
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.pruner.name=none",
            f"hydra.sweeper.storage={url}",
            "hydra.sweeper.study_name=secret",
        )
    )
    assert secret not in out
    client = store.client()
    runs = store.runs()
    assert {r.data.tags.get("pg.kind") for r in runs} == {"sweep", "trial"}
    (parent,) = runs_of(store, "sweep")
    assert "***@" in parent.data.tags["pg.storage"]
    for run in runs:
        for key, value in [*run.data.params.items(), *run.data.tags.items()]:
            assert secret not in value, (run.info.run_id, key)
        target = store.home / "download" / run.info.run_id
        target.mkdir(parents=True)
        client.download_artifacts(run.info.run_id, "", str(target))
        for path in target.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
