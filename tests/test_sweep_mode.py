"""Grid or search, and seeds that are never searched: the rule and the grid's bookkeeping.

In-process and fast; ``tests/test_multirun.py`` runs the same through the real CLI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pg.sweep.mode import decide, resolve
from pg.sweep.spec import SweepError, SweepSpec, plan

FILE = SweepSpec(
    study_name="cartpole_reinforce",
    params={"algo.lr": "tag(log, interval(1e-4, 1e-1))", "algo.gamma": "interval(0.9, 0.999)"},
    fixed={"train.max_steps": 300000},
)


@pytest.mark.parametrize(
    ("arguments", "cli_hydra", "mode"),
    [
        (["seed=0,1,2"], [], "grid"),
        (["algo=reinforce,pg", "seed=0,1", "train.max_steps=5000"], [], "grid"),
        (["algo.lr=choice(0.1,0.01)"], [], "grid"),
        (["seed=range(0,3)"], [], "grid"),  # a seed range is a list of seeds, not a search
        ([], [], "search"),  # plain -m: the default search
        (["train.max_steps=5000", "seed=4"], [], "search"),
        (["algo.lr=interval(0.001,0.1)", "seed=0,1"], [], "search"),
        (["algo.batch_size=range(1,9)"], [], "search"),
        (["algo.lr=tag(log,choice(0.1,0.01))"], [], "search"),
        (["sweep=cartpole_reinforce", "seed=0,1"], [], "search"),
        (["algo.lr=0.1,0.01"], ["hydra.sweeper.sampler.name=random"], "search"),
        (["algo.lr=0.1,0.01"], ["hydra.sweeper.params.algo.gamma=interval(0.9,1)"], "search"),
        (["algo.lr=0.1,0.01"], ["hydra.sweeper.n_trials=5"], "grid"),
    ],
)
def test_the_rule(arguments: list[str], cli_hydra: list[str], mode: str) -> None:
    assert decide(FILE, arguments, cli_hydra) == mode


def test_mode_and_sampler_settings_force_the_mode() -> None:
    lists = ["algo.lr=0.1,0.01"]
    assert decide(SweepSpec(mode="search"), lists, []) == "search"
    assert decide(SweepSpec(mode="grid"), ["sweep=x", "algo.lr=0.1,0.2"], []) == "grid"
    assert decide(SweepSpec(sampler={"name": "grid"}), [], []) == "grid"


def test_an_automatic_grid_runs_the_default_config_in_a_study_of_its_own() -> None:
    args = ["algo=reinforce,pg", "seed=0,1", "train.max_steps=5000"]
    spec = resolve(FILE, args, [])
    assert spec.mode == "grid" and spec.sampler == {"name": "grid"}
    assert spec.params == {} and spec.fixed == {}  # the file's search and budget: not used
    assert spec.pruner == {"name": "none"}  # every combination runs to the end
    assert spec.study_name.startswith("grid-algo-seed-")  # keys sorted: order is not identity
    assert resolve(FILE, list(reversed(args)), []).study_name == spec.study_name
    other = resolve(FILE, [*args[:2], "train.max_steps=6000"], [])
    assert other.study_name != spec.study_name
    named = resolve(
        SweepSpec(study_name="mine"), args, ["hydra.sweeper.study_name=mine"]
    ).study_name
    assert named == "mine"
    p = plan(spec, args)
    assert p.mode == "grid" and p.n_combinations == 4
    assert p.grid == {"algo": ["reinforce", "pg"], "seed": [0, 1]}
    assert "train.max_steps=5000" in p.base_overrides
    assert not any(o.startswith("train.max_steps=300000") for o in p.base_overrides)


def test_a_search_never_samples_the_seed() -> None:
    p = plan(resolve(FILE, ["seed=0,1", "sweep=cartpole_reinforce"], []), ["seed=0,1"])
    assert p.mode == "search"
    assert set(p.space) == {"algo.lr", "algo.gamma"}
    assert p.seeds == [0, 1] and p.seed_list(7) == [0, 1]
    assert plan(FILE, ["seed=range(3,6)"]).seeds == [3, 4, 5]
    one = plan(FILE, ["seed=choice(5)"])
    assert one.seeds is None and "seed=5" in one.base_overrides
    assert plan(SweepSpec(params=FILE.params, seeds=2), ["seed=3"]).seed_list(3) == [3, 4]


@pytest.mark.parametrize(
    ("spec", "arguments", "message"),
    [
        (FILE, ["seed=interval(0,3)"], "seeds are not searched"),
        (FILE, ["seed=a,b"], "seeds are not searched"),
        (SweepSpec(params=FILE.params, seeds=2), ["seed=0,1"], "not both"),
        (SweepSpec(mode="grid"), ["algo.lr=interval(0.1,1)"], "a grid needs a finite list"),
        (SweepSpec(mode="grid", seeds=2), ["seed=0,1"], "use one of them"),
        (SweepSpec(mode="sideways"), ["seed=0,1"], "mode='sideways' must be one of"),
    ],
)
def test_bad_seed_and_grid_input_is_named(
    spec: SweepSpec, arguments: list[str], message: str
) -> None:
    from pg.sweep.spec import _check_spec

    with pytest.raises(SweepError, match=message):
        _check_spec(spec)
        plan(spec, arguments)


def test_a_grid_study_reruns_only_combinations_cut_short(tmp_path: Path) -> None:
    """Trial n is combination n; a killed trial's combination is queued once more."""
    import optuna
    from optuna.trial import TrialState

    from pg.record.names import ATTR_REASON
    from pg.sweep.asking import BudgetLock, reserve
    from pg.sweep.factories import make_sampler
    from pg.sweep.retries import budget, retry_cut_short
    from pg.sweep.study import open_storage

    url = f"sqlite:///{tmp_path / 'g.db'}"
    spec = SweepSpec(mode="grid", sampler={"name": "grid"}, study_name="g", n_trials=3)
    p = plan(spec, ["seed=0,1,2"])
    storage = open_storage(url, spec)
    study = optuna.create_study(
        study_name="g", storage=storage, sampler=make_sampler(spec, 5, p.grid)
    )
    lock = BudgetLock(url, "g")

    first = reserve(study, lock, spec, p.space)
    assert first is not None
    study.tell(first, 1.0)
    killed = reserve(study, lock, spec, p.space)
    assert killed is not None
    storage.set_trial_system_attr(killed._trial_id, ATTR_REASON, "orphaned: process gone")
    study.tell(killed, state=TrialState.FAIL)
    broken = reserve(study, lock, spec, p.space)
    assert broken is not None
    storage.set_trial_system_attr(broken._trial_id, ATTR_REASON, "RuntimeError: NaN")
    study.tell(broken, state=TrialState.FAIL)
    assert reserve(study, lock, spec, p.space) is None  # 3 combinations, 3 trials

    assert [r.of for r in retry_cut_short(study, lock, spec)] == [killed.number]
    assert retry_cut_short(study, lock, spec) == []  # queued once, however often it resumes
    assert budget(study, spec) == 4
    again = reserve(study, lock, spec, p.space)
    assert again is not None and again.params == killed.params
    assert again.user_attrs["pg.retry_of"] == killed.number
    study.tell(again, 2.0)
    assert reserve(study, lock, spec, p.space) is None
    done = [
        t for t in study.get_trials() if t.state != TrialState.FAIL or "NaN" in str(t.system_attrs)
    ]
    assert sorted(t.params["seed"] for t in done) == [0, 1, 2]  # each exactly once


def test_a_study_stays_a_grid_or_a_search(tmp_path: Path) -> None:
    import optuna

    from pg.sweep.asking import claim_mode

    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    claim_mode(study, "grid", {"seed": [0, 1]})
    claim_mode(study, "grid", {"seed": [0, 1]})
    with pytest.raises(SweepError, match="is a grid, this sweep is a search"):
        claim_mode(study, "search", None)
    with pytest.raises(SweepError, match="is a grid over"):
        claim_mode(study, "grid", {"seed": [0, 1, 2]})
    old = optuna.create_study(study_name="old", storage=f"sqlite:///{tmp_path / 's.db'}")
    old.tell(old.ask(), 1.0)  # a study from pg 0.1: no mode recorded, so a search
    with pytest.raises(SweepError, match="is a search"):
        claim_mode(old, "grid", {"seed": [0]})
