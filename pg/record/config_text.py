"""A config's YAML, rendered by the process that writes it to the store.

Every run stores its config, its overrides and Hydra's own config as YAML (the snapshot
``pg.reproduce`` reads back). ``OmegaConf.to_yaml`` is mostly PyYAML's pure-Python
emitter: ~9 ms for a sweep trial's three files, a third of composing the trial, paid in
the sweep's own loop for files that only the record process writes, and that an
untracked run never writes at all. The training process now keeps the config as the plain
containers ``OmegaConf.to_yaml`` would dump (~1.5 ms); the record process renders them
with the same dumper and the same options, so the files are the same text
(``tests/test_config_text.py`` compares them with ``OmegaConf.to_yaml``), and hides
their secrets as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ConfigText:
    """``OmegaConf.to_yaml(cfg, resolve=...)``, taken apart: the containers now, the text
    when it is written."""

    tree: Any  # OmegaConf.to_container(cfg, resolve=..., enum_to_str=True): plain, picklable

    @classmethod
    def of(cls, cfg: Any, resolve: bool = False) -> ConfigText:
        """The config's containers, its interpolations resolved here if ``resolve`` (where
        Hydra's resolvers know this run)."""
        from omegaconf import OmegaConf

        return cls(OmegaConf.to_container(cfg, resolve=resolve, enum_to_str=True))

    def render(self) -> str:
        """The text ``OmegaConf.to_yaml`` gives: its dumper (which quotes strings that
        would read back as another type), its options."""
        import yaml
        from omegaconf._utils import get_omega_conf_dumper

        text: str = yaml.dump(
            self.tree,
            default_flow_style=False,
            allow_unicode=True,
            sort_keys=False,
            Dumper=get_omega_conf_dumper(),
        )
        return text


FileContent = str | bytes | ConfigText


def written(content: FileContent) -> str | bytes:
    """What a file of a run holds: a config rendered, with its secrets hidden."""
    if isinstance(content, ConfigText):
        from pg.record.store import redact

        return redact(content.render())
    return content


def written_files(files: Mapping[str, FileContent]) -> dict[str, str | bytes]:
    return {path: written(content) for path, content in files.items()}
