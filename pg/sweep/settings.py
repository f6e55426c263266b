"""Types and ranges of a sweep's settings: one message per bad value, naming its key."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pg.sweep.spec import SweepError, SweepSpec

# pg.sweep.spec calls this module and holds the fixed choices: both import on use.


KEY = "hydra.sweeper."  # where these settings live, as the user types them
INT_MAX = 2**31 - 1  # Optuna keeps trial numbers and steps in 32-bit columns
SECONDS_MAX = 366 * 24 * 3600  # a year: beyond that a duration is a typo
MAX_RETRIES = 100  # a trial that kills its process this often will not stop doing it
SAMPLER_SEED_MAX = 2**31 - 1  # NumPy's legacy RandomState takes 32 bits; workers add offsets


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _reject(key: str, value: Any, allowed: str) -> SweepError:
    from pg.record.store import redact
    from pg.sweep.spec import SweepError

    shown = redact(repr(value)) if not _is_int(value) or abs(value) < 10**60 else "<huge>"
    if len(shown) > 80:
        shown = f"{shown[:60]}...({len(shown)} characters)"
    return SweepError(f"{KEY}{key}={shown} is not allowed: {allowed}")


def _check_types(spec: SweepSpec) -> None:
    """Every setting has the type and range it needs, or one message naming it."""

    def integer(key: str, low: int, high: int, optional: bool = False) -> None:
        value = getattr(spec, key)
        if optional and value is None:
            return
        if not _is_int(value) or not low <= value <= high:
            null = "null or " if optional else ""
            raise _reject(key, value, f"{null}an integer in [{low}, {high}]")

    def seconds(key: str, optional: bool) -> None:
        value = getattr(spec, key)
        if optional and value is None:
            return
        if not _is_number(value) or not 0 < value <= SECONDS_MAX:
            null = "null or " if optional else ""
            raise _reject(key, value, f"{null}a number of seconds in (0, {SECONDS_MAX}]")

    def text(key: str, value: Any, optional: bool) -> None:
        if optional and value is None:
            return
        if not isinstance(value, str) or not value.strip() or len(value) > 250:
            raise _reject(key, value, "a non-empty name of at most 250 characters")
        if not value.isprintable():
            raise _reject(key, value, "printable characters only")

    text("study_name", spec.study_name, False)
    integer("n_trials", 1, INT_MAX, optional=True)
    seconds("timeout", optional=True)
    integer("workers", 1, max(4, 4 * (os.cpu_count() or 1)))
    integer("seeds", 1, 1000)
    integer("heartbeat_interval", 1, 3600)
    integer("grace_period", 2, SECONDS_MAX)
    integer("max_retries", 0, MAX_RETRIES)
    if not isinstance(spec.direction, str):
        from pg.sweep.spec import DIRECTIONS

        raise _reject("direction", spec.direction, f"one of {', '.join(DIRECTIONS)}")
    text("objective", spec.objective, True)
    if not _is_number(spec.max_failure_rate):
        raise _reject("max_failure_rate", spec.max_failure_rate, "a number in [0, 1]")
    if spec.storage is not None:
        from pg.record.store import study_storage_problem

        problem = study_storage_problem(spec.storage) if isinstance(spec.storage, str) else ""
        if problem is not None:
            raise _reject(
                "storage",
                spec.storage,
                f"{problem or 'not text'}; use null (optuna.db beside the store), "
                "sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
            )
    for key in ("sampler", "pruner"):
        options = getattr(spec, key)
        for name in options:
            if not isinstance(name, str):
                raise _reject(key, options, "a mapping of option names to values")
        if not isinstance(options.get("name", ""), str):
            raise _reject(f"{key}.name", options["name"], "a name")
    seed = spec.sampler.get("seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed <= SAMPLER_SEED_MAX):
        raise _reject("sampler.seed", seed, f"null or an integer in [0, {SAMPLER_SEED_MAX}]")
    for key in ("params", "fixed"):
        for name, value in getattr(spec, key).items():
            if not isinstance(name, str) or not name:
                raise _reject(key, name, "config keys such as algo.lr")
            if isinstance(value, dict):
                raise _reject(f"{key}.{name}", value, "a value or a sweep such as 0.1,0.2")
