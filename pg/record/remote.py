"""The training process's side of the record process (:mod:`pg.record.service`).

:func:`remote_tracker` gives a :class:`RemoteTracker` whose runs (:class:`RemoteRun`) have
the interface of :class:`pg.record.tracker.Tracker` and :class:`pg.record.writer.TrackedRun`
but only send messages: this process imports no MLflow, and the calls a run makes while
it trains are not waited for.  Calls whose answer is needed (a run's id, a run's status,
the end of a run) wait for the record process to have handled everything sent before
them, so the record is written in the order the calls were made.

Metric rows are stamped here (:class:`pg.record.rows.RowBuffer`) and shipped every
``flush_interval`` (:mod:`pg.record.process`); a failure of a call that was not waited
for comes back as a notice and is raised by the run's next ``log_metrics`` (inside the
training loop, so the run ends FAILED with that error, as when the call was made here).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pg.record.process import RecordProcess, raise_payload, record_process
from pg.record.rows import RowBuffer
from pg.record.store import StoreLocation, check_reachable, resolve_store
from pg.record.writer import end_as

if TYPE_CHECKING:
    from pg.core.config import TrackingConfig
    from pg.curve import Curve
    from pg.record.config_text import FileContent

Key = tuple[str | None, str]

_trackers: dict[Key, RemoteTracker] = {}


def remote_tracker(cfg: TrackingConfig) -> RemoteTracker:
    """This process's connection to ``cfg``'s store and experiment, through the record
    process (started now if it is not running yet)."""
    key: Key = (cfg.uri, cfg.experiment)
    if key not in _trackers:
        _trackers[key] = RemoteTracker(cfg)
    return _trackers[key]


def forget_after_fork(shared: int | None = None) -> None:
    """In a process just forked from one that records: the trackers and the connection
    to the record process are the parent's (its socket, its shipping thread not copied).
    This process records through ``shared``, a connection of its own to the same record
    process (:meth:`pg.record.process.RecordProcess.share`), or starts one on first use."""
    from pg.record import process

    _trackers.clear()
    process.forget()
    if shared is not None:
        process.adopt(shared)


def open_remote_tracker() -> RemoteTracker | None:
    """The tracker this process already opened, if any (a sweep worker's)."""
    return next(iter(_trackers.values()), None)


class RemoteTracker:
    """:class:`pg.record.tracker.Tracker`'s interface, served by the record process."""

    def __init__(self, cfg: TrackingConfig) -> None:
        self.cfg = cfg
        self.location: StoreLocation = resolve_store(cfg)
        check_reachable(self.location, cfg.check_timeout)
        self.key: Key = (cfg.uri, cfg.experiment)
        self.proc = record_process("" if self.location.uri.startswith("http") else "sql")
        self.proc.send(("open", self.key, cfg))
        self.proc.used = True
        self._experiment_id: str | None = None

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.proc.call(("tracker", self.key), method, *args, **kwargs)

    def _cast(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.proc.cast(("tracker", self.key), method, *args, **kwargs)

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = str(self._call("experiment_id"))
        return self._experiment_id

    def start_run(
        self,
        run_name: str | None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
        *,
        wait_at_end: bool = True,
        wait_for_calls: bool = False,
    ) -> RemoteRun:
        """A new run, created by the record process while this one goes on.

        ``wait_at_end=False``: :meth:`RemoteRun.end` waits only for the calls made so far
        to have gone through, not for the end itself (a sweep trains its next trial
        meanwhile); a failure of the end is then printed as a warning.
        ``wait_for_calls``: every call waits and raises its own failure (a sweep's parent
        run, whose caller decides what a failure means).
        """
        from pg.record.provenance import command_line

        handle = next(self.proc.handles)
        run = RemoteRun(self.proc, handle, self.location, wait_at_end, wait_for_calls)
        self.proc.runs[handle] = run
        message = ("start", handle, self.key, run_name, dict(tags or {}), parent_run_id)
        self.proc.send((*message, command_line()))
        return run

    def reopen(self, run_id: str) -> RemoteRun | None:
        handle = next(self.proc.handles)
        if not self._call("reopen", run_id, handle):
            return None
        run = RemoteRun(self.proc, handle, self.location, True, True)
        run._run_id = run_id
        self.proc.runs[handle] = run
        return run

    def sync(self) -> None:
        """Return once the record process has handled every message sent before: it
        handles them in order, and this call's answer comes after them."""
        self._call("sync")

    def warm(self, steps: str) -> None:
        """Have the record process import, when idle, what a later
        :meth:`RemoteRun.log_derived` needs: ``steps`` names a function of pg returning
        callables (pg.record.derived)."""
        self._cast("warm", steps)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self._cast("set_tags", run_id, dict(tags))

    def attach(self, run_id: str, files: Mapping[str, FileContent]) -> None:
        self._cast("attach", run_id, dict(files))

    def log_metric(self, run_id: str, key: str, value: float, step: int) -> None:
        self._cast("log_metric", run_id, key, value, step)

    def status(self, run_id: str) -> str:
        return str(self._call("status", run_id))

    def terminate(self, run_id: str, status: str, tags: Mapping[str, str] | None = None) -> None:
        self._call("terminate", run_id, status, dict(tags or {}))

    def trial_runs(self, study: str, number: int) -> list[tuple[str, str]]:
        return list(self._call("trial_runs", study, number))

    def best_model(self, run_id: str, maximize: bool) -> tuple[str, str] | None:
        found = self._call("best_model", run_id, maximize)
        return None if found is None else (str(found[0]), str(found[1]))

    def policy_files(self, model_id: str) -> dict[str, bytes]:
        return dict(self._call("policy_files", model_id))

    def run_tag(self, run_id: str, key: str) -> str | None:
        found = self._call("run_tag", run_id, key)
        return None if found is None else str(found)

    def register(self, name: str, model_id: str, run_id: str, tags: Mapping[str, str]) -> str:
        return str(self._call("register", name, model_id, run_id, dict(tags)))


class RemoteRun:
    """:class:`pg.record.writer.TrackedRun`'s interface; the writing is done elsewhere."""

    def __init__(
        self,
        proc: RecordProcess,
        handle: int,
        location: StoreLocation,
        wait_at_end: bool,
        wait_for_calls: bool = False,
    ) -> None:
        self.proc = proc
        self.handle = handle
        self.location = location
        self.wait_at_end = wait_at_end
        self.wait_for_calls = wait_for_calls
        self.rows = RowBuffer()
        self.error: BaseException | None = None  # a failed call, not raised here yet
        self.raised: BaseException | None = None  # ... and once raised
        self.status: str | None = None
        self.ending = False
        self._run_id: str | None = None
        self._on_start: Callable[[str], None] | None = None
        self._checked: int | None = None  # the checkpoint's call (see checkpoint)

    @property
    def _target(self) -> tuple[str, int]:
        # After a failure the record process skips the run's calls, as this process would
        # have stopped at the failing one; not those that end the run.
        return ("run!" if self.ending or self.raised else "run", self.handle)

    @property
    def run_id(self) -> str:
        """Known once the record process has created the run (waits for it)."""
        if self._run_id is None:
            self._run_id = str(self.proc.call(self._target, "run_id"))
        return self._run_id

    def started(self, run_id: str) -> None:
        """The record process created the run (called by the thread that reads notices)."""
        self._run_id = run_id

    def on_start(self, hook: Callable[[str], None]) -> None:
        """Call ``hook(run_id)`` from the training loop's next metric once the run exists
        (without waiting for it), or at the latest when the run ends."""
        self._on_start = hook

    # -- metrics -----------------------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if self._on_start is not None and self._run_id is not None:
            self._announce()
        if self.error is not None:
            self.raised, self.error = self.error, None
            raise self.raised
        if self.rows.add(metrics, step) >= 10_000:
            self.proc.wake.set()

    def _cast(self, method: str, *args: Any, **kwargs: Any) -> None:
        if self.wait_for_calls:
            self.proc.call(self._target, method, *args, **kwargs)
        else:
            self.proc.cast(self._target, method, *args, **kwargs)

    def flush(self) -> None:
        self.proc.call(self._target, "flush")

    # -- params, tags, artifacts ---------------------------------------------------------
    def log_params(self, params: Mapping[str, str]) -> None:
        self._cast("log_params", dict(params))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._cast("set_tags", dict(tags))

    def log_files(self, files: Mapping[str, FileContent], package_lock: bool = False) -> None:
        self._cast("log_files", dict(files), package_lock)

    def log_derived(self, producer: str, *args: Any) -> None:
        """Have the record process call ``producer(run, *args)`` (a function of pg, by
        name: pg.record.derived) in this run's turn; never waited for, also on a run whose
        calls are: the producer reports its own failure and the run goes on."""
        self.proc.cast(self._target, "log_derived", producer, *args)

    def set_reproduce_tags(self, store: str | None) -> None:
        self._cast("set_reproduce_tags", store)

    def log_learning_curve(self, curve: Curve, name: str, target: float | None) -> None:
        self._cast("log_learning_curve", curve, name, target)

    def log_policy_model(
        self,
        files: Mapping[str, str | bytes],
        obs_shape: tuple[int, ...],
        pixels: bool,
        metrics: Mapping[str, float],
        step: int,
    ) -> None:
        self._cast("log_policy_model", dict(files), obs_shape, pixels, dict(metrics), step)

    def monitor_system(self) -> None:
        self._cast("monitor_system")

    # -- lifecycle -----------------------------------------------------------------------
    def _announce(self) -> None:
        hook, self._on_start = self._on_start, None
        if hook is not None:
            hook(self.run_id)

    def checkpoint(self) -> None:
        """Mark what a run ended without waiting must have recorded (its params, metrics
        and tags: what its outcome rests on) from what may follow as it ends (the curve,
        the model: written while the next trial trains).

        :meth:`end` then waits only for the calls made up to here and raises their
        failure; a later call that fails ends the run FAILED in the record and is
        printed as a warning, like a failure of the end itself.
        """
        if not self.wait_at_end and not self.wait_for_calls and self._checked is None:
            self._checked = self.proc.ask(self._target, "check")

    def end(self, status: str) -> None:
        """End the run; raises what went wrong with its record, unless raised already."""
        if self._on_start is not None:
            with contextlib.suppress(Exception):  # a run that was never created has no id
                self._announce()
        seen = self.raised
        try:
            if not self.wait_at_end:
                checked, self._checked = self._checked, None
                if checked is not None and self.proc.awaits(checked):
                    at_checkpoint, failed = True, self.proc.answer(checked)
                else:  # none, or abandoned by a Ctrl-C: every call so far
                    at_checkpoint, failed = False, self.proc.call(self._target, "check")
                if failed is None and (self.error is None or at_checkpoint):
                    self.proc.cast(self._target, "end", status)
                    with self.proc.lock:  # a later failure's notice: a warning from now on
                        self.proc.runs.pop(self.handle, None)
                        late, self.error = self.error, None
                    if late is not None:
                        self.proc.warn(late)
                    self.status = status
                    return
            failed = self.proc.call(self._target, "end", status)
        finally:
            self.proc.runs.pop(self.handle, None)
        self.status = "FAILED" if failed is not None and status == "FINISHED" else status
        if failed is not None and seen is None:
            raise raise_payload(failed)

    def __enter__(self) -> RemoteRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.ending = True
        end_as(self, exc_type, exc, tb)
