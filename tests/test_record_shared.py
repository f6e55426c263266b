"""One record process for a sweep: its forked workers record through connections of their
own to the sweep's record process (``RecordProcess.share``), not through one each.

The SIGKILL case is checked at the level of the record API, in real processes on a real
store: a forked child that records through a shared connection is killed, and its run
keeps its metrics up to at most the last 2 s while the parent's run goes on being written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import psutil

from tests.conftest import FAST, NO_VALIDATION, Store, follow, kill_group, start_sweep
from tests.test_sweep import runs_of, study

# The parent records, forks a child that records through a shared connection, and keeps
# logging until the test has killed the child, then one more second.
SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pg.core.config import TrackingConfig
    from pg.record.process import shareable
    from pg.record.remote import forget_after_fork, remote_tracker

    cfg = TrackingConfig(system_metrics=False)
    parent = remote_tracker(cfg).start_run("parent", {})
    parent.log_metrics({"x": 0.0}, 0)
    fd = shareable().share()
    pid = os.fork()
    if pid == 0:
        forget_after_fork(fd)
        run = remote_tracker(cfg).start_run("child", {})
        print("child", os.getpid(), run.run_id, flush=True)
        step = 0
        while True:  # until the test kills it
            step += 1
            run.log_metrics({"x": float(step)}, step)
            time.sleep(0.01)
    os.close(fd)
    step = 0
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        step += 1
        parent.log_metrics({"x": float(step)}, step)
        time.sleep(0.01)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        step += 1
        parent.log_metrics({"x": float(step)}, step)
        time.sleep(0.01)
    parent.end("FINISHED")
    print("parent", parent.run_id, step, flush=True)
    """
)


def record_processes(seen: dict[int, int]) -> list[int]:
    """The parents of the record processes in ``seen`` (pid -> parent pid).  A record
    process runs ``git`` and ``uname`` (a run's source tags, its platform): until its
    child has exec'd it shows the record process's command line, and is not one."""
    return [parent for parent in seen.values() if parent not in seen]


def stamps(store: Store, run_id: str) -> list[int]:
    return [int(r.timestamp) for r in store.client().get_metric_history(run_id, "x")]


def test_a_killed_child_keeps_its_rows_and_the_parent_records_on(store: Store) -> None:
    store.client().search_experiments()
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        cwd=store.home,
        env=store.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        word, child, child_run = proc.stdout.readline().split()
        assert word == "child"
        # Neither process has a record process of its own but the parent's.
        found = {
            p.pid: p.ppid() for p in psutil.Process(proc.pid).children(recursive=True)
            if "pg.record.service" in p.cmdline()
        }  # fmt: skip
        assert record_processes(found) == [proc.pid], found
        time.sleep(3.0)  # rows shipped for a while
        killed_ms = int(time.time() * 1000)
        os.kill(int(child), signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    word, parent_run, last_step = out.split()
    assert word == "parent"
    lost_ms = killed_ms - max(stamps(store, child_run))
    assert lost_ms <= 2000, f"the last {lost_ms} ms of the child's metrics were lost"
    assert store.client().get_run(child_run).info.status == "RUNNING"  # nobody ended it
    parent = store.client().get_run(parent_run)
    assert parent.info.status == "FINISHED"
    steps = sorted(int(r.step) for r in store.client().get_metric_history(parent_run, "x"))
    assert steps == list(range(int(last_step) + 1))  # every row, also after the kill
    assert max(stamps(store, parent_run)) > killed_ms + 500


def test_a_sweeps_workers_share_its_record_process(store: Store) -> None:
    args = [
        "-m",
        *FAST,
        *NO_VALIDATION,
        "train.max_steps=20000",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.workers=2",
        "hydra.sweeper.pruner.name=none",
    ]
    proc = start_sweep(store, args, capture=True)
    output, reader = follow(proc)
    services: dict[int, int] = {}  # record processes seen: pid -> parent pid
    workers: set[int] = set()
    try:
        while proc.poll() is None:
            try:
                found: list[Any] = psutil.Process(proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                break
            for child in found:
                try:
                    command, parent = child.cmdline(), child.ppid()
                except psutil.Error:
                    continue
                if "pg.record.service" in command:
                    services[child.pid] = parent
                elif parent == proc.pid and "pg.run" in command:
                    workers.add(child.pid)  # a forked worker (the sweep's command line)
            time.sleep(0.05)
        code = proc.wait(timeout=300)
    finally:
        kill_group(proc)
        reader.join(5)
    text = "".join(output)
    assert code == 0, text[-4000:]
    assert workers, "no worker process was seen"
    assert record_processes(services) == [proc.pid], services
    # Both processes' trials are recorded in full through it.
    owners = {t.system_attrs["pg.owner"] for t in study(store).get_trials()}
    assert len(owners) == 2, owners
    client = store.client()
    trials = runs_of(store, "trial")
    assert len(trials) == 4
    for run in trials:
        assert run.info.status == "FINISHED", run.info.run_name
        history = client.get_metric_history(run.info.run_id, "rollout/ep_return_100")
        assert [int(r.step) for r in history][-1] >= 19_000, run.info.run_name
        assert run.outputs.model_outputs, run.info.run_name  # its policy was logged
