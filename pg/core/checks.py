"""The value rules of the config schema: one message per bad value, naming its key."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting is outside what the schema allows; the message names the key."""


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={_shown(value)} is not allowed: {allowed}")


def _shown(value: Any) -> str:
    """A value as the user typed it, cut short: a 10 000-digit number is no message."""
    try:
        text = repr(value)
    except ValueError:  # Python will not print an int of more than 4300 digits
        return "<a number of more than 4300 digits>"
    return text if len(text) <= 80 else f"{text[:60]}...({len(text)} characters)"


INT_MAX = 2**63 - 1  # what NumPy, torch and SQL columns hold
SEED_MAX = 2**63 - 1 - 2**32  # room for the evaluation offset and a trial's extra seeds
NAME_MAX = 250  # MLflow's limit for run names; experiment names and labels alike
TEXT_MAX = 2000  # URIs and paths: MLflow params hold up to 6000 characters
THREADS_MAX = 256  # torch refuses absurd thread counts only when it starts them
TIMEOUT_MAX = 3600.0  # seconds; beyond an hour a "check" is no check


def _finite(value: float | None) -> bool:
    # A string here is an unresolved interpolation of the schema's defaults.
    return not isinstance(value, int | float) or math.isfinite(value)


def _name(ok_empty: bool, key: str, value: str | None) -> None:
    """Names shown in MLflow and on the console: printable, one line, not too long."""
    if value is None:
        return
    _check(
        (ok_empty or bool(value.strip())) and len(value) <= NAME_MAX and value.isprintable(),
        key,
        value,
        f"a non-empty printable name of at most {NAME_MAX} characters",
    )


CONF = Path(__file__).resolve().parent.parent.parent / "conf"


def check_group_overrides(args: list[str], conf: Path = CONF) -> None:
    """A config group (``env=...``) takes an option name: Hydra fails on ``env=0`` with a
    ValueError that names no key, so this is checked first, as a :class:`ConfigError`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for arg in args:
        try:
            (override,) = parser.parse_overrides([arg])
        except (OverrideParseException, ValueError):
            continue  # Hydra reports grammar errors itself, naming the override
        key = override.get_key_element().lstrip("+~")
        folder = conf / key
        if "." in key or "/" in key or not folder.is_dir() or override.is_delete():
            continue
        value = override.value()
        names = value.list if isinstance(value, ChoiceSweep) else [value]
        if not all(isinstance(v, str) and "${" not in v for v in names):
            options = sorted(p.stem for p in folder.glob("*.yaml"))
            raise ConfigError(
                f"{key}={override.get_value_element_as_str()} is not allowed: "
                f"one of the options {', '.join(options)}"
            )
