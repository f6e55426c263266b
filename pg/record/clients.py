"""The training processes one record process (:mod:`pg.record.service`) serves, and what
it sends them.

Client 0 is the process that started it; a process forked from one that records (a
sweep's local worker) is handed a connection of its own (``adopt``: the socket's other
end follows the message, :meth:`pg.record.process.RecordProcess.share`), so MLflow is
imported and the store opened once for all of them.  A message goes to one client only:
a run's handle is its own process's number, unique here with the client's.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import traceback
from multiprocessing.connection import Connection, wait
from typing import Any

# A run as the record process knows it: (client, the run's handle in the client's process).
Handle = tuple[int, int]


def error_payload(exc: BaseException) -> tuple[Any, str]:
    """``exc`` as the other side can raise it (pickled if that round-trips), with its
    traceback text."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
        return data, text
    except Exception:
        return (type(exc).__name__, str(exc)), text


class Clients:
    def __init__(self, conn: Connection) -> None:
        self.conns: dict[int, Connection] = {0: conn}
        self.current = 0  # whose message is being handled
        self._next = 1

    def __bool__(self) -> bool:
        return bool(self.conns)

    def __contains__(self, client: int) -> bool:
        return client in self.conns

    def ready(self, timeout: float | None) -> list[int]:
        """The clients with a message waiting (or whose end closed)."""
        by_conn = {conn: client for client, conn in self.conns.items()}
        return [by_conn[c] for c in wait(list(by_conn), timeout)]  # type: ignore[index]

    def receive(self, client: int) -> tuple[Any, ...] | None:
        """``client``'s next message, now the current one's; None: it is gone."""
        self.current = client
        try:
            message: tuple[Any, ...] = self.conns[client].recv()
        except (OSError, EOFError):  # killed, or ended
            return None
        if message[0] == "adopt":
            self._adopt(self.conns[client])
        return message

    def _adopt(self, conn: Connection) -> None:
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            _, fds, _, _ = socket.recv_fds(sock, 1, 1)
        for fd in fds[:1]:  # none: the child finds its end closed and says so
            self.conns[self._next] = Connection(fd)
            self._next += 1

    def drop(self, client: int) -> None:
        """Close ``client``'s connection: one that waits for it knows all is written."""
        with contextlib.suppress(OSError, KeyError):
            self.conns.pop(client).close()

    def send(self, message: tuple[Any, ...], client: int | None = None) -> None:
        """To the current client, or ``client``; dropped if it is gone."""
        conn = self.conns.get(self.current if client is None else client)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send(message)
