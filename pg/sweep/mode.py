"""What ``-m`` means: a grid of every combination, or an Optuna search.

Hydra users expect ``-m a=1,2 b=x,y`` to run every combination once (Hydra's basic
sweeper); pg's reason to exist is the Optuna search.  The rule below keeps both: comma
lists alone are a grid, anything that only a search can mean (an interval, a range, a
tag, a sweep file picked by name, a sampler or search space set on the command line) is a
search.  ``seed`` is never a hyper-parameter: in a search its values are the seeds every
trial runs on; in a grid it is one more axis.

This module is imported by the Hydra plugin on every start, so it imports only the
standard library at module level.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pg.sweep.spec import SweepSpec

MODES = ("auto", "grid", "search")

RULE = (
    "mode auto: only comma lists on the command line (a=1,2 b=x,y) and no sweep=NAME -> a "
    "grid, every combination run once (sweep file not used); an interval/range/tag sweep, "
    "sweep=NAME, hydra.sweeper.sampler/params on the command line, or no sweep at all -> "
    "an Optuna search of the sweep file; seed=a,b,... is never searched: in a search every "
    "trial runs on those seeds, in a grid it is an axis. mode grid|search forces one."
)

SEED = "seed"


def _key(line: str) -> str:
    return line.lstrip("+~").split("=", 1)[0].strip()


def is_list(override: Any) -> bool:
    """A comma list or ``choice(...)`` without tags: a finite set of values, as Hydra's."""
    from hydra.core.override_parser.types import ChoiceSweep

    value = override.value()
    return isinstance(value, ChoiceSweep) and not value.tags


def decide(spec: SweepSpec, arguments: list[str], hydra_overrides: list[str]) -> str:
    """``"grid"`` or ``"search"`` for this command line (see :data:`RULE`)."""
    from pg.sweep.space import SpaceError, parse_overrides
    from pg.sweep.spec import SweepError

    sampler = str(spec.sampler.get("name", "tpe"))
    if spec.mode == "grid" or (spec.mode == "auto" and sampler == "grid"):
        return "grid"
    if spec.mode == "search":
        return "search"
    if any(
        _key(h).startswith(("hydra.sweeper.sampler", "hydra.sweeper.params"))
        for h in hydra_overrides
    ):
        return "search"
    try:
        overrides = parse_overrides(arguments)
    except SpaceError as exc:
        raise SweepError(str(exc)) from None
    if any(o.key_or_group == "sweep" for o in overrides):
        return "search"
    sweeps = [o for o in overrides if o.is_sweep_override()]
    if not sweeps:
        return "search"  # plain `-m` (or only fixed values): the sweep file's search
    if all(is_list(o) or o.get_key_element() == SEED for o in sweeps):
        return "grid"
    return "search"


def resolve(spec: SweepSpec, arguments: list[str], hydra_overrides: list[str]) -> SweepSpec:
    """The spec with its mode decided; an automatic grid drops the sweep file's search.

    A grid picked by the rule runs the default config over the command line's lists, so
    the sweep file's ``params``, ``fixed``, ``n_trials`` and ``validate`` do not apply, its
    pruner is off (every combination runs to the end) unless the command line sets one, and
    its study is named after the command line (``grid-<keys>-<hash>``) unless
    ``study_name`` is given: the same command resumes the same grid, another command starts
    another one.
    """
    mode = decide(spec, arguments, hydra_overrides)
    if mode == "search" or spec.mode == "grid" or spec.sampler.get("name") == "grid":
        return replace(spec, mode=mode)
    given = {_key(h) for h in hydra_overrides}
    pruner = spec.pruner if any(k.startswith("hydra.sweeper.pruner") for k in given) else {}
    # The sweep file's validation is of its search; asked on the command line, the grid
    # says it does not apply.
    asked = any(k.startswith("hydra.sweeper.validate") for k in given)
    validate = spec.validate if asked else {**spec.validate, "top_k": 0}
    name = spec.study_name
    if "hydra.sweeper.study_name" not in given:
        name = grid_study_name(arguments, spec)
    return replace(
        spec,
        mode="grid",
        study_name=name,
        sampler={"name": "grid"},
        pruner=pruner or {"name": "none"},
        params={},
        fixed={},
        validate=validate,
    )


def grid_study_name(arguments: list[str], spec: SweepSpec) -> str:
    from pg.sweep.space import parse_overrides

    keys = [o.get_key_element() for o in parse_overrides(arguments) if o.is_sweep_override()]
    short = "-".join(sorted(k.rsplit(".", 1)[-1] for k in keys))[:40]
    text = "\n".join([*sorted(arguments), f"seeds={spec.seeds}", f"objective={spec.objective}"])
    return f"grid-{short}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"
