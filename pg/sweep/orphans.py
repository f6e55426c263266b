"""Trials orphaned by dead processes: found, marked FAIL, closed in MLflow, run again.

Each trial records its owner (``host:pid``) and a heartbeat.  A RUNNING trial whose
owner is a dead process on this host, or whose heartbeat is older than the grace period
(owner elsewhere), is marked FAIL with the reason; :func:`recover` closes its MLflow runs
as KILLED and queues a retry with the same params (``max_retries``).
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pg.record.names import ATTR_OWNER as OWNER
from pg.record.names import ATTR_REASON as REASON
from pg.sweep.spec import SweepSpec
from pg.sweep.study import _trial_id, fail_trial, set_system_attr, stale_trial_ids

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna
    from optuna.trial import FrozenTrial

    from pg.record.remote import RemoteTracker
    from pg.sweep.asking import BudgetLock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed child not yet reaped) is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@dataclass
class Orphan:
    number: int
    reason: str


def fail_orphans(study: optuna.Study, spec: SweepSpec) -> list[Orphan]:
    """Mark RUNNING trials of dead processes FAIL; returns them for the MLflow side."""

    host = socket.gethostname()
    stale: set[int] = set()
    with contextlib.suppress(Exception):
        stale = stale_trial_ids(study)
    now = datetime.now()
    return _fail_running(study, lambda t: _orphan_reason(t, host, stale, now, spec))


def fail_trials_of(study: optuna.Study, owner: str, reason: str) -> list[Orphan]:
    """Mark FAIL the RUNNING trials of ``owner`` (``host:pid``), known to be dead.

    For a worker whose death is reported by its scheduler (a Ray worker or node), so the
    trial need not wait for a missed heartbeat.
    """
    return _fail_running(study, lambda t: reason if t.system_attrs.get(OWNER) == owner else None)


def _fail_running(
    study: optuna.Study, reason_for: Callable[[FrozenTrial], str | None]
) -> list[Orphan]:
    """FAIL every RUNNING trial ``reason_for`` gives a reason, recording the reason."""
    from optuna.trial import TrialState

    orphans = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = reason_for(trial)
        if reason is None:
            continue
        with contextlib.suppress(Exception):  # another process may have finished it
            set_system_attr(study, trial, REASON, reason)
        if fail_trial(study, trial):
            orphans.append(Orphan(trial.number, reason))
    return orphans


def _orphan_reason(
    trial: FrozenTrial, host: str, stale: set[int], now: datetime, spec: SweepSpec
) -> str | None:
    owner = str(trial.system_attrs.get(OWNER, ""))
    if owner:
        owner_host, _, pid = owner.rpartition(":")
        if owner_host == host and pid.isdigit() and not _pid_alive(int(pid)):
            return f"orphaned: process {owner} is gone"
    if _trial_id(trial) in stale:
        return f"orphaned: no heartbeat from {owner or 'its process'} for {spec.grace_period} s"
    started = trial.datetime_start
    if not owner and started is not None and now - started > timedelta(seconds=spec.grace_period):
        return "orphaned: its process died before it started"
    return None


def recover(
    study: optuna.Study,
    spec: SweepSpec,
    lock: BudgetLock,
    orphans: list[Orphan],
    tracker: RemoteTracker | None,
    report: Callable[[str], None],
) -> None:
    """Close the orphans' MLflow runs KILLED, then queue every trial cut short to run again.

    The queue covers trials cut short earlier too (a Ctrl-C'd one, an orphan failed by
    another process); ``max_retries`` reached is said once, for the orphans found now.
    """
    from pg.record.names import STOPPED, TRIAL_STATE
    from pg.sweep.retries import retry_cut_short

    for orphan in orphans:
        report(f"pg: trial {orphan.number} marked FAIL ({orphan.reason})")
        if tracker is None:
            continue
        for run_id, status in tracker.trial_runs(spec.study_name, orphan.number):
            tracker.set_tags(run_id, {TRIAL_STATE: "FAIL"})
            if status == "RUNNING":
                tracker.terminate(run_id, "KILLED", {STOPPED: orphan.reason})
    found = {o.number for o in orphans}
    for retry in retry_cut_short(study, lock, spec):
        if retry.queued:
            why = f"retry {retry.attempt} of {spec.max_retries}"
            why = "interrupted" if retry.interrupted else why
            report(f"pg: trial {retry.of} queued to run again with the same params ({why})")
        elif retry.of in found:
            report(
                f"pg: trial {retry.of} not run again: its params were orphaned "
                f"{retry.attempt} times (max_retries={spec.max_retries})"
            )
