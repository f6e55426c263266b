"""The connection to the record process (:mod:`pg.record.service`): started on first use,
fed over a socket; a process forked from one that records (a sweep's local worker) gets a
connection of its own to the same record process (:meth:`RecordProcess.share`).

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
    """This process's connection to a record process: one it started (the first use), or
    one it was handed (``shared``: the fd of a connection :meth:`share` made in the
    process it was forked from)."""

    flush_interval = 1.0  # seconds between shipments of rows (a SIGKILL loses at most this)

    def __init__(self, store_hint: str = "", shared: int | None = None) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        if shared is None:
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
                process_group=0,  # a Ctrl-C at the terminal is the training process's
            )
            theirs.close()
            shared = ours.detach()
        self.conn = Connection(shared)
        self.lock = threading.Lock()
        self.handles = itertools.count(1)
        self.seq = itertools.count(1)
        self.asked: set[int] = set()  # calls whose answer someone will wait for
        self.answers: dict[int, tuple[bool, Any]] = {}
        self.runs: dict[int, RemoteRun] = {}
        self.gone: str | None = None
        # Told of a store (until then it only imports MLflow); a shared one: by its owner.
        self.used = self.process is None
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
                if self.process is None:  # shared: its end closed
                    self.gone = "the record process is gone; nothing more can be recorded"
                    raise RecordProcessError(self.gone) from None
            else:
                if self.process is None or self.process.poll() is None:
                    continue
            assert self.process is not None
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

    def share(self) -> int:
        """A new connection to this record process for a process about to be forked from
        this one: the fd of its end (the child's :func:`adopt`; the parent closes it once
        it has forked).  The other end goes to the record process over this connection,
        right behind a message that says so."""
        ours, theirs = socket.socketpair()
        try:
            with self.lock:
                self._send(("adopt",))
                with socket.socket(fileno=os.dup(self.conn.fileno())) as sock:
                    socket.send_fds(sock, [b"\0"], [theirs.fileno()])
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return ours.detach()

    def close(self) -> None:
        """At exit: let the record process finish what it was sent, then wait for it (a
        shared one: for it to have written this process's runs and closed its end)."""
        if self.closing:
            return
        self.closing = True
        self.wake.set()
        if not self.used and self.process is not None:
            # Started ahead of a store that never came: nothing to write.
            self.process.terminate()
            self.process.wait()
            return
        try:
            for run in list(self.runs.values()):
                self.ship(run)
            self.send(("stop",))
            if self.process is not None:
                self.process.wait()
            else:
                with self.lock, contextlib.suppress(OSError, EOFError):
                    while True:  # until it closes this end: everything is written
                        self.conn.recv()
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


def shareable() -> RecordProcess | None:
    """This process's record process if a forked child may share it (it is running and
    has a store open: the child records to the same one)."""
    if _process is not None and _process.gone is None and _process.used:
        return _process
    return None


def adopt(fd: int) -> None:
    """In a forked child: record through the connection ``fd`` (:meth:`RecordProcess.share`
    in the parent) instead of starting a record process of its own."""
    global _process
    _process = RecordProcess(shared=fd)


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
