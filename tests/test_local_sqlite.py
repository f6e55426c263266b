"""Which study files get SQLite's write-ahead log (pg.sweep.local_sqlite)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from pg.sweep.local_sqlite import WalConnection, connect_args, filesystem, on_local_disk

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


def test_network_file_systems_keep_sqlites_defaults(tmp_path: Path) -> None:
    assert on_local_disk(tmp_path)  # this machine's temporary folder is a local disk
    assert connect_args(tmp_path / "optuna.db")["factory"] is WalConnection
    assert connect_args(tmp_path / "optuna.db")["timeout"] == 60


def test_a_connection_sets_the_log_and_a_read_only_file_keeps_its_mode(tmp_path: Path) -> None:
    db = tmp_path / "optuna.db"
    with sqlite3.connect(db, factory=WalConnection) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    conn.close()
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).close()
    os.chmod(plain, 0o444)
    uri = f"file:{plain}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, factory=WalConnection)  # no error: defaults kept
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()
