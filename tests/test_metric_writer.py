"""Metric rows written by the record process: nothing lost when the training process dies.

The training process ships rows every ``RecordProcess.flush_interval`` (1 s); the record
process (``pg/record/service.py``) writes them as they arrive and, when the socket closes
because its parent died, writes what it holds before it exits.  So a run killed with
SIGKILL keeps its metrics up to at most the last 2 s, and Ctrl-C to the whole process
group (what a terminal sends) still ends the run KILLED with its rows flushed: the record
process ignores SIGINT (and is in a process group of its own).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pg.core import metrics as m
from tests.conftest import FAST, Store

LONG = [*FAST, "train.max_steps=50000000", "train.target_return=null", "train.progress=false"]


def start(store: Store, *args: str) -> subprocess.Popen[str]:
    store.db.parent.mkdir(parents=True, exist_ok=True)
    store.client().search_experiments()  # the store exists before the run polls it
    return subprocess.Popen(
        [sys.executable, "-m", "pg.run", *LONG, *args],
        cwd=store.home,
        env=store.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so a test can signal the group
    )


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        found += [int(p) for p in text.split()]
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for_rows(store: Store, proc: subprocess.Popen[str], seconds: float = 6.0) -> str:
    """The run id once its episode returns have been written for ``seconds``."""
    deadline = time.monotonic() + 180
    first = None
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        runs = store.runs()
        if runs and store.client().get_metric_history(runs[0].info.run_id, m.EP_RETURN):
            first = first or time.monotonic()
            if time.monotonic() - first >= seconds:
                return str(runs[0].info.run_id)
    raise AssertionError(
        "training never wrote metrics: " + (proc.stderr.read() if proc.stderr else "")
    )


def last_stamp(store: Store, run_id: str) -> int:
    return max(int(r.timestamp) for r in store.client().get_metric_history(run_id, m.EP_RETURN))


def test_sigkill_keeps_the_metrics_up_to_the_last_two_seconds(store: Store) -> None:
    proc = start(store)
    writers: list[int] = []
    try:
        run_id = wait_for_rows(store, proc)
        writers = [p for p in children(proc.pid) if alive(p)]
        assert writers, "no writer process"
        killed_ms = int(time.time() * 1000)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        # The orphaned writer writes what it was sent, then exits by itself.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(alive(p) for p in writers):
            time.sleep(0.2)
        assert not any(alive(p) for p in writers), "the writer outlived its run"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        for pid in writers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    lost_ms = killed_ms - last_stamp(store, run_id)
    assert lost_ms <= 2000, f"the last {lost_ms} ms of metrics were lost"
    assert store.client().get_run(run_id).info.status == "RUNNING"  # nobody ended it


def test_ctrl_c_to_the_group_flushes_and_ends_killed(store: Store) -> None:
    proc = start(store)
    try:
        run_id = wait_for_rows(store, proc, seconds=3.0)
        writers = [p for p in children(proc.pid) if alive(p)]
        sent_ms = int(time.time() * 1000)
        os.killpg(proc.pid, signal.SIGINT)  # the writer gets it too, and ignores it
        proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode != 0
    run = store.client().get_run(run_id)
    assert run.info.status == "KILLED"
    assert "Ctrl-C" in run.data.tags["pg.stopped"]
    assert sent_ms - last_stamp(store, run_id) <= 2000
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(alive(p) for p in writers):
        time.sleep(0.2)
    assert not any(alive(p) for p in writers)
