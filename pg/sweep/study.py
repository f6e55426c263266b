"""The Optuna side: storage, and trials orphaned by dead processes.

This is the one module that touches Optuna's storage.  Where Optuna has no public API for
what a sweep needs (system attributes of a trial, its heartbeat thread, the stale-trial
query), the private call is wrapped in one small function below, and
``tests/test_optuna_private.py`` exercises each of them so an Optuna upgrade that changes
one fails loudly there instead of silently in a sweep.

The exact trial budget, which asks through these, is :mod:`pg.sweep.asking`.

Orphans: each trial records its owner (``host:pid``) and a heartbeat.  A RUNNING trial
whose owner is a dead process on this host, or whose heartbeat is older than the grace
period (owner elsewhere), is marked FAIL; the caller closes its MLflow runs as KILLED.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pg.record.store import file_lock, redact
from pg.record.store import sqlite_path as _sqlite_path
from pg.sweep.spec import SweepError, SweepSpec

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage, RDBStorage
    from optuna.trial import FrozenTrial, Trial

CONNECT_TIMEOUT = 10  # seconds to reach a storage server before giving up
QUEUED = "fixed_params"  # Optuna's system attribute of a trial made by enqueue_trial


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# -- the private Optuna calls, each wrapped once (see the module docstring) --------------


def _storage(study: optuna.Study) -> BaseStorage:
    return study._storage


def _trial_id(trial: Trial | FrozenTrial) -> int:
    return int(trial._trial_id)


def set_system_attr(study: optuna.Study, trial: Trial | FrozenTrial, key: str, value: Any) -> None:
    """A system attribute on any trial, also one this process does not run (an orphan)."""
    _storage(study).set_trial_system_attr(_trial_id(trial), key, value)


def current(study: optuna.Study, trial: Trial) -> FrozenTrial:
    """The trial as stored now (its intermediate values), without listing the study."""
    return _storage(study).get_trial(_trial_id(trial))


def heartbeat(study: optuna.Study, trial: Trial) -> contextlib.AbstractContextManager[Any]:
    """Optuna's heartbeat thread for ``trial``, which ask/tell does not start by itself."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    thread: Any = get_heartbeat_thread(_trial_id(trial), _storage(study))
    return thread  # type: ignore[no-any-return]


def stale_trial_ids(study: optuna.Study) -> set[int]:
    """Ids of RUNNING trials whose heartbeat is older than the storage's grace period."""
    storage: Any = _storage(study)
    return set(storage._get_stale_trial_ids(study._study_id))


def fail_trial(study: optuna.Study, trial: FrozenTrial) -> bool:
    """FAIL a RUNNING trial of another process; ``False`` if it finished meanwhile."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        return bool(_storage(study).set_trial_state_values(_trial_id(trial), state=TrialState.FAIL))
    except UpdateFinishedTrialError:
        return False


def latest_trial(trial: Trial) -> FrozenTrial:
    """The trial as its own process last reported it (what ``Trial.should_prune`` shows
    the pruner), without reading the storage."""
    frozen: FrozenTrial = trial._get_latest_trial()
    return frozen


def _engine(storage: BaseStorage) -> Any | None:
    """The database engine under Optuna's cache (``None``: the storage is no database)."""
    return getattr(getattr(storage, "_backend", storage), "engine", None)


def finished_count(study: optuna.Study) -> int | None:
    """How many of the study's trials have finished (Optuna's ``TrialState.is_finished``:
    complete, pruned or failed), in one query; ``None`` where the storage is not a
    database."""
    engine = _engine(_storage(study))
    if engine is None:
        return None
    query, states = _finished_query()
    with engine.connect() as conn:
        return int(conn.execute(query, {"study": study._study_id, "states": states}).scalar_one())


def report(trial: Trial, value: float, step: int) -> None:
    """``trial.report(value, step)``, written with compiled SQLAlchemy Core statements in
    one transaction where the storage is a database.

    Optuna's report goes through its ORM session: it loads the trial's row as an object,
    looks the step up with a second ORM query, adds an object and commits: ~1.5 ms of
    Python a report on SQLite, ~0.3 ms this way (a 20-trial CartPole sweep reports ~130
    times). The checks and the row are Optuna's: the trial must still be running
    (Optuna's own check and error), the value is stored as Optuna stores it (NaN and the
    infinities as their kind, without a number), and a step this process reported already
    is Optuna's to warn about and ignore. Anything else (several objectives, a storage
    that is not a database, a value or step Optuna refuses) goes to Optuna's own call.
    """
    storage: Any = _storage(trial.study)
    engine = _engine(storage)
    known = trial._cached_frozen_trial.intermediate_values
    if (
        engine is None
        or len(trial.study.directions) > 1
        or not isinstance(value, (int, float))
        or not isinstance(step, int)
        or step < 0
        or step in known
    ):
        trial.report(value, step)
        return
    import sqlalchemy.exc
    from optuna.exceptions import StorageInternalError

    value = float(value)
    state_of, update, insert, stored_repr = _report_statements()
    trial_id = _trial_id(trial)
    stored, kind = stored_repr(value)
    row = {"of": trial_id, "at": step, "number": stored, "kind": kind}
    try:
        with engine.begin() as conn:
            state = conn.execute(state_of, {"of": trial_id}).scalar_one_or_none()
            if state is None:
                raise KeyError(f"No trial with trial_id {trial_id} exists.")
            storage.check_trial_is_updatable(trial_id, state)
            if conn.execute(update, row).rowcount == 0:
                conn.execute(insert, row)
    except sqlalchemy.exc.SQLAlchemyError as exc:  # as Optuna's session reports it
        raise StorageInternalError("An exception is raised during the commit.") from exc
    known[step] = value


