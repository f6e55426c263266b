"""Every private Optuna call pg makes, exercised on a real study.

``pg/sweep/study.py`` wraps each one in a single function; when an Optuna release
renames or changes one, these tests fail here, loudly, instead of a sweep misbehaving.
"""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from pg.sweep.spec import SweepSpec
from pg.sweep.study import (
    current,
    fail_trial,
    finished_count,
    heartbeat,
    latest_trial,
    open_storage,
    set_system_attr,
    stale_trial_ids,
)


@pytest.fixture
def study(tmp_path: Path) -> optuna.Study:
    spec = SweepSpec(heartbeat_interval=1, grace_period=2)
    storage = open_storage(f"sqlite:///{tmp_path / 'o.db'}", spec)
    return optuna.create_study(study_name="s", storage=storage)


def test_system_attrs_and_the_stored_trial(study: optuna.Study) -> None:
    trial = study.ask()
    set_system_attr(study, trial, "pg.owner", "host:1")
    trial.report(3.5, 10)
    stored = current(study, trial)
    assert stored.number == trial.number
    assert stored.system_attrs["pg.owner"] == "host:1"
    assert stored.intermediate_values == {10: 3.5}


def test_heartbeat_and_stale_trials(study: optuna.Study) -> None:
    beating = study.ask()
    silent = study.ask()
    with heartbeat(study, beating):
        with heartbeat(study, silent):
            time.sleep(0.2)
        time.sleep(3.2)  # past the 2 s grace period for the trial that stopped beating
        stale = stale_trial_ids(study)
    stored = {t.number: t._trial_id for t in study.get_trials()}
    assert stored[silent.number] in stale
    assert stored[beating.number] not in stale


def test_failing_another_process_trial(study: optuna.Study) -> None:
    trial = study.ask()
    frozen = study.get_trials()[0]
    assert fail_trial(study, frozen) is True
    assert study.get_trials()[0].state == TrialState.FAIL
    assert fail_trial(study, frozen) is False  # already finished: reported, not raised
    del trial


def test_finished_count_and_the_latest_trial(study: optuna.Study) -> None:
    assert finished_count(study) == 0
    running = study.ask()
    running.report(2.5, 7)
    latest = latest_trial(running)
    assert latest.number == running.number and latest.intermediate_values == {7: 2.5}
    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
        study.tell(study.ask(), 1.0 if state == TrialState.COMPLETE else None, state=state)
    assert finished_count(study) == 3  # the running trial is not counted
    study.tell(running, 2.5)
    assert finished_count(study) == 4
