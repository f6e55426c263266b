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

import atexit
import contextlib
import json
import logging
import math
import os
import re
import socket
import sys
import threading
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pg.sweep.spec import SweepError, SweepSpec
from pg.sweep.worker import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, Job

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna

    from pg.sweep.spec import Plan
    from pg.sweep.study import Orphan

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
            text, _ = without_passwords(json.dumps(asdict(worker_job(job, i))))
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


def worker_job(job: Job, index: int) -> Job:
    """Worker ``index``'s job: its own sampler seed, as local worker processes get."""
    return Job(**{**asdict(job), "seed_offset": job.seed_offset + 7919 * index})


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
                from pg.sweep.study import fail_trials_of

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
        from pg.sweep.study import fail_trials_of

        for index in indices:
            owner = ray.get(self.mailbox.owner.remote(index))
            if owner:
                reason = f"interrupted (Ctrl-C): Ray worker {owner} was stopped"
                self.on_orphans(fail_trials_of(self.study, owner, reason))


def work_on_ray(job_json: str, index: int, mailbox: Any) -> int:
    """The body of one Ray worker task: :func:`pg.sweep.worker.work`, lines to the mailbox."""
    import ray

    from pg.sweep.compose import ensure_hydra
    from pg.sweep.spec import build_spec, plan
    from pg.sweep.study import owner_id
    from pg.sweep.worker import work

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
    import optuna.storages  # noqa: F401
    import sqlalchemy  # noqa: F401

    return work(
        job,
        plan(build_spec(job.settings), job.arguments),
        report=lambda line: mailbox.put.remote(line),
    )


# -- connecting -----------------------------------------------------------------------


def connect(
    spec: SweepSpec, storage_url: str, tracking_uri: str | None, texts: list[str]
) -> RayCluster:
    """Reach (or start) the cluster and check it can run this sweep, before anything starts.

    ``texts`` are every string the workers will receive (settings, command line), searched
    for passwords that must travel by environment.
    """
    try:
        import ray
    except ImportError:
        raise SweepError(
            "backend=ray needs the ray package, which is not installed: "
            "pip install 'ray>=2.60,<3' (or use backend=local)"
        ) from None
    opts = spec.ray
    env: dict[str, str] = {}
    for text in [storage_url, tracking_uri or "", *texts]:
        for key, value in without_passwords(text)[1].items():
            if env.get(key, value) != value:
                raise SweepError(
                    f"two URLs carry different passwords for {key}; with backend=ray give "
                    "them to the workers through ~/.pgpass or the environment instead"
                )
            env[key] = value
    address = opts["address"] or os.environ.get("RAY_ADDRESS") or None
    _hide_command_line_secrets()
    timeout = float(opts["check_timeout"])
    if address is None:
        # The local instance's processes inherit this environment: that is how its workers
        # get the passwords and this checkout of pg.
        os.environ.update(env)
        paths = [str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        os.environ["PYTHONPATH"] = os.pathsep.join(paths)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # A notice that token authentication is on (the safe default) on every sweep.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
            logging.ERROR
        )
        need = math.ceil(spec.workers * float(opts["num_cpus"]))
        _init(
            {
                "address": "local",
                "num_cpus": max(os.cpu_count() or 1, need),
                "include_dashboard": False,
            },
            "a local Ray instance",
            None,
        )
    else:
        _check_port(address, timeout)
        _init({"address": address}, f"the Ray cluster at {address}", timeout)
    # Whatever ends this process (a later check refusing the sweep included) ends a local
    # instance with it.
    atexit.register(ray.shutdown)
    nodes = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
    cluster = _inspect(ray, nodes, address, spec, env)
    _check_fit(cluster, nodes, storage_url, tracking_uri)
    return cluster


class _DropThreadNotice(logging.Filter):
    """Ray notes it sets no SIGTERM handler when connected from a helper thread; fine here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("SIGTERM handler is not set")


def _init(kwargs: dict[str, Any], what: str, timeout: float | None) -> None:
    """``ray.init``, within ``timeout`` when connecting: left alone, Ray retries an
    unanswering head for minutes.

    A local instance starts in this (main) thread: Ray ties its processes' lives to the
    thread that started them (PR_SET_PDEATHSIG), so from a helper thread they would die
    with it.
    """
    import ray

    result: dict[str, BaseException] = {}

    def attempt() -> None:
        try:
            ray.init(
                **kwargs,
                log_to_driver=False,  # the workers' lines come through the mailbox
                logging_level=logging.WARNING,
            )
        except Exception as exc:
            result["error"] = exc

    logging.getLogger("ray._private.worker").addFilter(_DropThreadNotice())
    if timeout is None:
        attempt()
    else:
        thread = threading.Thread(target=attempt, daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise SweepError(f"{what} did not answer within {timeout:g} s (ray.check_timeout)")
    if "error" in result:
        exc = result["error"]
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise SweepError(f"cannot connect to {what}: {type(exc).__name__}: {_redact(first)}")


def _check_port(address: str, timeout: float) -> None:
    """A refused host:port fails at once instead of after Ray's retries."""
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if address == "auto" or "://" in address or not port.isdigit() or not host:
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise SweepError(
            f"the Ray cluster at {address} does not answer: {exc.strerror or exc} "
            "(is `ray start --head` running there? see RAY_ADDRESS / hydra.sweeper.ray.address)"
        ) from None


def _inspect(
    ray: Any, nodes: list[dict[str, Any]], address: str | None, spec: SweepSpec, env: dict[str, str]
) -> RayCluster:
    resources = ray.cluster_resources()
    return RayCluster(
        address=address or "local instance",
        started_here=address is None,
        nodes=len(nodes),
        cpus=float(resources.get("CPU", 0)),
        gpus=float(resources.get("GPU", 0)),
        num_cpus=float(spec.ray["num_cpus"]),
        num_gpus=float(spec.ray["num_gpus"]),
        workers=spec.workers,
        secrets_from_nodes=bool(env) and address is not None,
    )


def _check_fit(
    cluster: RayCluster, nodes: list[dict[str, Any]], storage_url: str, tracking_uri: str | None
) -> None:
    if cluster.nodes > 1:
        local = []
        if _is_local_file_store(storage_url):
            local.append(
                f"the study storage {_redact(storage_url)} (use a PostgreSQL storage: "
                "hydra.sweeper.storage=postgresql://user@db-host:5432/optuna)"
            )
        if tracking_uri is not None and _is_local_file_store(tracking_uri):
            local.append(
                f"the tracking store {_redact(tracking_uri)} (use a tracking server: "
                "tracking=server tracking.uri=http://mlflow-host:5000)"
            )
        if local:
            raise SweepError(
                f"the Ray cluster has {cluster.nodes} nodes, but other nodes cannot reach "
                f"local files: {'; '.join(local)}; a single-node cluster may keep SQLite"
            )
    fits = any(
        float(n.get("Resources", {}).get("CPU", 0)) >= cluster.num_cpus
        and float(n.get("Resources", {}).get("GPU", 0)) >= cluster.num_gpus
        for n in nodes
    )
    if not fits:
        raise SweepError(
            f"no node of the Ray cluster has ray.num_cpus={cluster.num_cpus:g} CPUs and "
            f"ray.num_gpus={cluster.num_gpus:g} GPUs free for one worker "
            f"(cluster: {cluster.cpus:g} CPUs, {cluster.gpus:g} GPUs)"
        )


def _hide_command_line_secrets() -> None:
    """Ray records the driver's command line as the job's entrypoint (dashboard, job table)."""
    try:
        import ray._private.utils as ray_utils
    except ImportError:
        return
    original: Any = ray_utils.get_entrypoint_name
    if getattr(original, "_pg_redacted", False):
        return

    def redacted() -> str:
        return _redact(str(original()))

    redacted._pg_redacted = True  # type: ignore[attr-defined]
    ray_utils.get_entrypoint_name = redacted


def _redact(text: str) -> str:
    from pg.tracking import redact

    return redact(text)
