"""Read MLflow runs and metric histories into pandas, through pg's record reader.

One row per run, columns in MLflow's own ``mlflow.search_runs`` convention
(``params.algo.lr``, ``metrics.objective``, ``tags.pg.kind``) plus a few derived columns
that every table needs: ``status``, ``duration_s``, ``kind``, ``seed``, ``trial_number``,
``trial_state``, ``parent_run_id``, ``training`` (the row is a complete training run
whose final metrics describe one seed of one configuration) and ``completed`` (it ran its
whole budget: FINISHED and not pruned; pruned runs end FINISHED, KILLED in older stores).

Only run records are fetched here (paged ``search_runs``); metric histories, which cost one
request per run and metric, are fetched separately by :func:`load_histories` and only for
the runs a caller asks for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from pg.record import names
from pg.record.names import KIND as KIND_TAG
from pg.record.names import PARENT_RUN as PARENT_TAG
from pg.record.names import SEED as SEED_TAG
from pg.record.names import STUDY as STUDY_TAG
from pg.record.names import TRIAL_NUMBER as TRIAL_NUMBER_TAG
from pg.record.names import TRIAL_STATE as TRIAL_STATE_TAG
from pg.record.reader import ran_to_end

if TYPE_CHECKING:
    from pg.record.reader import Reader, Run

BASE_COLUMNS = [
    "run_id",
    "run_name",
    "experiment_id",
    "parent_run_id",
    "kind",
    "training",
    "status",
    "completed",
    "start_time",
    "end_time",
    "duration_s",
    "seed",
    "study",
    "trial_number",
    "trial_state",
]


class AnalysisError(Exception):
    """Bad input the user can fix (unknown experiment or run, missing metric, ...)."""


@dataclass(frozen=True)
class Source:
    """What a table was loaded from, for titles and file names."""

    label: str  # experiment name or sweep run name
    experiment_id: str
    sweep_run_id: str | None = None
    study_name: str | None = None


def default_tracking_uri() -> str:
    """The store a plain ``python -m pg.run`` writes to (``MLFLOW_TRACKING_URI`` wins)."""
    from pg.record.store import default_location

    return default_location().uri


def connect(tracking_uri: str | None = None) -> Reader:
    """A reader of the store at ``tracking_uri`` (default: pg's store); bad input if absent."""
    from pg.record.reader import Reader, RecordError

    try:
        return Reader.open(tracking_uri, probe=False)
    except RecordError as exc:
        raise AnalysisError(str(exc)) from None


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def get_run(reader: Reader, run_id: str) -> Run:
    from pg.record.reader import RecordError

    try:
        return reader.run(run_id)
    except RecordError as exc:
        raise AnalysisError(str(exc)) from None


def get_experiment(reader: Reader, name: str) -> Any:
    from pg.record.reader import RecordError

    try:
        return reader.experiment(name)
    except RecordError as exc:
        raise AnalysisError(str(exc)) from None


def _number(text: str | None) -> float:
    try:
        return float(text) if text is not None else math.nan
    except ValueError:
        return math.nan


def runs_frame(runs: Iterable[Run]) -> pd.DataFrame:
    """One row per run; params stay strings (they identify configurations exactly)."""
    rows: list[dict[str, Any]] = []
    for run in runs:
        info, data = run.info, run.data
        tags = data.tags
        start = info.start_time
        end = info.end_time
        row: dict[str, Any] = {
            "run_id": info.run_id,
            "run_name": info.run_name,
            "experiment_id": info.experiment_id,
            "parent_run_id": tags.get(PARENT_TAG),
            "kind": tags.get(KIND_TAG, names.KIND_RUN),
            "status": info.status,
            "completed": ran_to_end(info.status, tags),
            "start_time": pd.Timestamp(start, unit="ms", tz="UTC") if start else pd.NaT,
            "end_time": pd.Timestamp(end, unit="ms", tz="UTC") if end else pd.NaT,
            "duration_s": (end - start) / 1000 if start and end else math.nan,
            "seed": _number(data.params.get("seed", tags.get(SEED_TAG))),
            "study": tags.get(STUDY_TAG),
            "trial_number": _number(tags.get(TRIAL_NUMBER_TAG)),
            "trial_state": tags.get(TRIAL_STATE_TAG),
        }
        row.update({f"params.{k}": v for k, v in data.params.items()})
        row.update({f"metrics.{k}": v for k, v in data.metrics.items()})
        row.update({f"tags.{k}": v for k, v in tags.items() if k.startswith(names.TAG_PREFIX)})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else [*BASE_COLUMNS])
    if frame.empty:
        return pd.DataFrame(columns=BASE_COLUMNS)
    # A trial with seed runs under it is a summary, not a training run of its own.
    parents = set(frame["parent_run_id"].dropna())
    frame["training"] = frame["kind"].isin([names.KIND_RUN, names.KIND_SEED]) | (
        (frame["kind"] == names.KIND_TRIAL) & ~frame["run_id"].isin(parents)
    )
    ordered = [c for c in BASE_COLUMNS if c in frame.columns]
    rest = sorted(c for c in frame.columns if c not in ordered)
    return frame[ordered + rest].reset_index(drop=True)


