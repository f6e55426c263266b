"""One trial: compose its config, train k seeds in lockstep, report, prune, tell.

With one seed the trial run is the training run itself.  With k seeds the trial run holds
the params (seed aside), the mean objective at every report point and the trial value as
``objective``; each seed is a complete training run nested under it (``pg.kind=seed``).
The pruner sees the seed mean, so pruning works with several seeds, and all seeds stop
together.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pg.record import names
from pg.sweep.compose import Composed, compose_trial, with_seed
from pg.sweep.naming import seed_run_name, trial_run_name
from pg.sweep.space import override_line
from pg.sweep.spec import Plan
from pg.sweep.study import current, set_system_attr

if TYPE_CHECKING:
    from collections.abc import Generator

    import optuna
    from optuna.trial import Trial

    from pg.core.train import Report
    from pg.experiment import Outcome
    from pg.record.remote import RemoteRun


@dataclass
class TrialOutcome:
    number: int
    state: str  # COMPLETE | PRUNED | FAIL
    value: float | None
    steps: int
    seconds: float
    params: dict[str, Any]
    run_id: str | None = None
    reason: str | None = None
    seed_values: list[float] = field(default_factory=list)


class Pruned(Exception):  # noqa: N818 - control flow, not an error
    pass


def trial_overrides(plan: Plan, params: dict[str, Any]) -> list[str]:
    return [*plan.base_overrides, *(override_line(k, v) for k, v in params.items())]


def run_trial(
    study: optuna.Study,
    trial: Trial,
    plan: Plan,
    config_name: str,
    sweep_run_id: str | None,
) -> TrialOutcome:
    """Train, tell Optuna and label the MLflow runs; never raises except on Ctrl-C."""

    start = time.perf_counter()
    params = dict(trial.params)
    outcome = TrialOutcome(trial.number, "FAIL", None, 0, 0.0, params)
    run_ids: list[str] = []
    interrupted: KeyboardInterrupt | None = None
    try:
        composed = compose_trial(config_name, trial_overrides(plan, params), len(params))
        runner = _SeedRunner(plan, trial, composed, sweep_run_id, study.study_name)
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


class _SeedRunner:
    """k training generators advanced together, one report point at a time."""

    def __init__(
        self,
        plan: Plan,
        trial: Trial,
        composed: Composed,
        sweep_run_id: str | None,
        study_name: str,
    ) -> None:
        self.plan = plan
        self.trial = trial
        self.composed = composed
        self.sweep_run_id = sweep_run_id
        self.study_name = study_name
        self.run_ids: list[str] = []

    def _tags(self, kind: str) -> dict[str, str]:
        return {
            names.KIND: kind,
            names.STUDY: self.study_name,
            names.TRIAL_NUMBER: str(self.trial.number),
            names.TRIAL_STATE: "RUNNING",
        }

    def _name(self) -> str:
        return trial_run_name(self.trial.number, self.plan.spec.n_trials, self.trial.params)

    def _record_trial_run(self, run_id: str) -> None:
        self.run_ids.append(run_id)
        set_system_attr(self.trial.study, self.trial, names.ATTR_RUN_ID, run_id)

    def run(self, outcome: TrialOutcome) -> float:
        from pg.experiment import execution
        from pg.record.remote import remote_tracker

        cfg = self.composed.config
        seed_values = self.plan.seed_list(cfg.seed)
        k = len(seed_values)
        tracked = cfg.tracking.enabled
        trial_run = None
        if tracked:
            remote_tracker(cfg.tracking)
        if k == 1:
            gens = [
                execution(
                    cfg,
                    self.composed.snapshot,
                    parent_run_id=self.sweep_run_id,
                    tags=self._tags(names.KIND_TRIAL),
                    on_start=self._record_trial_run,
                    run_name=self._name(),
                    wait_at_end=False,  # its end is written while the next trial trains
                )
            ]
        else:
            if tracked:
                trial_run = self._start_trial_run()
                outcome.run_id = trial_run.run_id
            parent = trial_run.run_id if trial_run is not None else None
            seeds = [with_seed(self.composed, s) for s in seed_values]
            gens = [
                execution(
                    s.config,
                    s.snapshot,
                    parent_run_id=parent,
                    tags={**self._tags(names.KIND_SEED), names.SEED_INDEX: str(i)},
                    on_start=self.run_ids.append,
                    run_name=seed_run_name(
                        self.trial.number, self.plan.spec.n_trials, s.config.seed
                    ),
                    wait_at_end=False,
                )
                for i, s in enumerate(seeds)
            ]
        try:
            value = self._lockstep(gens, outcome, trial_run)
        except BaseException as exc:
            if trial_run is not None:
                from pg.record.writer import Stopped

                ended = Stopped(str(exc), "FINISHED") if isinstance(exc, Pruned) else exc
                trial_run.__exit__(type(ended), ended, exc.__traceback__)
            raise
        if trial_run is not None:
            from pg.core import metrics as m

            trial_run.log_metrics({m.OBJECTIVE: value}, outcome.steps)
            trial_run.set_tags({names.STEPS: str(outcome.steps)})
            trial_run.end("FINISHED")
        if k == 1 and self.run_ids:
            outcome.run_id = self.run_ids[0]
        return value

    def _start_trial_run(self) -> RemoteRun:
        from pg.experiment import config_params
        from pg.record.remote import remote_tracker

        cfg = self.composed.config
        tracker = remote_tracker(cfg.tracking)
        tags = {
            **self._tags(names.KIND_TRIAL),
            names.ENV: cfg.env.id,
            names.ALGO: cfg.algo.name,
            names.OBJECTIVE: cfg.train.objective,
            names.SEEDS: ",".join(str(s) for s in self.plan.seed_list(cfg.seed)),
        }
        run = tracker.start_run(self._name(), tags, self.sweep_run_id, wait_at_end=False)
        self._record_trial_run(run.run_id)
        flat = config_params(cfg)
        flat.pop("seed", None)
        run.log_params(flat)
        run.log_files(self.composed.snapshot.files())
        return run

    def _lockstep(
        self,
        gens: list[Generator[Report, None, Outcome]],
        outcome: TrialOutcome,
        trial_run: RemoteRun | None,
    ) -> float:
        from pg.core.train import with_suppressed_close
        from pg.record.writer import Stopped

        objective_name = self.composed.config.train.objective
        latest = [math.nan] * len(gens)
        finals: list[Outcome | None] = [None] * len(gens)
        live = list(range(len(gens)))
        try:
            while live:
                step = 0
                for i in list(live):
                    try:
                        step_i, value = next(gens[i])
                        latest[i] = value
                        step = max(step, step_i)
                    except StopIteration as done:
                        finals[i] = done.value
                        latest[i] = done.value.objective
                        step = max(step, done.value.result.steps)
                        live.remove(i)
                outcome.steps = step
                if not live:
                    break
                known = [v for v in latest if not math.isnan(v)]
                if not known:
                    continue
                mean = sum(known) / len(known)
                if trial_run is not None:
                    trial_run.log_metrics({objective_name: mean}, step)
                # Report at the nominal point: runs cross it a few env steps apart, and the
                # pruner compares trials only at equal steps.
                every = self.composed.config.train.report_every
                self.trial.report(mean, max(every, step // every * every))
                if self.trial.should_prune():
                    raise Pruned(
                        f"pruned by {type(self.trial.study.pruner).__name__} at step "
                        f"{step:,} (mean {objective_name} = {mean:.2f})"
                    )
        except BaseException as exc:
            stop: BaseException = exc
            if isinstance(exc, Pruned):
                stop = Stopped(str(exc), "FINISHED")  # pruning is the sweep working
            elif not isinstance(exc, KeyboardInterrupt):
                stop = Stopped(f"another seed failed: {type(exc).__name__}: {exc}")
            for i in live:
                with contextlib.suppress(BaseException):
                    with_suppressed_close(gens[i], stop)
            raise
        values = [f.objective for f in finals if f is not None]
        outcome.seed_values = values if len(values) > 1 else []
        outcome.steps = max((f.result.steps for f in finals if f is not None), default=0)
        return sum(values) / len(values) if values else math.nan
