"""A study in a SQLite file on a local disk commits without waiting for the disk.

A sweep commits to its study ~45 times a trial (each report, the pruner's reads, ask,
tell, attributes, heartbeats), all in the sweep's own loop. SQLite's default (a rollback
journal, ``synchronous=FULL``) flushes the disk on every commit: ~1 ms each here, ~2 ms
while a record process flushes the MLflow store on the same disk, ~1-2 s of a 20-trial
sweep. In write-ahead-log mode with ``synchronous=NORMAL`` a commit is a write to the log
(~0.015 ms); the disk is flushed at checkpoints. A process that dies loses nothing
committed (the log is in the file system); a power cut can lose the last commits, never
the file's consistency (SQLite's own guarantee for this mode).

The log needs memory shared between the processes that open the file, which network
file systems do not give: there (and where the mounts cannot be read) the file keeps
SQLite's defaults. The mode is a property of the file: once set, every reader (Optuna's
dashboard, ``optuna.load_study``) uses it, and files ``optuna.db-wal`` / ``-shm`` sit
beside it while it is open.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sqlite3
import weakref
from pathlib import Path
from typing import Any

# File systems whose files can live on another machine: SQLite's log cannot be shared
# there. Anything else listed in /proc/mounts is a local disk, memory or an overlay of them.
NETWORK = (
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ncpfs",
    "afs",
    "9p",
    "lustre",
    "gpfs",
    "ceph",
    "glusterfs",
    "beegfs",
    "fuse",
)


def filesystem(path: Path, mounts: str) -> str | None:
    """Type of the file system holding ``path`` per a ``/proc/mounts`` text (the mount
    with the longest matching mount point), or ``None`` if none matches."""
    target = os.path.realpath(path)
    best, kind = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/mounts escapes spaces and the like in octal (\040).
        point = fields[1].encode().decode("unicode_escape")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def on_local_disk(folder: Path) -> bool:
    try:
        mounts = Path("/proc/mounts").read_text()
    except OSError:  # not Linux: no way to tell, keep SQLite's defaults
        return False
    kind = filesystem(folder, mounts)
    return kind is not None and not kind.startswith(NETWORK)


_open: weakref.WeakSet[sqlite3.Connection] = weakref.WeakSet()


class WalConnection(sqlite3.Connection):
    """``sqlite3.connect(..., factory=WalConnection)``: every connection of the study's
    engine (SQLAlchemy opens them) gets the mode above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        try:
            self.execute("PRAGMA journal_mode=WAL")
            self.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.OperationalError:  # e.g. a read-only file: SQLite's defaults
            return
        if not _open:
            atexit.register(_close_all)
        _open.add(self)


def _close_all() -> None:
    """pg's processes end with ``os._exit``, which closes no connection: closed here, the
    last one of a file folds the log back into it and removes ``-wal`` and ``-shm``."""
    for connection in list(_open):
        # One still in use by a thread cannot be closed: SQLite reads its log on next open.
        with contextlib.suppress(sqlite3.Error):
            connection.close()


def connect_args(db: Path) -> dict[str, Any]:
    """SQLAlchemy ``connect_args`` for a study file ``db``."""
    args: dict[str, Any] = {"timeout": 60}
    if on_local_disk(db.parent):
        args["factory"] = WalConnection
    return args
