"""The seeds of one trial: k training runs advanced together, or one after another.

With one seed the trial run is the training run itself.  With k seeds the trial run holds
the params (seed aside), the mean objective at every report point and the trial value as
``objective``; each seed is a complete training run nested under it (``pg.kind=seed``).

Most pruners judge a trial by its objective at equal env steps: the seeds then train in
lockstep, the pruner sees their mean at each report point and all seeds stop together.
The Wilcoxon pruner judges a trial seed by seed against the best trial (its "instances"
are the seeds): each seed trains to its end, one after another, and reports its final
objective at step = its position in the seed list; the pruner may stop the trial between
two seeds.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pg.record import names
from pg.sweep.compose import Composed, with_seed
from pg.sweep.factories import per_seed
from pg.sweep.naming import seed_run_name, trial_run_name
from pg.sweep.pruning import pruner_view, should_prune
from pg.sweep.spec import Plan
from pg.sweep.study import report, set_system_attr

if TYPE_CHECKING:
    from collections.abc import Generator

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
    retry_of: int | None = None  # the trial cut short that this one runs again


@dataclass
class Role:
    """What a trial is for, when it is not a search trial (whose role is the default)."""

    kind: str = names.KIND_TRIAL
    name: str | None = None  # run name; None: the trial's number and params
    params: dict[str, Any] | None = None  # None: the trial's own
    overrides: list[str] = field(default_factory=list)  # after the params (e.g. seed=5)
    tags: dict[str, str] = field(default_factory=dict)  # added to every run of the trial


class Pruned(Exception):  # noqa: N818 - control flow, not an error
    pass


class SeedRunner:
    """k training generators: in lockstep, or one after another for the Wilcoxon pruner."""

    def __init__(
        self,
        plan: Plan,
        trial: Trial,
        composed: Composed,
        sweep_run_id: str | None,
        study_name: str,
        role: Role | None = None,
    ) -> None:
        self.plan = plan
        self.role = role or Role()
        self.trial = trial
        self.composed = composed
        self.sweep_run_id = sweep_run_id
        self.study_name = study_name
        self.run_ids: list[str] = []
        self.pruning = pruner_view(trial)

    def _tags(self, kind: str) -> dict[str, str]:
        tags = {
            names.KIND: kind,
            names.STUDY: self.study_name,
            names.TRIAL_NUMBER: str(self.trial.number),
            names.TRIAL_STATE: "RUNNING",
            **self.role.tags,
        }
        retry_of = self.trial.user_attrs.get(names.ATTR_RETRY_OF)
        if retry_of is not None:  # a re-run of a trial whose process died
            tags[names.RETRY_OF] = str(retry_of)
        return tags

    def _name(self) -> str:
        if self.role.name is not None:
            return self.role.name
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
                    tags=self._tags(self.role.kind),
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
        advance = self._one_by_one if per_seed(self.plan.spec) and k > 1 else self._lockstep
        try:
            value = advance(gens, outcome, trial_run)
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
                report(self.trial, mean, max(every, step // every * every))
                if should_prune(self.trial, self.pruning):
                    raise Pruned(
                        f"pruned by {type(self.trial.study.pruner).__name__} at step "
                        f"{step:,} (mean {objective_name} = {mean:.2f})"
                    )
        except BaseException as exc:
            _stop_all([gens[i] for i in live], exc)
            raise
        values = [f.objective for f in finals if f is not None]
        outcome.seed_values = values if len(values) > 1 else []
        outcome.steps = max((f.result.steps for f in finals if f is not None), default=0)
        return sum(values) / len(values) if values else math.nan

    def _one_by_one(
        self,
        gens: list[Generator[Report, None, Outcome]],
        outcome: TrialOutcome,
        trial_run: RemoteRun | None,
    ) -> float:
        """Each seed to its end, then its final objective to the pruner at step ``i``.

        The pruner may stop the trial between two seeds, never after the last one: a
        trial that trained every seed is complete, judged by its mean.  Seeds that were
        never started leave no run.
        """

        cfg = self.composed.config
        every = cfg.train.report_every
        curves: list[dict[int, float]] = []
        values: list[float] = []
        i = 0
        try:
            for i, gen in enumerate(gens):
                curve: dict[int, float] = {}
                try:
                    while True:
                        step, value = next(gen)
                        curve[max(every, step // every * every)] = value
                except StopIteration as done:
                    final: Outcome = done.value
                curves.append(curve)
                values.append(final.objective)
                outcome.seed_values = list(values)
                outcome.steps = max(outcome.steps, final.result.steps)
                if math.isnan(final.objective):
                    raise RuntimeError(f"objective {cfg.train.objective} of seed {i} is NaN")
                report(self.trial, final.objective, i)
                if i < len(gens) - 1 and should_prune(self.trial, self.pruning):
                    mean = sum(values) / len(values)
                    raise Pruned(
                        f"pruned by {type(self.trial.study.pruner).__name__} after seed "
                        f"{i + 1} of {len(gens)} (mean {cfg.train.objective} = {mean:.2f})"
                    )
        except BaseException as exc:
            _stop_all(gens[i:], exc)  # the one running (if any) ends its run; the rest never start
            raise
        finally:
            self._log_mean_curve(trial_run, curves)
        return sum(values) / len(values)

    def _log_mean_curve(self, trial_run: RemoteRun | None, curves: list[dict[int, float]]) -> None:
        """The trial run's curve: at each report point, the mean of the seeds that got there."""
        if trial_run is None or not curves:
            return
        name = self.composed.config.train.objective
        for step in sorted({s for c in curves for s in c}):
            at = [c[step] for c in curves if step in c and not math.isnan(c[step])]
            if at:
                trial_run.log_metrics({name: sum(at) / len(at)}, step)


def _stop_all(gens: list[Generator[Report, None, Outcome]], exc: BaseException) -> None:
    """End the seeds still open with the reason the trial stopped: pruning ends their runs
    FINISHED (the sweep working), Ctrl-C KILLED, another seed's failure FAILED."""
    from pg.core.train import with_suppressed_close
    from pg.record.writer import Stopped

    stop: BaseException = exc
    if isinstance(exc, Pruned):
        stop = Stopped(str(exc), "FINISHED")
    elif not isinstance(exc, KeyboardInterrupt):
        stop = Stopped(f"another seed failed: {type(exc).__name__}: {exc}")
    for gen in gens:
        with contextlib.suppress(BaseException):
            with_suppressed_close(gen, stop)
