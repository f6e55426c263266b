"""The connection to the record process (:mod:`pg.record.service`): started on first use,
one per training process, fed over a socket.

Calls are sent in order; :meth:`RecordProcess.cast` does not wait, :meth:`RecordProcess.call`
waits for its answer (handled after everything sent before it).  A thread ships the
runs' metric rows every ``flush_interval`` and reads the notices of failed calls.  At
exit this process waits for the record process to have written everything it was sent.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pg.record.store import warn

if TYPE_CHECKING:
    from pg.record.remote import RemoteRun


class RecordProcessError(RuntimeError):
    """The record process died: nothing more can be written from this process."""


def raise_payload(payload: tuple[Any, str]) -> BaseException:
    """The exception the record process sent (its traceback there as a note)."""
    data, text = payload
    exc: BaseException
    if isinstance(data, bytes):
        exc = pickle.loads(data)
    else:  # not picklable there: the same name and message
        exc = type(str(data[0]), (RuntimeError,), {})(data[1])
    exc.add_note(f"in the record process:\n{text}")
    return exc


class RecordProcess:
    """One record process per training process, started on first use."""

    flush_interval = 1.0  # seconds between shipments of rows (a SIGKILL loses at most this)

    def __init__(self, store_hint: str = "") -> None:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        # The same pg as this process, wherever it was imported from.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pg.record.service", str(theirs.fileno()), store_hint],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env=env,
            process_group=0,  # a Ctrl-C at the terminal is the training process's to handle
        )
        theirs.close()
        self.conn = Connection(ours.detach())
        self.lock = threading.Lock()
        self.handles = itertools.count(1)
        self.seq = itertools.count(1)
        self.asked: set[int] = set()  # calls whose answer someone will wait for
        self.answers: dict[int, tuple[bool, Any]] = {}
        self.runs: dict[int, RemoteRun] = {}
        self.gone: str | None = None
        self.used = False  # told of a store (until then it only imports MLflow)
        self.wake = threading.Event()
        self.closing = False
        self.shipper = threading.Thread(target=self._ship_loop, name="pg-record", daemon=True)
        self.shipper.start()
        atexit.register(self.close)

    # -- sending -------------------------------------------------------------------------
    def send(self, message: tuple[Any, ...]) -> None:
        with self.lock:
            self._send(message)

    def _send(self, message: tuple[Any, ...]) -> None:
        if self.gone is not None:
            raise RecordProcessError(self.gone)
        try:
            self.conn.send(message)
        except OSError as exc:
            self.gone = f"the record process is gone ({exc}); nothing more can be recorded"
            raise RecordProcessError(self.gone) from None

    def _ship(self, run: RemoteRun | None) -> None:
        """Send ``run``'s pending rows first (holding the lock: no call overtakes them)."""
        rows = run.rows.take() if run is not None else None
        if rows:
            self._send(("rows", run.handle, rows))  # type: ignore[union-attr]

    def ship(self, run: RemoteRun) -> None:
        with self.lock:
            self._ship(run)

    def cast(self, target: tuple[str, Any], method: str, *args: Any, **kwargs: Any) -> None:
        """A call not waited for; a failure comes back as a notice."""
        with self.lock:
            self._ship(self.runs.get(target[1]) if target[0] != "tracker" else None)
            self._send(("call", None, target, method, args, kwargs))

    def call(self, target: tuple[str, Any], method: str, *args: Any, **kwargs: Any) -> Any:
        """A call waited for: handled after everything sent before it."""
        return self.answer(self.ask(target, method, *args, **kwargs))

    def ask(self, target: tuple[str, Any], method: str, *args: Any, **kwargs: Any) -> int:
        """Send a call whose answer :meth:`answer` waits for later; its number."""
        with self.lock:
            self._ship(self.runs.get(target[1]) if target[0] != "tracker" else None)
            seq = next(self.seq)
            self.asked.add(seq)
            self._send(("call", seq, target, method, args, kwargs))
        return seq

    def answer(self, seq: int) -> Any:
        """The answer to call ``seq`` (:meth:`ask`), waited for if it has not come yet."""
        if not self.awaits(seq):
            raise RecordProcessError(f"no answer to call {seq} is awaited (abandoned?)")
        try:
            with self.lock:
                while seq not in self.answers:
                    self._receive()
                ok, value = self.answers.pop(seq)
        finally:
            self.asked.discard(seq)  # an interrupted wait abandons the call
        if not ok:
            raise raise_payload(value)
        return value

    def awaits(self, seq: int) -> bool:
        """Whether :meth:`answer` can still give call ``seq``'s answer."""
        return seq in self.asked or seq in self.answers

    def _receive(self) -> tuple[Any, ...]:
        while True:
            try:
                if self.conn.poll(1.0):
                    message: tuple[Any, ...] = self.conn.recv()
                    break
            except (OSError, EOFError):
                pass
            else:
                if self.process.poll() is None:
                    continue
            self.gone = f"the record process died (exit status {self.process.poll()})"
            raise RecordProcessError(self.gone)
        if message[0] == "reply":
            # Kept for its asker; a reply to a call a Ctrl-C abandoned is dropped.
            if message[1] in self.asked:
                self.answers[message[1]] = (message[2], message[3])
        elif message[0] == "notice":
            self._notice(message[1], message[2])
        elif message[0] == "started" and message[1] in self.runs:
            self.runs[message[1]].started(message[2])
        return message

    def _notice(self, handle: int | None, payload: tuple[Any, str]) -> None:
        run = self.runs.get(handle) if handle is not None else None
        if run is not None:
            run.error = raise_payload(payload)
            return
        # A run ended without waiting, or a tag on another run: the sweep goes on.
        self.warn(raise_payload(payload))

    def warn(self, exc: BaseException) -> None:
        """A failed call that nothing waits for any more: the work goes on."""
        warn(f"could not record: {exc!r}")

    # -- shipping rows -------------------------------------------------------------------
    def _ship_loop(self) -> None:
        """Ship the rows every ``flush_interval`` (sooner when a run has many waiting) and
        read notices as they come: a sweep records its run's id as soon as it exists."""
        due = time.monotonic() + self.flush_interval
        while not self.closing:
            try:
                arrived = self.conn.poll(min(0.2, max(0.0, due - time.monotonic())))
            except (OSError, EOFError):
                return
            if arrived:
                with self.lock:  # a reply is read by the call waiting for it, under this lock
                    try:
                        while self.gone is None and self.conn.poll(0):
                            self._receive()
                    except RecordProcessError:
                        return
            if self.wake.is_set() or time.monotonic() >= due:
                self.wake.clear()
                due = time.monotonic() + self.flush_interval
                for run in list(self.runs.values()):
                    try:
                        self.ship(run)
                    except RecordProcessError:
                        return

    def close(self) -> None:
        """At exit: let the record process finish what it was sent, then wait for it."""
        if self.closing:
            return
        self.closing = True
        self.wake.set()
        if not self.used:  # started ahead of a store that never came: nothing to write
            self.process.terminate()
            self.process.wait()
            return
        try:
            for run in list(self.runs.values()):
                self.ship(run)
            self.send(("stop",))
            self.process.wait()
        except RecordProcessError:
            pass
        except KeyboardInterrupt:  # a second Ctrl-C: it goes on writing on its own
            pass


_process: RecordProcess | None = None


def record_process(store_hint: str = "") -> RecordProcess:
    """This process's record process, started now if it is not running.

    ``store_hint``: ``"sql"`` when the store will be a database (SQLite, PostgreSQL), so
    the record process imports MLflow's SQL store before it is told which one."""
    global _process
    if _process is None or _process.gone is not None:
        _process = RecordProcess(store_hint)
    return _process


def forget() -> None:
    """Drop the parent's record process in a forked child: its end of the socket closed
    here only (no message, no shutdown: the parent still uses it)."""
    global _process
    if _process is not None:
        _process.closing = True
        with contextlib.suppress(OSError):
            _process.conn.close()
        _process = None


def close_current() -> None:
    """:meth:`RecordProcess.close` of this process's record process, if it has one: what
    the exit handler does, for a process that leaves with ``os._exit``."""
    if _process is not None:
        _process.close()
