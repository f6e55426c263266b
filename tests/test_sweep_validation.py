"""``hydra.sweeper.validate``: a search's best configurations re-trained on fresh seeds.

Whole-program tests run the CLI against real SQLite stores and compute the expected
table themselves from the validation runs' final objectives in MLflow; the unit tests
check the statistics against values worked out by hand.
"""

from __future__ import annotations

import math
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import yaml

from pg.stats import t_interval
from pg.sweep.spec import SweepError, build_spec
from pg.sweep.validation import validation_seeds
from pg.sweep.validation_table import top_configurations, validation_table, winner
from tests.conftest import (
    Store,
    follow,
    kill_group,
    mid_training,
    run_module,
    sigkill_a_worker,
    start_sweep,
)
from tests.test_bad_input import assert_refused
from tests.test_sweep import TINY, ok, runs_of, study

T_975 = {2: 4.302652729911275, 1: 12.706204736174704}  # Student t(0.975, df), from tables


def validation_trials(db: str) -> list[optuna.trial.FrozenTrial]:
    """The running sweep's validation trials so far (none before the study exists)."""
    name = "cartpole_reinforce.validation"
    try:
        return optuna.load_study(study_name=name, storage=db).get_trials()
    except Exception:  # not created yet, or the sweep holds the database at this moment
        return []


def just_started(trial: optuna.trial.FrozenTrial) -> bool:
    """Mid-training (a pair of 300 k steps reports every 1 k and is never stopped early).
    Counted in reports: a pair trained in 2.5-5 s on the machines seen first, 9 s on a
    slower one, where its run id came more than 2 s after its start."""
    return mid_training(trial, 300)


def objective(store: Store, run_id: str) -> float:
    history = store.client().get_metric_history(run_id, "objective")
    assert history, run_id
    return float(history[-1].value)


