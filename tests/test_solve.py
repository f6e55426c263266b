"""The acceptance bar: the default config solves CartPole-v1 (mean-100 >= 475).

Five seeds per algorithm take about 15 s here, so these run in the default suite.
"""

from __future__ import annotations

from hydra import compose, initialize_config_dir

from pg.core.config import Config, register_configs, to_config
from pg.core.train import train
from tests.conftest import ROOT

SEEDS = range(5)


def default_config(*overrides: str) -> Config:
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["train.progress=false", *overrides])
    return to_config(cfg)


def solve_all(*overrides: str) -> list[tuple[int, bool, int, float]]:
    rows = []
    for seed in SEEDS:
        cfg = default_config(f"seed={seed}", *overrides)
        assert cfg.train.max_steps <= 300_000 and cfg.train.target_return == 475.0
        r = train(cfg)
        rows.append((seed, r.solved, r.steps, r.seconds))
        print(f"seed {seed}: solved={r.solved} steps={r.steps} seconds={r.seconds:.2f}")
    return rows


def test_default_config_solves_cartpole_for_four_of_five_seeds() -> None:
    rows = solve_all()
    assert sum(solved for _, solved, _, _ in rows) >= 4, rows


def test_pg_solves_cartpole() -> None:
    rows = solve_all("algo=pg")
    assert sum(solved for _, solved, _, _ in rows) >= 4, rows
