"""Compare two runs' records: metric histories step by step, and their environments.

Plain lists in, differences out: the comparison rules are tested without a store; the
histories come from :class:`pg.record.reader.Reader`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pg.core.metrics import WALL_CLOCK_PREFIXES
from pg.record import names

Point = tuple[int, float]
Histories = dict[str, list[Point]]


@dataclass
class MetricDiff:
    """How one metric differs between the source run and its reproduction."""

    key: str
    first_step: int | None  # first env step where the two histories disagree
    deviation: float | None  # largest |a - b| over points both runs have at a step
    note: str = ""
    relative: float | None = None  # largest |a - b| / max(1, |a|, |b|) over those points

    def rounding_only(self, tolerance: float) -> bool:
        """Same steps, same number of points, every value within ``tolerance`` (relative).

        What float32 arithmetic in another order gives: PyTorch picks its CPU kernels by
        the processor's vector instructions (AVX2, AVX-512), and a sum taken in other
        chunks differs in the last bits; it promises no bit-identical results across
        platforms.  A different sampled action would change the returns by whole units.
        """
        return not self.note and self.relative is not None and self.relative <= tolerance


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _by_step(points: Iterable[Point]) -> dict[int, list[float]]:
    """Values per step, sorted.

    Several values can share a step (episodes of different envs ending together) and
    MLflow returns them ordered by wall-clock timestamp, which is not part of the result;
    sorting makes the order canonical without hiding any value.
    """
    out: dict[int, list[float]] = {}
    for step, value in points:
        out.setdefault(step, []).append(value)
    for values in out.values():
        values.sort(key=lambda v: (math.isnan(v), 0.0 if math.isnan(v) else v))
    return out


def diff_history(
    key: str, source: list[Point] | None, new: list[Point] | None
) -> MetricDiff | None:
    """``None`` when both histories hold exactly the same values at the same steps."""
    if source is None or new is None:
        where = "source run" if new is None else "new run"
        return MetricDiff(key, None, None, f"only in the {where}")
    a, b = _by_step(source), _by_step(new)
    first: int | None = None
    deviation: float | None = None  # only where both runs logged as many values at a step
    relative: float | None = None
    values_differ = False
    for step in sorted(set(a) | set(b)):
        va, vb = a.get(step, []), b.get(step, [])
        if len(va) == len(vb) and all(_same(x, y) for x, y in zip(va, vb, strict=True)):
            continue
        if first is None:
            first = step
        if {v for v in va if v == v} != {v for v in vb if v == v} or any(
            math.isnan(v) for v in va
        ) != any(math.isnan(v) for v in vb):
            values_differ = True
        if len(va) != len(vb):
            continue
        for x, y in zip(va, vb, strict=True):
            gap = abs(x - y)
            gap = gap if not math.isnan(gap) else (0.0 if _same(x, y) else math.inf)
            deviation = gap if deviation is None else max(deviation, gap)
            scaled = gap / max(1.0, abs(x), abs(y)) if math.isfinite(gap) else math.inf
            relative = scaled if relative is None else max(relative, scaled)
    if first is None:
        return None
    notes = []
    if len(source) != len(new):
        notes.append(f"{len(source)} vs {len(new)} points")
    elif set(a) != set(b):
        notes.append("logged at different steps")
    if not values_differ:
        notes.append("same values, repeated (step, value) points counted differently")
    return MetricDiff(key, first, deviation, "; ".join(notes), relative)


def compare_histories(source: Histories, new: Histories) -> list[MetricDiff]:
    diffs = []
    for key in sorted(set(source) | set(new)):
        diff = diff_history(key, source.get(key), new.get(key))
        if diff is not None:
            diffs.append(diff)
    return diffs


def compared_keys(keys: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split metric names into (compared, ignored wall-clock ones)."""
    keys = sorted(set(keys))
    return [k for k in keys if not k.startswith(WALL_CLOCK_PREFIXES)], [
        k for k in keys if k.startswith(WALL_CLOCK_PREFIXES)
    ]


def format_table(diffs: list[MetricDiff], prefix: str = "") -> list[str]:
    rows = [("metric", "first differing step", "largest deviation", "note")]
    for d in diffs:
        step = "-" if d.first_step is None else f"{d.first_step:,}"
        dev = "-" if d.deviation is None else f"{d.deviation:.6g}"
        rows.append((prefix + d.key, step, dev, d.note))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return [
        f"  {r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip()
        for r in rows
    ]


# -- environments ---------------------------------------------------------------


def parse_lock(text: str) -> dict[str, str]:
    """``name==version`` lines to ``{normalised name: version}``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "==" not in line:
            continue
        name, version = line.split("==", 1)
        out[name.strip().lower().replace("_", "-")] = version.strip()
    return out


def lock_diff(stored: str, installed: str) -> list[str]:
    """Packages whose version differs, or that exist on one side only, named one by one."""
    a, b = parse_lock(stored), parse_lock(installed)
    out = []
    for name in sorted(set(a) | set(b)):
        if name not in b:
            out.append(f"{name} {a[name]} -> not installed")
        elif name not in a:
            out.append(f"{name} not in the lock -> {b[name]}")
        elif a[name] != b[name]:
            out.append(f"{name} {a[name]} -> {b[name]}")
    return out


SYSTEM_KEYS = (
    "python",
    "torch",
    "torch_threads",
    "platform",
    "machine",
    "cpu",
    "cpu_capability",
    "cpu_count",
)
GIT_TAGS = (("git commit", names.GIT_COMMIT), ("dirty tree", names.GIT_DIRTY))


def environment_diff(
    source_tags: Mapping[str, str],
    new_tags: Mapping[str, str],
    source_lock: str | None,
    new_lock: str | None,
    source_system: Mapping[str, Any] | None,
    new_system: Mapping[str, Any] | None,
) -> list[str]:
    """Human-readable ``what: source -> now`` lines for everything that differs."""
    out = []
    for label, tag in GIT_TAGS:
        old, now = source_tags.get(tag, "unknown"), new_tags.get(tag, "unknown")
        if old != now:
            out.append(f"{label}: {old} -> {now}")
    if source_system is None:
        out.append("system: the source run has no environment/system.json")
    elif new_system is not None:
        for key in SYSTEM_KEYS:
            old, now = source_system.get(key, "unknown"), new_system.get(key, "unknown")
            if old != now:
                out.append(f"{key}: {old} -> {now}")
    if source_lock is None:
        out.append("packages: the source run has no environment/requirements.txt")
    elif new_lock is not None:
        out.extend(f"package {line}" for line in lock_diff(source_lock, new_lock))
    return out
