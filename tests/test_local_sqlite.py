"""Which SQLite files get the write-ahead log (pg.record.local_sqlite); a sweep's study
file keeps it and leaves nothing beside it (tests/test_sweep.py)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from sqlalchemy import create_engine, text

from pg.record.local_sqlite import close_all, filesystem, on_local_disk, use_log

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid 0 0
server:/export/home /home nfs4 rw,vers=4.2 0 0
/dev/vdb /home/ada/local\\040disk xfs rw 0 0
tmpfs /tmp tmpfs rw 0 0
sshfs#me@host: /mnt/remote fuse.sshfs rw 0 0
"""


def test_the_longest_mount_point_holding_the_path_decides() -> None:
    assert filesystem(Path("/home/ada/study/optuna.db"), MOUNTS) == "nfs4"
    assert filesystem(Path("/home/ada/local disk/optuna.db"), MOUNTS) == "xfs"  # \040 = space
    assert filesystem(Path("/homework/optuna.db"), MOUNTS) == "ext4"  # not under /home
    assert filesystem(Path("/home"), MOUNTS) == "nfs4"
    assert filesystem(Path("/tmp/x/optuna.db"), MOUNTS) == "tmpfs"
    assert filesystem(Path("/mnt/remote/optuna.db"), MOUNTS) == "fuse.sshfs"
    assert filesystem(Path("/anything"), "") is None


def _journal_mode(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        mode: str = conn.execute("PRAGMA journal_mode").fetchone()[0]
        return mode


def test_only_the_named_files_get_the_log(tmp_path: Path) -> None:
    assert on_local_disk(tmp_path)  # this machine's temporary folder is a local disk
    ours, other = tmp_path / "ours.db", tmp_path / "other.db"
    use_log(ours)
    engines = [create_engine(f"sqlite:///{db}") for db in (ours, other)]
    for engine in engines:
        with engine.connect() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
            conn.commit()
            sync = conn.execute(text("PRAGMA synchronous")).scalar()
            assert sync == (1 if engine is engines[0] else 2)  # NORMAL, else SQLite's FULL
    assert (tmp_path / "ours.db-wal").exists()
    close_all()  # what a pg process does at its end
    assert not (tmp_path / "ours.db-wal").exists() and not (tmp_path / "ours.db-shm").exists()
    assert _journal_mode(ours) == "wal" and _journal_mode(other) == "delete"
    for engine in engines:
        engine.dispose()
