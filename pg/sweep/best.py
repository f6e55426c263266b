"""The best trial, at the end of a sweep: a clip of its policy acting and, if asked, its
model in the Model Registry.  Done once per sweep, so no trial pays for a GIF."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pg.record import names
from pg.sweep.results import best_trial
from pg.sweep.spec import QUIET

if TYPE_CHECKING:
    import optuna

    from pg.record.remote import RemoteTracker
    from pg.sweep.spec import Plan


def video_wanted(plan: Plan) -> bool:
    """On unless the sweep file or the command line says ``train.video=false``: QUIET only
    keeps every trial from rendering one."""
    wanted = True
    for override in plan.base_overrides[len(QUIET) :]:
        key, _, value = override.partition("=")
        if key.lstrip("+~") == "train.video":
            wanted = value.strip().lower() not in ("false", "0", "no", "off")
    return wanted


def finish_best(
    study: optuna.Study, plan: Plan, config_name: str, tracker: RemoteTracker
) -> list[str]:
    """GIF on the best trial's run, then registration; lines for the user."""
    from optuna.study import StudyDirection

    best = best_trial(study)
    trial_run = best.user_attrs.get(names.ATTR_MLFLOW_RUN) if best is not None else None
    if best is None or not trial_run:
        return []
    found = tracker.best_model(str(trial_run), study.direction == StudyDirection.MAXIMIZE)
    if found is None:
        return [f"pg: trial {best.number} logged no model; nothing to show or register"]
    model_run, model_id = found
    lines = []
    if video_wanted(plan):
        _clip(plan, config_name, tracker, best.params, str(trial_run), model_run, model_id)
        lines.append(f"pg: {names.POLICY_GIF} of trial {best.number} on run {trial_run}")
    name = plan.spec.register_model
    if name:
        tags = {
            names.STUDY: study.study_name,
            names.TRIAL_NUMBER: str(best.number),
            names.BEST_VALUE: repr(best.value),
            names.MODEL_ID: model_id,
        }
        version = tracker.register(name, model_id, model_run, tags)
        lines.append(
            f"pg: registered trial {best.number}'s model as '{name}' version {version} "
            f"(models:/{name}/{version})"
        )
    return lines


def _clip(
    plan: Plan,
    config_name: str,
    tracker: RemoteTracker,
    params: dict[str, object],
    trial_run: str,
    model_run: str,
    model_id: str,
) -> None:
    from pg.core.policy import load_policy
    from pg.core.video import greedy_clip
    from pg.sweep.compose import compose_trial
    from pg.sweep.trial import trial_overrides

    cfg = compose_trial(config_name, trial_overrides(plan, params), len(params)).config
    seed = int(tracker.run_tag(model_run, names.SEED) or cfg.seed)
    with tempfile.TemporaryDirectory(prefix="pg-best-") as tmp:
        for name, data in tracker.policy_files(model_id).items():
            (Path(tmp) / name).write_bytes(data)
        policy = load_policy(Path(tmp))
    clip = greedy_clip(cfg.env, policy, seed=seed)
    tracker.attach(trial_run, {names.POLICY_GIF: clip.gif})
    tracker.set_tags(
        trial_run,
        {
            names.VIDEO_STEPS: str(clip.steps),
            names.VIDEO_RETURN: f"{clip.episode_return:g}",
            names.VIDEO_SECONDS: f"{clip.seconds:.2f}",
        },
    )
