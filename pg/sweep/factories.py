"""Samplers and pruners by name; extra keys of the sweep file go to their constructors."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from pg.sweep.spec import SweepError, SweepSpec

if TYPE_CHECKING:
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler


def make_sampler(
    spec: SweepSpec, seed_offset: int = 0, grid: dict[str, list[Any]] | None = None
) -> BaseSampler:
    """The sampler; ``seed_offset`` keeps workers and resumed runs from repeating draws."""
    import optuna

    options = dict(spec.sampler)
    name = options.pop("name", "tpe")
    if name == "grid":
        return _grid_sampler(grid or {}, options)
    classes: dict[str, Any] = {
        "tpe": optuna.samplers.TPESampler,
        "random": optuna.samplers.RandomSampler,
        "cmaes": optuna.samplers.CmaEsSampler,
        "qmc": optuna.samplers.QMCSampler,
    }
    if options.get("seed") is not None:  # an int: checked by spec.build_spec
        options["seed"] = options["seed"] + seed_offset
    sampler: BaseSampler = _build("sampler", name, classes, options)
    return sampler


def _grid_sampler(grid: dict[str, list[Any]], options: dict[str, Any]) -> BaseSampler:
    """Optuna's grid sampler; trial ``n`` of the study is combination ``n``.

    Its seed only shuffles the order and must be the same in every process (never
    offset), so all of them agree on which combination a trial number is.  Its
    ``after_trial`` calls ``study.stop()``, which only works inside ``Study.optimize``:
    with ask/tell the budget (the number of combinations) ends the sweep instead.
    """
    from optuna.samplers import GridSampler

    unknown = sorted(set(options) - {"seed"})
    if unknown:
        raise SweepError(f"sampler 'grid' has no option {', '.join(unknown)} (it takes: seed)")

    class _AskTellGrid(GridSampler):
        def after_trial(self, *args: Any, **kwargs: Any) -> None:
            return None

    return _AskTellGrid(grid, seed=options.get("seed") or 0)


def make_pruner(spec: SweepSpec) -> BasePruner:
    import optuna

    options = dict(spec.pruner)
    name = options.pop("name", "median")
    classes: dict[str, Any] = {
        "median": optuna.pruners.MedianPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "none": optuna.pruners.NopPruner,
    }
    pruner: BasePruner = _build("pruner", name, classes, options)
    return pruner


def _build(kind: str, name: str, classes: dict[str, Any], options: dict[str, Any]) -> Any:
    """Construct ``classes[name]``; options meant for a sibling class are dropped.

    ``hydra.sweeper.pruner.name=hyperband`` should not fail because the sweep file set the
    median pruner's ``n_warmup_steps``; a key no class knows is a typo and an error.
    """
    cls = classes[name]
    accepted = set(inspect.signature(cls).parameters)
    siblings = {p for c in classes.values() for p in inspect.signature(c).parameters}
    unknown = sorted(set(options) - siblings)
    if unknown:
        raise SweepError(
            f"{kind} {name!r} has no option {', '.join(unknown)} "
            f"(it takes: {', '.join(sorted(accepted)) or 'nothing'})"
        )
    kwargs = {k: v for k, v in options.items() if k in accepted}
    for key, value in kwargs.items():
        _check_option(kind, key, value, inspect.signature(cls).parameters[key].default)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise SweepError(f"{kind} {name!r}: {exc}") from None


def _check_option(kind: str, key: str, value: Any, default: Any) -> None:
    """An option has the type of its constructor default (Optuna checks few of them, and
    a string where a number belongs fails only when the first trial is pruned)."""
    import math

    def bad(allowed: str) -> SweepError:
        return SweepError(f"hydra.sweeper.{kind}.{key}={value!r} is not allowed: {allowed}")

    is_bool = isinstance(value, bool)
    if isinstance(default, bool) and not is_bool:
        raise bad("true or false")
    if (
        isinstance(default, int)
        and not isinstance(default, bool)
        and (is_bool or not isinstance(value, int) or not 0 <= value < 2**31)
    ):
        raise bad("an integer in [0, 2147483647]")
    if isinstance(default, float) and (
        is_bool or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        raise bad("a finite number")
