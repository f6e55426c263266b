"""Asking trials within the study's exact budget, and what a study is (grid or search).

``n_trials`` counts every trial the study holds (finished, failed or running), in every
process on every machine.  Asking a new trial happens under a lock shared by all of them
(a file lock for SQLite, an advisory lock on PostgreSQL), with the count re-read inside
the lock, so the total is exact and never overshoots.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pg.record.names import ATTR_GRID, ATTR_MODE
from pg.record.names import ATTR_OWNER as OWNER
from pg.record.names import ATTR_REASON as REASON
from pg.record.store import file_lock
from pg.record.store import sqlite_path as _sqlite_path
from pg.sweep.spec import SweepError, SweepSpec
from pg.sweep.study import CONNECT_TIMEOUT, QUEUED, owner_id, set_system_attr

if TYPE_CHECKING:
    import optuna
    from optuna.trial import Trial


class BudgetLock:
    """Serializes "count the trials, then ask one" across processes and machines."""

    def __init__(self, url: str, study_name: str) -> None:
        self.url = url
        self.key = zlib.crc32(f"pg-sweep:{study_name}".encode()) & 0x7FFFFFFF
        self._engine: Any = None
        db = _sqlite_path(url)
        self._file = db.with_suffix(".budget.lock") if db is not None else None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self._file is not None:
            with file_lock(self._file):
                yield
            return
        if self.url.startswith("postgresql"):
            import sqlalchemy

            if self._engine is None:
                self._engine = sqlalchemy.create_engine(
                    self.url,
                    poolclass=sqlalchemy.pool.NullPool,
                    connect_args={"connect_timeout": CONNECT_TIMEOUT},
                )
            with self._engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                    conn.commit()
            return
        # Other databases: the count is re-checked after asking (see reserve()).
        yield


def n_trials_in(study: optuna.Study) -> int:
    """Trials asked so far; a queued (WAITING) trial is not, asking pops it."""
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING)


def claim_mode(study: optuna.Study, mode: str, grid: dict[str, list[Any]] | None) -> None:
    """A study is a grid or a search for life; a grid keeps its axes.

    Mixing them would break both: a search's trials would count against the grid's
    combinations, and a changed grid would skip or repeat combinations.
    """
    attrs = study.user_attrs
    had_trials = bool(study.get_trials(deepcopy=False))
    stored = attrs.get(ATTR_MODE) or ("search" if had_trials else None)
    axes = json.dumps(grid, sort_keys=True, default=str) if grid is not None else None
    hint = "choose another hydra.sweeper.study_name"
    if stored is not None and stored != mode:
        raise SweepError(
            f"study '{study.study_name}' is a {stored}, this sweep is a {mode}: {hint}"
        )
    if axes is not None and attrs.get(ATTR_GRID) not in (None, axes):
        raise SweepError(
            f"study '{study.study_name}' is a grid over {attrs[ATTR_GRID]}, this one is over "
            f"{axes}: {hint}"
        )
    if ATTR_MODE not in attrs:
        study.set_user_attr(ATTR_MODE, mode)
    if axes is not None and ATTR_GRID not in attrs:
        study.set_user_attr(ATTR_GRID, axes)


def reserve(
    study: optuna.Study,
    lock: BudgetLock,
    spec: SweepSpec,
    space: dict[str, Any],
) -> Trial | None:
    """Ask the next trial if the study's budget allows one more, else ``None``."""
    from optuna.trial import TrialState

    from pg.sweep.retries import budget

    with lock.held():
        limit = budget(study, spec)
        if limit is not None and n_trials_in(study) >= limit:
            return None
        trial = study.ask(fixed_distributions=space)
        set_system_attr(study, trial, OWNER, owner_id())
    if limit is not None and trial.number >= limit:
        # Only reachable without a lock (neither SQLite nor PostgreSQL).
        set_system_attr(study, trial, REASON, "over budget")
        study.tell(trial, state=TrialState.FAIL)
        return None
    return trial


def reserve_queued(study: optuna.Study, lock: BudgetLock, space: dict[str, Any]) -> Trial | None:
    """Ask the oldest queued (WAITING) trial, never a new one; ``None`` once none is left.

    A validation study holds only queued trials: an ask with none left would sample a
    fresh configuration.  Under the lock no other pg process pops the trial peeked here,
    so its own params (those of the space) are the distributions asked for.
    """
    from optuna.trial import TrialState

    with lock.held():
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if not waiting:
            return None
        fixed = waiting[0].system_attrs.get(QUEUED) or {}  # see pg.sweep.retries
        trial = study.ask(fixed_distributions={k: space[k] for k in fixed if k in space})
        set_system_attr(study, trial, OWNER, owner_id())
    return trial


def study_summary_counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts
