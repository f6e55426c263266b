"""The ask -> run -> tell loop, in the sweep's process or in a worker process of its own.

A local sweep forks ``workers - 1`` worker processes that :func:`serve_forked` jobs
(:mod:`pg.sweep.local_backend`); a Ray task runs :func:`work` itself.  Each asks its next
trial as soon as it is free, so trials never wait for a batch.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna

    from pg.record.remote import RemoteTracker
    from pg.sweep.asking import BudgetLock
    from pg.sweep.spec import Plan
    from pg.sweep.trial import TrialOutcome

EXIT_OK, EXIT_FAILURES, EXIT_INTERRUPTED = 0, 3, 130
SEED_STRIDE = 7919  # worker i's sampler seed: the sweep's + first_trial + i * SEED_STRIDE


@dataclass
class Job:
    """Everything a worker needs, written as JSON by the sweep process."""

    settings: dict[str, Any]
    arguments: list[str]
    conf_dir: str
    config_name: str
    storage_url: str
    sweep_run_id: str | None
    deadline: float | None  # time.time() after which no new trial starts
    first_trial: int = 0  # the study's trial count when the sweep started (pg.sweep.draws)
    worker: int = 0  # 0: the sweep's own process; 1..N-1: its worker processes or Ray tasks
    command: str | None = None  # the sweep's command line, recorded on the worker's runs
    stage: str = "search"  # search | validation (pg.sweep.validation)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> Job:
        return cls(**json.loads(path.read_text()))

    @property
    def seed_offset(self) -> int:
        """Added to the sampler's seed: a resumed sweep and each worker draw anew (TPE past
        its startup trials; the random draws are one stream, :mod:`pg.sweep.draws`)."""
        return self.first_trial + SEED_STRIDE * self.worker

    def for_worker(self, index: int) -> Job:
        return replace(self, worker=index)

    def plan(self) -> Plan:
        """The sweep's plan, as :func:`pg.sweep.checks.check_definition` made it."""
        from pg.sweep.spec import build_spec, plan

        return plan(build_spec(self.settings), self.arguments)


def load_study(job: Job, plan: Plan) -> optuna.Study:
    import optuna

    from pg.sweep.factories import make_pruner, make_sampler
    from pg.sweep.study import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(job.storage_url, plan.spec)
    return optuna.load_study(
        study_name=plan.spec.study_name,
        storage=storage,
        sampler=make_sampler(plan.spec, job.seed_offset, plan.grid, (job.first_trial, plan.space)),
        pruner=make_pruner(plan.spec),
    )


def failures_exceeded(study: optuna.Study, plan: Plan) -> bool:
    """More failed trials than ``max_failure_rate`` allows (orphans and Ctrl-C aside).

    With ``n_trials`` the rate is of the budget, so early failures do not end a sweep
    that is otherwise healthy; with only a timeout it is of the finished trials.
    """
    from optuna.trial import TrialState

    from pg.record.names import ATTR_REASON as REASON
    from pg.sweep.retries import RERUN_REASONS

    spec = plan.spec
    trials = study.get_trials(deepcopy=False)
    failed = sum(
        1
        for t in trials
        if t.state == TrialState.FAIL
        and not str(t.system_attrs.get(REASON, "")).startswith(RERUN_REASONS)
    )
    if spec.n_trials is not None:
        return failed > spec.max_failure_rate * spec.n_trials
    finished = sum(1 for t in trials if t.state.is_finished())
    return finished >= 5 and failed > spec.max_failure_rate * finished


def _print_line(line: str) -> None:
    print(line, flush=True)


def work(job: Job, plan: Plan, report: Callable[[str], None] = _print_line) -> int:
    """Run trials until the budget, the deadline or the failure limit is reached.

    ``report`` receives one line per finished trial; a Ray worker sends it to the sweep's
    controller instead of printing it on a node nobody watches.
    """
    import warnings

    from pg.sweep.asking import BudgetLock, reserve
    from pg.sweep.study import heartbeat
    from pg.sweep.trial import run_trial
    from pg.sweep.validation import STAGE, work_validation

    if job.stage == STAGE:
        return work_validation(job, plan, report)
    # Optuna warns that heartbeats are meant for Study.optimize; ask/tell uses them here.
    warnings.filterwarnings("ignore", message="Heartbeat of storage")
    study = load_study(job, plan)
    lock = BudgetLock(job.storage_url, plan.spec.study_name)
    while True:
        if job.deadline is not None and time.time() >= job.deadline:
            return EXIT_OK
        if failures_exceeded(study, plan):
            return EXIT_FAILURES
        _recover(study, plan, lock, job, report)
        trial = reserve(study, lock, plan.spec, plan.space)
        if trial is None:
            return EXIT_OK
        try:
            with heartbeat(study, trial):
                outcome = run_trial(study, trial, plan, job.config_name, job.sweep_run_id)
        except KeyboardInterrupt:
            report(f"pg: trial {trial.number} interrupted: FAIL")
            return EXIT_INTERRUPTED
        report(trial_line(outcome, study, plan))


