"""Everything about a sweep that can be checked before connecting to anything."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pg.core.config import ConfigError
from pg.sweep.mode import resolve
from pg.sweep.spec import Plan, SweepError, build_spec, plan

if TYPE_CHECKING:
    from pg.core.config import Config
    from pg.record.store import StoreLocation


def check_definition(
    settings: dict[str, Any],
    arguments: list[str],
    config_name: str,
    cli_hydra: list[str] | None = None,
) -> tuple[Plan, Config, StoreLocation]:
    """Everything about a sweep that can be checked without connecting to anything.

    Keys and types, the space and its grammar, sampler and pruner options, trial configs
    composed at the corners of the space, memory for workers x seeds, the tracking URI.
    Raises :class:`SweepError` (one line); Hydra must be initialised.
    """
    from pg.record.store import resolve_store
    from pg.sweep.compose import compose_trial
    from pg.sweep.factories import make_pruner, make_sampler, per_seed
    from pg.sweep.space import edge_points, override_line

    spec = resolve(build_spec(settings), arguments, cli_hydra or [])
    the_plan = plan(spec, arguments)
    if the_plan.mode == "grid":  # every combination once: the grid is the budget
        spec = replace(spec, n_trials=the_plan.n_combinations, mode="grid")
        the_plan.spec = spec
    make_sampler(spec, grid=the_plan.grid)
    make_pruner(spec)
    base = compose_trial(config_name, the_plan.base_overrides).config
    if per_seed(spec) and len(the_plan.seed_list(base.seed)) < 2:
        raise SweepError(
            "hydra.sweeper.pruner.name=wilcoxon compares a trial with the best one seed by "
            "seed and needs 2 or more seeds per trial: set hydra.sweeper.seeds (e.g. 5) or "
            "seed=0,1,2,3,4, or choose another pruner"
        )
    for point in edge_points(the_plan.space):
        compose_trial(
            config_name,
            [*the_plan.base_overrides, *(override_line(k, v) for k, v in point.items())],
            len(point),
        )
    _check_memory(base, spec.workers, spec.seeds)
    try:
        location = resolve_store(base.tracking)
    except ConfigError as exc:
        raise SweepError(str(exc)) from None
    return the_plan, base, location


# Resident memory of one worker process: ~350 MiB measured after importing torch, MLflow,
# Optuna and gymnasium; the rest is room for the MLflow client and the training loop.
WORKER_BYTES = 600 * 2**20


def _check_memory(base: Config, workers: int, seeds: int) -> None:
    """``workers`` processes training ``seeds`` configs each at once must fit in memory."""
    from pg.core.budget import available_memory, gib, too_big

    have = available_memory()
    room = have - workers * WORKER_BYTES
    if room <= 0:
        raise SweepError(
            f"hydra.sweeper.workers={workers} is not allowed: {workers} processes need "
            f"~{gib(workers * WORKER_BYTES)}, this machine has {gib(have)} available"
        )
    reason = too_big(base, copies=workers * seeds, budget=room)
    if reason is not None:
        raise SweepError(
            f"{reason} (hydra.sweeper.workers={workers} x hydra.sweeper.seeds={seeds} "
            "trainings at once)"
        )
