"""Sweep building blocks in-process: grammar -> distributions, orphan detection."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from pg.sweep.spec import SweepError, SweepSpec, build_spec, plan


def space_of(*args: str, **params: str) -> dict[str, object]:
    return dict(plan(SweepSpec(params=dict(params)), list(args)).space)


def test_grammar_becomes_distributions() -> None:
    space = space_of(
        "algo.batch_size=1,2,4",
        lr="tag(log, interval(1e-4, 1e-1))",
        gamma="interval(0.9, 0.999)",
        hidden="range(16, 65, 16)",
        envs="tag(int, interval(1, 8))",
        algo="choice(reinforce, pg)",
    )
    assert space["lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert space["gamma"] == FloatDistribution(0.9, 0.999)
    assert space["hidden"] == IntDistribution(16, 64, step=16)  # Hydra's end is exclusive
    assert space["envs"] == IntDistribution(1, 8)
    assert space["algo"] == CategoricalDistribution(["reinforce", "pg"])
    assert space["algo.batch_size"] == CategoricalDistribution([1, 2, 4])


def test_command_line_replaces_or_fixes_file_entries() -> None:
    p = plan(
        SweepSpec(params={"algo.lr": "interval(0.001, 0.1)", "algo.gamma": "interval(0.9, 1)"}),
        ["algo.lr=0.01,0.02", "algo.gamma=0.95", "seed=3"],
    )
    assert p.space == {"algo.lr": CategoricalDistribution([0.01, 0.02])}
    assert p.base_overrides[-2:] == ["algo.gamma=0.95", "seed=3"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"n_trails": 3}, "unknown key"),
        ({"sampler": {"name": "annealing"}}, "unknown sampler"),
        ({"pruner": "patient"}, "unknown pruner"),
        ({"n_trials": None, "timeout": None}, "needs an end"),
        ({"seeds": 0}, "seeds"),
        ({"direction": "up"}, "direction"),
    ],
)
def test_bad_settings_are_named(settings: dict[str, object], message: str) -> None:
    with pytest.raises(SweepError, match=message):
        build_spec(settings)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "search space is empty"),
        ({"algo.lr": "interval(0.1"}, "not valid override grammar"),
        ({"algo.lr": "tag(log, interval(0, 1))"}, "lower end > 0"),
        ({"algo.lr": "interval(1, 1)"}, "empty"),
    ],
)
def test_bad_spaces_are_named(params: dict[str, str], message: str) -> None:
    with pytest.raises(SweepError, match=message):
        plan(SweepSpec(params=params), [])


def test_orphans_by_dead_pid_here_and_by_heartbeat_elsewhere(tmp_path: Path) -> None:
    import optuna

    from pg.record.names import ATTR_OWNER as OWNER
    from pg.sweep.orphans import fail_orphans
    from pg.sweep.study import open_storage

    spec = SweepSpec(heartbeat_interval=1, grace_period=2)
    storage = open_storage(f"sqlite:///{tmp_path / 'o.db'}", spec)
    study = optuna.create_study(study_name="s", storage=storage)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], text=True, capture_output=True
    ).stdout.strip()
    here_dead, elsewhere, alive = study.ask(), study.ask(), study.ask()
    storage.set_trial_system_attr(here_dead._trial_id, OWNER, f"{socket.gethostname()}:{dead}")
    storage.set_trial_system_attr(elsewhere._trial_id, OWNER, "other-machine:1")
    storage.set_trial_system_attr(alive._trial_id, OWNER, f"{socket.gethostname()}:{os.getpid()}")
    storage.record_heartbeat(elsewhere._trial_id)
    storage.record_heartbeat(alive._trial_id)

    assert [o.number for o in fail_orphans(study, spec)] == [here_dead.number]
    time.sleep(3.5)  # past the grace period without a heartbeat from the other machine
    storage.record_heartbeat(alive._trial_id)
    orphans = fail_orphans(study, spec)
    assert [o.number for o in orphans] == [elsewhere.number]
    assert "no heartbeat" in orphans[0].reason
    states = [t.state.name for t in study.get_trials()]
    assert states == ["FAIL", "FAIL", "RUNNING"]


def test_sweep_file_nulls_and_booleans_become_hydra_values() -> None:
    from pg.sweep.space import entry_line

    assert entry_line("train.target_return", None) == "train.target_return=null"
    assert entry_line("train.progress", False) == "train.progress=false"
    assert entry_line("algo.batch_size", [2, 4]) == "algo.batch_size=2,4"


@pytest.mark.parametrize(
    "values",
    [
        ["algo.lr=0.001", "algo.gamma=0.95", "algo.batch_size=4"],
        ["algo.lr=0.02125077402124213", "algo.gamma=0.979684294084676", "algo.batch_size=16"],
        ["env.max_episode_steps=10", "algo.clip_grad=0.5", "train.target_return=null"],
        ["train.max_steps=1234", "model.hidden=[32,32]"],
        ["algo=pg", "algo.lr=0.01"],  # a config group: composed by Hydra itself
    ],
)
def test_trial_config_set_by_value_is_hydras_own_compose(values: list[str]) -> None:
    """A trial's sampled values set on a copy of the config composed once give exactly
    what Hydra's compose gives: the config, its YAML snapshot and Hydra's own node."""
    from hydra.core.global_hydra import GlobalHydra

    from pg.sweep.compose import compose_trial, ensure_hydra
    from pg.sweep.spec import QUIET

    GlobalHydra.instance().clear()
    ensure_hydra(str(Path(__file__).resolve().parent.parent / "conf"))
    try:
        fixed = [*QUIET, "train.max_steps=300000", "train.report_every=10000", "seed=3"]
        for _ in range(2):  # the second time from the cached composition
            fast = compose_trial("config", [*fixed, *values], len(values))
            hydra = compose_trial("config", [*fixed, *values])
            assert fast.snapshot == hydra.snapshot
            assert fast.config == hydra.config
    finally:
        GlobalHydra.instance().clear()
