"""The Optuna side: storage, the exact trial budget, and trials orphaned by dead processes.

Budget: ``n_trials`` counts every trial the study holds (finished, failed or running), in
every process on every machine.  Asking a new trial happens under a lock shared by all of
them (a file lock for SQLite, an advisory lock on PostgreSQL), with the count re-read
inside the lock, so the total is exact and never overshoots.

Orphans: each trial records its owner (``host:pid``) and a heartbeat.  A RUNNING trial
whose owner is a dead process on this host, or whose heartbeat is older than the grace
period (owner elsewhere), is marked FAIL; the caller closes its MLflow runs as KILLED.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pg.sweep.spec import SweepError, SweepSpec
from pg.tracking import file_lock, redact

if TYPE_CHECKING:
    import optuna
    from optuna.storages import RDBStorage
    from optuna.trial import FrozenTrial, Trial

OWNER = "pg.owner"  # host:pid of the process running a trial
RUN_ID = "pg.run_id"  # MLflow run of the trial
REASON = "pg.reason"  # why a trial failed or was pruned
SWEEP_RUN = "pg.sweep_run_id"  # study user attr: the MLflow parent run
CONNECT_TIMEOUT = 10  # seconds to reach a storage server before giving up


def default_storage(mlflow_uri: str) -> str:
    """An SQLite file beside the MLflow store (or in ``$PG_HOME/mlruns`` for a server)."""
    from pg.tracking import project_home

    if mlflow_uri.startswith("sqlite:///"):
        folder = Path(mlflow_uri[len("sqlite:///") :]).parent
    else:
        folder = project_home() / "mlruns"
    return f"sqlite:///{folder / 'optuna.db'}"


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    return None


def open_storage(url: str, spec: SweepSpec) -> RDBStorage:
    """Connect (within ``CONNECT_TIMEOUT`` seconds) and create the schema if needed."""
    from optuna.storages import RDBStorage

    engine_kwargs: dict[str, Any] = {}
    db = _sqlite_path(url)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
        engine_kwargs["pool_pre_ping"] = True

    result: dict[str, Any] = {}

    def connect() -> None:
        try:
            # Two processes creating one new SQLite schema at once collide.
            with file_lock(db.with_suffix(".lock")) if db else contextlib.nullcontext():
                result["storage"] = RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=spec.heartbeat_interval,
                    grace_period=spec.grace_period,
                )
        except Exception as exc:
            result["error"] = exc

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
    return len(study.get_trials(deepcopy=False))


def reserve(
    study: optuna.Study,
    lock: BudgetLock,
    spec: SweepSpec,
    space: dict[str, Any],
) -> Trial | None:
    """Ask the next trial if the study's budget allows one more, else ``None``."""
    from optuna.trial import TrialState

    with lock.held():
        if spec.n_trials is not None and n_trials_in(study) >= spec.n_trials:
            return None
        trial = study.ask(fixed_distributions=space)
        study._storage.set_trial_system_attr(trial._trial_id, OWNER, owner_id())
    if spec.n_trials is not None and trial.number >= spec.n_trials:
        # Only reachable without a lock (neither SQLite nor PostgreSQL).
        study._storage.set_trial_system_attr(trial._trial_id, REASON, "over budget")
        study.tell(trial, state=TrialState.FAIL)
        return None
    return trial


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed child not yet reaped) is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@dataclass
class Orphan:
    number: int
    reason: str


def fail_orphans(study: optuna.Study, spec: SweepSpec) -> list[Orphan]:
    """Mark RUNNING trials of dead processes FAIL; returns them for the MLflow side."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = study._storage
    host = socket.gethostname()
    stale: set[int] = set()
    with contextlib.suppress(Exception):
        stale = set(storage._get_stale_trial_ids(study._study_id))  # type: ignore[attr-defined]
    now = datetime.now()
    orphans = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _orphan_reason(trial, host, stale, now, spec)
        if reason is None:
            continue
        try:
            storage.set_trial_system_attr(trial._trial_id, REASON, reason)
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                orphans.append(Orphan(trial.number, reason))
        except UpdateFinishedTrialError:
            pass  # another process got there first
    return orphans


def fail_trials_of(study: optuna.Study, owner: str, reason: str) -> list[Orphan]:
    """Mark FAIL the RUNNING trials of ``owner`` (``host:pid``), known to be dead.

    For a worker whose death is reported by its scheduler (a Ray worker or node), so the
    trial need not wait for a missed heartbeat.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = study._storage
    orphans = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.system_attrs.get(OWNER) != owner:
            continue
        try:
            storage.set_trial_system_attr(trial._trial_id, REASON, reason)
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                orphans.append(Orphan(trial.number, reason))
        except UpdateFinishedTrialError:
            pass  # it finished after all, or another process got there first
    return orphans


def _orphan_reason(
    trial: FrozenTrial, host: str, stale: set[int], now: datetime, spec: SweepSpec
) -> str | None:
    owner = str(trial.system_attrs.get(OWNER, ""))
    if owner:
        owner_host, _, pid = owner.rpartition(":")
        if owner_host == host and pid.isdigit() and not _pid_alive(int(pid)):
            return f"orphaned: process {owner} is gone"
    if trial._trial_id in stale:
        return f"orphaned: no heartbeat from {owner or 'its process'} for {spec.grace_period} s"
    started = trial.datetime_start
    if not owner and started is not None and now - started > timedelta(seconds=spec.grace_period):
        return "orphaned: its process died before it started"
    return None


def study_summary_counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts
