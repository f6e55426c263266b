"""Reaching a Ray cluster for a sweep, and refusing one that cannot run it.

Everything here happens before any store, study or run exists, so a refusal is one
``pg: invalid sweep: …`` line and nothing left behind.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import socket
import threading
from typing import Any

from pg.sweep.ray_backend import (
    PROJECT_ROOT,
    RayCluster,
    _is_local_file_store,
    _redact,
    without_passwords,
)
from pg.sweep.spec import SweepError, SweepSpec


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