def expected_row(values: list[float]) -> tuple[float, float, float]:
    """Mean, sample std and 95 % Student-t half-width, written out independently."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, std, T_975[n - 1] * std / math.sqrt(n)


def validation_csv(store: Store, parent_id: str) -> pd.DataFrame:
    path = store.client().download_artifacts(parent_id, "sweep/validation.csv")
    return pd.read_csv(path)


# -- whole program ------------------------------------------------------------------------


def test_default_sweep_validates_top_2_on_3_fresh_seeds(store: Store, tmp_path: Path) -> None:
    """The default sweep file's validation (top_k 2, seeds 3): table = the runs' numbers."""
    out = ok(
        run_module(
            "pg.run",
            [
                "-m",
                *TINY,
                "hydra.sweeper.n_trials=3",
                "hydra.sweeper.pruner.name=none",
                "hydra.sweeper.sampler.name=random",
            ],
            store,
            timeout=300,
        )
    )
    assert "validation of the top 2 on fresh seeds 1,2,3" in out.splitlines()[0]
    st = study(store)
    ranked = sorted(st.get_trials(), key=lambda t: (-t.value, t.number))
    top2 = [t.number for t in ranked[:2]]
    (parent,) = runs_of(store, "sweep")
    search_seeds = {r.data.tags["pg.seed"] for r in runs_of(store, "trial")}
    assert search_seeds == {"0"}

    validation = runs_of(store, "validation")
    assert len(validation) == 6
    by_trial: dict[int, dict[int, Any]] = {}
    for run in validation:
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED" and tags["pg.trial_state"] == "COMPLETE"
        number, seed = int(tags["pg.validated_trial"]), int(tags["pg.seed"])
        assert run.info.run_name == f"v{number:03d} seed {seed}"
        assert tags["pg.seed"] not in search_seeds  # fresh: never a search seed
        validated = st.trials[number]
        for key, value in validated.params.items():
            assert run.data.params[key] == str(value)  # the configuration, not a new one
        by_trial.setdefault(number, {})[seed] = run
    assert sorted(by_trial) == sorted(top2)
    assert all(sorted(seeds) == [1, 2, 3] for seeds in by_trial.values())

    table = validation_csv(store, parent.info.run_id)
    assert len(table) == 2
    means = {}
    for row in table.to_dict("records"):
        runs = by_trial[int(row["trial"])]
        values = [objective(store, runs[s].info.run_id) for s in (1, 2, 3)]
        mean, std, half = expected_row(values)
        means[int(row["trial"])] = mean
        assert row["mean"] == pytest.approx(mean)
        assert row["std"] == pytest.approx(std)
        assert row["ci95"] == pytest.approx(half)
        assert row["ci_low"] == pytest.approx(mean - half)
        assert row["ci_high"] == pytest.approx(mean + half)
        assert row["n_seeds"] == 3 and row["seeds"] == "1 2 3"
        assert row["search_value"] == pytest.approx(st.trials[int(row["trial"])].value)
        assert set(row["run_ids"].split()) == {r.info.run_id for r in runs.values()}
    best = max(means, key=lambda n: means[n])
    assert list(table["trial"]) == sorted(means, key=lambda n: -means[n])
    tags = parent.data.tags
    assert tags["pg.validated_best_trial"] == str(best)
    assert float(tags["pg.validated_best_value"]) == pytest.approx(means[best])
    assert set(tags["pg.validated_best_run_ids"].split()) == {
        r.info.run_id for r in by_trial[best].values()
    }
    # The file to train the validated winner again, beside best_params.yaml (the search's).
    text = Path(
        store.client().download_artifacts(parent.info.run_id, "sweep/validated_params.yaml")
    ).read_text()
    chosen = yaml.safe_load(text)
    assert chosen["trial"] == best and chosen["study"] == "cartpole_reinforce"
    assert chosen["params"] == st.trials[best].params
    assert chosen["validated_mean"] == pytest.approx(means[best])
    assert chosen["search_value"] == pytest.approx(st.trials[best].value)
    assert chosen["seeds"] == [1, 2, 3]
    assert set(chosen["validation_run_ids"]) == {r.info.run_id for r in by_trial[best].values()}
    command = text.splitlines()[1]
    assert command.startswith("#   python -m pg.run ")
    for key, value in st.trials[best].params.items():
        assert f" {key}={value}" in command
        assert f"{key}={value}" in chosen["overrides"]
    last = out.splitlines()[-1]
    assert last.startswith(f"pg: validated best: trial {best} ")
    assert ("NOT the search's best" in last) == (best != st.best_trial.number)

    report = run_module(
        "analysis",
        ["report", "--sweep", parent.info.run_id, "--out", str(tmp_path / "rep")],
        store,
    )
    assert report.returncode == 0, report.stderr
    assert "Validation on fresh seeds" in report.stdout
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "Validation on fresh seeds" in html
    shown = pd.read_csv(tmp_path / "rep" / "validation.csv")
    assert list(shown["trial"]) == list(table["trial"])


def worker_processes(sweep: subprocess.Popen[str], timeout: float = 300) -> tuple[set[int], str]:
    """Pids of every worker process seen while ``sweep`` ran (a child that is a fork of
    the sweep, with its command line; not a record process), and its output.  A child
    counts once seen on two polls: the record process the sweep starts shows the sweep's
    command line too, until it has exec'd."""
    polls: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while sweep.poll() is None:
        if time.monotonic() > deadline:
            kill_group(sweep)
            pytest.fail("the sweep did not end")
        for proc in Path("/proc").iterdir():
            try:
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent == sweep.pid and b"pg.run" in (proc / "cmdline").read_bytes():
                    polls[int(proc.name)] = polls.get(int(proc.name), 0) + 1
            except (OSError, ValueError, IndexError):
                continue  # not a process, or gone meanwhile
        time.sleep(0.05)
    assert sweep.stdout is not None
    return {pid for pid, n in polls.items() if n > 1}, sweep.stdout.read()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_seed_list_search_validates_on_seeds_after_it_with_two_workers(store: Store) -> None:
    """``seed=4,7``: each trial trains seeds 4 and 7, validation takes 8 and 9; the second
    worker is one process for both stages, gone when the sweep ends."""
    sweep = start_sweep(
        store,
        [
            "-m",
            *TINY,
            "sweep=cartpole_reinforce",  # a search (a seed list alone is a grid)
            "seed=4,7",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.pruner.name=none",
            "hydra.sweeper.workers=2",
            "hydra.sweeper.validate.top_k=1",
            "hydra.sweeper.validate.seeds=2",
        ],
        capture=True,
    )
    workers, out = worker_processes(sweep)
    assert sweep.returncode == 0, out
    assert len(workers) == 1, workers  # started once, kept for the validation
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert {r.data.tags["pg.seed"] for r in runs_of(store, "seed")} == {"4", "7"}
    validation = runs_of(store, "validation")
    assert sorted(r.data.tags["pg.seed"] for r in validation) == ["8", "9"]
    st = study(store)
    assert {r.data.tags["pg.validated_trial"] for r in validation} == {str(st.best_trial.number)}
    (parent,) = runs_of(store, "sweep")
    (row,) = validation_csv(store, parent.info.run_id).to_dict("records")
    values = [objective(store, r.info.run_id) for r in validation]
    assert row["mean"] == pytest.approx(sum(values) / 2)
    assert row["ci95"] == pytest.approx(expected_row(values)[2])
    assert "the same configuration as the search's best" in out.splitlines()[-1]


