"""End of a sweep: trials table, best params, plots and the best run, on the parent run."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Protocol

from omegaconf import OmegaConf

from pg.record import names
from pg.record.names import (
    BEST_YAML,
    CONFIGURATIONS_CSV,
    HISTORY_PNG,
    IMPORTANCE_PNG,
    TRIALS_CSV,
)
from pg.sweep.mode import SEED
from pg.sweep.spec import QUIET

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import optuna
    import pandas as pd

    from pg.sweep.spec import Plan


class ResultsRun(Protocol):
    """A run in the training process (RemoteRun) or in the record process (TrackedRun)."""

    def log_files(self, files: Mapping[str, str | bytes], package_lock: bool = False) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...


__all__ = ["BEST_YAML", "CONFIGURATIONS_CSV", "HISTORY_PNG", "IMPORTANCE_PNG", "TRIALS_CSV"]


def trials_table(study: optuna.Study) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "env_steps": t.user_attrs.get(names.ATTR_ENV_STEPS),
            "duration_s": t.duration.total_seconds() if t.duration else None,
            "mlflow_run_id": t.user_attrs.get(names.ATTR_MLFLOW_RUN)
            or t.system_attrs.get(names.ATTR_RUN_ID),
            "reason": t.system_attrs.get(names.ATTR_REASON),
            "datetime_start": t.datetime_start,
            "datetime_complete": t.datetime_complete,
        }
        row.update({f"params.{k}": v for k, v in t.params.items()})
        if names.ATTR_SEED_VALUES in t.user_attrs:
            row["seed_values"] = t.user_attrs[names.ATTR_SEED_VALUES]
        if names.ATTR_RETRY_OF in t.user_attrs:  # it re-ran a trial whose process died
            row["retry_of"] = t.user_attrs[names.ATTR_RETRY_OF]
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["number", "state", "value"])


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None


def best_params_yaml(study: optuna.Study, plan: Plan) -> str:
    best = best_trial(study)
    if best is None:
        return "# no trial completed\n"
    fields = {
        "study": study.study_name,
        "trial": best.number,
        "value": best.value,
        "mlflow_run_id": best.user_attrs.get(names.ATTR_MLFLOW_RUN),
    }
    return train_again_yaml("Best trial of the study", fields, dict(best.params), plan)


def train_again_yaml(title: str, fields: dict[str, Any], params: dict[str, Any], plan: Plan) -> str:
    """``fields``, the trial's params and the overrides that train it again, as YAML under
    a comment with the command."""
    from pg.sweep.space import override_line

    overrides = [*plan.base_overrides, *(override_line(k, v) for k, v in params.items())]
    overrides = [o for o in overrides if o not in QUIET]
    body = OmegaConf.to_yaml(OmegaConf.create({**fields, "params": params, "overrides": overrides}))
    command = "python -m pg.run " + " ".join(overrides)
    return f"# {title}. Train it again with:\n#   {command}\n{body}"


def history_png(study: optuna.Study) -> bytes:
    from optuna.study import StudyDirection

    from pg.plots import optimization_history, png_bytes

    maximize = study.direction == StudyDirection.MAXIMIZE
    title = f"Optimization history: {study.study_name}"
    return png_bytes(optimization_history(trials_table(study), maximize, title))


def importance_png(study: optuna.Study) -> bytes | None:
    """Parameter importances (Optuna's default evaluator); ``None`` below 3 complete trials."""
    import optuna
    from optuna.trial import TrialState

    from pg.plots import importance_bars, png_bytes

    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 3:
        return None
    try:
        scores = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError, ImportError):
        return None
    if not scores:
        return None
    return png_bytes(importance_bars(scores, f"Parameter importance: {study.study_name}"))


def publish_stored(run: ResultsRun, storage_url: str, plan: Plan) -> None:
    """:func:`publish` of the study in ``storage_url``, by the record process
    (``RemoteRun.log_derived``): the sweep goes on meanwhile.  A failure is a warning, as
    in the sweep's process: the trials are in the study whatever happens here."""
    from pg.record.store import warn
    from pg.sweep.study import existing_study

    try:
        with existing_study(plan.spec.study_name, storage_url) as study:
            publish(study, plan, run)
    except Exception as exc:
        warn(f"could not write the sweep's results: {type(exc).__name__}: {exc}")


def warm_steps() -> list[Callable[[], object]]:
    """What :func:`publish_stored` imports, in steps of under a second or so each: the
    record process takes them while a sweep's first trials train (pandas comes with
    MLflow)."""

    def study() -> None:
        import optuna.importance  # noqa: F401

    def forest() -> None:
        import sklearn.ensemble  # noqa: F401 - Optuna's default importance evaluator

    def plots() -> None:
        from pg.plots import importance_bars, png_bytes

        png_bytes(importance_bars({"a": 1.0}, "warm-up"))

    return [_quiet(step) for step in (study, forest, plots)]


