"""Search spaces written in Hydra's override grammar, as Optuna distributions.

``interval(a, b)`` is a float (``tag(int, interval(a, b))`` an int), ``range(a, b[, step])``
an int range with Hydra's exclusive end, ``choice(...)`` or a comma list a categorical,
and ``tag(log, ...)`` samples on a log scale.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override
    from optuna.distributions import BaseDistribution


class SpaceError(ValueError):
    """A search-space entry cannot be read; the message names the key."""


def parse_overrides(lines: list[str]) -> list[Override]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    out = []
    for line in lines:
        try:
            out.extend(parser.parse_overrides([line]))
        except OverrideParseException as exc:
            first = str(exc).strip().splitlines()[0]
            raise SpaceError(f"'{line}' is not valid override grammar: {first}") from None
    return out


def entry_line(key: str, value: Any) -> str:
    """A ``params:`` or ``fixed:`` entry of a sweep file as an override line.

    YAML's ``null`` and booleans arrive as Python values; written back with ``str()`` they
    would read ``None``/``True``, which Hydra takes for strings.
    """

    def text(v: Any) -> str:
        if v is None:
            return "null"
        if isinstance(v, bool):
            return str(v).lower()
        return str(v)

    if isinstance(value, list | tuple):
        return f"{key}={','.join(text(v) for v in value)}"
    return f"{key}={text(value)}"


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override (``is_sweep_override()`` is true)."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    key = override.get_key_element()
    value = override.value()
    log = "log" in getattr(value, "tags", set())
    if isinstance(value, ChoiceSweep):
        choices = [_plain(v) for v in value.list]
        if not choices:
            raise SpaceError(f"{key}: choice() needs at least one value")
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if not all(isinstance(v, int) for v in (start, stop, step)):
            raise SpaceError(f"{key}: range() needs integers here (use interval() for floats)")
        assert isinstance(start, int) and isinstance(stop, int) and isinstance(step, int)
        if step <= 0 or stop <= start:
            raise SpaceError(f"{key}: range({start}, {stop}, {step}) is empty")
        last = start + ((stop - 1 - start) // step) * step  # Hydra's end is exclusive
        if log:
            if step != 1:
                raise SpaceError(f"{key}: a log-scale range needs step 1")
            return IntDistribution(start, last, log=True)
        return IntDistribution(start, last, step=step)
    if isinstance(value, IntervalSweep):
        low: Any = value.start
        high: Any = value.end
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in (low, high)):
            raise SpaceError(f"{key}: interval({low}, {high}) needs two finite numbers")
        if not low < high:
            raise SpaceError(f"{key}: interval({low}, {high}) is empty")
        if log and low <= 0:
            raise SpaceError(f"{key}: a log-scale interval needs a lower end > 0")
        if "int" in value.tags:  # Hydra turns interval ends into floats
            if low != int(low) or high != int(high):
                raise SpaceError(f"{key}: tag(int, interval({low}, {high})) needs whole ends")
            return IntDistribution(int(low), int(high), log=log)
        return FloatDistribution(float(low), float(high), log=log)
    raise SpaceError(f"{key}: '{override.input_line}' is not a search space")


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise SpaceError(f"choice value {value!r} must be a number, string, bool or null")


def override_line(key: str, value: Any) -> str:
    """The override that sets ``key`` to a sampled ``value``."""
    if value is None:
        return f"{key}=null"
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    if isinstance(value, float):
        return f"{key}={value!r}"
    if isinstance(value, str) and not _bare_ok(value):
        return f"{key}='{value}'"
    return f"{key}={value}"


def _bare_ok(text: str) -> bool:
    return bool(text) and all(c.isalnum() or c in "_-./" for c in text)


def edge_points(space: dict[str, BaseDistribution]) -> list[dict[str, Any]]:
    """The low and the high corner of the space: configs checked before any trial runs."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    low: dict[str, Any] = {}
    high: dict[str, Any] = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            low[key], high[key] = dist.choices[0], dist.choices[-1]
        elif isinstance(dist, FloatDistribution | IntDistribution):
            low[key], high[key] = dist.low, dist.high
    points = [low, high]
    # Every categorical value can be a config of its own (e.g. a group option).
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            points += [{**low, key: c} for c in dist.choices[1:-1]]
    return points