def test_kill_9_during_validation_then_resume_repeats_no_finished_pair(store: Store) -> None:
    args = [
        "-m",
        *TINY,
        "train.max_steps=300000",
        "train.target_return=null",
        "train.report_every=1000",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.pruner.name=none",
        "hydra.sweeper.validate.top_k=1",
        "hydra.sweeper.validate.seeds=3",
    ]
    first = start_sweep(store, args)
    db = f"sqlite:///{store.home}/mlruns/optuna.db"
    done_before: set[tuple[int, int]] = set()
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            time.sleep(0.1)
            trials = validation_trials(db)
            running = [t for t in trials if just_started(t)]
            if running and any(t.state.name == "COMPLETE" for t in trials):
                break
        else:
            pytest.fail("validation never had a finished and a running pair at once")
    finally:
        kill_group(first)
    vstudy = optuna.load_study(study_name="cartpole_reinforce.validation", storage=db)
    for t in vstudy.get_trials():
        if t.state.name == "COMPLETE":
            done_before.add((t.user_attrs["pg.validates"], t.user_attrs["pg.validation_seed"]))
    cut = [t for t in vstudy.get_trials() if t.state.name == "RUNNING"]
    assert done_before and cut

    out = ok(run_module("pg.run", args, store, timeout=300))
    assert "marked FAIL (orphaned" in out
    runs = runs_of(store, "validation")
    per_pair: dict[tuple[int, int], list[Any]] = {}
    for run in runs:
        pair = (int(run.data.tags["pg.validated_trial"]), int(run.data.tags["pg.seed"]))
        per_pair.setdefault(pair, []).append(run)
    assert len(per_pair) == 3
    for pair, pair_runs in per_pair.items():
        finished = [r for r in pair_runs if r.data.tags["pg.trial_state"] == "COMPLETE"]
        assert len(finished) == 1, pair  # every pair has exactly one result
        if pair in done_before:
            assert len(pair_runs) == 1, pair  # finished before the kill: not run again
    # A cut pair has a KILLED run unless the kill came before its run was created.
    killed = [r for r in runs if r.info.status == "KILLED"]
    cut_pairs = {(t.user_attrs["pg.validates"], t.user_attrs["pg.validation_seed"]) for t in cut}
    assert killed and len(killed) <= len(cut)
    for run in killed:
        assert run.data.tags["pg.trial_state"] == "FAIL"
        assert (
            int(run.data.tags["pg.validated_trial"]),
            int(run.data.tags["pg.seed"]),
        ) in cut_pairs
    assert len(runs) == 3 + len(killed)
    (parent,) = runs_of(store, "sweep")
    table = validation_csv(store, parent.info.run_id)
    assert list(table["n_seeds"]) == [3]