def _quiet(step: Callable[[], None]) -> Callable[[], None]:
    """A warm-up that fails does nothing: the work it prepares reports the error."""

    def run() -> None:
        with contextlib.suppress(Exception):  # raised again, with its context, by publish
            step()

    return run


def publish(study: optuna.Study, plan: Plan, run: ResultsRun | None) -> None:
    """Write the end-of-sweep artifacts and tags to the parent run."""
    if run is None:
        return
    from pg.sweep.asking import study_summary_counts

    files: dict[str, str | bytes] = {
        TRIALS_CSV: trials_table(study).to_csv(index=False),
        BEST_YAML: best_params_yaml(study, plan),
        HISTORY_PNG: history_png(study),
    }
    importance = importance_png(study)
    if importance is not None:
        files[IMPORTANCE_PNG] = importance
    if plan.mode == "grid":
        files[CONFIGURATIONS_CSV] = configurations_table(study).to_csv(index=False)
    run.log_files(files)
    counts = study_summary_counts(study)
    tags = {f"{names.N_STATE_PREFIX}{k.lower()}": str(v) for k, v in counts.items()}
    tags[names.N_TRIALS_DONE] = str(sum(counts.values()))
    best = best_trial(study)
    if best is not None:
        tags.update(
            {
                names.BEST_TRIAL: str(best.number),
                names.BEST_VALUE: repr(best.value),
                names.BEST_RUN_ID: str(best.user_attrs.get(names.ATTR_MLFLOW_RUN, "")),
            }
        )
        assert best.value is not None
        run.log_metrics({names.BEST_VALUE_METRIC: best.value}, sum(counts.values()))
    run.set_tags(tags)


def best_line(study: optuna.Study) -> str:
    best = best_trial(study)
    if best is None:
        return f"pg: study '{study.study_name}': no trial completed"
    params = " ".join(f"{k}={v!r}" for k, v in best.params.items())
    run = best.user_attrs.get(names.ATTR_MLFLOW_RUN)
    where = f", MLflow run {run}" if run else ""
    return f"pg: best trial {best.number}: value {best.value:.4g}  {params}{where}"


def configurations_table(study: optuna.Study) -> pd.DataFrame:
    """A grid's configurations (its params but the seed), each over its seeds.

    One row per configuration: its completed seeds, their values, the mean and the
    half-width of the 95 % Student-t interval of the mean (empty below two seeds); best
    first.  Failed or pruned combinations are counted, not averaged.
    """
    import pandas as pd
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    from pg.sweep.retries import RERUN_REASONS

    groups: dict[str, dict[str, Any]] = {}
    for t in study.get_trials(deepcopy=False):
        if not t.params:
            continue
        reason = str(t.system_attrs.get(names.ATTR_REASON, ""))
        config = {k: v for k, v in t.params.items() if k != SEED}
        row = groups.setdefault(
            repr(sorted(config.items())),
            {
                **{f"params.{k}": v for k, v in config.items()},
                "seeds": [],
                "values": [],
                "n_not_complete": 0,
            },
        )
        if t.state == TrialState.COMPLETE and t.value is not None:
            row["seeds"].append(t.params.get(SEED))
            row["values"].append(float(t.value))
        elif t.state.is_finished() and not reason.startswith(RERUN_REASONS):
            row["n_not_complete"] += 1
    rows = []
    for row in groups.values():
        mean, half = _mean_ci(row["values"])
        rows.append({**row, "n": len(row["values"]), "mean": mean, "ci95": half})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    maximize = study.direction == StudyDirection.MAXIMIZE
    return frame.sort_values("mean", ascending=not maximize, na_position="last")


def _mean_ci(values: list[float]) -> tuple[float, float]:
    from pg.stats import t_interval

    mean, _, half = t_interval(values)
    return mean, half


def configurations_lines(study: optuna.Study) -> list[str]:
    """The end-of-grid table for the console, best configuration first."""
    import math

    frame = configurations_table(study)
    if frame.empty:
        return [f"pg: study '{study.study_name}': no trial completed"]
    out = ["pg: configurations (mean ± 95% CI over seeds, best first):"]
    for row in frame.to_dict("records"):
        config = " ".join(
            f"{k[len('params.') :]}={v}" for k, v in row.items() if k.startswith("params.")
        )
        if math.isnan(row["mean"]):
            value = "no seed completed"
        elif math.isnan(row["ci95"]):
            value = f"{row['mean']:.4g}"
        else:
            value = f"{row['mean']:.4g} ± {row['ci95']:.3g}"
        seeds = ",".join(str(s) for s in sorted(s for s in row["seeds"] if s is not None))
        seeds = f", seeds {seeds}" if seeds else ""
        failed = f", {row['n_not_complete']} not complete" if row["n_not_complete"] else ""
        out.append(
            f"pg:   {config or '(one configuration)'}: {value}  (n={row['n']}{seeds}{failed})"
        )
    return out
