"""Run names a person can scan in the MLflow UI's run table.

Names are labels, not keys: every run is still found by its tags (``pg.study``,
``pg.trial_number``), so these can change without breaking a reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Long parameter names shortened in run names; others keep the last part of their key.
SHORT = {
    "batch_size": "bs",
    "learning_rate": "lr",
    "max_episode_steps": "max_ep",
    "entropy_coef": "ent",
    "hidden": "hid",
}
MIN_DIGITS = 3  # t007 sorts with t123 in a table sorted by name


def short_value(value: Any) -> str:
    """Three significant digits, trailing zeros kept (``0.980``), so names line up."""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return f"{value:#.3g}".rstrip(".")


def trial_label(number: int, n_trials: int | None) -> str:
    """``t017``: the number zero-padded to the width of the study's last trial number."""
    width = max(MIN_DIGITS, len(str(max((n_trials or 0) - 1, number))))
    return f"t{number:0{width}d}"


def trial_run_name(number: int, n_trials: int | None, params: Mapping[str, Any]) -> str:
    """``t017 lr=0.0213 gamma=0.980 bs=8``."""
    parts = [trial_label(number, n_trials)]
    for key, value in params.items():
        last = key.rsplit(".", 1)[-1]
        parts.append(f"{SHORT.get(last, last)}={short_value(value)}")
    return " ".join(parts)


def seed_run_name(number: int, n_trials: int | None, seed: int) -> str:
    """``t017 seed 2``: one seed of a multi-seed trial (the seed value, not its index)."""
    return f"{trial_label(number, n_trials)} seed {seed}"


def validation_run_name(number: int, n_trials: int | None, seed: int) -> str:
    """``v017 seed 5``: trial 17's configuration trained again on fresh seed 5."""
    return f"v{trial_label(number, n_trials)[1:]} seed {seed}"


def sweep_run_name(study: str) -> str:
    return f"sweep {study}"
