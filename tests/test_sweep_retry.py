"""A trial whose worker process dies runs again with its params, in the same sweep.

The real CLI with two local workers; the test kills worker 1 (a process the sweep
started) with SIGKILL in the middle of its trial.  Worker 0 notices the dead owner before
its next trial (or the sweep once every worker has ended), marks the trial FAIL with the
reason and runs a retry, so the study ends with ``n_trials`` trials that ran to their end.
"""

from __future__ import annotations

import signal
from typing import Any

import pandas as pd

from tests.conftest import (
    FAST,
    Store,
    follow,
    kill_group,
    mid_training,
    sigkill_a_worker,
    start_sweep,
)
from tests.test_sweep import assert_agree, runs_of, study


def test_a_killed_workers_trial_runs_again_with_its_params(store: Store) -> None:
    args = [
        "-m",
        *FAST,
        # Long enough to be killed mid-trial once its run id is known: the first half of a
        # trial (200 k steps) lasts ~2.5 s here, time for a busy machine's polls to see it.
        "train.max_steps=400000",
        "train.target_return=null",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.workers=2",
        "hydra.sweeper.pruner.name=none",
    ]
    proc = start_sweep(store, args, capture=True)
    output, reader = follow(proc)
    db = store.home / "mlruns" / "optuna.db"

    def study_trials() -> list[Any]:
        if not db.exists() or not any("study storage" in line for line in output):
            return []
        try:
            return list(study(store).get_trials())
        except Exception:  # the schema is being created
            return []

    def started(t: Any) -> bool:
        return mid_training(t, 400)  # a trial of 400 k steps reports every 1 k

    try:
        victim, _ = sigkill_a_worker(
            proc, study_trials, started, 180, "worker 1 ran no trial", output
        )
        code = proc.wait(timeout=400)
    finally:
        kill_group(proc)
        reader.join(5)
    text = "".join(output)
    assert code == 0, text[-4000:]
    assert f"pg: worker 1 was killed (signal {int(signal.SIGKILL)})" in text
    assert f"trial {victim.number} marked FAIL (orphaned: process" in text
    assert f"trial {victim.number} queued to run again with the same params (retry 1 of 1)" in text

    st = study(store)
    trials = st.get_trials()
    assert len(trials) == 5
    orphan = trials[victim.number]
    assert orphan.state.name == "FAIL"
    assert (
        orphan.system_attrs["pg.reason"]
        == f"orphaned: process {victim.system_attrs['pg.owner']} is gone"
    )
    (retry,) = [t for t in trials if t.user_attrs.get("pg.retry_of") == victim.number]
    assert retry.params == victim.params
    assert retry.state.name == "COMPLETE"
    assert sorted(t.state.name for t in trials if t.number != victim.number) == ["COMPLETE"] * 4
    runs = {int(r.data.tags["pg.trial_number"]): r for r in runs_of(store, "trial")}
    assert runs[victim.number].info.status == "KILLED"
    assert runs[retry.number].data.tags["pg.retry_of"] == str(victim.number)
    assert "pg.retry_of" not in runs[victim.number].data.tags
    assert_agree(store, st)
    (parent,) = runs_of(store, "sweep")
    csv = store.client().download_artifacts(parent.info.run_id, "sweep/trials.csv")
    table = pd.read_csv(csv).set_index("number")
    assert table.loc[retry.number, "retry_of"] == victim.number
    assert table.loc[victim.number, "state"] == "FAIL"
