"""Bulk metric rows store exactly what MLflow's own ``log_batch`` stores.

Same rows, one run written each way, on SQLite and PostgreSQL: the same histories
(key, value, timestamp, step, NaN and infinities included) and the same latest values
(``run.data.metrics``); a batch written twice (a retry after an outage) adds nothing.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from pg.record.bulk import sql_store, write_rows
from tests.conftest import Store

ROWS = [
    ("rollout/ep_return", 10.0, 1_000, 5),
    ("rollout/ep_return", 10.0, 1_000, 5),  # a repeat in the batch: stored once
    ("rollout/ep_return", 12.0, 1_001, 5),
    ("rollout/ep_length", 10.0, 1_000, 5),
    ("losses/policy", float("nan"), 1_002, 7),
    ("losses/total", float("inf"), 1_002, 7),
    ("losses/entropy", -float("inf"), 1_002, 7),
    ("rollout/ep_return", 3.0, 999, 9),  # latest by step, though stamped earlier
    ("stats/kl", 0.5, 1_003, 8),
    ("stats/kl", 0.25, 1_003, 8),  # a tie on (step, stamp): the larger value is latest
    ("objective", -0.0, 1_004, 9),
]


def stored(client: Any, run_id: str) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, Any]]:
    run = client.get_run(run_id)
    histories = {}
    for key in run.data.metrics:
        rows = [(m.value, m.timestamp, m.step) for m in client.get_metric_history(run_id, key)]
        histories[key] = sorted(rows, key=lambda r: (r[2], r[1], repr(r[0])))
    latest = {k: "nan" if math.isnan(v) else v for k, v in run.data.metrics.items()}
    return {k: [tuple(map(repr, r)) for r in v] for k, v in histories.items()}, latest


def both_ways(uri: str) -> None:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("bulk")
    plain = client.create_run(experiment).info.run_id
    bulk = client.create_run(experiment).info.run_id
    store = sql_store(client)
    assert store is not None, "bulk writing applies to this store"
    for half in (ROWS[:5], ROWS[5:]):
        client.log_batch(plain, metrics=[Metric(*row) for row in half])
        write_rows(client, store, bulk, list(half))
    write_rows(client, store, bulk, list(ROWS[5:]))  # the same batch again: nothing new
    assert stored(client, bulk) == stored(client, plain)
    assert len(client.get_metric_history(bulk, "rollout/ep_return")) == 3


def test_sqlite(store: Store) -> None:
    both_ways(store.uri)


@pytest.mark.postgres
def test_postgresql(postgres_url: str) -> None:
    both_ways(postgres_url)


def test_a_finished_run_takes_no_rows(store: Store) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store.uri)
    run_id = client.create_run(client.create_experiment("bulk")).info.run_id
    client.delete_run(run_id)
    with pytest.raises(MlflowException):
        write_rows(client, sql_store(client), run_id, [ROWS[0]])