def test_a_validation_pair_whose_worker_dies_runs_again_in_the_same_command(
    store: Store,
) -> None:
    """SIGKILL the second worker process while it trains a validation pair: the sweep
    marks that pair FAIL (orphaned), queues it again and trains it before it ends, so
    the one command still ends with every pair validated and exit code 0."""
    sweep = start_sweep(
        store,
        [
            "-m",
            *TINY,
            "train.max_steps=300000",
            "train.target_return=null",
            "train.report_every=1000",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.pruner.name=none",
            "hydra.sweeper.workers=2",
            "hydra.sweeper.validate.top_k=1",
            "hydra.sweeper.validate.seeds=3",
        ],
        capture=True,
    )
    output, reader = follow(sweep)
    db = f"sqlite:///{store.home}/mlruns/optuna.db"
    try:
        # The kept worker process, mid-pair.
        trial, _ = sigkill_a_worker(
            sweep,
            lambda: validation_trials(db),
            just_started,
            240,
            "no validation pair ran in the second worker",
            output,
        )
        code = sweep.wait(timeout=300)
    finally:
        kill_group(sweep)
        reader.join(5)
    out = "".join(output)
    assert code == 0, out[-4000:]
    assert f"worker 1 was killed (signal {int(signal.SIGKILL)})" in out
    vname = "cartpole_reinforce.validation"
    assert f"pg: trial {trial.number} of study '{vname}' marked FAIL (orphaned" in out
    assert "still running in another process" not in out  # it was failed, not waited for
    vstudy = optuna.load_study(study_name="cartpole_reinforce.validation", storage=db)
    dead = vstudy.trials[trial.number]
    assert dead.state.name == "FAIL"
    again = [
        t
        for t in vstudy.trials
        if t.state.name == "COMPLETE"
        and t.user_attrs["pg.validation_seed"] == dead.user_attrs["pg.validation_seed"]
    ]
    assert len(again) == 1 and again[0].number > dead.number  # queued again, ran after
    (parent,) = runs_of(store, "sweep")
    assert list(validation_csv(store, parent.info.run_id)["n_seeds"]) == [3]
    killed = [r for r in runs_of(store, "validation") if r.info.status == "KILLED"]
    assert [r.data.tags["pg.trial_state"] for r in killed] == ["FAIL"]


def test_a_grid_says_validation_does_not_apply(store: Store) -> None:
    out = ok(
        run_module(
            "pg.run",
            ["-m", *TINY, "seed=0,1", "hydra.sweeper.validate.top_k=2"],
            store,
            timeout=300,
        )
    )
    assert "hydra.sweeper.validate is not used by a grid" in out
    assert runs_of(store, "validation") == []
    names = optuna.get_all_study_names(f"sqlite:///{store.home}/mlruns/optuna.db")
    assert not [n for n in names if n.endswith(".validation")]


@pytest.mark.parametrize(
    ("arg", "words"),
    [
        ("hydra.sweeper.validate.top_k=-1", ["hydra.sweeper.validate.top_k=-1", "[0, 1000]"]),
        ("hydra.sweeper.validate.seeds=abc", ["hydra.sweeper.validate.seeds='abc'", "integer"]),
        ("+hydra.sweeper.validate.topk=2", ["hydra.sweeper.validate", "topk", "top_k, seeds"]),
    ],
)
def test_bad_validate_values_are_refused_in_one_line(
    fresh_store: Store, arg: str, words: list[str]
) -> None:
    result = run_module("pg.run", ["-m", "+debug=fast", arg], fresh_store, timeout=120)
    assert_refused(result, fresh_store, "pg: invalid sweep:", *words)


# -- units --------------------------------------------------------------------------------


def test_t_interval_against_hand_computed_values() -> None:
    # 1, 2, 3, 4: mean 2.5, s = sqrt(5/3) = 1.2909944, t(0.975, 3) = 3.1824463,
    # half-width = 3.1824463 * 1.2909944 / 2 = 4.1085205 / 2 = 2.0542603
    mean, std, half = t_interval([1.0, 2.0, 3.0, 4.0])
    assert (mean, std, half) == pytest.approx((2.5, 1.2909944, 2.0542603), rel=1e-6)
    # 10, 12: mean 11, s = sqrt(2), half-width = t(0.975, 1) * sqrt(2) / sqrt(2) = 12.7062047
    assert t_interval([10.0, 12.0]) == pytest.approx((11.0, math.sqrt(2), 12.7062047))
    one = t_interval([5.0])
    assert one[0] == 5.0 and math.isnan(one[1]) and math.isnan(one[2])
    assert all(math.isnan(x) for x in t_interval([]))


