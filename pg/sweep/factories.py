"""Samplers and pruners by name; extra keys of the sweep file go to their constructors."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from pg.sweep.spec import SweepError, SweepSpec

if TYPE_CHECKING:
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler


def make_sampler(spec: SweepSpec, seed_offset: int = 0) -> BaseSampler:
    """The sampler; ``seed_offset`` keeps workers and resumed runs from repeating draws."""
    import optuna

    options = dict(spec.sampler)
    name = options.pop("name", "tpe")
    classes: dict[str, Any] = {
        "tpe": optuna.samplers.TPESampler,
        "random": optuna.samplers.RandomSampler,
        "cmaes": optuna.samplers.CmaEsSampler,
        "qmc": optuna.samplers.QMCSampler,
    }
    if options.get("seed") is not None:
        options["seed"] = int(options["seed"]) + seed_offset
    sampler: BaseSampler = _build("sampler", name, classes, options)
    return sampler


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
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise SweepError(f"{kind} {name!r}: {exc}") from None
