"""A run ended without waiting (a sweep's trial) answers for the calls made up to its
checkpoint; what it writes after (curve, model) is written while the next trial trains,
and a failure there ends the run FAILED in the record with a warning, not a failed trial."""

from __future__ import annotations

from tests.conftest import Store, run_python

SCRIPT = """
import sys
from pg.core.config import to_config
from pg.record.process import RecordProcessError
from pg.record.remote import remote_tracker

tracker = remote_tracker(to_config({"tracking": {"uri": sys.argv[1], "experiment": "c"}}).tracking)
for name, before in (("before", True), ("after", False), ("clean", None)):
    run = tracker.start_run(name, {}, wait_at_end=False)
    run.log_metrics({"m": 1.0}, 1)
    if before:
        run.log_derived("os:system", "true")  # fails in the record process
    run.checkpoint()
    if before is False:
        run.log_derived("os:system", "true")
    run.set_tags({"last": "yes"})
    try:
        run.end("FINISHED")
        print(name, "ended", run.status)
    except ValueError as exc:
        print(name, "end raised:", exc)
tracker.sync()
try:  # a call nobody waits for any more (a Ctrl-C abandoned it) is refused, not hung on
    tracker.proc.answer(10**6)
except RecordProcessError as exc:
    print("refused:", exc)
"""


def test_a_failure_after_the_checkpoint_is_a_warning_and_before_it_fails_the_end(
    store: Store,
) -> None:
    done = run_python(["-c", SCRIPT, store.uri], store)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == [
        "before end raised: not a function of pg: 'os:system'",
        "after ended FINISHED",
        "clean ended FINISHED",
        "refused: no answer to call 1000000 is awaited (abandoned?)",
    ], done.stdout
    warnings = [line for line in done.stderr.splitlines() if line.startswith("pg: warning")]
    assert warnings == [
        "pg: warning: could not record: ValueError(\"not a function of pg: 'os:system'\")"
    ], done.stderr
    assert "Traceback" not in done.stderr

    runs = {r.info.run_name: r for r in store.runs("c")}
    # Whichever side of the checkpoint a call failed on, the record says so.
    for name in ("before", "after"):
        run = runs[name]
        assert run.info.status == "FAILED", name
        assert "not a function of pg" in run.data.tags["pg.error"], name
        assert run.data.metrics["m"] == 1.0, name
    assert runs["clean"].info.status == "FINISHED"
    assert runs["clean"].data.tags["last"] == "yes"
    assert runs["clean"].data.metrics["m"] == 1.0


def test_the_best_model_is_waited_for_while_its_trial_still_writes(store: Store) -> None:
    """A trial is COMPLETE before its model is written; another machine's sweep asking for
    the best trial's model in between (the likely cause of a two-machine grid test's
    failure: "logged no model") waits for the trial's run to end, and does not wait for a
    run that never will."""
    import threading
    import time
    import warnings

    from pg.core.config import ModelConfig
    from pg.core.policy import build_policy, make_spec, policy_files
    from pg.record.models import best_model, log_policy_model

    client = store.client()
    experiment = client.create_experiment("best")
    spec = make_spec(ModelConfig(), (4,), 2)
    files = policy_files(build_policy(spec), spec)
    writing = client.create_run(experiment).info.run_id
    dead = client.create_run(experiment).info.run_id

    def write_late() -> None:
        time.sleep(1.5)
        with warnings.catch_warnings():  # MLflow's advice on predict's type hints
            warnings.simplefilter("ignore")
            log_policy_model(
                client, writing, files, obs_shape=(4,), pixels=False, metrics={}, step=10
            )
        client.set_terminated(writing, "FINISHED")

    writer = threading.Thread(target=write_late)
    writer.start()
    start = time.monotonic()
    found = best_model(client, writing, maximize=True)
    writer.join()
    assert found is not None and found[0] == writing, found
    assert time.monotonic() - start >= 1.4

    start = time.monotonic()
    assert best_model(client, dead, maximize=True, wait=1.0) is None  # RUNNING, no model
    assert 1.0 <= time.monotonic() - start < 5
    client.set_terminated(dead, "FAILED")
    start = time.monotonic()
    assert best_model(client, dead, maximize=True) is None  # ended: nothing to wait for
    assert time.monotonic() - start < 5

    # A multi-seed trial: its run has ended, a seed run still writes.
    trial = client.create_run(experiment).info.run_id
    client.set_terminated(trial, "FINISHED")
    seed = client.create_run(experiment, tags={"mlflow.parentRunId": trial}).info.run_id
    start = time.monotonic()
    assert best_model(client, trial, maximize=True, wait=1.0) is None
    assert time.monotonic() - start >= 1.0  # waited for the seed run
    client.set_terminated(seed, "FINISHED")
    start = time.monotonic()
    assert best_model(client, trial, maximize=True) is None
    assert time.monotonic() - start < 5


BEST_END = """
import sys
import optuna
from pg.core.config import to_config
from pg.record import names
from pg.record.remote import remote_tracker
from pg.sweep.best import BestTrialEnd
from pg.sweep.spec import build_spec, plan

optuna.logging.set_verbosity(optuna.logging.WARNING)
tracker = remote_tracker(to_config({"tracking": {"uri": sys.argv[1], "experiment": "b"}}).tracking)
run = tracker.start_run("modelless", {})
run.end("FINISHED")


def study(run_id):
    s = optuna.create_study(direction="maximize")
    s.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={names.ATTR_MLFLOW_RUN: run_id}))
    return s


space = ["algo.lr=0.01,0.02"]
BestTrialEnd(study(run.run_id), plan(build_spec({}), space), "config", tracker).finish()
missing = "0" * 32  # no such run: the store refuses the lookup
BestTrialEnd(study(missing), plan(build_spec({}), space), "config", tracker).finish()
print("went on")
registering = plan(build_spec({"register_model": "policy"}), space)
try:
    BestTrialEnd(study(missing), registering, "config", tracker).finish()
except SystemExit as exc:
    print("exit", exc.code)
"""


def test_the_best_trials_end_reports_a_missing_model_and_a_failed_lookup(store: Store) -> None:
    """The end of a sweep: a best trial without a model is one line and the sweep ends
    well; a lookup the store refuses is one line on stderr, and exit 1 only when the
    model was to be registered (the sweep's exit code then says registration failed)."""
    done = run_python(["-c", BEST_END, store.uri], store)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "pg: trial 0 logged no model; nothing to show or register",
        "went on",
        "exit 1",
    ]
    failed = [line for line in done.stderr.splitlines() if "clip/registration failed" in line]
    assert len(failed) == 2, done.stderr
    assert all(line.startswith("pg: best trial's clip/registration failed: ") for line in failed)
