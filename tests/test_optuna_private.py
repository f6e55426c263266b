"""Every private Optuna call pg makes, exercised on a real study.

``pg/sweep/study.py`` wraps each one in a single function; when an Optuna release
renames or changes one, these tests fail here, loudly, instead of a sweep misbehaving.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from pg.sweep.spec import SweepSpec
from pg.sweep.study import (
    current,
    fail_trial,
    finished_count,
    heartbeat,
    latest_trial,
    open_storage,
    report,
    set_system_attr,
    stale_trial_ids,
)
from tests.conftest import sql_statements


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


@pytest.fixture(params=["sqlite", "postgresql"])
def any_study(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[optuna.Study]:
    """A study in a database file, or in a PostgreSQL database of its own (which keeps the
    kind of an intermediate value in an enum column)."""
    url = f"sqlite:///{tmp_path / 'o.db'}"
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    storage = open_storage(url, SweepSpec())
    yield optuna.create_study(study_name="s", storage=storage)
    storage.engine.dispose()


def stored_values(study: optuna.Study, trial: optuna.Trial) -> list[tuple[Any, ...]]:
    """A trial's rows in Optuna's table of intermediate values, as stored."""
    engine = study._storage._backend.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.text(
                "SELECT step, intermediate_value, CAST(intermediate_value_type AS VARCHAR(8))"
                " FROM trial_intermediate_values WHERE trial_id = :t ORDER BY step"
            ),
            {"t": trial._trial_id},
        )
        return [tuple(row) for row in rows]


CURVE = [(0, 1.5), (20, -2.25), (40, math.inf), (60, -math.inf), (80, math.nan), (100, 7)]


def test_report_stores_what_optuna_stores(any_study: optuna.Study) -> None:
    ours, theirs = any_study.ask(), any_study.ask()
    with sql_statements(any_study) as seen:
        for step, value in CURVE:
            report(ours, value, step)
    for step, value in CURVE:
        theirs.report(value, step)
    # The trial's state, an update that finds no row, the insert. Optuna's ORM path also
    # runs three, but loads the whole trial row as an object (its number, its dates...).
    assert len(seen) == 3 * len(CURVE)
    assert not any("trials.number" in statement for statement in seen)
    assert stored_values(any_study, ours) == stored_values(any_study, theirs)
    assert [r[2] for r in stored_values(any_study, ours)] == [
        "FINITE", "FINITE", "INF_POS", "INF_NEG", "NAN", "FINITE"
    ]  # fmt: skip
    # What this process knows of the trial (the pruner's view) and what any reader finds.
    mine, other = latest_trial(ours).intermediate_values, latest_trial(theirs).intermediate_values
    stored = {t.number: t.intermediate_values for t in any_study.get_trials()}
    for values in (mine, stored[ours.number]):
        assert values.keys() == other.keys() == {s for s, _ in CURVE}
        for step, value in CURVE:
            assert values[step] == value or (math.isnan(value) and math.isnan(values[step]))
        assert type(values[100]) is float


def test_report_refuses_what_optuna_refuses(any_study: optuna.Study) -> None:
    trial = any_study.ask()
    report(trial, 3.0, 10)
    with pytest.warns(UserWarning, match="already reported"):
        report(trial, 4.0, 10)  # ignored, as Optuna ignores it
    assert current(any_study, trial).intermediate_values == {10: 3.0}
    with pytest.raises(ValueError, match="non-negative"):
        report(trial, 1.0, -1)
    with pytest.raises(TypeError):
        report(trial, "high", 11)  # type: ignore[arg-type]
    # Finished by another process (here another connection): the next report fails as
    # Optuna's does, and stores nothing.
    other = optuna.load_study(study_name="s", storage=any_study._storage)
    other.tell(trial.number, state=TrialState.FAIL)
    with pytest.raises(UpdateFinishedTrialError):
        report(trial, 5.0, 20)
    assert current(any_study, trial).intermediate_values == {10: 3.0}


def test_report_with_several_objectives_is_optunas(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'o.db'}", SweepSpec())
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    with pytest.raises(NotImplementedError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report(study.ask(), 1.0, 1)
