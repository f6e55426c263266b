"""Overrides on top of a stored snapshot (``pg.reproduce RUN algo=pg seed=3``).

Applied the way Hydra would: a group choice (``algo=pg``) swaps the whole subtree as a
fresh composition gives it, dotted keys are merged after.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omegaconf import DictConfig

GROUPS = ("env", "algo", "model")  # config groups whose choice can be swapped by name
_OVERRIDE = re.compile(r"^\+{0,2}(?P<key>[A-Za-z_][\w.]*)=(?P<value>.*)$", re.S)


class BadInput(Exception):  # noqa: N818 - an answer for the user, not a crash
    """The request cannot be carried out; nothing was created."""


@dataclass
class Override:
    key: str
    value: str
    old: Any = None

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


def parse_overrides(items: list[str]) -> list[Override]:
    out = []
    for item in items:
        match = _OVERRIDE.match(item)
        if match is None:
            raise BadInput(f"override {item!r} is not of the form key=value")
        key = match["key"]
        if key in ("tracking.uri", "tracking.enabled", "tracking.artifact_root"):
            raise BadInput(f"override {key} is not allowed here; use --tracking-uri")
        out.append(Override(key, match["value"]))
    return out


def group_node(group: str, choice: str) -> Any:
    """The resolved subtree that ``group=choice`` gives in a fresh composition."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from pg.core.config import register_configs

    conf = Path(__file__).resolve().parent.parent / "conf"
    if not (conf / group / f"{choice}.yaml").is_file():
        raise BadInput(f"override {group}={choice}: no config conf/{group}/{choice}.yaml")
    register_configs()
    try:
        with initialize_config_dir(str(conf), version_base="1.3"):
            cfg = compose("config", overrides=[f"{group}={choice}"])
    except HydraException as exc:
        raise BadInput(f"override {group}={choice}: {exc}") from None
    return OmegaConf.to_container(cfg[group], resolve=True)


def apply_overrides(node: DictConfig, overrides: list[Override]) -> DictConfig:
    """Group choices first (``algo=pg`` swaps the subtree), then dotted keys, like Hydra."""
    from omegaconf import DictConfig, OmegaConf

    out = node.copy()
    dotted = []
    for ov in overrides:
        ov.old = OmegaConf.select(node, ov.key, default=None)
        if ov.key in GROUPS and isinstance(node.get(ov.key), DictConfig):
            ov.old = node[ov.key].get("name", ov.old)
            out[ov.key] = group_node(ov.key, ov.value)
        else:
            dotted.append(str(ov))
    if dotted:
        try:
            merged = OmegaConf.merge(out, OmegaConf.from_dotlist(dotted))
        except Exception as exc:
            raise BadInput(f"overrides {' '.join(dotted)} do not apply: {exc}") from None
        assert isinstance(merged, DictConfig)
        out = merged
    return out
