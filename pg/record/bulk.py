"""Metric rows into MLflow's SQL store (SQLite, PostgreSQL) in one bulk insert per batch.

``MlflowClient.log_batch`` builds an ORM object per value (~0.1 ms each): a sweep's
~50 k values cost its record process ~5 s of CPU, taken from the training on a busy
machine.  This writes the same rows the same way MLflow's store does, inside its own
session (the run must be active; values sanitised as MLflow does; repeats in a batch
dropped; the run's latest values updated by MLflow's own code), but with one
``INSERT ... VALUES`` for the whole batch: ~7x cheaper.  Histories and latest values
are identical to ``log_batch``'s (``tests/test_bulk_rows.py``).

Anything else (a tracking server, a store whose internals differ from MLflow 3's, a row
already in the store) goes through ``log_batch`` as before.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from pg.record.rows import Row

# The store's own methods this relies on (MLflow 3's SqlAlchemyStore).
_NEEDED = (
    "ManagedSessionMaker",
    "sanitize_metric_value",
    "_get_run",
    "_check_run_is_active",
    "_update_latest_metrics_if_necessary",
)


def sql_store(client: MlflowClient) -> Any | None:
    """The client's SQL store when bulk writing applies to it, else None."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if isinstance(store, SqlAlchemyStore) and all(hasattr(store, n) for n in _NEEDED):
        return store
    return None


def write_rows(client: MlflowClient, store: Any | None, run_id: str, rows: list[Row]) -> None:
    """Store ``rows`` (at most MLflow's 1000 per batch) as ``log_batch`` would."""
    from mlflow.entities import Metric

    if store is not None:
        try:
            _insert(store, run_id, rows)
            return
        except Exception as exc:
            if not _duplicate(exc):
                raise
            # A row is stored already (a batch retried after its commit was not
            # confirmed): MLflow's own path works out which, as it always did.
    client.log_batch(run_id, metrics=[Metric(k, v, ts, s) for k, v, ts, s in rows])


def _duplicate(exc: BaseException | None) -> bool:
    """Whether ``exc`` is (or wraps, as MLflow's session does) a primary-key violation."""
    import sqlalchemy.exc

    while exc is not None:
        if isinstance(exc, sqlalchemy.exc.IntegrityError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _insert(store: Any, run_id: str, rows: list[Row]) -> None:
    from mlflow.store.tracking.dbmodels.models import SqlMetric
    from sqlalchemy import insert

    values: list[dict[str, Any]] = []
    seen: set[Row] = set()
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row in seen:
            continue
        seen.add(row)
        key, value, stamp, step = row
        is_nan, stored = store.sanitize_metric_value(value)
        item = {
            "run_uuid": run_id,
            "key": key,
            "value": stored,
            "timestamp": stamp,
            "step": step,
            "is_nan": is_nan,
        }
        values.append(item)
        # MLflow keeps a key's latest by (step, timestamp, value), the first of equals.
        best = latest.get(key)
        if best is None or (step, stamp, stored) > (best["step"], best["timestamp"], best["value"]):
            latest[key] = item
    if not values:
        return
    with store.ManagedSessionMaker(read_only=False) as session:
        store._check_run_is_active(store._get_run(run_uuid=run_id, session=session))
        session.execute(insert(SqlMetric.__table__), values)
        newest = [SimpleNamespace(**item) for item in latest.values()]
        store._update_latest_metrics_if_necessary(newest, session)
