"""The Optuna side of a sweep: trials, their states and parameter importance.

The study is found through the sweep's parent run (tag ``pg.study`` and the storage the
sweeper recorded).  A stored storage URL has its password redacted, and the database may
be gone or on another machine, so when the study cannot be opened the trials are rebuilt
from the MLflow trial runs (params, ``pg.trial_number``, ``pg.trial_state``, the
objective) into an in-memory study, which is all Optuna's importance evaluators need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from analysis.aggregate import varying_columns
from pg.record import names

if TYPE_CHECKING:
    import optuna

    from pg.record.reader import Run

STATES = ("COMPLETE", "PRUNED", "FAIL")


@dataclass
class StudyData:
    """Trials as a table (``number, state, value, <param>...``) plus where they came from."""

    trials: pd.DataFrame
    params: list[str]
    maximize: bool
    origin: str  # "optuna storage <url>" or "MLflow trial runs"
    study: optuna.Study | None = None
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        found = self.trials["state"].value_counts().to_dict() if len(self.trials) else {}
        out = {s: int(found.pop(s, 0)) for s in STATES}
        out.update({str(k): int(v) for k, v in found.items()})
        return out


def recorded_storage(parent: Run) -> str | None:
    """The storage URL the sweeper wrote on its parent run (tag or param)."""
    tags, params = parent.data.tags, parent.data.params
    for key in names.STORAGE_ALIASES:
        if tags.get(key):
            return str(tags[key])
    for source in (params, tags):
        for key, value in sorted(source.items()):
            if key.split(".")[-1] == "storage" and value and value != "null":
                return str(value)
    return None


def default_storage(tracking_uri: str | None) -> str | None:
    """The sweeper's default study file beside an SQLite MLflow store, when it exists.

    Checked before opening: Optuna would silently create an empty database otherwise.
    """
    from pg.record.store import default_study_storage, sqlite_path

    if not tracking_uri or sqlite_path(tracking_uri) is None:
        return None
    url = default_study_storage(tracking_uri)
    path = sqlite_path(url)
    return url if path is not None and path.is_file() else None


def recorded_direction(parent: Run) -> bool | None:
    """True for maximize, False for minimize, None when the run does not say."""
    tags, params = parent.data.tags, parent.data.params
    for source in (tags, params):
        for key, value in source.items():
            if key.split(".")[-1] == "direction" and value:
                text = str(value).lower()
                if "min" in text:
                    return False
                if "max" in text:
                    return True
    return None


def open_study(name: str, storage: str) -> optuna.Study:
    from pg.sweep.study import open_existing_study

    return open_existing_study(name, storage)


def from_optuna(study: optuna.Study, origin: str) -> StudyData:
    import optuna

    rows = []
    param_names: dict[str, None] = {}
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "value": t.value if t.values is not None and len(t.values) == 1 else math.nan,
        }
        if t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values:
            row["value"] = t.intermediate_values[max(t.intermediate_values)]
        for k, v in t.params.items():
            row[k] = v
            param_names[k] = None
        rows.append(row)
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = pd.DataFrame(rows, columns=None if rows else ["number", "state", "value"])
    return StudyData(trials, list(param_names), maximize, origin, study)


def from_mlflow(frame: pd.DataFrame, metric: str, maximize: bool) -> StudyData:
    """Trials from the MLflow trial runs; params = the configuration keys that vary."""
    trials = frame[frame["kind"] == "trial"]
    params = [c[len("params.") :] for c in varying_columns(trials)]
    rows = []
    for _, run in trials.iterrows():
        state = run.get("trial_state") or _state_from_status(str(run["status"]))
        row: dict[str, Any] = {
            "number": int(run["trial_number"]) if not pd.isna(run["trial_number"]) else -1,
            "state": state,
            "value": _trial_value(frame, run, metric),
        }
        for p in params:
            row[p] = _parse(run.get(f"params.{p}"))
        rows.append(row)
    table = pd.DataFrame(rows, columns=None if rows else ["number", "state", "value"])
    if len(table):
        table = table.sort_values("number", kind="stable").reset_index(drop=True)
    return StudyData(table, params, maximize, "MLflow trial runs")


def _trial_value(frame: pd.DataFrame, run: pd.Series, metric: str) -> float:
    """The trial's own final ``metric``, else the mean over its finished seed runs
    (a trial with several seeds logs only their mean ``objective``), else ``objective``."""
    own = run.get(f"metrics.{metric}")
    if own is not None and not pd.isna(own):
        return float(own)
    col = f"metrics.{metric}"
    if col in frame:
        done = frame["completed"] if "completed" in frame else frame["status"] == "FINISHED"
        seeds = frame[(frame["parent_run_id"] == run["run_id"]) & done.astype(bool)]
        values = seeds[col].dropna()
        if len(values):
            return float(values.mean())
    fallback = run.get("metrics.objective")
    return float(fallback) if fallback is not None and not pd.isna(fallback) else math.nan


def _state_from_status(status: str) -> str:
    """Runs written before ``pg.trial_state`` existed: a pruned trial ended KILLED."""
    return {"FINISHED": "COMPLETE", "KILLED": "PRUNED", "FAILED": "FAIL"}.get(status, status)


def _parse(text: Any) -> Any:
    """MLflow params are strings; importance needs numbers back where they were numbers."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None
    s = str(text)
    if s in ("True", "False"):
        return s
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


