"""The pruner's view of a trial's study: the same decisions as ``Trial.should_prune``, and
the study's trials are not read back from the database at every report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from pg.sweep.pruning import PruningStudy, pruner_view, should_prune
from pg.sweep.spec import SweepSpec
from pg.sweep.study import open_storage
from tests.conftest import sql_statements

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_study(path: Path | str, pruner: optuna.pruners.BasePruner) -> optuna.Study:
    """Study "s" in a database file (``path``) or at a storage URL, with its own connection."""
    url = path if isinstance(path, str) else f"sqlite:///{path}"
    storage = open_storage(url, SweepSpec())
    return optuna.create_study(
        study_name="s", storage=storage, direction="maximize", pruner=pruner, load_if_exists=True
    )


def finish(
    study: optuna.Study, curve: list[float], state: TrialState = TrialState.COMPLETE
) -> None:
    """A trial that reported ``curve`` at steps 1, 2, ... and ended in ``state``."""
    trial = study.ask()
    for step, value in enumerate(curve, start=1):
        trial.report(value, step)
    study.tell(trial, curve[-1] if state == TrialState.COMPLETE else None, state=state)


@pytest.mark.parametrize(
    "pruner",
    [
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
        optuna.pruners.PercentilePruner(25.0, n_startup_trials=2),
        optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2),
        optuna.pruners.HyperbandPruner(min_resource=1, max_resource=8, reduction_factor=2),
        optuna.pruners.ThresholdPruner(lower=2.0),
    ],
    ids=lambda p: type(p).__name__,
)
def test_the_view_prunes_as_optuna_does(tmp_path: Path, pruner: optuna.pruners.BasePruner) -> None:
    def decisions(db: Path, use_view: bool) -> list[bool]:
        """The same trials in a study of their own; some pruners keep state in the
        trials (rungs), so each way of asking gets its own study."""
        study = make_study(db, pruner)
        for curve in ([1, 3, 5, 7, 9, 11], [2, 4, 6, 8, 10, 12], [0, 1, 2, 3, 4, 5]):
            finish(study, [float(v) for v in curve])
        finish(study, [9.0, 9.0], TrialState.PRUNED)
        answers = []
        running: list[list[float]] = [[5] * 6, [0, 0.5, 1, 6, 12, 20], [3, 1, 1, 1, 1, 1]]
        for reported in running:
            trial = study.ask()
            view = pruner_view(trial)
            assert isinstance(view, PruningStudy)
            for step, value in enumerate(reported, start=1):
                trial.report(float(value), step)
                answers.append(should_prune(trial, view) if use_view else trial.should_prune())
            study.tell(trial, float(reported[-1]))
        return answers

    seen = decisions(tmp_path / "view.db", use_view=True)
    assert seen == decisions(tmp_path / "optuna.db", use_view=False)
    assert any(seen) and not all(seen)  # both answers occur


@pytest.fixture(params=["sqlite", "postgresql"])
def study_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A study database file, or a PostgreSQL database of its own (the count query's SQL
    on both: PostgreSQL keeps the state in an enum column)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'o.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_a_trial_finished_elsewhere_is_seen_at_the_next_report(study_url: str) -> None:
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = make_study(study_url, pruner)
    trial = study.ask()
    view = pruner_view(trial)
    trial.report(1.0, 1)
    assert should_prune(trial, view) is False  # nothing has finished: nothing to compare with
    # Another process (here: another connection to the same database) completes a better
    # trial, and fails one.
    other = make_study(study_url, pruner)
    finish(other, [10.0, 10.0, 10.0])
    failed = other.ask()
    other.tell(failed, state=TrialState.FAIL)
    trial.report(1.0, 2)
    assert should_prune(trial, view) is True
    assert trial.should_prune()
    study._storage._backend.engine.dispose()  # type: ignore[attr-defined]
    other._storage._backend.engine.dispose()  # type: ignore[attr-defined]


def test_reports_do_not_read_the_running_trial_back(tmp_path: Path) -> None:
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = make_study(tmp_path / "o.db", pruner)
    finish(study, [float(v) for v in range(1, 40)])

    def trial_reads(check: Any) -> int:
        """SQL statements of 30 reports' pruning questions (not of the reports)."""
        trial = study.ask()
        view = pruner_view(trial)
        count = 0
        for step in range(1, 31):
            trial.report(float(step), step)
            with sql_statements(study) as seen:
                assert not check(trial, view)
            count += len(seen)
        study.tell(trial, 30.0)
        return count

    # Optuna's: the running trial and its values, parameters and attributes, each time.
    assert trial_reads(lambda t, v: t.should_prune()) >= 30 * 5
    # The view: one count each time, and the first time the listing.
    assert trial_reads(should_prune) <= 30 + 10


def test_a_study_with_several_objectives_keeps_optunas_answer(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'o.db'}", SweepSpec())
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    trial = study.ask()
    assert pruner_view(trial) is None
    with pytest.raises(NotImplementedError):  # as trial.should_prune() raises
        should_prune(trial, None)
