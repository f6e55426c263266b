"""Samplers and pruners by name; extra keys of the sweep file go to their constructors."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from pg.sweep.spec import SweepError, SweepSpec

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler


def _sampler_classes() -> dict[str, Any]:
    import optuna

    return {
        "tpe": optuna.samplers.TPESampler,
        "random": optuna.samplers.RandomSampler,
        "cmaes": optuna.samplers.CmaEsSampler,
        "qmc": optuna.samplers.QMCSampler,
        "gp": optuna.samplers.GPSampler,
    }


def _pruner_classes() -> dict[str, Any]:
    import optuna

    return {
        "median": optuna.pruners.MedianPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "threshold": optuna.pruners.ThresholdPruner,
        "wilcoxon": optuna.pruners.WilcoxonPruner,
        "none": optuna.pruners.NopPruner,
    }


def make_sampler(
    spec: SweepSpec,
    seed_offset: int = 0,
    grid: dict[str, list[Any]] | None = None,
    stream: tuple[int, dict[str, BaseDistribution]] | None = None,
) -> BaseSampler:
    """The sampler; ``seed_offset`` keeps workers and resumed runs from repeating draws.

    ``stream``: the invocation's first trial number and the space.  A seeded ``random``
    or ``tpe`` sampler then draws its random configurations from the invocation's one
    stream (:mod:`pg.sweep.draws`): the same for trial ``n`` in every worker.
    """
    options = dict(spec.sampler)
    name = options.pop("name", "tpe")
    if name == "grid":
        return _grid_sampler(grid or {}, options)
    seed = options.get("seed")
    if seed is not None:  # an int: checked by spec.build_spec
        options["seed"] = seed + seed_offset
    sampler: BaseSampler = _build("sampler", name, _sampler_classes(), options)
    if stream is not None and seed is not None and name in ("tpe", "random"):
        from pg.sweep.draws import aligned

        return aligned(sampler, seed, *stream)
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
    options = dict(spec.pruner)
    name = options.pop("name", "median")
    pruner: BasePruner = _build("pruner", name, _pruner_classes(), options)
    return pruner


def per_seed(spec: SweepSpec) -> bool:
    """Wilcoxon compares trials seed by seed: its report steps are seeds, not env steps."""
    return spec.pruner.get("name") == "wilcoxon"


def wilcoxon_note(spec: SweepSpec, k: int) -> str | None:
    """Why a Wilcoxon pruner with ``k`` seeds can never stop a trial early, if it cannot.

    Its one-sided signed-rank test on ``n`` paired seeds, all worse than the best trial,
    gives p = 1/2^n at the smallest; a trial is only ever stopped before its last seed,
    so the test must be able to pass on ``k - 1`` seeds.
    """
    p = float(spec.pruner.get("p_threshold", 0.1))
    need = max(2, int(spec.pruner.get("n_startup_steps", 2)))
    while 0.5**need >= p and need <= 64:
        need += 1
    if need < k:
        return None
    return (
        f"pruner wilcoxon will stop no trial: with p_threshold={p:g} it needs {need} seeds "
        f"worse than the best trial's before it can (p = 1/2^n on n seeds), a trial has {k}; "
        "give trials more seeds or raise p_threshold"
    )


def describe(kind: str, spec: SweepSpec) -> str:
    """``tpe(seed=0, multivariate=False)``: the class and the options it really gets."""
    options = dict(getattr(spec, kind))
    name = str(options.pop("name", "tpe" if kind == "sampler" else "median"))
    if name == "grid":
        return name
    classes = _sampler_classes() if kind == "sampler" else _pruner_classes()
    kwargs = _options_for(kind, name, classes, options)
    shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"{name}({shown})" if shown else name


def _options_for(
    kind: str, name: str, classes: dict[str, Any], options: dict[str, Any]
) -> dict[str, Any]:
    """The options ``classes[name]`` takes, checked; those meant for a sibling dropped.

    ``hydra.sweeper.pruner.name=hyperband`` should not fail because the sweep file set the
    median pruner's ``n_warmup_steps``; a key no class of its kind knows is a typo and an
    error.  An option the chosen class shares with a sibling (``n_warmup_steps`` of
    median and threshold, ``n_startup_trials`` of tpe and gp) means the same and is used.
    """
    params = inspect.signature(classes[name]).parameters
    siblings = {p for c in classes.values() for p in inspect.signature(c).parameters}
    unknown = sorted(set(options) - siblings)
    if unknown:
        raise SweepError(
            f"{kind} {name!r} has no option {', '.join(unknown)} "
            f"(it takes: {', '.join(sorted(params)) or 'nothing'})"
        )
    kwargs = {k: options[k] for k in params if k in options}  # in the constructor's order
    for key, value in kwargs.items():
        _check_option(kind, key, value, params[key])
    return kwargs


def _build(kind: str, name: str, classes: dict[str, Any], options: dict[str, Any]) -> Any:
    """Construct ``classes[name]`` with its options (see :func:`_options_for`)."""
    import warnings

    from optuna.exceptions import ExperimentalWarning

    kwargs = _options_for(kind, name, classes, options)
    try:
        with warnings.catch_warnings():
            # wilcoxon and gp are "experimental" in Optuna 5: the user chose them by name.
            warnings.simplefilter("ignore", ExperimentalWarning)
            return classes[name](**kwargs)
    except (TypeError, ValueError) as exc:
        raise SweepError(f"{kind} {name!r}: {exc}") from None


INT_MAX = 2**31 - 1


def _kinds(param: inspect.Parameter) -> set[str]:
    """What a YAML value for ``param`` may be, read from its annotation.

    Optuna checks few of its options, and a string where a number belongs fails only when
    the first trial is pruned; options defaulting to ``None`` (``multivariate``,
    ``lower``) have no default type to go by, so the annotation decides.  ``object``
    marks a Python object (a callable, a sampler) that a sweep file cannot hold.
    """
    ann = param.annotation
    if ann is inspect.Parameter.empty:
        default = param.default
        return {"None" if default is None else type(default).__name__}
    text = ann if isinstance(ann, str) else getattr(ann, "__name__", None) or str(ann)
    kinds = set()
    for part in (p.strip() for p in text.split("|")):
        if part in ("bool", "int", "float", "str", "None"):
            kinds.add(part)
        elif part.startswith(("dict", "Mapping")):
            kinds.add("mapping")
        elif part.startswith("Literal"):
            kinds.add("str")
        else:
            kinds.add("object")
    return kinds


def _check_option(kind: str, key: str, value: Any, param: inspect.Parameter) -> None:
    """An option has a type its constructor takes, or one message naming it."""
    import math

    kinds = _kinds(param)
    allowed = [
        text
        for k, text in (
            ("None", "null"),
            ("bool", "true or false"),
            ("int", f"an integer in [0, {INT_MAX}]"),
            ("float", "a finite number"),
            ("str", "text"),
            ("mapping", "a mapping"),
        )
        if k in kinds and not (k == "int" and "float" in kinds)
    ]
    if isinstance(value, bool):
        ok = "bool" in kinds
    elif isinstance(value, int):
        ok = ("int" in kinds and (0 <= value <= INT_MAX or value == param.default)) or (
            "float" in kinds and abs(value) < 10**300
        )
    elif isinstance(value, float):
        ok = "float" in kinds and math.isfinite(value)
    elif value is None:
        ok = "None" in kinds or param.default is None
    elif isinstance(value, str):
        ok = "str" in kinds
    elif isinstance(value, dict):
        ok = "mapping" in kinds
    else:
        ok = False
    if ok:
        return
    if not allowed or allowed == ["null"]:
        reason = "it takes a Python object, which a sweep definition cannot hold"
    else:
        reason = " or ".join(allowed)
    from pg.sweep.settings import _reject

    raise _reject(f"{kind}.{key}", value, reason)
