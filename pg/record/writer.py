"""One run being written: a metric sink with a background writer, plus artifacts.

Metrics are buffered as plain tuples and written with ``log_batch`` by a background
thread (a per-call ``log_metric`` costs ~5 ms on SQLite), so the training loop never waits
for the store; failed batches are kept and retried with back-off while the store is down.
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
from typing import TYPE_CHECKING, Any

from pg.record import names
from pg.record.store import StoreLocation, redact

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from pg.core.policy import PolicySpec
    from pg.record.metric_writer import MetricWriter

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
    """

    flush_interval = 1.0  # seconds between background writes (a SIGKILL loses at most this)
    retry_limit = 120.0  # seconds a final flush keeps retrying a failing store

    def __init__(self, client: MlflowClient, run_id: str, location: StoreLocation) -> None:
        from pg.record.metric_writer import writer_for

        self.client = client
        self.run_id = run_id
        self.location = location
        # Metric rows go to this process's writer process (off the GIL); without one the
        # background thread below writes them itself.
        self._process: MetricWriter | None = writer_for(location.uri)
        self._pending: list[tuple[str, float, int, int]] = []
        self._stamp_step: int | None = None
        self._last_stamp = 0
        self._stamps: dict[tuple[str, float | None], int] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._writer = threading.Thread(target=self._write_loop, name="mlflow-writer", daemon=True)
        self._writer.start()
        self.status: str | None = None
        self._system: Any = None

    # -- metrics ---------------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        # Plain tuples here; MLflow entities are built by the writer, off the hot path.
        with self._lock:
            # Never earlier than the last stamp: MLflow orders a history by timestamp
            # first, so a stamp bumped by _distinct_stamp must not overtake later steps.
            now = max(int(time.time() * 1000), self._last_stamp)
            now = self._distinct_stamp(metrics, now, step)
            self._last_stamp = now
            self._pending.extend((k, float(v), now, step) for k, v in metrics.items())
            full = len(self._pending) >= 10 * MAX_METRICS_PER_BATCH
        if full:
            self._wake.set()

    def _distinct_stamp(self, metrics: Mapping[str, float], now: int, step: int) -> int:
        """A timestamp that no equal (key, value) at this step already carries.

        MLflow keys a metric row by (key, timestamp, step, value) and silently drops
        repeats, so two episodes ending at the same step with the same return within one
        millisecond would be stored once (or twice, if the clock ticked in between):
        lost data, and a history that differs between two identical runs.
        """
        if step != self._stamp_step:
            self._stamp_step, self._stamps = step, {}
        keys = [(k, v if v == v else None) for k, v in metrics.items()]  # NaN != NaN
        for key in keys:
            last = self._stamps.get(key)
            if last is not None and last >= now:
                now = last + 1
        for key in keys:
            self._stamps[key] = now
        return now

    def _take(self) -> list[tuple[str, float, int, int]]:
        with self._lock:
            batch, self._pending = self._pending, []
        return batch

    def _put_back(self, batch: list[tuple[str, float, int, int]]) -> None:
        with self._lock:
            self._pending = batch + self._pending

    def _write(self) -> bool:
        """Write (or ship to the writer process) what is pending; keep it on failure."""
        from mlflow.entities import Metric

        from pg.record.metric_writer import WriterGoneError

        batch = self._take()
        if self._process is not None and batch:
            try:
                self._process.send(self.run_id, batch)
                return True
            except WriterGoneError:
                self._process = None  # write in this process from now on
        elif self._process is not None:
            return True
        for i in range(0, len(batch), MAX_METRICS_PER_BATCH):
            chunk = [Metric(k, v, ts, s) for k, v, ts, s in batch[i : i + MAX_METRICS_PER_BATCH]]
            try:
                self.client.log_batch(self.run_id, metrics=chunk)
            except Exception as exc:
                self._put_back(batch[i:])
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
            backoff = self.flush_interval if self._write() else min(backoff * 2, 10.0)

    def flush(self) -> None:
        """Write every pending metric, retrying with back-off while the store is down."""

        from pg.record.metric_writer import WriterGoneError

        if self._process is not None:
            self._write()
            try:
                error = self._process.flush(self.run_id, self.retry_limit)
            except WriterGoneError:
                error = "the metric writer process died before confirming the write"
            if error is None:
                return
            raise RuntimeError(f"could not write metrics to {self.location.display}: {error}")

        def write_all() -> None:
            if not self._write():
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

    def log_files(self, files: Mapping[str, str | bytes]) -> None:
        """Upload ``{artifact path: content}`` in one call (one round trip on a server)."""
        self._retry(lambda: TrackedRun.upload(self.client, self.run_id, files))

    @staticmethod
    def upload(client: MlflowClient, run_id: str, files: Mapping[str, str | bytes]) -> None:
        with tempfile.TemporaryDirectory(prefix="pg-artifacts-") as tmp:
            root = Path(tmp)
            for rel, content in files.items():
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
        spec: PolicySpec,
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
                    obs_shape=spec.obs_shape,
                    pixels=spec.model == "conv",
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

    def end(self, status: str) -> None:
        if self._system is not None:
            self._system.finish()
            self._system = None
        self._closing = True
        self._wake.set()
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
        if exc is None:
            self.end("FINISHED")
            return
        if isinstance(exc, Stopped):
            self.set_tags({names.STOPPED: exc.reason})
            self.end(exc.status)
            return
        if isinstance(exc, KeyboardInterrupt | GeneratorExit):
            reason = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else "abandoned"
            self.set_tags({names.STOPPED: reason})
            self.end("KILLED")
            return
        message = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            self.set_tags({names.ERROR: message})
            self.log_files(
                {names.TRACEBACK_FILE: "".join(traceback.format_exception(exc_type, exc, tb))}
            )
        self.end("FAILED")


class Stopped(Exception):  # noqa: N818 - a stop request, not an error
    """Raised to end training early on purpose (e.g. a pruned trial).

    The run ends with ``status`` instead of FAILED and records ``reason``: FINISHED for a
    pruned trial (the sweep working as meant), KILLED for a stop from outside.
    """

    def __init__(self, reason: str, status: str = "KILLED") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