@functools.cache
def _report_statements() -> tuple[Any, Any, Any, Any]:
    """The report's statements on Optuna's own tables (their column types: PostgreSQL
    keeps the kind of value in an enum) and Optuna's stored form of a value."""
    import sqlalchemy
    from optuna.storages._rdb import models

    trials = models.TrialModel.__table__
    values = models.TrialIntermediateValueModel.__table__
    # Parameter names other than the columns': SQLAlchemy keeps those for itself.
    of: Any = sqlalchemy.bindparam("of")
    at: Any = sqlalchemy.bindparam("at")
    number: Any = sqlalchemy.bindparam("number")
    kind: Any = sqlalchemy.bindparam("kind")
    state_of = sqlalchemy.select(trials.c.state).where(trials.c.trial_id == of)
    update = (
        values.update()
        .where(values.c.trial_id == of, values.c.step == at)
        .values(intermediate_value=number, intermediate_value_type=kind)
    )
    insert = values.insert().values(
        trial_id=of, step=at, intermediate_value=number, intermediate_value_type=kind
    )
    stored_repr = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr
    return state_of, update, insert, stored_repr


@functools.cache
def _finished_query() -> tuple[Any, list[str]]:
    """The count's statement (built once: it runs at every report) and the names of the
    finished states, as Optuna stores them."""
    import sqlalchemy
    from optuna.trial import TrialState

    query = sqlalchemy.text(
        "SELECT COUNT(*) FROM trials WHERE study_id = :study AND state IN :states"
    ).bindparams(sqlalchemy.bindparam("states", expanding=True))
    return query, [s.name for s in TrialState if s.is_finished()]


# -- storage, orphans -------------------------------------------------------------------


def open_storage(url: str, spec: SweepSpec) -> RDBStorage:
    """Connect (within ``CONNECT_TIMEOUT`` seconds) and create the schema if needed."""
    from optuna.storages import RDBStorage

    engine_kwargs: dict[str, Any] = {}
    db = _sqlite_path(url)
    if db is not None:
        from pg.record.local_sqlite import use_log

        db.parent.mkdir(parents=True, exist_ok=True)
        use_log(db)
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
        engine_kwargs["pool_pre_ping"] = True

    result: dict[str, Any] = {}

    def connect() -> None:
        from sqlalchemy.exc import IntegrityError

        for attempt in range(3):
            try:
                # Two processes creating one new SQLite schema at once collide.
                with file_lock(db.with_suffix(".lock")) if db else contextlib.nullcontext():
                    result["storage"] = RDBStorage(
                        url,
                        engine_kwargs=engine_kwargs,
                        heartbeat_interval=spec.heartbeat_interval,
                        grace_period=spec.grace_period,
                    )
                result.pop("error", None)
                return
            except IntegrityError as exc:
                # A reader without our lock (optuna.load_study, a dashboard) created the
                # schema at the same moment; the next attempt finds it complete.
                result["error"] = exc
                time.sleep(0.5 * (attempt + 1))
            except Exception as exc:
                result["error"] = exc
                return

    import warnings

    from optuna.exceptions import ExperimentalWarning

    warnings.filterwarnings("ignore", category=ExperimentalWarning)
    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT + 2)
    if thread.is_alive():
        raise SweepError(f"storage {redact(url)} did not answer within {CONNECT_TIMEOUT} s")
    if "error" in result:
        first = str(result["error"]).strip().splitlines()[0] if str(result["error"]) else ""
        raise SweepError(
            f"cannot open storage {redact(url)}: {type(result['error']).__name__}: {redact(first)}"
        )
    storage: RDBStorage = result["storage"]
    return storage


def open_existing_study(name: str, url: str) -> optuna.Study:
    """A study that already exists, for reading; never creates a database file."""
    _must_exist(url)
    return _load(name, url)


@contextlib.contextmanager
def existing_study(name: str, url: str) -> Iterator[optuna.Study]:
    """:func:`open_existing_study` with its connections closed at the end, for a process
    that lives on and ends with ``os._exit`` (the record process), which closes none: a
    study file in WAL mode (:mod:`pg.record.local_sqlite`) would keep its ``-wal`` and
    ``-shm`` files beside it."""
    from optuna.storages import RDBStorage

    _must_exist(url)  # before the storage, which would create the file
    storage = RDBStorage(url)
    try:
        yield _load(name, storage)
    finally:
        storage.engine.dispose()


def _must_exist(url: str) -> None:
    db = _sqlite_path(url)
    if db is not None and not db.is_file():
        raise FileNotFoundError(f"no study database at {redact(url)}")


def _load(name: str, storage: str | RDBStorage) -> optuna.Study:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=storage)
