"""A sweep's study file on a local disk commits without waiting for the disk.

A sweep commits to its study ~45 times a trial (each report, the pruner's reads, ask,
tell, attributes, heartbeats), all in the sweep's own loop. SQLite's default (a rollback
journal, ``synchronous=FULL``) flushes the disk on every commit: ~1 ms each on this
machine's disk, ~2 ms while the record process flushes the MLflow store on the same disk.
In write-ahead-log mode with ``synchronous=NORMAL`` a commit is a write to the log
(~0.015 ms), and the disk is flushed at checkpoints. A process that dies (SIGKILL
included) loses nothing it committed: the log is in the file system. A power cut can
lose the last commits, never the file's consistency (SQLite's guarantee for this mode).

The MLflow store keeps SQLite's defaults: when its disk fills up, a rolled-back
transaction gives its journal's space back, so the run can still be ended FAILED with
the reason (``tests/test_store_faults.py``); a write-ahead log keeps its size and the run
would stay RUNNING.

The log needs memory shared by the processes that open the file, which network file
systems do not give: there, and where the mounts cannot be read, the file keeps SQLite's
defaults. The mode belongs to the file: once set, every reader (Optuna's dashboard,
``optuna.load_study``) uses it, and ``-wal`` / ``-shm`` files sit beside it while it is
open. pg's processes end with ``os._exit``, which closes no connection: :func:`close_all`
(run at exit) closes them, and the last one of a file folds the log back into it and
removes both.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any

# File systems whose files can live on another machine: SQLite's log cannot be shared
# there. Anything else listed in /proc/mounts is a local disk, memory or an overlay of them.
NETWORK = (
    "nfs",
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

_files: set[str] = set()  # the database files (real paths) given the log
_open: list[sqlite3.Connection] = []  # (sqlite3's connections take no weak reference)


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


def use_log(db: Path) -> None:
    """Every SQLAlchemy connection this process opens to ``db`` from now on (Optuna's
    engine opens them) gets the log, if ``db`` is on a local disk."""
    if not on_local_disk(db.parent):
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not _files:
        event.listen(Engine, "connect", _on_connect)
        atexit.register(close_all)
    _files.add(os.path.realpath(db))


def _on_connect(connection: Any, _record: Any) -> None:
    if not isinstance(connection, sqlite3.Connection):
        return
    listed = connection.execute("PRAGMA database_list").fetchall()
    main = [file for _, name, file in listed if name == "main"]
    if not main or os.path.realpath(main[0] or "/") not in _files:
        return
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.OperationalError:  # e.g. a read-only file: SQLite's defaults
        return
    _open.append(connection)


def close_all() -> None:
    """Close the connections given the log (see the module): call only when the process's
    work is done."""
    while _open:
        connection = _open.pop()
        # One in use by a thread still running cannot be closed: SQLite reads the log
        # back on the next open.
        with contextlib.suppress(sqlite3.Error):
            connection.close()
