"""``backend: ray``: the sweep's workers as Ray tasks on a cluster, this process the controller.

Each worker is one Ray task running the same ask -> train -> tell loop as a local worker
process (:func:`pg.sweep.worker.work`), against the shared study storage and tracking
store; the budget lock in the storage keeps the total at ``n_trials``.  This process
only starts the tasks, prints the line each worker sends per finished trial, and turns a
task's death (worker process or node gone) into its trial's FAIL, as orphans are.

Secrets: Ray keeps task arguments (and records the driver's command line as the job's
entrypoint), so workers get every URL without its password and read it from their
environment (``PGPASSWORD``, ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``), which is set
here for a local instance and by whoever starts the nodes of an existing cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pg.sweep.spec import SweepError, SweepSpec
from pg.sweep.worker import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, Job

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna

    from pg.sweep.orphans import Orphan
    from pg.sweep.spec import Plan

POLL = 0.5  # seconds between looks at the workers' lines and states
CANCEL_WAIT = 60  # seconds running trials get to end themselves after Ctrl-C
PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent

_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*)://(?P<user>[^/\s:@\"']*):(?P<password>[^@\s/\"']+)@"
)


def without_passwords(text: str) -> tuple[str, dict[str, str]]:
    """``text`` with the passwords of its URLs removed, and the environment that restores them.

    PostgreSQL URLs keep their user (libpq takes the password from ``PGPASSWORD``); an
    HTTP tracking URI loses its user info (MLflow takes both from its own variables).
    """
    env: dict[str, str] = {}

    def put(name: str, value: str, url_kind: str) -> None:
        if env.get(name, value) != value:
            raise SweepError(
                f"two {url_kind} URLs carry different passwords; with backend=ray give "
                "them to the workers through ~/.pgpass or the environment instead"
            )
        env[name] = value

    def strip(match: re.Match[str]) -> str:
        scheme = match["scheme"].lower()
        user = urllib.parse.unquote(match["user"])
        password = urllib.parse.unquote(match["password"])
        if password == "***":  # already redacted (a recorded command line): nothing to pass
            keep = f"{match['user']}@" if scheme.startswith("postgres") else ""
            return f"{match['scheme']}://{keep}"
        if scheme in ("http", "https"):
            put("MLFLOW_TRACKING_USERNAME", user, "tracking")
            put("MLFLOW_TRACKING_PASSWORD", password, "tracking")
            return f"{match['scheme']}://"
        if scheme.startswith("postgres"):
            put("PGPASSWORD", password, "PostgreSQL")
            return f"{match['scheme']}://{match['user']}@"
        raise SweepError(
            f"a {scheme} URL carries a password: with backend=ray only PostgreSQL and HTTP "
            "URLs can have theirs passed to the workers through the environment"
        )

    return _USERINFO.sub(strip, text), env


def _is_local_file_store(uri: str) -> bool:
    """A store only this machine can open (SQLite, a file path)."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else "file"
    return scheme in ("sqlite", "file") or scheme.startswith("sqlite+")