def rebuilt_study(data: StudyData) -> optuna.Study:
    """An in-memory study holding the complete trials, with distributions inferred."""
    import optuna
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    done = data.trials[(data.trials["state"] == "COMPLETE") & data.trials["value"].notna()]
    dists: dict[str, BaseDistribution] = {}
    for p in data.params:
        values = [v for v in done[p].tolist() if v is not None] if p in done else []
        if not values:
            continue
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            lo, hi = min(values), max(values)
            dists[p] = IntDistribution(lo, hi if hi > lo else lo + 1)
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            lo_f, hi_f = float(min(values)), float(max(values))
            positive = lo_f > 0
            log = positive and hi_f / lo_f > 100
            dists[p] = FloatDistribution(lo_f, hi_f if hi_f > lo_f else lo_f + 1.0, log=log)
        else:
            dists[p] = CategoricalDistribution(sorted({str(v) for v in values}))
    study = optuna.create_study(direction="maximize" if data.maximize else "minimize")
    for _, row in done.iterrows():
        params: dict[str, Any] = {}
        for p, d in dists.items():
            v = row[p]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                break
            params[p] = str(v) if isinstance(d, CategoricalDistribution) else v
        else:
            study.add_trial(
                optuna.trial.create_trial(
                    params=params, distributions=dists, value=float(row["value"])
                )
            )
    return study


def importance(data: StudyData) -> tuple[dict[str, float], str | None]:
    """Optuna's fANOVA importance; ``({}, reason)`` when it cannot be computed."""
    import optuna

    study = data.study if data.study is not None else rebuilt_study(data)
    complete = [
        t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.params
    ]
    if len(complete) < 2:
        return {}, f"parameter importance needs >= 2 complete trials, found {len(complete)}"
    try:
        result = optuna.importance.get_param_importances(study, evaluator=None)
    except (RuntimeError, ValueError) as exc:
        return {}, f"parameter importance could not be computed: {exc}"
    if not result:
        return {}, "parameter importance: no parameter varies between complete trials"
    return {str(k): float(v) for k, v in result.items()}, None


def load_study_data(
    parent: Run,
    frame: pd.DataFrame,
    metric: str,
    *,
    storage: str | None = None,
    maximize: bool | None = None,
    tracking_uri: str | None = None,
) -> StudyData:
    """Open the sweep's study if possible, else rebuild its trials from MLflow."""
    from pg.record.store import redact

    name = parent.data.tags.get(names.STUDY)
    url = storage or recorded_storage(parent) or default_storage(tracking_uri)
    notes: list[str] = []
    direction = maximize if maximize is not None else recorded_direction(parent)
    if name and url and "***" not in url:
        try:
            data = from_optuna(open_study(name, url), f"Optuna study {name!r} in {redact(url)}")
            if data.trials.empty:
                raise ValueError("the study has no trials")
            if data.counts().get("COMPLETE", 0) and not data.trials["value"].notna().any():
                raise ValueError("the study has no objective values")
            return data
        except Exception as exc:  # any storage trouble: fall back to MLflow
            notes.append(
                f"could not open study {name!r} at {redact(url)} "
                f"({type(exc).__name__}: {redact(str(exc)).splitlines()[0][:200]}); "
                "trials rebuilt from the MLflow trial runs"
            )
    elif not name:
        notes.append("the sweep run has no pg.study tag; trials rebuilt from the MLflow runs")
    elif not url:
        notes.append(
            f"no storage recorded for study {name!r}; trials rebuilt from the MLflow runs "
            "(pass --storage URL to read the study itself)"
        )
    else:
        notes.append(
            f"the recorded storage of study {name!r} has a redacted password; trials rebuilt "
            "from the MLflow runs (pass --storage URL to read the study itself)"
        )
    data = from_mlflow(frame, metric, True if direction is None else direction)
    data.notes = notes
    return data
