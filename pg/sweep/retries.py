"""Trials cut short, run again: the retry queue and the budget it widens.

A trial whose process died (an orphan) or that Ctrl-C stopped did not end by its own
doing; it is queued again with its params (``enqueue_trial``, public API) so the study
ends with ``n_trials`` trials that ran to their own end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pg.record.names import ATTR_REASON as REASON
from pg.record.names import ATTR_RETRIES as RETRIES
from pg.record.names import ATTR_RETRY_OF as RETRY_OF
from pg.sweep.study import QUEUED

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from pg.sweep.asking import BudgetLock
    from pg.sweep.spec import SweepSpec

# A FAIL with one of these reasons was cut short, not judged: it runs again (a retry).
ORPHANED, INTERRUPTED = "orphaned", "interrupted"
RERUN_REASONS = (ORPHANED, INTERRUPTED)


def _reason(trial: FrozenTrial) -> str:
    return str(trial.system_attrs.get(REASON, ""))


def cut_short(trial: FrozenTrial) -> bool:
    """FAIL by no doing of its own (orphaned, interrupted): a search trial or a validation
    pair that runs again."""
    from optuna.trial import TrialState

    return trial.state == TrialState.FAIL and _reason(trial).startswith(RERUN_REASONS)


def _is_retry(trial: FrozenTrial, mode: str) -> bool:
    """A trial queued to re-run one cut short (a grid's, before retries had a tag, too)."""
    return RETRY_OF in trial.user_attrs or (mode == "grid" and QUEUED in trial.system_attrs)


def budget(study: optuna.Study, spec: SweepSpec) -> int | None:
    """Trials the study may hold: ``n_trials`` plus one per retry queued.

    A retry replaces a trial cut short, so the study ends with ``n_trials`` trials that
    ran to their own end.  Only queued retries widen the budget: a trial cut short but
    not (yet) queued again must not let the sampler ask a new trial in its place (a
    grid's would repeat a random combination).
    """
    if spec.n_trials is None:
        return None
    trials = study.get_trials(deepcopy=False)
    return spec.n_trials + sum(1 for t in trials if _is_retry(t, spec.mode))


def _combination(trial: FrozenTrial) -> str:
    params = trial.params or trial.system_attrs.get(QUEUED) or {}
    return json.dumps(params, sort_keys=True, default=str)


@dataclass
class Retry:
    of: int  # the trial cut short
    attempt: int  # orphaned attempts of its params so far (a Ctrl-C is not counted)
    queued: bool  # False: max_retries reached, it stays a FAIL
    interrupted: bool  # by Ctrl-C, not by a dead process


def retry_cut_short(study: optuna.Study, lock: BudgetLock, spec: SweepSpec) -> list[Retry]:
    """Queue each trial cut short (orphaned, interrupted) to run again with its params.

    The retry (``enqueue_trial``, asked before any new trial) carries ``pg.retry_of``.  A
    trial whose process died counts against ``max_retries`` along its chain of retries
    (one that takes its machine down with it must not loop); one stopped by Ctrl-C does
    not, the user stopped it.  A grid re-runs a combination only if no trial of it ran to
    its own end.  Idempotent: a trial is queued again once, however often this runs.
    """
    retries = []
    with lock.held():
        trials = study.get_trials(deepcopy=False)
        replaced = {t.user_attrs[RETRY_OF] for t in trials if RETRY_OF in t.user_attrs}
        covered = {_combination(t) for t in trials if not cut_short(t)}
        for trial in trials:
            if not cut_short(trial) or trial.number in replaced:
                continue
            if spec.mode == "grid" and _combination(trial) in covered:
                continue
            interrupted = not _reason(trial).startswith(ORPHANED)
            used = int(trial.user_attrs.get(RETRIES, 0)) + (not interrupted)
            queued = used <= spec.max_retries
            if queued:
                study.enqueue_trial(
                    dict(trial.params),
                    user_attrs={RETRY_OF: trial.number, RETRIES: used},
                    skip_if_exists=False,
                )
                covered.add(_combination(trial))
            retries.append(Retry(trial.number, used, queued, interrupted))
    return retries