@dataclass
class RayCluster:
    """A connection to the cluster the sweep's workers run on."""

    address: str  # as given, or "local instance"
    started_here: bool
    nodes: int
    cpus: float
    gpus: float
    num_cpus: float
    num_gpus: float
    workers: int
    secrets_from_nodes: bool  # URLs had passwords the nodes must supply themselves

    def describe(self) -> str:
        where = (
            "a local Ray instance started for this sweep"
            if self.started_here
            else f"Ray cluster {self.address}"
        )
        gpus = f", {self.gpus:g} GPUs" if self.gpus else ""
        per = f"{self.num_cpus:g} CPU" + (f" + {self.num_gpus:g} GPU" if self.num_gpus else "")
        line = (
            f"pg: workers are Ray tasks on {where} ({self.nodes} node(s), {self.cpus:g} CPUs"
            f"{gpus}), {per} each"
        )
        at_once = int(self.cpus // self.num_cpus) if self.num_cpus else 0
        if at_once < self.workers:
            line += f"; only {at_once} of the {self.workers} workers fit at once"
        return line

    def close(self) -> None:
        """Disconnect; a local instance is shut down with its processes."""
        import ray

        if ray.is_initialized():
            ray.shutdown()

    def run(
        self,
        job: Job,
        plan: Plan,
        study: optuna.Study,
        on_orphans: Callable[[list[Orphan]], None],
    ) -> int:
        """Run ``workers`` Ray tasks to the end; returns the sweep's exit code."""
        import ray

        if self.secrets_from_nodes:
            print(
                "pg: Ray workers get the URLs without passwords; the nodes must have them in "
                "PGPASSWORD or ~/.pgpass (storage) and MLFLOW_TRACKING_USERNAME/PASSWORD",
                flush=True,
            )
        spec = plan.spec
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # On this process's node: a node that dies takes workers with it, not the mailbox.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        mailbox = ray.remote(Mailbox).options(num_cpus=0, scheduling_strategy=here).remote()
        task = ray.remote(work_on_ray)
        refs: dict[Any, int] = {}
        for i in range(spec.workers):
            text, _ = without_passwords(json.dumps(asdict(job.for_worker(i))))
            name = f"pg-sweep-{spec.study_name}-worker-{i}"
            options = task.options(
                name=name, num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0
            )
            refs[options.remote(text, i, mailbox)] = i
        watch = _Watch(mailbox, study, on_orphans)
        pending = list(refs)
        codes: list[int] = []
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=POLL)
                watch.print_lines()
                codes += [watch.outcome(ref, refs[ref]) for ref in done]
            watch.print_lines()
        except KeyboardInterrupt:
            watch.cancel(pending, [refs[r] for r in pending])
            return EXIT_INTERRUPTED
        if EXIT_INTERRUPTED in codes:
            return EXIT_INTERRUPTED
        if watch.died and _budget_left(study, spec):
            print(
                "pg: every Ray worker has ended but the study is short of n_trials; "
                "run the same command to continue",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_FAILURES
        return EXIT_FAILURES if any(c not in (EXIT_OK,) for c in codes) else EXIT_OK


def _budget_left(study: optuna.Study, spec: SweepSpec) -> bool:
    return spec.n_trials is not None and len(study.get_trials(deepcopy=False)) < spec.n_trials


class Mailbox:
    """A tiny Ray actor: who each worker is (``host:pid``) and the lines they send."""

    def __init__(self) -> None:
        self.owners: dict[int, str] = {}
        self.lines: list[str] = []

    def hello(self, index: int, owner: str) -> None:
        self.owners[index] = owner

    def put(self, line: str) -> None:
        self.lines.append(line)

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines

    def owner(self, index: int) -> str | None:
        return self.owners.get(index)


class _Watch:
    """The controller's view of the workers: their lines, their ends, their deaths."""

    def __init__(
        self, mailbox: Any, study: optuna.Study, on_orphans: Callable[[list[Orphan]], None]
    ) -> None:
        self.mailbox = mailbox
        self.study = study
        self.on_orphans = on_orphans
        self.died = 0

    def print_lines(self) -> None:
        import ray

        for line in ray.get(self.mailbox.take.remote()):
            print(line, flush=True)

    def outcome(self, ref: Any, index: int) -> int:
        import ray
        from ray.exceptions import RayTaskError, TaskCancelledError

        try:
            code: int = ray.get(ref)
            return code
        except TaskCancelledError:
            return EXIT_INTERRUPTED
        except RayTaskError as exc:
            cause = exc.cause if exc.cause is not None else exc
            first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
            print(
                f"pg: Ray worker {index} failed: {type(cause).__name__}: {_redact(first)}",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_FAILURES
        except ray.exceptions.RayError as exc:
            # The worker process or its node is gone (WorkerCrashedError, NodeDiedError, ...).
            self.died += 1
            owner = ray.get(self.mailbox.owner.remote(index))
            what = type(exc).__name__
            print(
                f"pg: Ray worker {index} ({owner or 'not started'}) died ({what}); the sweep "
                "goes on with the remaining workers",
                file=sys.stderr,
                flush=True,
            )
            if owner:
                from pg.sweep.orphans import fail_trials_of

                reason = f"orphaned: Ray worker {owner} died ({what})"
                self.on_orphans(fail_trials_of(self.study, owner, reason))
            return EXIT_OK

    def cancel(self, pending: list[Any], indices: list[int]) -> None:
        """Ctrl-C: interrupt every running worker, give its trial time to end KILLED."""
        import ray

        print(
            f"pg: interrupted: cancelling {len(pending)} Ray worker(s)", file=sys.stderr, flush=True
        )
        for ref in pending:
            ray.cancel(ref)  # a KeyboardInterrupt inside the task, as Ctrl-C locally
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: stop waiting
            ray.wait(pending, num_returns=len(pending), timeout=CANCEL_WAIT)
        for ref in pending:
            ray.cancel(ref, force=True)
        self.print_lines()
        from pg.sweep.orphans import fail_trials_of

        for index in indices:
            owner = ray.get(self.mailbox.owner.remote(index))
            if owner:
                reason = f"interrupted (Ctrl-C): Ray worker {owner} was stopped"
                self.on_orphans(fail_trials_of(self.study, owner, reason))


def work_on_ray(job_json: str, index: int, mailbox: Any) -> int:
    """The body of one Ray worker task: :func:`pg.sweep.worker.work`, lines to the mailbox."""
    import ray

    from pg.sweep.compose import ensure_hydra
    from pg.sweep.study import owner_id
    from pg.sweep.worker import records_written, work

    ray.get(mailbox.hello.remote(index, owner_id()))
    job = Job(**json.loads(job_json))
    if not Path(job.conf_dir).is_dir():
        raise RuntimeError(
            f"no config folder {job.conf_dir} on {socket.gethostname()}: every node needs "
            "the project at the same path as the sweep's machine"
        )
    ensure_hydra(job.conf_dir)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Imported before open_storage() starts its answer timeout: a fresh Ray worker on a
    # busy node can spend seconds importing, which is not the storage failing to answer.
    import optuna  # noqa: F401 - its storages come with it
    import sqlalchemy  # noqa: F401

    try:
        return work(job, job.plan(), report=lambda line: mailbox.put.remote(line))
    finally:
        # A Ray worker process outlives its task and is stopped with the instance, before
        # any exit handler could wait for its record process: the last trial's ends and
        # state tags are written before the task reports done.
        records_written()


def _redact(text: str) -> str:
    from pg.record.store import redact

    return redact(text)
