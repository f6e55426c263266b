"""A sweep from start to end: check everything, open the study, run workers, publish.

Order matters: the whole definition (keys, space, grammar, sampler, pruner, storage, a
composed trial config at the corners of the space) is checked before any trial or MLflow
run exists, so a bad sweep leaves nothing behind but one error message.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from pg.core.collection import resume_collection
from pg.record import names
from pg.record.store import redact, warn
from pg.sweep.checks import check_definition
from pg.sweep.spec import Plan, SweepError
from pg.sweep.worker import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, Job

# The parent run's files, drawn by its record process (pg.record.derived).
PUBLISH, WARM_PUBLISH = "pg.sweep.results:publish_stored", "pg.sweep.results:warm_steps"

if TYPE_CHECKING:
    import optuna

    from pg.core.config import Config
    from pg.record.remote import RemoteRun, RemoteTracker
    from pg.sweep.local_backend import LocalWorkers
    from pg.sweep.orphans import Orphan
    from pg.sweep.ray_backend import RayCluster
    from pg.sweep.validation_stage import ValidationStage


def run_from_hydra(settings: dict[str, Any], config: DictConfig, arguments: list[str]) -> float:
    """Entry point of the Hydra sweeper; exits 2 on an invalid sweep definition."""
    hydra = config.hydra
    conf_dir = _main_config_dir(config)
    from omegaconf.errors import OmegaConfBaseException

    cli_hydra = [str(o) for o in hydra.overrides.hydra]
    try:
        try:
            container = OmegaConf.to_container(OmegaConf.create(settings), resolve=True)
        except OmegaConfBaseException as exc:  # e.g. an interpolation that does not resolve
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SweepError(f"hydra.sweeper: {first}") from None
        assert isinstance(container, dict)
        clean = {str(k): v for k, v in container.items()}
        sweep = Sweep.prepare(clean, arguments, conf_dir, str(hydra.job.config_name), cli_hydra)
    except SweepError as exc:
        print(f"pg: invalid sweep: {exc}", file=sys.stderr)
        sys.exit(2)
    return sweep.run()


def _main_config_dir(config: DictConfig) -> str:
    for source in config.hydra.runtime.config_sources:
        if source.provider == "main" and str(source.path).startswith("file://"):
            return str(source.path)[len("file://") :]
    return str(Path(__file__).resolve().parent.parent.parent / "conf")


class Sweep:
    def __init__(
        self,
        plan: Plan,
        job: Job,
        base: Config,
        study: optuna.Study,
        tracker: RemoteTracker | None,
        cluster: RayCluster | None = None,
    ) -> None:
        self.plan = plan
        self.job = job
        self.base = base
        self.study = study
        self.tracker = tracker
        self.cluster = cluster  # backend=ray: where the workers run
        self.local: LocalWorkers | None = None  # backend=local: workers 1..N-1, kept
        self.parent: RemoteRun | None = None
        self._published: list[Any] | None = None  # the study's state last published

    @classmethod
    def prepare(
        cls,
        settings: dict[str, Any],
        arguments: list[str],
        conf_dir: str,
        config_name: str,
        cli_hydra: list[str] | None = None,
    ) -> Sweep:
        """Check the whole definition and open the study; no MLflow run yet.

        ``cli_hydra`` are the command line's ``hydra.*`` overrides: together with the
        task's own they decide grid or search (:mod:`pg.sweep.mode`).
        """
        import optuna

        from pg.record.provenance import command_line
        from pg.record.store import TrackingUnavailableError, default_study_storage
        from pg.sweep.asking import claim_mode
        from pg.sweep.compose import ensure_hydra
        from pg.sweep.study import open_storage

        ensure_hydra(conf_dir)
        the_plan, base, location = check_definition(settings, arguments, config_name, cli_hydra)
        spec = the_plan.spec
        tracking_uri = location.uri
        url = spec.storage or default_study_storage(tracking_uri)
        cluster = None
        if spec.backend == "ray":
            from pg.sweep.ray_connect import connect

            # Before any store or study exists; a later refusal disconnects at exit.
            cluster = connect(
                spec,
                url,
                tracking_uri if base.tracking.enabled else None,
                [*arguments, repr(settings)],
            )
        tracker = None
        if base.tracking.enabled:
            from pg.record.remote import remote_tracker

            try:
                tracker = remote_tracker(base.tracking)
            except TrackingUnavailableError as exc:
                raise SweepError(str(exc)) from None
        storage = open_storage(url, spec)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            study_name=spec.study_name,
            storage=storage,
            direction=spec.direction,  # type: ignore[arg-type]
            load_if_exists=True,
        )
        if study.direction.name.lower() != spec.direction:
            raise SweepError(
                f"study '{spec.study_name}' in {redact(url)} was created to "
                f"{study.direction.name.lower()}, this sweep asks to {spec.direction}"
            )
        claim_mode(study, the_plan.mode, the_plan.grid if the_plan.mode == "grid" else None)
        deadline = time.time() + spec.timeout if spec.timeout is not None else None
        if cluster is not None and tracker is not None:
            # Workers on other nodes have neither this PG_HOME nor MLFLOW_TRACKING_URI.
            from pg.sweep.space import override_line

            arguments = [*arguments, override_line("tracking.uri", tracker.location.uri)]
        job = Job(
            settings=spec.to_dict(),
            arguments=list(arguments),
            conf_dir=conf_dir,
            config_name=config_name,
            storage_url=url,
            sweep_run_id=None,
            deadline=deadline,
            first_trial=len(study.get_trials(deepcopy=False)),
            command=command_line(),
        )
        return cls(the_plan, job, base, study, tracker, cluster)

    # -- running ---------------------------------------------------------------
    def run(self) -> float:
        from pg.sweep.best import BestTrialEnd
        from pg.sweep.results import best_line, best_trial, configurations_lines

        if self.cluster is None:
            # This process trains the first trial: torch's import (~1 s) before the collector
            # resumes (its objects frozen, not walked while trials train) and while the
            # record process still opens the store, which the parent run waits for.
            import pg.core.train  # noqa: F401
        resume_collection()  # the sweep's own imports are done (pg.core.collection)
        validation = self._validation()
        self._header(validation)
        self._recover()
        self.parent = self._parent_run()
        self.job.sweep_run_id = self.parent.run_id if self.parent else None
        status, code = "FINISHED", EXIT_OK
        best: BestTrialEnd | None = None
        try:
            code = self._run_workers(self.job, self.plan, self.study)
            if code == EXIT_OK:
                code = self._drain()
            if code == EXIT_OK and validation is not None:
                self._publish(None)  # the search's results first: validation takes a while
                code = validation.run()
            if self.tracker is not None and code != EXIT_INTERRUPTED:  # before the results
                best = BestTrialEnd(self.study, self.plan, self.job.config_name, self.tracker)
        except KeyboardInterrupt:
            code = EXIT_INTERRUPTED
        except BaseException:
            status = "FAILED"
            raise
        finally:
            stage_failure = validation.failure if validation is not None else None
            failure = stage_failure or "too many failed trials"
            if code == EXIT_INTERRUPTED:
                status = "KILLED"
            elif code == EXIT_FAILURES:
                status = "FAILED"
            try:
                self._publish(validation)
                if best is not None:  # drawn while the record process draws the results
                    best.finish()
            finally:
                if self.cluster is not None:
                    self.cluster.close()
                if self.local is not None:
                    self.local.close()
                if self.parent is not None:
                    if code == EXIT_FAILURES:
                        self.parent.set_tags({names.ERROR: failure})
                    self.parent.end(status)
        if self.parent is not None and self.tracker is not None:
            print(
                f"pg: sweep run {self.parent.run_id} in experiment "
                f"'{self.base.tracking.experiment}' at {self.tracker.location.display}",
                flush=True,
            )
        if self.plan.mode == "grid":
            for line in configurations_lines(self.study):
                print(line, flush=True)
        else:
            print(best_line(self.study), flush=True)
        for line in validation.lines() if validation is not None else []:
            print(line, flush=True)
        if code == EXIT_FAILURES:
            rate = f"more than {self.plan.spec.max_failure_rate:.0%} of the trials failed"
            print(
                f"pg: sweep stopped: {f'{failure}; see above' if stage_failure else rate}",
                file=sys.stderr,
            )
            sys.exit(1)
        if code == EXIT_INTERRUPTED:
            print("pg: sweep interrupted; run the same command to continue", file=sys.stderr)
            sys.exit(130)
        winner = best_trial(self.study)
        return float(winner.value) if winner and winner.value is not None else float("nan")

    def _publish(self, validation: ValidationStage | None) -> None:
        try:
            # The search's files (history, importances) are written once for a state of
            # its study; validation does not change it.
            state = [(t.number, t.state, t.values) for t in self.study.get_trials(deepcopy=False)]
            if state != self._published and self.parent is not None:
                # Drawn by the record process while the validation trains (~4 s here).
                self.parent.log_derived(PUBLISH, self.job.storage_url, self.plan)
                self._published = state
            if validation is not None:
                validation.publish(self.parent)
        except Exception as exc:  # the trials are in the study whatever happens here
            warn(f"could not write the sweep's results: {type(exc).__name__}: {exc}")

    def _validation(self) -> ValidationStage | None:
        """The validation stage of a search that asks for one (``hydra.sweeper.validate``)."""
        from pg.sweep.validation import enabled
        from pg.sweep.validation_stage import ValidationStage

        if not enabled(self.plan):
            return None
        seeds = self.plan.seed_list(self.base.seed)
        return ValidationStage(
            self.study, self.plan, seeds, self.job, self._run_workers, self._label_orphans
        )

    def _header(self, validation: ValidationStage | None) -> None:
        """First line: which rule applied (grid or search), then where the study lives."""
        from pg.sweep.header import header_lines

        done = len(self.study.get_trials(deepcopy=False))
        described = validation.describe() if validation is not None else None
        for line in header_lines(self.plan, done, self.base.seed, described):
            print(line, flush=True)
        print(f"pg: study storage {redact(self.job.storage_url)}", flush=True)
        if self.cluster is not None:
            print(self.cluster.describe(), flush=True)

    def _recover(self, orphans: list[Orphan] | None = None) -> None:
        """Orphans (found here, or reported by Ray) closed; trials cut short queued again."""
        from pg.sweep.asking import BudgetLock
        from pg.sweep.orphans import fail_orphans, recover

        if orphans is None:
            orphans = fail_orphans(self.study, self.plan.spec)
        lock = BudgetLock(self.job.storage_url, self.plan.spec.study_name)
        recover(self.study, self.plan.spec, lock, orphans, self.tracker, _print)

    def _drain(self) -> int:
        """Retries queued once every worker had ended (one died during the last trials)."""
        from optuna.trial import TrialState

        code, before = EXIT_OK, None
        while code == EXIT_OK:
            self._recover()
            waiting = len(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
            if not waiting or (before is not None and waiting >= before):
                break  # nothing queued, or the workers would not take it (deadline)
            before = waiting
            code = self._run_workers(self.job, self.plan, self.study)
        return code

    def _run_workers(self, job: Job, plan: Plan, study: optuna.Study) -> int:
        """This process is worker 0; workers 1..N-1 are processes of their own.

        ``plan`` gives the number of workers and the study they work on (the search's, or
        its validation's); every worker is handed the search's plan and ``job.stage``.
        """
        if self.cluster is not None:
            name = plan.spec.study_name
            return self.cluster.run(job, plan, study, lambda o: self._label_orphans(o, name))
        if self.local is None:
            from pg.sweep.local_backend import LocalWorkers

            self.local = LocalWorkers()
        return self.local.run(job, self.plan, plan.spec.workers)

    # -- MLflow ----------------------------------------------------------------
    def _parent_run(self) -> RemoteRun | None:
        """The study's one parent run: created once, reopened when the sweep resumes."""
        if self.tracker is None:
            return None
        from pg.sweep.parent import parent_run

        run = parent_run(self.tracker, self.study, self.plan, self.job, self.base)
        self.tracker.warm(WARM_PUBLISH)  # while the first trials train, on the other core
        return run

    def _label_orphans(self, orphans: list[Orphan], study_name: str) -> None:
        """Orphans of the search: closed and queued to run again (:meth:`_recover`);
        of its validation study: FAIL in Optuna (done), KILLED in MLflow (the stage
        queues the pair again itself)."""
        if study_name == self.plan.spec.study_name:
            self._recover(orphans)
            return
        for orphan in orphans:
            print(
                f"pg: trial {orphan.number} of study '{study_name}' marked FAIL ({orphan.reason})",
                flush=True,
            )
        if not orphans or self.tracker is None:
            return
        for orphan in orphans:
            for run_id, status in self.tracker.trial_runs(study_name, orphan.number):
                self.tracker.set_tags(run_id, {names.TRIAL_STATE: "FAIL"})
                if status == "RUNNING":
                    self.tracker.terminate(run_id, "KILLED", {names.STOPPED: orphan.reason})


def _print(line: str) -> None:
    print(line, flush=True)
