"""A config's YAML rendered by the record process is the text ``OmegaConf.to_yaml`` gives."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf
from omegaconf._utils import get_omega_conf_dumper

from pg.core.config import register_configs
from pg.experiment import Snapshot
from pg.record import names
from pg.record.config_text import ConfigText, c_dumper, plain, written, written_files
from pg.record.store import redact
from pg.sweep.compose import compose_trial, with_seed
from tests.conftest import ROOT


@pytest.fixture(scope="module", autouse=True)
def hydra_conf() -> Iterator[None]:
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        yield


class Color(enum.Enum):
    RED = 1


@dataclass
class Odd:
    """Values the dumper must quote, or that read back as another type if it did not."""

    words: list[str] = field(
        default_factory=lambda: ["true", "no", "1", "3.5", "null", "~", "", " x", "a: b", "#c"]
    )
    unicode: str = "Δt → 0, é"
    lines: str = "first\nsecond\n"
    nothing: str | None = None
    empty: dict[str, int] = field(default_factory=dict)
    color: Color = Color.RED
    numbers: list[float] = field(default_factory=lambda: [1e-5, 0.1, 1e21, float("inf")])
    escaped: str = "\\${not.an.interpolation}"
    ref: str = "${unicode}"


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["algo=pg", "seed=5"],
        ["+experiment=acrobot"],
        ["env=lunarlander", "model.hidden=[64,64]"],
    ],
    ids=["default", "pg", "acrobot", "lunarlander"],
)
def test_composed_configs_and_hydras_own_render_as_to_yaml(overrides: list[str]) -> None:
    full = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    hydra = full.hydra  # unresolved: its interpolations need a running job
    assert ConfigText.of(hydra).render() == OmegaConf.to_yaml(hydra)
    cfg = OmegaConf.masked_copy(full, [str(k) for k in full if k != "hydra"])
    for resolve in (False, True):
        assert ConfigText.of(cfg, resolve=resolve).render() == OmegaConf.to_yaml(
            cfg, resolve=resolve
        )
    # pg's own configs and Hydra's (its help texts have line breaks) take libyaml's emitter.
    assert plain(ConfigText.of(hydra).tree) and plain(ConfigText.of(cfg).tree)


def pure_python(tree: object) -> str:
    """``OmegaConf.to_yaml``'s text for ``tree``: its dumper on PyYAML's own emitter."""
    text: str = yaml.dump(
        tree,
        default_flow_style=False,
        allow_unicode=True,
        sort_keys=False,
        Dumper=get_omega_conf_dumper(),
    )
    return text


PRINTABLE = st.characters(min_codepoint=32, max_codepoint=126)
KEYS = st.text(alphabet=PRINTABLE, min_size=1, max_size=30)
TEXT = st.text(alphabet=st.one_of(PRINTABLE, st.sampled_from("\n\t  ")), max_size=150)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
TREES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=30,
)


# The same 600 trees on every run (30,000 others were compared when the emitter was chosen).
@settings(max_examples=600, deadline=None, derandomize=True)
@given(st.dictionaries(KEYS, TREES, min_size=1, max_size=6))
def test_libyamls_emitter_writes_printable_trees_as_pyyamls(tree: dict[str, object]) -> None:
    assert c_dumper() is not None  # PyYAML's wheels carry libyaml
    assert plain(tree)
    assert ConfigText(tree).render() == pure_python(tree)


@pytest.mark.parametrize(
    "tree",
    [
        {"thumbs": "\U0001f44d"},  # libyaml escapes characters beyond the BMP
        {"key\nwith a break": 1},  # and writes keys with line breaks otherwise
        {"": None},  # and the empty key
        {"bell": "\x07", "nel": "\x85"},  # and control characters
        {1: "an int key"},
        {"raw": b"\x00"},
    ],
    ids=["beyond-bmp", "key-break", "empty-key", "control", "int-key", "bytes"],
)
def test_trees_libyaml_writes_otherwise_keep_pyyamls_emitter(tree: dict[object, object]) -> None:
    assert not plain(tree)
    assert ConfigText(tree).render() == pure_python(tree)


def test_without_libyaml_every_tree_takes_pyyamls_emitter(monkeypatch: pytest.MonkeyPatch) -> None:
    c_dumper.cache_clear()
    monkeypatch.delattr(yaml, "CDumper")
    try:
        assert c_dumper() is None
        tree = {"a": [1, "b: c", None], "d": {"e": "true"}}
        assert ConfigText(tree).render() == pure_python(tree)
    finally:
        c_dumper.cache_clear()


def test_values_that_need_quoting_render_as_to_yaml() -> None:
    odd = OmegaConf.structured(Odd)
    for resolve in (False, True):
        assert ConfigText.of(odd, resolve=resolve).render() == OmegaConf.to_yaml(
            odd, resolve=resolve
        )
    text = ConfigText.of(odd, resolve=True).render()
    assert "'true'" in text and "RED" in text and "Δt" in text  # quoted, by name, not escaped


def test_a_trials_snapshot_is_written_as_before() -> None:
    """The files a sweep trial and its seeds record: what the eager to_yaml wrote."""
    overrides = ["algo=reinforce", "algo.lr=0.01", "algo.gamma=0.99", "algo.batch_size=4"]
    trial = compose_trial("config", overrides, varying=3)
    hydra = compose(config_name="config", overrides=overrides, return_hydra_config=True).hydra
    for composed in (trial, with_seed(trial, 7)):
        raw = composed.raw
        files = composed.snapshot.files()
        assert all(isinstance(f, ConfigText) for f in files.values())  # nothing rendered yet
        old = {
            names.SNAPSHOT_CONFIG: OmegaConf.to_yaml(raw, resolve=True),
            names.SNAPSHOT_OVERRIDES: OmegaConf.to_yaml(
                OmegaConf.create(
                    {
                        "overrides": composed.snapshot.overrides,
                        "choices": composed.snapshot.choices,
                    }
                )
            ),
            names.SNAPSHOT_HYDRA: OmegaConf.to_yaml(hydra),
        }
        assert written_files(files) == {k: redact(v) for k, v in old.items()}
    assert "seed: 7" in str(written(with_seed(trial, 7).snapshot.files()[names.SNAPSHOT_CONFIG]))


def test_text_read_from_a_store_is_kept_as_it_is() -> None:
    snap = Snapshot("seed: 1\n", ["seed=1"], "hydra: {}\n", {"env": "cartpole"})
    files = snap.files()
    assert files[names.SNAPSHOT_CONFIG] == "seed: 1\n"
    assert files[names.SNAPSHOT_HYDRA] == "hydra: {}\n"
    assert written(files[names.SNAPSHOT_OVERRIDES]) == (
        "overrides:\n- seed=1\nchoices:\n  env: cartpole\n"
    )
    assert written(b"\x00bytes") == b"\x00bytes"
    assert isinstance(OmegaConf.create(str(written(files[names.SNAPSHOT_OVERRIDES]))), DictConfig)
