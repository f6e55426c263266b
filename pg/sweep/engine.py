"""A sweep from start to end: check everything, open the study, run workers, publish.

Order matters: the whole definition (keys, space, grammar, sampler, pruner, storage, a
composed trial config at the corners of the space) is checked before any trial or MLflow
run exists, so a bad sweep leaves nothing behind but one error message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from pg.record import names
from pg.record.store import redact
from pg.sweep.checks import check_definition
from pg.sweep.spec import Plan, SweepError
from pg.sweep.worker import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, Job, work

if TYPE_CHECKING:
    import optuna

    from pg.core.config import Config
    from pg.record.remote import RemoteRun, RemoteTracker
    from pg.sweep.orphans import Orphan
    from pg.sweep.ray_backend import RayCluster


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
        self.parent: RemoteRun | None = None

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
        from pg.sweep.compose import ensure_hydra
        from pg.sweep.study import claim_mode, open_storage

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
            seed_offset=len(study.get_trials(deepcopy=False)),
            command=command_line(),
        )
        return cls(the_plan, job, base, study, tracker, cluster)

    # -- running ---------------------------------------------------------------
    def run(self) -> float:
        from pg.sweep.results import best_line, best_trial, configurations_lines, publish

        self._header()
        self._close_orphans()
        self._requeue()
        self.parent = self._parent_run()
        self.job.sweep_run_id = self.parent.run_id if self.parent else None
        status, code = "FINISHED", EXIT_OK
        try:
            code = self._run_workers()
        except KeyboardInterrupt:
            code = EXIT_INTERRUPTED
        except BaseException:
            status = "FAILED"
            raise
        finally:
            if code == EXIT_INTERRUPTED:
                status = "KILLED"
            elif code == EXIT_FAILURES:
                status = "FAILED"
            try:
                publish(self.study, self.plan, self.parent)
            except Exception as exc:  # the trials are in the study whatever happens here
                _warn(f"could not write the sweep's results: {type(exc).__name__}: {exc}")
            finally:
                if self.cluster is not None:
                    self.cluster.close()
                if self.parent is not None:
                    if code == EXIT_FAILURES:
                        self.parent.set_tags({names.ERROR: "too many failed trials"})
                    self.parent.end(status)
        if self.tracker is not None and code != EXIT_INTERRUPTED:
            self._finish_best(self.tracker)
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
        if code == EXIT_FAILURES:
            print(
                f"pg: sweep stopped: more than {self.plan.spec.max_failure_rate:.0%} of "
                "the trials failed",
                file=sys.stderr,
            )
            sys.exit(1)
        if code == EXIT_INTERRUPTED:
            print("pg: sweep interrupted; run the same command to continue", file=sys.stderr)
            sys.exit(130)
        best = best_trial(self.study)
        return float(best.value) if best is not None and best.value is not None else float("nan")

    def _finish_best(self, tracker: RemoteTracker) -> None:
        """The best trial's GIF and registration; a failure here does not undo the sweep."""
        from pg.sweep.best import finish_best

        try:
            lines = finish_best(self.study, self.plan, self.job.config_name, tracker)
        except Exception as exc:
            print(f"pg: best trial's clip/registration failed: {exc}", file=sys.stderr)
            if self.plan.spec.register_model:
                sys.exit(1)
            return
        for line in lines:
            print(line, flush=True)

    def _header(self) -> None:
        """First line: which rule applied (grid or search), then where the study lives."""
        spec, the_plan = self.plan.spec, self.plan
        done = len(self.study.get_trials(deepcopy=False))
        timeout = f", timeout {spec.timeout:g} s" if spec.timeout is not None else ""
        seeds = the_plan.seed_list(self.base.seed)
        per_trial = f"seeds {','.join(map(str, seeds))} per trial" if len(seeds) > 1 else ""
        if the_plan.mode == "grid":
            axes = " x ".join(f"{k} ({len(v)})" for k, v in the_plan.grid.items())
            what = f"grid of {the_plan.n_combinations} combinations: {axes}"
        else:
            budget = f"{spec.n_trials} trials" if spec.n_trials is not None else "no trial limit"
            sampler = spec.sampler.get("name", "tpe")
            what = f"search: {budget}, {sampler} over {', '.join(the_plan.space)}"
        extras = [
            f"study '{spec.study_name}' ({done} already in it){timeout}",
            f"{spec.workers} worker(s)",
            f"pruner {spec.pruner.get('name', 'median')}",
        ]
        if per_trial:
            extras.insert(2, per_trial)
        print(f"pg: {what}; {'; '.join(extras)}", flush=True)
        print(f"pg: study storage {redact(self.job.storage_url)}", flush=True)
        if self.cluster is not None:
            print(self.cluster.describe(), flush=True)

    def _requeue(self) -> None:
        if self.plan.mode != "grid":
            return
        from pg.sweep.study import BudgetLock, requeue_cut_short

        lock = BudgetLock(self.job.storage_url, self.plan.spec.study_name)
        for number in requeue_cut_short(self.study, lock):
            print(f"pg: trial {number}'s combination queued to run again", flush=True)

    def _run_workers(self) -> int:
        """This process is worker 0; workers 1..N-1 are processes of their own."""
        if self.cluster is not None:
            return self.cluster.run(self.job, self.plan, self.study, self._label_orphans)
        workers = self.plan.spec.workers
        if workers == 1:
            return work(self.job, self.plan)
        with tempfile.TemporaryDirectory(prefix="pg-sweep-") as tmp:
            procs = []
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
            for i in range(1, workers):
                path = Path(tmp) / f"job{i}.json"
                job = Job(**{**self.job.__dict__, "seed_offset": self.job.seed_offset + 7919 * i})
                job.save(path)
                procs.append(
                    subprocess.Popen([sys.executable, "-m", "pg.sweep.worker", str(path)], env=env)
                )
            try:
                codes = [work(self.job, self.plan)]
                codes += [p.wait() for p in procs]
            except KeyboardInterrupt:
                for p in procs:  # they got the same SIGINT; give them time to clean up
                    try:
                        p.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        p.send_signal(signal.SIGKILL)
                return EXIT_INTERRUPTED
        if EXIT_INTERRUPTED in codes:
            return EXIT_INTERRUPTED
        for i, c in enumerate(codes):
            if c not in (EXIT_OK, EXIT_FAILURES):
                print(f"pg: worker {i} exited with status {c}", file=sys.stderr, flush=True)
        if any(c != EXIT_OK for c in codes):
            return EXIT_FAILURES
        return EXIT_OK

    # -- MLflow ----------------------------------------------------------------
    def _parent_run(self) -> RemoteRun | None:
        """The study's one parent run: created once, reopened when the sweep resumes."""
        if self.tracker is None:
            return None
        from pg.sweep.parent import parent_run

        return parent_run(self.tracker, self.study, self.plan, self.job, self.base)

    def _close_orphans(self) -> None:
        """Trials left RUNNING by dead processes: FAIL in Optuna, KILLED in MLflow."""
        from pg.sweep.orphans import fail_orphans

        self._label_orphans(fail_orphans(self.study, self.plan.spec))

    def _label_orphans(self, orphans: list[Orphan]) -> None:
        """Print the orphans and close their MLflow runs KILLED (FAIL in Optuna is done)."""
        for orphan in orphans:
            print(f"pg: trial {orphan.number} marked FAIL ({orphan.reason})", flush=True)
        if not orphans or self.tracker is None:
            return
        for orphan in orphans:
            for run_id, status in self.tracker.trial_runs(self.plan.spec.study_name, orphan.number):
                self.tracker.set_tags(run_id, {names.TRIAL_STATE: "FAIL"})
                if status == "RUNNING":
                    self.tracker.terminate(run_id, "KILLED", {names.STOPPED: orphan.reason})


def _warn(message: str) -> None:
    print(f"pg: warning: {redact(message)}", file=sys.stderr, flush=True)
