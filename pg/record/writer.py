"""One run being written: a metric sink, plus params, tags, artifacts and the model.

Metrics are buffered as plain tuples and written with ``log_batch`` (a per-call
``log_metric`` costs ~5 ms on SQLite), by a background thread or by the record process's
loop, so the training loop never waits for the store; failed batches are kept and
retried with back-off while the store is down.  Every other call retries a server that
does not answer for up to ``retry_limit`` seconds, and gives up at once on a full or
read-only local disk.
"""

from __future__ import annotations

import contextlib
import errno
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from pg.record import names
from pg.record.config_text import written_files
from pg.record.rows import RowBuffer
from pg.record.store import StoreLocation, redact

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from pg.curve import Curve
    from pg.record.config_text import FileContent

# MLflow's limits (mlflow.utils.validation); values are truncated rather than rejected.
MAX_PARAM_VALUE = 6000
MAX_KEY = 250
MAX_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_TAG_VALUE = 8000
SYSTEM_INTERVAL = 1.0  # seconds between system-metric samples (MLflow's default: 10)


def clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


# Faults of a local disk that waiting does not cure; a server outage is retried instead.
_LOCAL_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}
_LOCAL_MESSAGES = ("disk is full", "readonly database", "read-only file system", "no space left")


def local_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is a full, read-only or forbidden local file or database."""
    if isinstance(exc, OSError) and exc.errno in _LOCAL_ERRNOS:
        return True
    text = str(exc).lower()
    return any(m in text for m in _LOCAL_MESSAGES)


class TrackedRun:
    """One MLflow run: a metric sink with a background writer, plus artifact helpers.

    Used as a context manager it ends the run FINISHED, KILLED on Ctrl-C (or a
    :class:`Stopped` exception) and FAILED with the error on any other exception.

    With ``background=False`` (in the record process, :mod:`pg.record.service`) there is
    no writer thread: the owner calls :meth:`write_pending` when it has time.
    """

    flush_interval = 1.0  # seconds between background writes (a SIGKILL loses at most this)
    retry_limit = 120.0  # seconds a final flush keeps retrying a failing store

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        location: StoreLocation,
        background: bool = True,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.location = location
        self.rows = RowBuffer()
        self._store: Any = False  # MLflow's SQL store, for bulk rows (None: not one)
        self.last_error: BaseException | None = None
        self._wake = threading.Event()
        self._closing = False
        self._writer: threading.Thread | None = None
        if background:
            self._writer = threading.Thread(
                target=self._write_loop, name="mlflow-writer", daemon=True
            )
            self._writer.start()
        self.status: str | None = None
        self._system: Any = None

    # -- metrics ---------------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        # Plain tuples here; MLflow entities are built by the writer, off the hot path.
        if self.rows.add(metrics, step) >= 10 * MAX_METRICS_PER_BATCH:
            self._wake.set()

    def write_pending(self, limit: int | None = None) -> bool:
        """Write what is pending (at most ``limit`` rows); keep it (and return False) on
        failure."""
        from pg.record.bulk import sql_store, write_rows

        if self._store is False:
            self._store = sql_store(self.client)
        batch = self.rows.take(limit)
        for i in range(0, len(batch), MAX_METRICS_PER_BATCH):
            chunk = batch[i : i + MAX_METRICS_PER_BATCH]
            try:
                write_rows(self.client, self._store, self.run_id, chunk)
            except Exception as exc:
                self.rows.put_back(batch[i:])
                self.last_error = exc
                return False
        return True

    def _write_loop(self) -> None:
        backoff = self.flush_interval
        while not self._closing:
            self._wake.wait(backoff)
            self._wake.clear()
            if self._closing:
                break
            backoff = self.flush_interval if self.write_pending() else min(backoff * 2, 10.0)

    def flush(self) -> None:
        """Write every pending metric, retrying with back-off while the store is down."""

        def write_all() -> None:
            if not self.write_pending():
                raise RuntimeError(
                    f"could not write metrics to {self.location.display}: {self.last_error}"
                )

        self._retry(write_all)

    # -- params, tags, artifacts ----------------------------------------------
    def log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [
            Param(clip(k, MAX_KEY), clip(redact(v), MAX_PARAM_VALUE)) for k, v in params.items()
        ]
        for i in range(0, len(items), MAX_PER_BATCH):
            self._retry(
                lambda chunk=items[i : i + MAX_PER_BATCH]: self.client.log_batch(
                    self.run_id, params=chunk
                )
            )

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, clip(redact(v), MAX_TAG_VALUE)) for k, v in tags.items()]
        for i in range(0, len(items), MAX_PER_BATCH):
            self._retry(
                lambda chunk=items[i : i + MAX_PER_BATCH]: self.client.log_batch(
                    self.run_id, tags=chunk
                )
            )

    def log_files(self, files: Mapping[str, FileContent], package_lock: bool = False) -> None:
        """Upload ``{artifact path: content}`` in one call (one round trip on a server).

        ``package_lock``: add the installed packages (:data:`names.LOCK_FILE`), read by the
        process that writes, which runs in the same environment as the training."""
        if package_lock:
            from pg.record.provenance import package_lock as lock

            files = {**files, names.LOCK_FILE: lock()}
        self._retry(lambda: TrackedRun.upload(self.client, self.run_id, files))

    def set_reproduce_tags(self, store: str | None) -> None:
        """How to re-make this run (``store``: the store to name, unless the default)."""
        import shlex

        reproduce = f"python -m pg.reproduce {self.run_id}"
        if store is not None:  # only the embedded store is found without being named
            reproduce += f" --tracking-uri {shlex.quote(store)}"
        note = f"Reproduce this run with:\n\n    {reproduce}\n"
        self.set_tags({names.REPRODUCE: reproduce, names.NOTE: note})

    def log_learning_curve(self, curve: Curve, name: str, target: float | None) -> None:
        """The learning curve as :data:`names.CURVE_FILE`, titled with the run's id."""
        from pg.curve import learning_curve_png

        png = learning_curve_png(curve, f"{name} ({self.run_id[:8]})", target)
        self.log_files({names.CURVE_FILE: png})

    @staticmethod
    def upload(client: MlflowClient, run_id: str, files: Mapping[str, FileContent]) -> None:
        with tempfile.TemporaryDirectory(prefix="pg-artifacts-") as tmp:
            root = Path(tmp)
            for rel, content in written_files(files).items():
                target = root / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    target.write_bytes(content)
                else:
                    target.write_text(content)
            client.log_artifacts(run_id, str(root))

    def log_policy_model(
        self,
        files: Mapping[str, str | bytes],
        obs_shape: tuple[int, ...],
        pixels: bool,
        metrics: Mapping[str, float],
        step: int,
    ) -> str:
        """The policy as a LoggedModel of this run (see :mod:`pg.record.models`); its id."""
        from pg.record.models import log_policy_model

        self.flush()  # the model's metrics are the run's rows, which must be stored first
        ids: list[str] = []
        self._retry(
            lambda: ids.append(
                log_policy_model(
                    self.client,
                    self.run_id,
                    files,
                    obs_shape=obs_shape,
                    pixels=pixels,
                    metrics=metrics,
                    step=step,
                )
            )
        )
        return ids[-1]

    def log_dir(self, local_dir: Path, artifact_path: str) -> None:
        self._retry(lambda: self.client.log_artifacts(self.run_id, str(local_dir), artifact_path))

    def _retry(self, call: Any) -> None:
        """Call until it succeeds, backing off up to 10 s, for at most ``retry_limit`` s."""
        deadline = time.monotonic() + self.retry_limit
        delay = 0.5
        while True:
            try:
                call()
                return
            except Exception as exc:
                if time.monotonic() > deadline or local_fault(exc):
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    # -- lifecycle -------------------------------------------------------------
    def monitor_system(self, interval: float = SYSTEM_INTERVAL) -> None:
        """MLflow's own system metrics (``system/cpu_utilization_percentage``, memory, disk,
        network) sampled by a thread of MLflow's until the run ends."""
        import logging

        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        # Its start and stop are logged at INFO on every run.
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
        self._system = SystemMetricsMonitor(  # type: ignore[no-untyped-call]
            self.run_id, sampling_interval=interval, tracking_uri=self.location.uri
        )
        self._system.start()

    def _finish_system(self) -> None:
        """Stop the sampling at once.  A run shorter than one interval, which would wait
        for the monitor to publish its start sample (whose CPU share is psutil's
        meaningless first 0.0), gets one taken now instead: its CPU share covers the run."""
        system, self._system = self._system, None
        thread = getattr(system, "_process", None)  # MLflow 3's sampling thread
        if thread is not None:
            system._shutdown_event.set()
            thread.join()
            if system._logging_step == 0:  # nothing published yet
                for monitor in system.monitors:
                    monitor.clear_metrics()
                system.collect_metrics()
                system.publish_metrics(system.aggregate_metrics())
        system.finish()

    def end(self, status: str) -> None:
        if self._system is not None:
            self._finish_system()
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            self._writer.join()
        try:
            self.flush()
        except Exception as exc:
            # Metrics are missing: the run must not look FINISHED (a full disk takes an
            # UPDATE of the status, and maybe a tag, though no new metric rows).
            status = "FAILED"
            with contextlib.suppress(Exception):
                self.client.set_tag(self.run_id, names.ERROR, clip(redact(f"{exc}"), MAX_TAG_VALUE))
            raise
        finally:
            self._retry(lambda: self.client.set_terminated(self.run_id, status))
            self.status = status

    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        end_as(self, exc_type, exc, tb)


