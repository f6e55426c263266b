"""A run's params are its resolved config flattened: the values read from the dataclasses
are those OmegaConf's container of them gives (the form the first stores were written in)."""

from __future__ import annotations

from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pg.core.config import register_configs, to_config
from pg.experiment import config_params
from pg.record.provenance import flatten
from tests.conftest import ROOT


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["algo=pg", "env=acrobot", "algo.reward_steps=4", "algo.baseline_window=50"],
        ["env=lunarlander", "model.hidden=[64,32]", "train.target_return=null"],
        ["+experiment=pong", "tracking=server", "tracking.uri=http://u:secret@h:5000"],
    ],
)
def test_params_match_omegaconf_container(overrides: list[str]) -> None:
    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = to_config(compose("config", overrides=overrides))
    tree: Any = OmegaConf.to_container(OmegaConf.structured(cfg))
    params = config_params(cfg)
    assert params == flatten(tree)
    assert params["seed"] == "0" and "algo.lr" in params
