"""A config's YAML, rendered by the process that writes it to the store.

Every run stores its config, its overrides and Hydra's own config as YAML (the snapshot
``pg.reproduce`` reads back). ``OmegaConf.to_yaml`` is mostly PyYAML's pure-Python
emitter: ~9 ms for a sweep trial's three files, a third of composing the trial, paid in
the sweep's own loop for files that only the record process writes, and that an
untracked run never writes at all. The training process now keeps the config as the plain
containers ``OmegaConf.to_yaml`` would dump (~1.5 ms); the record process renders them
with the same representer and the same options (on libyaml's emitter where that writes
the same text, below), so the files are the same text
(``tests/test_config_text.py`` compares them with ``OmegaConf.to_yaml``), and hides
their secrets as before.
"""

from __future__ import annotations

import functools
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

        dumper = c_dumper() if plain(self.tree) else None
        text: str = yaml.dump(
            self.tree,
            default_flow_style=False,
            allow_unicode=True,
            sort_keys=False,
            Dumper=dumper or get_omega_conf_dumper(),
        )
        return text


# OmegaConf's dumper runs PyYAML's pure-Python emitter: ~5 ms of the record process's
# CPU for a run's three files (~0.35 s a default sweep). libyaml's emitter, fed the same
# events by the same representer, writes the same text several times faster for trees
# of printable ASCII: keys without line breaks, values with line breaks and tabs (no
# difference in 30,000 random trees; tests/test_config_text.py compares 600 more). It
# escapes characters beyond the BMP and writes other control characters, line breaks in
# keys and empty keys differently, so any other tree keeps OmegaConf's dumper.
_KEY = frozenset(map(chr, range(32, 127)))
_TEXT = _KEY | {"\n", "\t"}


def plain(tree: Any) -> bool:
    """Whether ``tree`` holds only what libyaml's emitter writes as PyYAML's does."""
    if isinstance(tree, dict):
        return all(
            type(k) is str and k != "" and _KEY.issuperset(k) and plain(v) for k, v in tree.items()
        )
    if isinstance(tree, list):
        return all(plain(v) for v in tree)
    if type(tree) is str:
        return _TEXT.issuperset(tree)
    return tree is None or type(tree) in (bool, int, float)


@functools.cache
def c_dumper() -> Any:
    """OmegaConf's dumper with libyaml's emitter; None without libyaml."""
    import yaml
    from omegaconf._utils import OmegaConfDumper

    base = getattr(yaml, "CDumper", None)
    if base is None:
        return None
    dumper: Any = type("OmegaConfCDumper", (base,), {})
    dumper.add_representer(str, OmegaConfDumper.str_representer)
    return dumper


FileContent = str | bytes | ConfigText


def written(content: FileContent) -> str | bytes:
    """What a file of a run holds: a config rendered, with its secrets hidden."""
    if isinstance(content, ConfigText):
        from pg.record.store import redact

        return redact(content.render())
    return content


def written_files(files: Mapping[str, FileContent]) -> dict[str, str | bytes]:
    return {path: written(content) for path, content in files.items()}
