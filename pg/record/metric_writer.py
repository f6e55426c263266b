"""Metric rows written by a process of their own, so the training loop never pays for them.

MLflow's ``log_batch`` costs ~0.07 ms per value on SQLite (entity checks, SQLAlchemy, the
database) and a non-learning trial logs tens of thousands of values; written from a thread
of the training process, that work shares the GIL with the loop (+38 % inside it).  Here
the training process only hands plain tuples through a pipe (a pickle of a list: cheap
C work) and a writer process, one per training process and shared by all the runs it
makes, does the rest on the other core.

Durability: the writer writes each batch as soon as it arrives and keeps failed batches,
retrying with back-off while the store is down.  When the training process dies (even by
SIGKILL) the writer sees the pipe close, writes what it holds and exits, so a killed run
loses at most what was not yet shipped (``TrackedRun.flush_interval``).  It ignores Ctrl-C:
the training process decides how a run ends, after asking the writer to flush.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

Row = tuple[str, float, int, int]  # key, value, timestamp (ms), step
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit per log_batch call
START_TIMEOUT = 60.0  # seconds for the writer process to start and import mlflow


class WriterGoneError(RuntimeError):
    """The writer process is not there any more; the caller writes by itself."""


class MetricWriter:
    """The training process's end of the pipe to one writer process."""

    def __init__(self, uri: str) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._conn, child = ctx.Pipe()
        self._lock = threading.Lock()
        # Daemonic: nothing waits for it at exit once every run has been flushed (each run
        # waits for its own rows at its end); a parent that dies mid-run closes the pipe,
        # and the writer writes what it holds before it exits.
        self._process = ctx.Process(
            target=serve, args=(child, uri), name="pg-metric-writer", daemon=True
        )
        self._process.start()
        child.close()
        self.uri = uri
        self._unflushed: set[str] = set()

    def send(self, run_id: str, rows: list[Row]) -> None:
        """Hand rows over; returns at once (the writer writes them in its own time)."""
        self._unflushed.add(run_id)
        self._call(("rows", run_id, rows), wait=False)

    def flush(self, run_id: str, limit: float) -> str | None:
        """Wait until every row of ``run_id`` is written; the error if it could not be."""
        reply = self._call(("flush", run_id, limit), wait=True)
        if reply is None:
            self._unflushed.discard(run_id)
        return None if reply is None else str(reply)

    def _call(self, message: tuple[Any, ...], wait: bool) -> Any:
        with self._lock:
            try:
                self._conn.send(message)
                if not wait:
                    return None
                while not self._conn.poll(1.0):
                    if not self._process.is_alive():
                        raise WriterGoneError("the metric writer process died")
                return self._conn.recv()
            except (OSError, EOFError) as exc:
                raise WriterGoneError(f"the metric writer process is gone: {exc}") from None

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def close(self, timeout: float = 120.0) -> None:
        """At exit: wait only if some run's rows were never confirmed written."""
        with contextlib.suppress(WriterGoneError):
            self._call(("stop",), wait=False)
        if self._unflushed:
            self._process.join(timeout)


_writers: dict[str, MetricWriter] = {}
_writers_lock = threading.Lock()


def writer_for(uri: str) -> MetricWriter | None:
    """This process's writer for the store at ``uri`` (started on first use).

    ``PG_METRIC_WRITER=thread`` keeps the old in-process writer thread, for comparison in
    benchmarks and for platforms where a child process is not wanted.
    """
    if os.environ.get("PG_METRIC_WRITER", "process") == "thread":
        return None
    with _writers_lock:
        writer = _writers.get(uri)
        if writer is None or not writer.alive:
            writer = _writers[uri] = MetricWriter(uri)
            import atexit

            atexit.register(writer.close)
        return writer


# -- the writer process ------------------------------------------------------------------


def serve(conn: Connection, uri: str) -> None:
    """Write rows as they come; on EOF (the training process died) write what is held."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import logging

    from pg.record.store import apply_http_client_defaults

    # MLflow logs every database error with a traceback; the run reports it in one line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

    apply_http_client_defaults()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    pending: dict[str, list[Row]] = {}
    errors: dict[str, str] = {}
    backoff = 0.0
    while True:
        try:
            ready = conn.poll(backoff if pending else None)
        except (OSError, EOFError):
            ready = True
        if ready:
            try:
                message = conn.recv()
            except (OSError, EOFError):
                _drain(client, pending, errors, limit=120.0)
                return
            kind = message[0]
            if kind == "stop":
                _drain(client, pending, errors, limit=120.0)
                return
            if kind == "rows":
                pending.setdefault(message[1], []).extend(message[2])
            elif kind == "flush":
                run_id, limit = message[1], message[2]
                _drain(client, {run_id: pending.get(run_id, [])}, errors, limit=limit)
                left = pending.pop(run_id, [])
                error = errors.pop(run_id, None)
                if left:
                    pending[run_id] = left
                conn.send(error if left else None)
                continue
        ok = _write_some(client, pending, errors)
        backoff = 0.0 if ok else min(max(backoff * 2, 0.5), 10.0)


def _write_some(client: Any, pending: dict[str, list[Row]], errors: dict[str, str]) -> bool:
    """Write everything pending once; failed rows stay pending."""
    from mlflow.entities import Metric

    ok = True
    for run_id in list(pending):
        rows = pending[run_id]
        while rows:
            chunk = rows[:MAX_METRICS_PER_BATCH]
            try:
                client.log_batch(run_id, metrics=[Metric(k, v, ts, s) for k, v, ts, s in chunk])
            except Exception as exc:
                errors[run_id] = _describe(exc)
                ok = False
                break
            del rows[: len(chunk)]
        if not rows:
            del pending[run_id]
            errors.pop(run_id, None)
    return ok


def _describe(exc: BaseException) -> str:
    """One line for the user: the database's own complaint when there is one.

    SQLAlchemy wraps it in lines about autoflush and links; a full disk must read as such.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        low = line.lower()
        if any(m in low for m in ("disk is full", "readonly", "read-only", "no space")):
            return f"{type(exc).__name__}: {line}"
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def _drain(
    client: Any, pending: dict[str, list[Row]], errors: dict[str, str], limit: float
) -> None:
    """Retry with back-off until all of ``pending`` is written or ``limit`` seconds pass."""
    from pg.record.writer import local_fault

    deadline = time.monotonic() + limit
    delay = 0.5
    while any(pending.values()):
        if _write_some(client, pending, errors) or time.monotonic() > deadline:
            return
        if any(local_fault(RuntimeError(e)) for e in errors.values()):
            return  # a full or read-only local disk: waiting does not cure it
        time.sleep(delay)
        delay = min(delay * 2, 10.0)
