"""The record process: every MLflow call of a training process, made on the other core.

A training process (``pg.run``, a sweep worker, ``pg.reproduce``) never imports MLflow:
:mod:`pg.record.remote` starts this process (``python -m pg.record.service FD``) and sends
it plain messages over a socket.  Here MLflow is imported and the store opened (~2 s)
while the training process imports torch and trains; runs are created, params, tags and
artifacts written, metric rows written as they arrive, the learning curve drawn, the
model logged and MLflow's system metrics sampled, all off the training's core and GIL.

Messages are handled strictly in the order they were sent, so a record reads exactly as
if the training process had made each call itself.  Metric rows are written whenever no
other message waits (within a second of arriving while the store answers).  A call the
sender did not wait for and that failed is reported back as a *notice*; the training
process raises it at its next metric (the run then ends FAILED, as before).

One record process serves a sweep and its forked workers, a connection each
(:mod:`pg.record.clients`); each connection's messages keep their order.

Durability: when a training process dies, even by SIGKILL, its socket closes; this
process handles what it had received from it and writes its pending rows, so a killed run
keeps its metrics up to the last shipment (at most ``flush_interval`` before the kill).
It exits once every connection has closed.  It ignores Ctrl-C: the training process
decides how a run ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from pg.record import names
from pg.record.clients import Clients, Handle, error_payload
from pg.record.derived import resolve, warm_models, warm_plots
from pg.record.models import skip_dependency_scan
from pg.record.store import redact
from pg.record.writer import MAX_METRICS_PER_BATCH, MAX_TAG_VALUE, clip, local_fault

if TYPE_CHECKING:
    from pg.core.config import TrackingConfig
    from pg.record.tracker import Tracker
    from pg.record.writer import TrackedRun

DRAIN_LIMIT = 120.0  # seconds the last rows are retried once the training process is gone

# What a training process may ask for, by target.
RUN_METHODS = frozenset((
    "log_params", "set_tags", "log_files", "set_reproduce_tags", "log_learning_curve",
    "log_policy_model", "monitor_system", "flush", "run_id", "log_derived",
))  # fmt: skip
TRACKER_METHODS = frozenset((
    "experiment_id", "set_tags", "attach", "log_metric", "status", "terminate", "trial_runs",
    "best_model", "policy_files", "run_tag", "register", "warm", "sync",
))  # fmt: skip


class Service:
    def __init__(self, conn: Connection) -> None:
        self.clients = Clients(conn)  # the training processes served
        self.configs: dict[tuple[str | None, str], TrackingConfig] = {}
        self.trackers: dict[tuple[str | None, str], Tracker] = {}
        self.runs: dict[Handle, TrackedRun] = {}
        self.ids: dict[Handle, str] = {}  # every run's id, also once it has ended
        self.failed: dict[Handle, BaseException] = {}  # the first failed call of each run
        self.retry_at: dict[Handle, float] = {}  # a run's rows failed: not again before this
        self.backoff: dict[Handle, float] = {}
        self.warmups: list[Callable[[], object]] = []

    # -- the loop --------------------------------------------------------------------
    def serve(self) -> None:
        while self.clients:
            ready = self.clients.ready(self._timeout())
            for client in ready:  # one message of each: no connection waits on another's
                self.receive(client)
            if ready:
                continue
            # Warm-ups only when no message waits, and never in a thread: a module that a
            # thread is importing can be seen half-initialised by a call importing it too.
            if self.warmups:  # ahead of rows (each < 1 s; a row may wait 2 s)
                self.warmups.pop(0)()
            else:
                self.write_rows()
        self.drain()

    def receive(self, client: int) -> None:
        """Handle the next message of ``client``; its end when it stops or is gone."""
        message = self.clients.receive(client)
        if message is None or message[0] == "stop":
            self.leave(client, wait=message is not None)
        elif message[0] != "adopt":  # (a new client: Clients took it)
            self.handle(message)

    def leave(self, client: int, wait: bool) -> None:
        """``client`` is done: ``wait`` (it said stop and waits for its socket to close)
        writes its pending rows first; a process that is gone has them written as the
        others' are.  Its runs that did not end are not its any more."""
        if wait:
            self.drain(client)
        self.clients.drop(client)
        for handle in [h for h in self.runs if h[0] == client]:
            if not self.runs[handle].rows.pending:
                self._forget(handle)

    def _forget(self, handle: Handle) -> tuple[TrackedRun | None, BaseException | None]:
        """Drop a run (ended, or its process gone); the run and its failure, if held."""
        self.retry_at.pop(handle, None)
        self.backoff.pop(handle, None)
        return self.runs.pop(handle, None), self.failed.pop(handle, None)

    def _timeout(self) -> float | None:
        now = time.monotonic()
        waiting = [self.retry_at.get(h, now) for h, r in self.runs.items() if r.rows.pending]
        if waiting:
            return max(0.0, min(waiting) - now)
        return 0.0 if self.warmups else None

    def handle(self, message: tuple[Any, ...]) -> None:
        """One message of the current client (its handles made this process's)."""
        kind = message[0]
        if kind == "rows":
            run = self.runs.get((self.clients.current, message[1]))
            if run is not None:
                run.rows.extend(message[2])
        elif kind == "open":  # connect now, while the training process imports torch
            self.configs[message[1]] = message[2]
            with contextlib.suppress(Exception):  # raised again where the store is used
                self.tracker(message[1])
        elif kind == "start":
            self.start((self.clients.current, message[1]), *message[2:])
        elif kind == "call":
            seq, (target, ident), method, args, kwargs = message[1:]
            if target != "tracker":
                ident = (self.clients.current, ident)
            elif method == "reopen":
                args = (args[0], (self.clients.current, args[1]))
            self.call(seq, (target, ident), method, args, kwargs)

    def reply(self, seq: int, ok: bool, value: Any) -> None:
        self.clients.send(("reply", seq, ok, value))

    def notice(self, handle: Handle | None, exc: BaseException) -> None:
        if handle is None:
            self.clients.send(("notice", None, error_payload(exc)))
        else:
            self.clients.send(("notice", handle[1], error_payload(exc)), handle[0])

    # -- objects ---------------------------------------------------------------------
    def tracker(self, key: tuple[str | None, str]) -> Tracker:
        found = self.trackers.get(key)
        if found is None:
            from pg.record.tracker import Tracker

            found = self.trackers[key] = Tracker(self.configs[key])
            if len(self.trackers) == 1:
                self.warmups += [warm_plots, warm_models]
        return found

    def start(
        self,
        handle: Handle,
        key: tuple[str | None, str],
        name: str | None,
        tags: dict[str, str],
        parent: str | None,
        command: str,
    ) -> None:
        from pg.record.provenance import set_command

        try:
            set_command(command)  # the training process's command line, not this one's
            run = self.tracker(key).start_run(name, tags, parent, background=False)
        except Exception as exc:
            self.failed[handle] = exc
            self.notice(handle, exc)
            return
        self.runs[handle] = run
        self.ids[handle] = run.run_id
        self.clients.send(("started", handle[1], run.run_id))  # for whoever waits to announce it

    def call(
        self,
        seq: int | None,
        target: tuple[str, Any],
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        kind, ident = target
        handle = ident if kind != "tracker" else None
        try:
            if handle is not None and method in ("end", "check"):
                value = self.end(ident, *args) if method == "end" else self.check(ident)
            elif kind == "run" and handle in self.failed and method not in ("run_id", "flush"):
                # The training process would have stopped at the failed call: skip what
                # came after it, until it ends the run ("run!" calls).
                value = None
            elif handle is not None and method in RUN_METHODS:
                value = self.run_call(ident, method, args, kwargs)
            elif kind == "tracker" and method in TRACKER_METHODS:
                value = self.tracker_call(ident, method, args, kwargs)
            elif kind == "tracker" and method == "reopen":
                value = self.reopen(ident, *args)
            else:
                raise ValueError(f"the record process does not do {kind}.{method}")
        except Exception as exc:
            if seq is not None:
                self.reply(seq, False, error_payload(exc))
            elif handle is None or handle not in self.failed:
                if handle is not None:
                    self.failed[handle] = exc
                self.notice(handle, exc)
            return
        if seq is not None:
            self.reply(seq, True, value)

    def run_call(self, handle: Handle, method: str, args: Any, kwargs: dict[str, Any]) -> Any:
        if method == "run_id" and handle in self.ids:
            return self.ids[handle]
        if method == "flush" and handle in self.failed:
            raise self.failed[handle]
        run = self.runs.get(handle)
        if run is None:
            raise self.failed.get(handle) or RuntimeError(f"no run {handle[1]} in this record")
        if method == "log_derived":  # pg.record.derived: a function of pg, with the run
            return resolve(args[0])(run, *args[1:])
        return getattr(run, method)(*args, **kwargs)

    def tracker_call(self, key: Any, method: str, args: Any, kwargs: dict[str, Any]) -> Any:
        if method == "warm":  # imports a later log_derived needs, in idle moments
            self.warmups += resolve(args[0])()
            return None
        if method == "sync":  # answered in turn: everything sent before it is handled
            return None
        tracker = self.tracker(key)
        value = getattr(tracker, method)
        return value(*args, **kwargs) if callable(value) else value

    def reopen(self, key: Any, run_id: str, handle: Handle) -> bool:
        run = self.tracker(key).reopen(run_id, background=False)
        if run is not None:
            self.runs[handle] = run
            self.ids[handle] = run_id
        return run is not None

    def check(self, handle: Handle) -> Any:
        """The first failed call of a run so far (None: all went through)."""
        error = self.failed.get(handle)
        return None if error is None else error_payload(error)

    def end(self, handle: Handle, status: str) -> Any:
        """End the run; a call of it that failed makes a FINISHED run FAILED.

        Returns that failure (the training process may not have seen it yet); raises when
        the run's metrics could not be written (it is then FAILED too)."""
        run, error = self._forget(handle)
        if run is None:
            raise error or RuntimeError(f"no run {handle[1]} in this record")
        if error is not None and status == "FINISHED":
            # Not seen by the training process before it ended the run: recorded here as
            # it would have recorded it (pg.error and the traceback).
            status = "FAILED"
            with contextlib.suppress(Exception):
                text = redact(f"{type(error).__name__}: {error}")
                run.set_tags({names.ERROR: clip(text, MAX_TAG_VALUE)})
                run.log_files({names.TRACEBACK_FILE: error_payload(error)[1]})
        run.end(status)
        return None if error is None else error_payload(error)

    # -- rows ------------------------------------------------------------------------
    def write_rows(self) -> bool:
        """Write one batch of pending rows of each run not backing off (a message that
        comes in meanwhile waits for one batch at most); whether any were due."""
        now = time.monotonic()
        due = [
            (h, r)
            for h, r in self.runs.items()
            if r.rows.pending and self.retry_at.get(h, 0.0) <= now
        ]
        for handle, run in due:
            if run.write_pending(MAX_METRICS_PER_BATCH):
                self.retry_at.pop(handle, None)
                self.backoff.pop(handle, None)
                if handle[0] not in self.clients and not run.rows.pending:
                    self._forget(handle)  # its process is gone: nothing will come
            else:
                delay = min(max(self.backoff.get(handle, 0.25) * 2, 0.5), 10.0)
                self.backoff[handle] = delay
                self.retry_at[handle] = now + delay
        return bool(due)

    def drain(self, client: int | None = None) -> None:
        """Write every pending row (of ``client``'s runs; of all runs by default),
        retrying while the store is down, then return."""
        runs = [r for h, r in self.runs.items() if client is None or h[0] == client]
        deadline = time.monotonic() + DRAIN_LIMIT
        delay = 0.5
        while any(r.rows.pending for r in runs):
            failures = [r.last_error for r in runs if not r.write_pending()]
            if not failures or time.monotonic() > deadline:
                return
            if any(e is not None and local_fault(e) for e in failures):
                return  # a full or read-only local disk: waiting does not cure it
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def main(argv: list[str]) -> None:
    import warnings

    from pg.core.collection import pause_collection, resume_collection

    pause_collection()  # MLflow's import: ~0.4 M objects, collected for nothing

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Copying a model's files would draw a progress bar on the training's terminal.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow logs every database error with a traceback; the run reports it in one line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    # Asked of every PythonModel whose predict has no type hints; pg's model has an
    # explicit tensor signature instead (pg/record/policy_model.py).
    # MLflow shows it through a "once" filter of its own, ahead of any "ignore".
    show = warnings.showwarning

    def quiet(message: Any, *args: Any, **kwargs: Any) -> None:
        if "Add type hints to the `predict` method" not in str(message):
            show(message, *args, **kwargs)

    warnings.showwarning = quiet
    service = Service(Connection(int(argv[0])))
    # MLflow's import (~1.2 s) and its SQL store's (~1 s) start before the training
    # process has composed its config and sent the store's address.
    from mlflow.tracking import MlflowClient  # noqa: F401

    if len(argv) > 1 and argv[1] == "sql":
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    skip_dependency_scan()
    resume_collection()
    profile = os.environ.get("PG_RECORD_PROFILE")  # a file for cProfile's numbers
    if profile:
        import cProfile

        cProfile.runctx("service.serve()", globals(), {"service": service}, profile)
    else:
        service.serve()
    # Everything is written: skip the interpreter's teardown of MLflow and SQLAlchemy
    # (~0.5 s) that the training process would wait for.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
