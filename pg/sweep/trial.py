"""One trial: compose its config, train its seeds (:mod:`pg.sweep.seeds`), tell Optuna.

The trial's end is told once, with its reason: COMPLETE, PRUNED, or FAIL (an exception, a
NaN objective, Ctrl-C).  Its MLflow runs get the same state as ``pg.trial_state``.

A validation run (:mod:`pg.sweep.validation`) is a one-seed trial of another study with
a :class:`~pg.sweep.seeds.Role` of its own: its params, its seed, its kind and name.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from pg.record import names
from pg.sweep.compose import compose_trial
from pg.sweep.seeds import Pruned, Role, SeedRunner, TrialOutcome
from pg.sweep.space import override_line
from pg.sweep.spec import Plan
from pg.sweep.study import current, set_system_attr

if TYPE_CHECKING:
    import optuna
    from optuna.trial import Trial

__all__ = ["Role", "TrialOutcome", "run_trial", "trial_overrides"]


def trial_overrides(plan: Plan, params: dict[str, Any]) -> list[str]:
    return [*plan.base_overrides, *(override_line(k, v) for k, v in params.items())]


def run_trial(
    study: optuna.Study,
    trial: Trial,
    plan: Plan,
    config_name: str,
    sweep_run_id: str | None,
    role: Role | None = None,
) -> TrialOutcome:
    """Train, tell Optuna and label the MLflow runs; never raises except on Ctrl-C."""

    start = time.perf_counter()
    role = role or Role()
    params = dict(trial.params) if role.params is None else dict(role.params)
    outcome = TrialOutcome(trial.number, "FAIL", None, 0, 0.0, params)
    outcome.retry_of = trial.user_attrs.get(names.ATTR_RETRY_OF)
    run_ids: list[str] = []
    interrupted: KeyboardInterrupt | None = None
    try:
        overrides = [*trial_overrides(plan, params), *role.overrides]
        composed = compose_trial(config_name, overrides, len(params) + len(role.overrides))
        runner = SeedRunner(plan, trial, composed, sweep_run_id, study.study_name, role)
        try:
            value = runner.run(outcome)
        finally:
            run_ids = runner.run_ids
            if outcome.run_id is None and run_ids:
                outcome.run_id = run_ids[0]  # the trial run, also when pruned or failed
        if math.isnan(value):
            raise RuntimeError(f"objective {composed.config.train.objective} is NaN")
        outcome.state, outcome.value = "COMPLETE", value
    except Pruned as stop:
        outcome.state, outcome.reason = "PRUNED", str(stop)
        frozen = current(study, trial)
        if frozen.last_step is not None:
            outcome.value = frozen.intermediate_values[frozen.last_step]
    except KeyboardInterrupt as exc:
        outcome.reason, interrupted = "interrupted (Ctrl-C)", exc
    except Exception as exc:
        outcome.reason = f"{type(exc).__name__}: {exc}"
    outcome.seconds = time.perf_counter() - start
    _finish(study, trial, outcome)
    _label(outcome, run_ids)
    if interrupted is not None:
        raise interrupted
    return outcome


def _finish(study: optuna.Study, trial: Trial, outcome: TrialOutcome) -> None:
    """Attributes first (a finished trial is read-only), then tell."""
    from optuna.trial import TrialState

    if outcome.reason:
        set_system_attr(study, trial, names.ATTR_REASON, outcome.reason[:2000])
    if outcome.run_id:
        trial.set_user_attr(names.ATTR_MLFLOW_RUN, outcome.run_id)
    trial.set_user_attr(names.ATTR_ENV_STEPS, outcome.steps)
    if outcome.seed_values:
        trial.set_user_attr(names.ATTR_SEED_VALUES, outcome.seed_values)
    if outcome.state == "COMPLETE":
        study.tell(trial, outcome.value)
    elif outcome.state == "PRUNED":
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, state=TrialState.FAIL)


def _label(outcome: TrialOutcome, run_ids: list[str]) -> None:
    """Put the final Optuna state on the trial's MLflow runs."""
    from pg.record.remote import open_remote_tracker

    tracker = open_remote_tracker()
    if not run_ids or tracker is None:
        return
    from pg.core import metrics as m

    tags = {names.TRIAL_STATE: outcome.state}
    if outcome.reason:
        tags[names.TRIAL_REASON] = outcome.reason[:5000]
    trial_run = outcome.run_id or run_ids[0]
    for run_id in {trial_run, *run_ids}:  # the seed runs carry the trial's state too
        tracker.set_tags(run_id, tags)
    if outcome.state == "PRUNED" and outcome.value is not None:
        tracker.log_metric(trial_run, m.OBJECTIVE, float(outcome.value), outcome.steps)
        tracker.set_tags(trial_run, {names.STEPS: str(outcome.steps)})
    if outcome.state == "FAIL":
        interrupted = (outcome.reason or "").startswith("interrupted")
        for run_id in {trial_run, *run_ids}:
            status = tracker.status(run_id)
            if interrupted and status == "RUNNING":
                # Ctrl-C landed outside the training loop (e.g. while the run was created).
                tracker.terminate(
                    run_id, "KILLED", {names.STOPPED: outcome.reason or "interrupted"}
                )
            elif not interrupted and run_id == trial_run and status in ("RUNNING", "FINISHED"):
                # Finished training but an unusable value (NaN objective): not a success.
                tracker.terminate(run_id, "FAILED", {names.ERROR: outcome.reason or "failed"})
