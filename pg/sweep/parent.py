"""The sweep's parent run in MLflow: created once per study, reopened on resume."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omegaconf import OmegaConf

from pg.record import names
from pg.record.store import redact, warn

if TYPE_CHECKING:
    import optuna

    from pg.core.config import Config
    from pg.record.remote import RemoteRun, RemoteTracker
    from pg.sweep.spec import Plan
    from pg.sweep.worker import Job


def parent_run(
    tracker: RemoteTracker, study: optuna.Study, the_plan: Plan, job: Job, base: Config
) -> RemoteRun:
    """The study's one parent run: created once, reopened when the sweep resumes."""
    from pg.record.provenance import flatten
    from pg.sweep.asking import BudgetLock
    from pg.sweep.naming import sweep_run_name

    spec = the_plan.spec
    with BudgetLock(job.storage_url, spec.study_name).held():
        run_id = study.user_attrs.get(names.ATTR_SWEEP_RUN)
        if run_id:
            reopened = tracker.reopen(str(run_id))
            if reopened is not None:
                return reopened
        run = tracker.start_run(
            sweep_run_name(spec.study_name),
            {
                names.KIND: names.KIND_SWEEP,
                names.STUDY: spec.study_name,
                names.STORAGE: redact(job.storage_url),
                names.SAMPLER: str(spec.sampler.get("name", "tpe")),
                names.PRUNER: str(spec.pruner.get("name", "median")),
                names.OBJECTIVE: base.train.objective,
                names.DIRECTION: spec.direction,
                names.SWEEP_MODE: the_plan.mode,
            },
            wait_for_calls=True,  # a failed call is a warning here, raised where it is made
        )
        study.set_user_attr(names.ATTR_SWEEP_RUN, run.run_id)
    params = flatten({k: v for k, v in spec.to_dict().items() if k != "storage"})
    params["storage"] = redact(job.storage_url)
    params["space"] = "; ".join(f"{k}: {d!r}" for k, d in the_plan.space.items())
    params["base_overrides"] = " ".join(the_plan.base_overrides)
    run.log_params(params)
    definition = {**spec.to_dict(), "storage": redact(job.storage_url)}
    try:
        run.log_files(
            {
                names.SWEEP_DEFINITION: OmegaConf.to_yaml(OmegaConf.create(definition)),
                names.SWEEP_COMMAND: " ".join(job.arguments) + "\n",
            }
        )
    except Exception as exc:  # a full or read-only artifact folder: trials still run
        warn(f"could not store the sweep definition: {type(exc).__name__}: {exc}")
    return run
