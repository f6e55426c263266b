"""End of a sweep: trials table, best params, plots and the best run, on the parent run."""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from pg.sweep.study import REASON

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from pg.sweep.spec import Plan
    from pg.tracking import TrackedRun

TRIALS_CSV = "sweep/trials.csv"
BEST_YAML = "sweep/best_params.yaml"
HISTORY_PNG = "sweep/optimization_history.png"
IMPORTANCE_PNG = "sweep/param_importance.png"


def trials_table(study: optuna.Study) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "env_steps": t.user_attrs.get("env_steps"),
            "duration_s": t.duration.total_seconds() if t.duration else None,
            "mlflow_run_id": t.user_attrs.get("mlflow_run_id") or t.system_attrs.get("pg.run_id"),
            "reason": t.system_attrs.get(REASON),
            "datetime_start": t.datetime_start,
            "datetime_complete": t.datetime_complete,
        }
        row.update({f"params.{k}": v for k, v in t.params.items()})
        if "seed_values" in t.user_attrs:
            row["seed_values"] = t.user_attrs["seed_values"]
        rows.append(row)
    return pd.DataFrame(rows)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None


def best_params_yaml(study: optuna.Study, plan: Plan) -> str:
    from pg.sweep.space import override_line

    best = best_trial(study)
    if best is None:
        return "# no trial completed\n"
    params = dict(best.params)
    overrides = [*plan.base_overrides, *(override_line(k, v) for k, v in params.items())]
    overrides = [o for o in overrides if not o.startswith("train.progress=")]
    body = OmegaConf.to_yaml(
        OmegaConf.create(
            {
                "study": study.study_name,
                "trial": best.number,
                "value": best.value,
                "mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
                "params": params,
                "overrides": overrides,
            }
        )
    )
    command = "python -m pg.run " + " ".join(overrides)
    return f"# Best trial of the study. Train it again with:\n#   {command}\n{body}"


def history_png(study: optuna.Study) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    maximize = study.direction == StudyDirection.MAXIMIZE
    fig, ax = plt.subplots(figsize=(7, 4))
    best_x, best_y, best = [], [], math.nan
    for state, marker in ((TrialState.COMPLETE, "o"), (TrialState.PRUNED, "x")):
        pts = [
            (t.number, t.value)
            for t in study.get_trials(deepcopy=False, states=(state,))
            if t.value is not None
        ]
        if pts:
            ax.scatter(*zip(*pts, strict=True), marker=marker, label=state.name.lower())
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        assert t.value is not None
        if math.isnan(best) or (t.value > best if maximize else t.value < best):
            best = t.value
        best_x.append(t.number)
        best_y.append(best)
    if best_x:
        ax.step(best_x, best_y, where="post", color="C3", label="best so far")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective")
    ax.set_title(f"Optimization history: {study.study_name}")
    ax.grid(alpha=0.3)
    return _png(fig)


def importance_png(study: optuna.Study) -> bytes | None:
    """Parameter importances (Optuna's default evaluator); ``None`` below 3 complete trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.trial import TrialState

    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 3:
        return None

    try:
        scores = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError, ImportError):
        return None
    if not scores:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(scores) + 1.5))
    names = list(scores)[::-1]
    ax.barh(names, [scores[n] for n in names], color="C0")
    ax.set_xlabel("importance")
    ax.set_title(f"Parameter importance: {study.study_name}")
    fig.tight_layout()
    return _png(fig)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def publish(study: optuna.Study, plan: Plan, run: TrackedRun | None) -> None:
    """Write the end-of-sweep artifacts and tags to the parent run."""
    if run is None:
        return
    from pg.sweep.study import study_summary_counts

    files: dict[str, str | bytes] = {
        TRIALS_CSV: trials_table(study).to_csv(index=False),
        BEST_YAML: best_params_yaml(study, plan),
        HISTORY_PNG: history_png(study),
    }
    importance = importance_png(study)
    if importance is not None:
        files[IMPORTANCE_PNG] = importance
    run.log_files(files)
    counts = study_summary_counts(study)
    tags = {f"pg.n_{k.lower()}": str(v) for k, v in counts.items()}
    tags["pg.n_trials_done"] = str(sum(counts.values()))
    best = best_trial(study)
    if best is not None:
        tags.update(
            {
                "pg.best_trial": str(best.number),
                "pg.best_value": repr(best.value),
                "pg.best_run_id": str(best.user_attrs.get("mlflow_run_id", "")),
            }
        )
        assert best.value is not None
        run.log_metrics({"best_value": best.value}, sum(counts.values()))
    run.set_tags(tags)


def best_line(study: optuna.Study) -> str:
    best = best_trial(study)
    if best is None:
        return f"pg: study '{study.study_name}': no trial completed"
    params = " ".join(f"{k}={v!r}" for k, v in best.params.items())
    run = best.user_attrs.get("mlflow_run_id")
    where = f", MLflow run {run}" if run else ""
    return f"pg: best trial {best.number}: value {best.value:.4g}  {params}{where}"
