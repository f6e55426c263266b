"""Random draws that do not depend on how many workers ask for them.

Optuna's random sampler, and TPE before its ``n_startup_trials``, draw from one stream
seeded once per process.  With one worker, the ``k``-th trial an invocation samples
takes the ``k``-th slice of that stream (each trial takes the same number of doubles: one
per number parameter, one per choice of a categorical one, as Optuna's search-space
transform lays them out).  Workers used to seed streams of their own (``seed + 7919 *
worker``), so a sweep on two workers drew other configurations than on one: not the same
experiment, and not comparable run against run.

:class:`StreamRandomSampler` reads the one worker's stream at trial ``n``'s place in every
process: before each trial it reseeds with the invocation's seed and skips the slices of
the trials numbered before it in this invocation.  Trial ``n`` draws the very values one
worker would have drawn, whatever the number of workers (or Ray tasks) asking; one worker
draws exactly what it drew before.  A trial that does not sample (a queued retry, with
fixed params) leaves its slice unused, so the draws after it do not shift either.

Only the random draws are aligned: TPE's own proposals after its startup trials depend on
the finished trials it sees, and those differ when trials run side by side.

Optuna has no public way to do this.  The two private pieces it takes (TPE's
``_random_sampler``, and the search-space transform that says how many doubles a draw
takes) are used here only; ``tests/test_sweep_draws.py`` compares the draws with Optuna's
own samplers asked by one process, so an upgrade that changes either fails there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optuna.samplers import BaseSampler, RandomSampler, TPESampler

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import Study
    from optuna.trial import FrozenTrial


def aligned(
    sampler: BaseSampler, seed: int, first: int, space: dict[str, BaseDistribution]
) -> BaseSampler:
    """``sampler`` (Optuna's random or TPE sampler) with its random draws read from the
    stream seeded ``seed + first`` at trial ``n``'s place; ``first``: the number of the
    invocation's first trial."""
    draws = StreamRandomSampler(seed + first, first, doubles_per_trial(space))
    if isinstance(sampler, TPESampler):
        sampler._random_sampler = draws  # its startup trials' draws
        return sampler
    return draws


def doubles_per_trial(space: dict[str, BaseDistribution]) -> int:
    """How many doubles a random draw of ``space`` takes from the stream."""
    from optuna._transform import _SearchSpaceTransform

    return sum(int(_SearchSpaceTransform({k: d}).bounds.shape[0]) for k, d in space.items())


class StreamRandomSampler(RandomSampler):
    """Random draws of trial ``n`` from slice ``n - first`` of the stream seeded ``seed``."""

    def __init__(self, seed: int, first: int, per_trial: int) -> None:
        super().__init__(seed=seed)
        self._stream_seed = seed
        self._first = first
        self._per_trial = per_trial

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        super().before_trial(study, trial)
        rng = self._rng.rng
        rng.seed(self._stream_seed)
        skip = self._per_trial * (trial.number - self._first)
        if skip > 0:
            rng.random_sample(skip)
