"""Validation: the search's best configurations trained again on seeds it never used.

A search keeps the trial with the best value, and in RL that is often a lucky seed: the
same settings on other seeds land lower.  Training the ``top_k`` best configurations
again on ``seeds`` fresh seeds each gives every finalist an unbiased mean and a 95 %
Student-t interval, and the winner is chosen on those (:mod:`pg.sweep.validation_stage`).

The machinery is the search's own.  The pairs (configuration, seed) are trials queued in
a second Optuna study, ``<study>.validation``, in the same storage; each carries its
params and seed as user attributes.  The same workers (local processes or Ray tasks) ask
them one at a time under the budget lock, train them with pruning off and tell the
value.  So a validation runs in parallel, survives ``kill -9`` (finished pairs are kept,
orphaned ones queued again) and is visible in any Optuna tool.

Fresh seeds: the ``seeds`` integers after the largest seed the search trained on,
``max(search seeds) + 1, + 2, ...`` (the search's seeds are ``seed``, ``seed + 1``, ...
or the command line's ``seed=a,b``): never one of them, the same on every re-run.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pg.record import names
from pg.sweep.spec import VALIDATE_DEFAULTS, Plan, SweepError

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna
    from optuna.trial import FrozenTrial

    from pg.sweep.orphans import Orphan
    from pg.sweep.spec import SweepSpec
    from pg.sweep.trial import Role, TrialOutcome
    from pg.sweep.worker import Job

STAGE = "validation"  # Job.stage of a validation worker
LIMIT = 1000  # top_k and seeds above this are typos (a validation is k x m full trainings)


def validate_settings(value: Any) -> dict[str, Any]:
    """``hydra.sweeper.validate`` over its defaults, or one message naming the bad key.

    ``null`` is the defaults (off); ``top_k: 0`` is off.
    """
    from pg.sweep.settings import _is_int, _reject

    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _reject("validate", value, "a mapping {top_k: K, seeds: M}")
    unknown = sorted(str(k) for k in value if k not in VALIDATE_DEFAULTS)
    if unknown:
        raise SweepError(
            f"unknown key{'s' if len(unknown) > 1 else ''} under hydra.sweeper.validate: "
            f"{', '.join(unknown)} (allowed: {', '.join(VALIDATE_DEFAULTS)})"
        )
    merged = {**VALIDATE_DEFAULTS, **value}
    for key, low in (("top_k", 0), ("seeds", 1)):
        if not _is_int(merged[key]) or not low <= merged[key] <= LIMIT:
            raise _reject(f"validate.{key}", merged[key], f"an integer in [{low}, {LIMIT}]")
    return merged


def enabled(plan: Plan) -> bool:
    """A search with ``top_k > 0``; a grid already trains every combination on its seeds."""
    return plan.mode == "search" and int(plan.spec.validate.get("top_k", 0)) > 0


def validation_seeds(search_seeds: list[int], count: int) -> list[int]:
    """The ``count`` integers after the largest search seed (see the module docstring)."""
    start = max(search_seeds) + 1
    return list(range(start, start + count))


def study_name(search_study: str) -> str:
    return f"{search_study}{names.VALIDATION_STUDY_SUFFIX}"


def validation_plan(plan: Plan) -> Plan:
    """The search's plan for its validation study: one seed per trial, no pruner, queued
    trials only (the sampler is never asked for a value), no deadline of its own."""
    spec = replace(
        plan.spec,
        study_name=study_name(plan.spec.study_name),
        n_trials=None,
        timeout=None,
        seeds=1,
        sampler={"name": "random", "seed": 0},
        pruner={"name": "none"},
        mode="search",
    )
    return Plan(spec, plan.space, list(plan.base_overrides), "search", None)


def role_of(trial: FrozenTrial | optuna.trial.Trial, search_n_trials: int | None) -> Role:
    """A validation trial's role: its configuration's params, its seed, its run name."""
    from pg.sweep.naming import validation_run_name
    from pg.sweep.trial import Role

    number = int(trial.user_attrs[names.ATTR_VALIDATES])
    seed = int(trial.user_attrs[names.ATTR_VALIDATION_SEED])
    return Role(
        kind=names.KIND_VALIDATION,
        name=validation_run_name(number, search_n_trials, seed),
        params=dict(trial.user_attrs.get(names.ATTR_VALIDATION_PARAMS) or {}),
        overrides=[f"seed={seed}"],
        tags={names.VALIDATED_TRIAL: str(number)},
    )


def work_validation(job: Job, plan: Plan, report: Callable[[str], None]) -> int:
    """One worker's loop over the validation study's queued trials (see the module doc)."""
    import warnings

    from pg.sweep.asking import BudgetLock, reserve_queued
    from pg.sweep.study import heartbeat
    from pg.sweep.trial import run_trial
    from pg.sweep.worker import EXIT_INTERRUPTED, EXIT_OK, load_study

    warnings.filterwarnings("ignore", message="Heartbeat of storage")
    vplan = validation_plan(plan)
    study = load_study(job, vplan)
    lock = BudgetLock(job.storage_url, vplan.spec.study_name)
    while True:
        trial = reserve_queued(study, lock, vplan.space)
        if trial is None:
            return EXIT_OK
        role = role_of(trial, plan.spec.n_trials)
        try:
            with heartbeat(study, trial):
                outcome = run_trial(study, trial, vplan, job.config_name, job.sweep_run_id, role)
        except KeyboardInterrupt:
            report(f"pg: validation run {role.name} interrupted: FAIL")
            return EXIT_INTERRUPTED
        report(run_line(outcome, role))


def run_line(outcome: TrialOutcome, role: Role) -> str:
    from pg.sweep.worker import _fmt

    value = "" if outcome.value is None else f" {_fmt(outcome.value)}"
    why = f" ({outcome.reason})" if outcome.state == "FAIL" and outcome.reason else ""
    return (
        f"pg: validation {role.name} {outcome.state:<8}{value} after {outcome.steps:,} steps, "
        f"{outcome.seconds:.1f} s{why}"
    )


def wait_for_running(
    study: optuna.Study,
    spec: SweepSpec,
    on_orphans: Callable[[list[Orphan]], None],
    what: str,
    poll: float = 2.0,
) -> None:
    """Until no trial of ``study`` is RUNNING: another command's still train, dead ones
    are failed as orphans (within ``grace_period`` for another host's)."""
    from optuna.trial import TrialState

    from pg.sweep.orphans import fail_orphans

    said = False
    while True:
        on_orphans(fail_orphans(study, spec))  # a dead process's trial is not waited for
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return
        if not said:
            print(
                f"pg: waiting for {len(running)} {what} still running in another process",
                flush=True,
            )
            said = True
        time.sleep(poll)
