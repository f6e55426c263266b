"""Work done for the record alone by the record process (pg.record.derived): a sweep's
results are drawn there while the sweep goes on, and a failure there is a warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from pg.record.derived import resolve
from tests.conftest import Store, run_python

SCRIPT = """
import sys
import optuna
from pg.core.config import to_config
from pg.record.remote import remote_tracker
from pg.sweep.spec import Plan, SweepSpec

uri, good, bad = sys.argv[1:]
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(study_name="s", storage=good, direction="maximize")
for lr, gamma, value in [(0.1, 0.9, 1.0), (0.01, 0.99, 3.0), (0.001, 0.95, 2.0), (0.05, 0.9, 0.5)]:
    study.enqueue_trial({"algo.lr": lr, "algo.gamma": gamma})
    study.optimize(
        lambda t, v=value: v + 0 * t.suggest_float("algo.lr", 1e-4, 1, log=True)
        + 0 * t.suggest_float("algo.gamma", 0.9, 0.999),
        n_trials=1,
    )
plan = Plan(SweepSpec(study_name="s"), {}, [], "search")
tracker = remote_tracker(to_config({"tracking": {"uri": uri, "experiment": "d"}}).tracking)
tracker.warm("pg.sweep.results:warm_steps")
for name, storage in (("good", good), ("bad", bad)):
    run = tracker.start_run(name, {}, wait_for_calls=True)
    run.log_derived("pg.sweep.results:publish_stored", storage, plan)
    run.set_tags({"after": "yes"})  # not held up or skipped by the derived work
    run.end("FINISHED")
run = tracker.start_run("typo", {}, wait_for_calls=True)
run.log_derived("os:system", "echo pwned")
try:
    run.end("FINISHED")
except ValueError as exc:
    print("end raised:", exc)
"""


def test_sweep_results_are_drawn_by_the_record_process(store: Store, tmp_path: Path) -> None:
    good = f"sqlite:///{tmp_path / 'optuna.db'}"
    bad = f"sqlite:///{tmp_path / 'missing' / 'optuna.db'}-not-a-dir/x.db"
    (tmp_path / "missing").mkdir()
    (tmp_path / "missing" / "optuna.db-not-a-dir").write_text("a file where a folder must be")
    done = run_python(["-c", SCRIPT, store.uri, good, bad], store)
    assert done.returncode == 0, done.stderr
    runs = {r.info.run_name: r for r in store.runs("d")}
    client = store.client()

    ok = runs["good"]
    assert ok.info.status == "FINISHED"
    files = {f.path for f in client.list_artifacts(ok.info.run_id, "sweep")}
    assert {
        "sweep/trials.csv",
        "sweep/best_params.yaml",
        "sweep/optimization_history.png",
        "sweep/param_importance.png",
    } <= files, files
    assert ok.data.tags["pg.best_trial"] == "1" and ok.data.tags["after"] == "yes"
    assert ok.data.metrics["best_value"] == 3.0

    # The study cannot be opened: one warning line, the run goes on and ends FINISHED.
    failed = runs["bad"]
    assert failed.info.status == "FINISHED"
    assert failed.data.tags["after"] == "yes"
    assert client.list_artifacts(failed.info.run_id, "sweep") == []
    warnings = [line for line in done.stderr.splitlines() if "sweep's results" in line]
    assert len(warnings) == 1 and warnings[0].startswith("pg: warning: could not write"), (
        done.stderr
    )
    assert "Traceback" not in done.stderr

    # Only functions of pg are called: a wrong name fails its run, and runs nothing.
    typo = runs["typo"]
    assert typo.info.status == "FAILED"
    assert "not a function of pg" in typo.data.tags["pg.error"]
    assert "end raised: not a function of pg: 'os:system'" in done.stdout
    assert "pwned" not in done.stdout + done.stderr


@pytest.mark.parametrize("name", ["os:system", "pg.record.derived", "pg.sweep.results:a b"])
def test_resolve_takes_only_functions_of_pg(name: str) -> None:
    with pytest.raises(ValueError, match="not a function of pg"):
        resolve(name)


def test_resolve_finds_a_function_of_pg() -> None:
    from pg.sweep.results import publish_stored

    assert resolve("pg.sweep.results:publish_stored") is publish_stored
