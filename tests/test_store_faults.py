"""Faults of the store while a run writes: a full disk, a read-only artifact folder.

The artifact folder is a tiny tmpfs mounted by the test (root only; root ignores file
modes, so a read-only *mount* is the honest way to make a folder unwritable).  The run ends
FAILED with the reason in ``pg.error`` (the database still takes tags), the command exits 1
with one line and within seconds (local disk faults are not retried like a server outage),
the store stays readable, and a sweep goes on with its next trial.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FAST, Store, run_module


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[object]:
    mounted: list[Path] = []

    def mount(size: str, *, read_only: bool = False) -> Path:
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            message = f"cannot mount a tmpfs here: {done.stderr.strip()}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        mounted.append(point)
        return point

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def failed_runs(store: Store) -> list:  # type: ignore[type-arg]
    return [r for r in store.runs() if r.info.status == "FAILED"]


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip() and "INFO mlflow" not in ln]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize(
    ("size", "read_only", "reason"),
    [("24k", False, "No space left on device"), ("1m", True, "Read-only file system")],
)
def test_run_ends_failed_with_the_reason(
    store: Store, tmpfs: object, size: str, read_only: bool, reason: str
) -> None:
    assert callable(tmpfs)
    folder = tmpfs(size, read_only=read_only) / "artifacts"
    started = time.monotonic()
    proc = run_module("pg.run", [*FAST, f"tracking.artifact_root={folder}"], store, timeout=300)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr
    line = one_line(proc.stderr)
    assert line.startswith("pg: run failed: OSError") and reason in line
    assert elapsed < 60, f"a local disk fault must not be retried like an outage ({elapsed:.0f} s)"
    (run,) = store.runs()
    assert run.info.status == "FAILED"
    assert reason in run.data.tags["pg.error"]
    # The store stays readable and usable: another experiment with a sane folder works.
    again = run_module("pg.run", [*FAST, "tracking.experiment=after"], store, timeout=300)
    assert again.returncode == 0, again.stderr
    assert [r.info.status for r in store.runs("after")] == ["FINISHED"]


def test_sweep_goes_on_with_the_next_trial(store: Store, tmpfs: object) -> None:
    assert callable(tmpfs)
    folder = tmpfs("1m", read_only=True) / "artifacts"
    proc = run_module(
        "pg.run",
        [
            "-m",
            *FAST,
            f"tracking.artifact_root={folder}",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.max_failure_rate=1",
            "hydra.sweeper.pruner.name=none",
            "hydra.sweeper.study_name=faults",
        ],
        store,
        timeout=300,
    )
    assert "Traceback" not in proc.stderr
    trials = [ln for ln in proc.stdout.splitlines() if ln.startswith("pg: trial")]
    assert len(trials) == 2 and all("FAIL" in t and "Read-only" in t for t in trials), proc.stdout
    assert all(ln.startswith("pg: warning:") for ln in proc.stderr.splitlines() if ln.strip())
    runs = store.runs()
    trial_runs = [r for r in runs if r.data.tags.get("pg.kind") == "trial"]
    assert len(trial_runs) == 2
    for run in trial_runs:
        assert run.info.status == "FAILED" and "Read-only" in run.data.tags["pg.error"]
        assert run.data.tags.get("pg.trial_state") == "FAIL"
    (parent,) = [r for r in runs if r.data.tags.get("pg.kind") == "sweep"]
    assert parent.info.status in ("FINISHED", "FAILED")  # ended, not left RUNNING


def test_full_database_ends_the_run_failed_not_finished(
    tmp_path: Path, tmpfs: object, migrated_db: Path
) -> None:
    """The SQLite store itself fills up while metrics stream in."""
    import shutil

    assert callable(tmpfs)
    room = tmpfs(f"{migrated_db.stat().st_size // 1024 + 120}k")
    store = Store(room)
    store.db.parent.mkdir()
    shutil.copyfile(migrated_db, store.db)
    args = [*FAST, "train.max_steps=200000", "train.target_return=null"]
    artifacts = f"tracking.artifact_root={tmp_path / 'artifacts'}"
    proc = run_module("pg.run", [*args, artifacts], store, timeout=300)
    assert proc.returncode == 1, proc.stderr
    line = one_line(proc.stderr)
    assert line.startswith("pg: run failed:") and "database or disk is full" in line
    (run,) = store.runs()  # still readable
    assert run.info.status == "FAILED"
    assert "database or disk is full" in run.data.tags["pg.error"]