def load_runs(
    experiment: str | None = None,
    *,
    sweep: str | None = None,
    reader: Reader | None = None,
    tracking_uri: str | None = None,
) -> pd.DataFrame:
    """Runs of an experiment, or the trial and seed runs of one sweep, one row each.

    For a sweep the parent run itself is not a row: its trials (and the seed runs nested
    under trials that ran several seeds) are.
    """
    frame, _ = load_source(experiment, sweep=sweep, reader=reader, tracking_uri=tracking_uri)
    return frame


def load_source(
    experiment: str | None = None,
    *,
    sweep: str | None = None,
    reader: Reader | None = None,
    tracking_uri: str | None = None,
) -> tuple[pd.DataFrame, Source]:
    """:func:`load_runs` plus a description of what was loaded."""
    if (experiment is None) == (sweep is None):
        raise AnalysisError("give exactly one of an experiment name or a sweep run id")
    reader = reader or connect(tracking_uri)
    if experiment is not None:
        exp = get_experiment(reader, experiment)
        runs = reader.search([exp.experiment_id])
        return runs_frame(runs), Source(experiment, exp.experiment_id)
    assert sweep is not None
    parent = get_run(reader, sweep)
    kind = parent.data.tags.get(KIND_TAG)
    if kind != names.KIND_SWEEP:
        raise AnalysisError(
            f"run {sweep} is not a sweep (tag {KIND_TAG}={kind!r}); "
            "pass the sweep's parent run id, or use --experiment"
        )
    exp_id = parent.info.experiment_id
    trials = reader.search([exp_id], f"tags.{PARENT_TAG} = {_quote(sweep)}")
    trial_ids = {r.info.run_id for r in trials}
    seeds: list[Run] = []
    if trial_ids:
        # One query for every seed run of the experiment beats one query per trial.
        candidates = reader.search([exp_id], f"tags.`{KIND_TAG}` = '{names.KIND_SEED}'")
        seeds = [r for r in candidates if r.data.tags.get(PARENT_TAG) in trial_ids]
    label = parent.info.run_name or sweep
    study = parent.data.tags.get(STUDY_TAG)
    return runs_frame([*trials, *seeds]), Source(label, exp_id, sweep, study)


def metric_names(frame: pd.DataFrame) -> list[str]:
    """Metrics at least one run of ``frame`` has a value for."""
    cols = [c for c in frame.columns if c.startswith("metrics.")]
    return sorted(c[len("metrics.") :] for c in cols if frame[c].notna().any())


def require_metric(frame: pd.DataFrame, metric: str) -> None:
    if metric not in metric_names(frame):
        known = metric_names(frame)
        raise AnalysisError(
            f"no run has metric {metric!r}"
            + (f"; available: {', '.join(known)}" if known else "; the runs logged no metrics")
        )


def load_histories(
    run_ids: Iterable[str],
    metrics: Sequence[str],
    *,
    reader: Reader | None = None,
    tracking_uri: str | None = None,
    workers: int = 4,
) -> pd.DataFrame:
    """Long table ``run_id, step, metric, value`` of only the given runs and metrics.

    Requests run in a few threads: against a tracking server each one is a round trip.
    """
    reader = reader or connect(tracking_uri)
    jobs = [(run_id, metric) for run_id in dict.fromkeys(run_ids) for metric in metrics]

    def fetch(job: tuple[str, str]) -> list[tuple[str, int, str, float]]:
        run_id, metric = job
        return [(run_id, step, metric, value) for step, value in reader.history(*job)]

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        parts = list(pool.map(fetch, jobs))
    rows = [row for part in parts for row in part]
    frame = pd.DataFrame(rows, columns=["run_id", "step", "metric", "value"])
    frame["step"] = frame["step"].astype("int64")
    frame["value"] = frame["value"].astype("float64")
    return frame.sort_values(["run_id", "metric", "step"], kind="stable").reset_index(drop=True)