def _recover(
    study: optuna.Study, plan: Plan, lock: BudgetLock, job: Job, report: Callable[[str], None]
) -> None:
    """A trial of another worker whose process died: FAIL, and queued to run again here."""
    from pg.sweep.orphans import fail_orphans, recover

    orphans = fail_orphans(study, plan.spec)
    if orphans:
        recover(study, plan.spec, lock, orphans, _tracker(job, plan), report)


def _tracker(job: Job, plan: Plan) -> RemoteTracker | None:
    """This process's MLflow connection, opened from the sweep's config if no trial has."""
    from pg.record.remote import open_remote_tracker, remote_tracker
    from pg.sweep.compose import compose_trial

    tracker = open_remote_tracker()
    if tracker is None:
        config = compose_trial(job.config_name, plan.base_overrides).config
        tracker = remote_tracker(config.tracking) if config.tracking.enabled else None
    return tracker


def trial_line(outcome: TrialOutcome, study: optuna.Study, plan: Plan) -> str:
    value = "" if outcome.value is None else f" {_fmt(outcome.value)}"
    params = " ".join(f"{k}={_fmt(v)}" for k, v in outcome.params.items())
    seeds = ""
    if outcome.seed_values:
        seeds = f" seeds [{', '.join(_fmt(v) for v in outcome.seed_values)}]"
    why = f" ({outcome.reason})" if outcome.state == "FAIL" and outcome.reason else ""
    if outcome.retry_of is not None:
        why += f" (retry of trial {outcome.retry_of})"
    best = ""
    try:
        b = study.best_trial
        best = f" | best: trial {b.number} = {_fmt(b.value)}"
    except ValueError:
        pass
    return (
        f"pg: trial {outcome.number:>3} {outcome.state:<8}{value}{seeds} after "
        f"{outcome.steps:,} steps, {outcome.seconds:.1f} s  {params}{why}{best}"
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def run_job(job: Job) -> int:
    from pg.sweep.compose import ensure_hydra

    if job.command:
        from pg.record.provenance import set_command

        set_command(job.command)
    ensure_hydra(job.conf_dir)
    return work(job, job.plan())


def serve(status_fd: int, jobs: IO[str]) -> int:
    """Jobs (paths of their JSON files) from ``jobs``, one per line, until it ends; each
    job's exit code on ``status_fd`` once its records are written."""
    with os.fdopen(status_fd, "w") as status:
        for line in jobs:
            try:
                code = run_job(Job.load(Path(line.strip())))
            except KeyboardInterrupt:
                code = EXIT_INTERRUPTED
            if code != EXIT_INTERRUPTED:
                records_written()  # the sweep reads what this job recorded next
            status.write(f"{code}\n")
            status.flush()
            if code == EXIT_INTERRUPTED:
                return code
    return EXIT_OK


def serve_forked(jobs_fd: int, status_fd: int, record_fd: int | None = None) -> int:
    """:func:`serve` in a process forked from the sweep's (pg.sweep.local_backend).

    It records through ``record_fd``, its own connection to the sweep's record process
    (None: through a record process it starts); that connection is closed at the end, as
    a started worker's exit handlers would."""
    from pg.record.process import close_current
    from pg.record.remote import forget_after_fork

    forget_after_fork(record_fd)
    _die_with_parent()
    try:
        with os.fdopen(jobs_fd) as jobs:
            return serve(status_fd, jobs)
    except KeyboardInterrupt:  # while it waited for a job
        return EXIT_INTERRUPTED
    finally:
        close_current()


def records_written() -> None:
    """Return once this process's record process has written every call sent so far: a
    job reports done only then, since a kept or Ray worker process outlives its job."""
    from pg.record.remote import open_remote_tracker

    tracker = open_remote_tracker()
    if tracker is not None:
        tracker.sync()


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the sweep process dies, so no worker outlives a kill -9."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
