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
from pg.sweep.spec import QUIET, Plan, SweepError, build_spec, plan
from pg.sweep.worker import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, Job, work

if TYPE_CHECKING:
    import optuna

    from pg.core.config import Config
    from pg.record.tracker import Tracker
    from pg.record.writer import TrackedRun


def run_from_hydra(settings: dict[str, Any], config: DictConfig, arguments: list[str]) -> float:
    """Entry point of the Hydra sweeper; exits 2 on an invalid sweep definition."""
    hydra = config.hydra
    conf_dir = _main_config_dir(config)
    container = OmegaConf.to_container(OmegaConf.create(settings), resolve=True)
    assert isinstance(container, dict)
    clean = {str(k): v for k, v in container.items()}
    try:
        sweep = Sweep.prepare(clean, arguments, conf_dir, str(hydra.job.config_name))
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
        tracker: Tracker | None,
    ) -> None:
        self.plan = plan
        self.job = job
        self.base = base
        self.study = study
        self.tracker = tracker
        self.parent: TrackedRun | None = None

    @classmethod
    def prepare(
        cls, settings: dict[str, Any], arguments: list[str], conf_dir: str, config_name: str
    ) -> Sweep:
        """Check the whole definition and open the study; no MLflow run yet."""
        import optuna

        from pg.record.provenance import command_line
        from pg.record.store import TrackingUnavailableError, default_study_storage, resolve_store
        from pg.sweep.compose import compose_trial, ensure_hydra
        from pg.sweep.factories import make_pruner, make_sampler
        from pg.sweep.space import edge_points, override_line
        from pg.sweep.study import open_storage

        spec = build_spec(settings)
        the_plan = plan(spec, arguments)
        the_plan.base_overrides[:0] = QUIET
        make_sampler(spec)
        make_pruner(spec)
        ensure_hydra(conf_dir)
        base = compose_trial(config_name, the_plan.base_overrides).config
        for point in edge_points(the_plan.space):
            compose_trial(
                config_name,
                [*the_plan.base_overrides, *(override_line(k, v) for k, v in point.items())],
            )
        tracker = None
        if base.tracking.enabled:
            from pg.record.tracker import tracker_for

            try:
                tracker = tracker_for(base.tracking)
            except TrackingUnavailableError as exc:
                raise SweepError(str(exc)) from None
        url = spec.storage or default_study_storage(resolve_store(base.tracking).uri)
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
                f"study '{spec.study_name}' in {_redacted(url)} was created to "
                f"{study.direction.name.lower()}, this sweep asks to {spec.direction}"
            )
        deadline = time.time() + spec.timeout if spec.timeout is not None else None
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
        return cls(the_plan, job, base, study, tracker)

    # -- running ---------------------------------------------------------------
    def run(self) -> float:
        from pg.sweep.results import best_line, best_trial, publish

        self._close_orphans()
        self.parent = self._parent_run()
        self.job.sweep_run_id = self.parent.run_id if self.parent else None
        self._header()
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
            finally:
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

    def _finish_best(self, tracker: Tracker) -> None:
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
        spec = self.plan.spec
        done = len(self.study.get_trials(deepcopy=False))
        budget = f"{spec.n_trials} trials" if spec.n_trials is not None else "no trial limit"
        timeout = f", timeout {spec.timeout:g} s" if spec.timeout is not None else ""
        space = ", ".join(self.plan.space)
        sampler, pruner = spec.sampler.get("name", "tpe"), spec.pruner.get("name", "median")
        print(
            f"pg: sweep '{spec.study_name}' ({budget}{timeout}; {done} already in the study) "
            f"over {space}; {spec.workers} worker(s), {spec.seeds} seed(s) per trial, "
            f"sampler {sampler}, pruner {pruner}",
            flush=True,
        )
        print(f"pg: study storage {_redacted(self.job.storage_url)}", flush=True)

    def _run_workers(self) -> int:
        """This process is worker 0; workers 1..N-1 are processes of their own."""
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
    def _parent_run(self) -> TrackedRun | None:
        """The study's one parent run: created once, reopened when the sweep resumes."""
        if self.tracker is None:
            return None
        from pg.record.provenance import flatten
        from pg.sweep.naming import sweep_run_name
        from pg.sweep.study import BudgetLock

        spec = self.plan.spec
        with BudgetLock(self.job.storage_url, spec.study_name).held():
            run_id = self.study.user_attrs.get(names.ATTR_SWEEP_RUN)
            if run_id:
                reopened = self.tracker.reopen(str(run_id))
                if reopened is not None:
                    return reopened
            run = self.tracker.start_run(
                sweep_run_name(spec.study_name),
                {
                    names.KIND: names.KIND_SWEEP,
                    names.STUDY: spec.study_name,
                    names.STORAGE: _redacted(self.job.storage_url),
                    names.SAMPLER: str(spec.sampler.get("name", "tpe")),
                    names.PRUNER: str(spec.pruner.get("name", "median")),
                    names.OBJECTIVE: self.base.train.objective,
                    names.DIRECTION: spec.direction,
                },
            )
            self.study.set_user_attr(names.ATTR_SWEEP_RUN, run.run_id)
        params = flatten({k: v for k, v in spec.to_dict().items() if k != "storage"})
        params["storage"] = _redacted(self.job.storage_url)
        params["space"] = "; ".join(f"{k}: {d!r}" for k, d in self.plan.space.items())
        params["base_overrides"] = " ".join(self.plan.base_overrides)
        run.log_params(params)
        definition = {**spec.to_dict(), "storage": _redacted(self.job.storage_url)}
        run.log_files(
            {
                names.SWEEP_DEFINITION: OmegaConf.to_yaml(OmegaConf.create(definition)),
                names.SWEEP_COMMAND: " ".join(self.job.arguments) + "\n",
            }
        )
        return run

    def _close_orphans(self) -> None:
        """Trials left RUNNING by dead processes: FAIL in Optuna, KILLED in MLflow."""
        from pg.sweep.study import fail_orphans

        orphans = fail_orphans(self.study, self.plan.spec)
        for orphan in orphans:
            print(f"pg: trial {orphan.number} marked FAIL ({orphan.reason})", flush=True)
        if not orphans or self.tracker is None:
            return
        for orphan in orphans:
            for run_id, status in self.tracker.trial_runs(self.plan.spec.study_name, orphan.number):
                self.tracker.set_tags(run_id, {names.TRIAL_STATE: "FAIL"})
                if status == "RUNNING":
                    self.tracker.terminate(run_id, "KILLED", {names.STOPPED: orphan.reason})


def _redacted(url: str) -> str:
    from pg.record.store import redact

    return redact(url)