class EndableRun(Protocol):
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def log_files(self, files: Mapping[str, str | bytes], package_lock: bool = False) -> None: ...
    def end(self, status: str) -> None: ...


def end_as(
    run: EndableRun,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> None:
    """End ``run`` as the exception that left its ``with`` block says (None: FINISHED)."""
    if exc is None:
        run.end("FINISHED")
        return
    if isinstance(exc, Stopped):
        run.set_tags({names.STOPPED: exc.reason})
        run.end(exc.status)
        return
    if isinstance(exc, KeyboardInterrupt | GeneratorExit):
        reason = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else "abandoned"
        run.set_tags({names.STOPPED: reason})
        run.end("KILLED")
        return
    message = f"{type(exc).__name__}: {exc}"
    with contextlib.suppress(Exception):
        run.set_tags({names.ERROR: message})
        trace = "".join(traceback.format_exception(exc_type, exc, tb))
        run.log_files({names.TRACEBACK_FILE: trace})
    run.end("FAILED")


class Stopped(Exception):  # noqa: N818 - a stop request, not an error
    """Raised to end training early on purpose (e.g. a pruned trial).

    The run ends with ``status`` instead of FAILED and records ``reason``: FINISHED for a
    pruned trial (the sweep working as meant), KILLED for a stop from outside.
    """

    def __init__(self, reason: str, status: str = "KILLED") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
