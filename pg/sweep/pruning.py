"""Asking the pruner at every report without reading the whole running trial back each time.

``Trial.should_prune`` hands the pruner the study, and the median pruner (the default)
starts by listing the study's COMPLETE trials. Optuna's cached storage keeps finished
trials in memory, but reads every unfinished one back from the database on each listing,
so each report of a trial also loaded the running trial itself with all its intermediate
values, parameters and attributes: ~3.4 ms a report here, ~0.8 s of a 20-trial CartPole
sweep's ~14 s, more as a trial's reports pile up.

A finished trial never changes (Optuna refuses to update one), so the list of finished
trials in some states is the same for as long as the number of finished trials is the
same. :class:`PruningStudy` answers the pruner's listings of finished trials from the
last real listing while one count query (~0.2 ms) says no trial has finished since, in
this process or any other (workers, other machines on PostgreSQL). Any other question
(all trials, the best trial, Hyperband's brackets) goes to the study as before. The
pruner sees the same trials it would have seen, so it prunes exactly as before.

The view overrides ``Study._get_trials``, the one listing ``Study.get_trials`` calls, and
shares the study's attributes; the storage calls are wrapped in :mod:`pg.sweep.study`.
``tests/test_pruning.py`` fails loudly if an Optuna release changes either: the view's
decisions are compared with ``Trial.should_prune``'s and its statements counted.
"""

from __future__ import annotations

from collections.abc import Container
from typing import TYPE_CHECKING

import optuna

from pg.sweep.study import finished_count, latest_trial

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial, Trial, TrialState


class PruningStudy(optuna.Study):
    """The trial's study as its pruner sees it (one per trial)."""

    def __init__(self, study: optuna.Study) -> None:
        # Not Study.__init__: that would look the study up again. The same storage,
        # sampler, pruner and ids, only the listing below is answered differently.
        self.__dict__.update(study.__dict__)
        self._finished: dict[tuple[str, ...], tuple[int, list[FrozenTrial]]] = {}

    def _get_trials(
        self,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        wanted = _finished_states(states)
        if wanted is None or deepcopy or use_cache:
            return super()._get_trials(deepcopy, states, use_cache)
        count = finished_count(self)  # counted before listing: a trial that ends in between
        if count is None:  # is in the list, and the next count makes it list again
            return super()._get_trials(deepcopy, states, use_cache)
        known = self._finished.get(wanted)
        if known is None or known[0] != count:
            known = (count, super()._get_trials(False, states, False))
            self._finished[wanted] = known
        return list(known[1])


def _finished_states(states: Container[TrialState] | None) -> tuple[str, ...] | None:
    """The listing's states as a key, if it asks for finished states only."""
    from optuna.trial import TrialState

    if states is None:
        return None
    chosen = tuple(s.name for s in TrialState if s in states)
    if not chosen or not all(TrialState[name].is_finished() for name in chosen):
        return None
    return chosen


def pruner_view(trial: Trial) -> PruningStudy | None:
    """The view for ``trial``'s reports; ``None`` where Optuna's own call must answer (a
    study with several objectives, which ``should_prune`` refuses)."""
    study = trial.study
    return PruningStudy(study) if len(study.directions) == 1 else None


def should_prune(trial: Trial, view: PruningStudy | None) -> bool:
    """``trial.should_prune()``, listing finished trials through ``view``."""
    if view is None:
        return trial.should_prune()
    return bool(view.pruner.prune(view, latest_trial(trial)))
