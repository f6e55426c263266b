"""Every preset composes, trains a few thousand steps and records, through the real CLI.

Whether a preset *reaches* its env's target is a benchmark (``benchmarks/bench_presets.py``,
minutes per env), not a test.  What is tested here is everything a preset promises short
of that: the env picks an algorithm that can learn it, the tuned hyper-parameters and
budget of ``conf/tuned/`` reach the run, a command-line choice still wins over them, and
the sweeps that found them are valid and run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from pg.core import metrics as m
from tests.conftest import FAST, ROOT, Store, run_module

TUNED = ROOT / "conf" / "tuned"


@dataclass(frozen=True)
class Preset:
    args: tuple[str, ...]
    env_id: str
    algo: str
    steps: int  # enough for some episodes to end
    tuned: str | None  # conf/tuned/<name>.yaml the run must carry, if any


# env=acrobot and env=lunarlander compose to the same configs as these overlays (checked
# below without training), so training them again would test nothing new.
PRESETS = {
    "defaults": Preset((), "CartPole-v1", "reinforce", 3000, None),
    # Random Acrobot episodes run into the 500-step limit: 8 envs x 500 = 4000 steps.
    "+experiment=acrobot": Preset(("+experiment=acrobot",), "Acrobot-v1", "pg", 5000, "pg_acrobot"),
    "+experiment=lunarlander": Preset(
        ("+experiment=lunarlander",), "LunarLander-v3", "pg", 3000, "pg_lunarlander"
    ),
    # A Pong episode is thousands of frames; capping it at 400 (100 agent steps with the
    # frame skip of 4) lets episodes end, and keeps the end-of-run evaluation short.
    "+experiment=pong": Preset(
        ("+experiment=pong", "env.max_episode_steps=400"), "PongNoFrameskip-v4", "pg", 1000, None
    ),
}


def tuned_values(name: str) -> dict[str, Any]:
    """The preset file's keys, flattened (``algo.lr``), as the schema spells them."""
    doc = yaml.safe_load((TUNED / f"{name}.yaml").read_text())
    return {f"{section}.{key}": value for section in doc for key, value in doc[section].items()}


def same(param: str, value: Any) -> bool:
    """An MLflow param (a string) holds ``value``; ``512`` and ``512.0`` count as equal."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(param) == float(value)
    return param == str(value)


def composed(store: Store, *args: str) -> dict[str, Any]:
    """The config ``pg.run ARGS`` would train, as the CLI itself prints it."""
    done = run_module("pg.run", [*args, "--cfg", "job"], store, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    cfg = yaml.safe_load(done.stdout)
    assert isinstance(cfg, dict)
    return cfg


def select(cfg: dict[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_trains_a_few_thousand_steps_and_records(store: Store, name: str) -> None:
    preset = PRESETS[name]
    args = [*preset.args, *FAST, f"train.max_steps={preset.steps}", "train.progress=false"]
    done = run_module("pg.run", args, store)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"pg: {preset.env_id} {preset.algo} seed 0:" in done.stdout

    [run] = store.runs()
    assert run.info.status == "FINISHED"
    assert run.data.tags["pg.env"] == preset.env_id
    assert run.data.tags["pg.algo"] == preset.algo
    assert int(run.data.tags["pg.steps"]) >= preset.steps
    params = run.data.params
    if preset.tuned is not None:
        for key, value in tuned_values(preset.tuned).items():
            if key.startswith("algo."):  # the budget was overridden for the smoke test
                assert same(params[key], value), key
    client = store.client()
    assert client.get_metric_history(run.info.run_id, m.LOSS_POLICY), "no update happened"
    assert client.get_metric_history(run.info.run_id, m.EP_RETURN), "no episode ended"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert "model/policy.pt" in artifacts


@pytest.mark.parametrize(
    ("args", "env_id", "tuned"),
    [
        (("env=acrobot",), "Acrobot-v1", "pg_acrobot"),
        (("+experiment=acrobot",), "Acrobot-v1", "pg_acrobot"),
        (("env=lunarlander",), "LunarLander-v3", "pg_lunarlander"),
        (("+experiment=lunarlander",), "LunarLander-v3", "pg_lunarlander"),
    ],
)
def test_env_or_overlay_alone_gets_the_tuned_algorithm_and_budget(
    store: Store, args: tuple[str, ...], env_id: str, tuned: str
) -> None:
    cfg = composed(store, *args)
    assert cfg["env"]["id"] == env_id
    assert cfg["algo"]["name"] == "pg"
    for key, value in tuned_values(tuned).items():
        assert select(cfg, key) == value, key


def test_command_line_algorithm_wins_over_the_env_choice(store: Store) -> None:
    """``env=acrobot algo=reinforce`` is plain REINFORCE: no pg values, default budget."""
    plain = composed(store, "algo=reinforce")
    cfg = composed(store, "env=acrobot", "algo=reinforce")
    assert cfg["env"]["id"] == "Acrobot-v1"
    assert cfg["algo"] == plain["algo"]
    assert cfg["train"]["max_steps"] == plain["train"]["max_steps"]


def test_command_line_values_win_over_the_tuned_ones(store: Store) -> None:
    cfg = composed(store, "+experiment=lunarlander", "algo.lr=0.0123", "train.max_steps=777")
    assert cfg["algo"]["lr"] == 0.0123
    assert cfg["train"]["max_steps"] == 777


# A trial with no finished episode has a NaN objective and fails: Acrobot needs 5 000.
@pytest.mark.parametrize(
    ("sweep", "env_id", "steps"),
    [("acrobot_pg", "Acrobot-v1", 5000), ("lunarlander_pg", "LunarLander-v3", 3000)],
)
def test_sweep_that_found_a_preset_runs(store: Store, sweep: str, env_id: str, steps: int) -> None:
    """One short trial: the sweep file is valid and its trials train the right env."""
    args = [
        "-m",
        f"sweep={sweep}",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.seeds=1",
        *FAST,
        f"train.max_steps={steps}",
        "train.progress=false",
    ]
    done = run_module("pg.run", args, store)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trial   0 COMPLETE" in done.stdout
    trials = [r for r in store.runs() if r.data.tags.get("pg.kind") == "trial"]
    assert [t.data.tags["pg.study"] for t in trials] == [sweep]
    assert trials[0].data.tags["pg.algo"] == "pg"
    assert trials[0].data.tags["pg.env"] == env_id
