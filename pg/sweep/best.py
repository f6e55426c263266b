"""The best trial, at the end of a sweep: a clip of its policy acting and, if asked, its
model in the Model Registry.  Done once per sweep, so no trial pays for a GIF."""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
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


@dataclass(frozen=True)
class BestModel:
    """The best trial's model, as :class:`BestTrialEnd` found it in the store."""

    number: int
    value: float
    params: dict[str, object]
    trial_run: str
    model_run: str
    model_id: str
    files: dict[str, bytes]  # the policy's files (empty when no clip is wanted)
    seed: str | None  # the model run's seed tag: the clip's episode starts from it


class BestTrialEnd:
    """The best trial's clip and registration, in two steps.

    Made before the sweep's results are published, it asks the record process for the
    best trial's model and files, which it answers at once; :meth:`finish` then draws the
    clip here while the record process draws the results (~0.2 s each), instead of one
    after the other.  A failure does not undo the sweep: it is one line on stderr (exit 1
    only when the model was to be registered)."""

    def __init__(
        self, study: optuna.Study, plan: Plan, config_name: str, tracker: RemoteTracker
    ) -> None:
        self.study_name, self.plan, self.config_name = study.study_name, plan, config_name
        self.tracker = tracker
        self.best: BestModel | None = None
        self.lines: list[str] = []
        self.error: Exception | None = None
        try:
            self.best = self._fetch(study)
        except Exception as exc:
            self.error = exc

    def _fetch(self, study: optuna.Study) -> BestModel | None:
        from optuna.study import StudyDirection

        best = best_trial(study)
        trial_run = best.user_attrs.get(names.ATTR_MLFLOW_RUN) if best is not None else None
        if best is None or best.value is None or not trial_run:
            return None
        maximize = study.direction == StudyDirection.MAXIMIZE
        found = self.tracker.best_model(str(trial_run), maximize)
        if found is None:
            self.lines.append(
                f"pg: trial {best.number} logged no model; nothing to show or register"
            )
            return None
        model_run, model_id = found
        wanted = video_wanted(self.plan)
        return BestModel(
            number=best.number,
            value=float(best.value),
            params=dict(best.params),
            trial_run=str(trial_run),
            model_run=model_run,
            model_id=model_id,
            files=self.tracker.policy_files(model_id) if wanted else {},
            seed=self.tracker.run_tag(model_run, names.SEED) if wanted else None,
        )

    def finish(self) -> None:
        """GIF on the best trial's run, then registration; prints what was done."""
        if self.error is None and self.best is not None:
            try:
                self._finish(self.best)
            except Exception as exc:
                self.error = exc
        if self.error is not None:
            print(f"pg: best trial's clip/registration failed: {self.error}", file=sys.stderr)
            if self.plan.spec.register_model:
                sys.exit(1)
            return
        for line in self.lines:
            print(line, flush=True)

    def _finish(self, best: BestModel) -> None:
        if video_wanted(self.plan):
            _clip(self.plan, self.config_name, self.tracker, best)
            self.lines.append(
                f"pg: {names.POLICY_GIF} of trial {best.number} on run {best.trial_run}"
            )
        name = self.plan.spec.register_model
        if name:
            tags = {
                names.STUDY: self.study_name,
                names.TRIAL_NUMBER: str(best.number),
                names.BEST_VALUE: repr(best.value),
                names.MODEL_ID: best.model_id,
            }
            version = self.tracker.register(name, best.model_id, best.model_run, tags)
            self.lines.append(
                f"pg: registered trial {best.number}'s model as '{name}' version {version} "
                f"(models:/{name}/{version})"
            )


def _clip(plan: Plan, config_name: str, tracker: RemoteTracker, best: BestModel) -> None:
    from pg.core.policy import load_policy
    from pg.core.video import greedy_clip
    from pg.sweep.compose import compose_trial
    from pg.sweep.trial import trial_overrides

    cfg = compose_trial(config_name, trial_overrides(plan, best.params), len(best.params)).config
    seed = int(best.seed or cfg.seed)
    with tempfile.TemporaryDirectory(prefix="pg-best-") as tmp:
        for name, data in best.files.items():
            (Path(tmp) / name).write_bytes(data)
        policy = load_policy(Path(tmp))
    clip = greedy_clip(cfg.env, policy, seed=seed)
    tracker.attach(best.trial_run, {names.POLICY_GIF: clip.gif})
    tracker.set_tags(
        best.trial_run,
        {
            names.VIDEO_STEPS: str(clip.steps),
            names.VIDEO_RETURN: f"{clip.episode_return:g}",
            names.VIDEO_SECONDS: f"{clip.seconds:.2f}",
        },
    )