def test_fresh_seeds_follow_the_largest_search_seed() -> None:
    assert validation_seeds([0], 3) == [1, 2, 3]
    assert validation_seeds([0, 1, 2], 2) == [3, 4]
    assert validation_seeds([9, 4], 1) == [10]
    assert not set(validation_seeds([5, 6, 7], 3)) & {5, 6, 7}


@pytest.mark.parametrize(
    ("validate", "message"),
    [
        ({"top_k": 1.5}, "hydra.sweeper.validate.top_k=1.5"),
        ({"seeds": 0}, "hydra.sweeper.validate.seeds=0"),
        ({"seeds": True}, "hydra.sweeper.validate.seeds=True"),
        ({"top_k": 2, "n": 3}, "unknown key under hydra.sweeper.validate: n"),
        ("top", "hydra.sweeper.validate='top'"),
    ],
)
def test_validate_settings_name_the_key(validate: object, message: str) -> None:
    with pytest.raises(SweepError) as info:
        build_spec({"validate": validate})
    assert str(info.value).startswith(message)


def test_validate_defaults_and_auto_grid() -> None:
    from pg.sweep.mode import resolve

    assert build_spec({}).validate == {"top_k": 0, "seeds": 3}
    assert build_spec({"validate": None}).validate == {"top_k": 0, "seeds": 3}
    spec = build_spec({"validate": {"top_k": 2}})
    assert spec.validate == {"top_k": 2, "seeds": 3}
    assert resolve(spec, ["seed=0,1"], []).validate["top_k"] == 0  # the file's: dropped
    asked = resolve(spec, ["seed=0,1"], ["hydra.sweeper.validate.top_k=2"])
    assert asked.validate["top_k"] == 2  # the command line's: kept, and the grid says so


def _search(values: list[float], params: list[dict[str, Any]]) -> optuna.Study:
    from optuna.distributions import BaseDistribution, FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = optuna.create_study(direction="maximize")
    for value, p in zip(values, params, strict=True):
        dists: dict[str, BaseDistribution] = {k: FloatDistribution(0, 1) for k in p}
        st.add_trial(optuna.trial.create_trial(params=p, distributions=dists, value=value))
    return st


def test_top_configurations_skip_repeated_params() -> None:
    st = _search([5, 9, 9, 7], [{"a": 0.1}, {"a": 0.2}, {"a": 0.2}, {"a": 0.3}])
    assert [t.number for t in top_configurations(st, 2)] == [1, 3]
    assert [t.number for t in top_configurations(st, 10)] == [1, 3, 0]


def test_a_configuration_with_a_failed_seed_ranks_last_and_cannot_win() -> None:
    st = _search([9, 8], [{"a": 0.1}, {"a": 0.2}])
    vst = optuna.create_study(direction="maximize")
    results = {(0, 1): 100.0, (0, 2): None, (1, 1): 50.0, (1, 2): 60.0}
    for (number, seed), value in results.items():
        state = (
            optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.FAIL
        )
        vst.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=value,
                user_attrs={"pg.validates": number, "pg.validation_seed": seed},
            )
        )
    table, complete = validation_table(st, vst, st.get_trials(), [1, 2])
    assert complete
    assert list(table["trial"]) == [1, 0]
    assert list(table["n_failed"]) == [0, 1]
    assert table["mean"].tolist() == pytest.approx([55.0, 100.0])
    best = winner(table)
    assert best is not None and best["trial"] == 1
    table, complete = validation_table(st, vst, st.get_trials(), [1, 2, 3])
    assert not complete  # seed 3 has no trial yet: the table is not final
