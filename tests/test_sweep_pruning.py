"""The pruners and samplers beyond median/TPE, run as a user would: ``python -m pg.run -m``.

Capping CartPole's episodes at 10 steps makes a configuration clearly worse (its returns
are at most 10, an uncapped random policy's ~20): the random sampler with seed 9 draws
``env.max_episode_steps`` 500, 500, then 10, so trial 2 is the bad one.
"""

from __future__ import annotations

import pytest

from tests.conftest import Store
from tests.test_sweep import assert_agree, objective, ok, runs_of, study, sweep

CAPPED = [
    "hydra.sweeper.sampler.name=random",
    "hydra.sweeper.sampler.seed=9",
    "env.max_episode_steps=500,10",
]


def test_wilcoxon_stops_a_clearly_worse_trial_between_its_seeds(store: Store) -> None:
    out = ok(
        sweep(
            store,
            "hydra.sweeper.n_trials=3",
            "hydra.sweeper.seeds=3",
            "hydra.sweeper.pruner.name=wilcoxon",
            "+hydra.sweeper.pruner.p_threshold=0.3",
            *CAPPED,
        )
    )
    assert "seeds 0,1,2 per trial (one after another); pruner wilcoxon(p_threshold=0.3)" in out
    assert "pg: note:" not in out  # 2 seeds of 3 can reach p = 1/4 < 0.3
    st = study(store)
    trials = st.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    bad = trials[2]
    assert bad.params["env.max_episode_steps"] == 10
    seed_runs = runs_of(store, "seed")
    mine = {
        int(r.data.tags["pg.seed_index"]): r
        for r in seed_runs
        if r.data.tags["pg.trial_number"] == str(bad.number)
    }
    assert sorted(mine) == [0, 1]  # stopped before its third seed: no run for it
    # Each seed reported its final objective at step = its index; nothing else.
    assert bad.intermediate_values == pytest.approx(
        {i: objective(store, r.info.run_id) for i, r in mine.items()}
    )
    assert bad.user_attrs["seed_values"] == pytest.approx(
        [bad.intermediate_values[0], bad.intermediate_values[1]]
    )
    best = st.best_trial
    assert sorted(best.intermediate_values) == [0, 1, 2]
    assert best.value == pytest.approx(sum(best.intermediate_values.values()) / 3)
    # The one-sided signed-rank test on 2 seeds both worse than the best: p = 1/4 < 0.3.
    assert all(bad.intermediate_values[i] < best.intermediate_values[i] for i in (0, 1))
    assert "after seed 2 of 3" in bad.system_attrs["pg.reason"]
    # Optuna's value of a pruned trial is its last report: the second seed's objective.
    assert bad.value == pytest.approx(bad.intermediate_values[1])
    assert all(r.data.tags["pg.trial_state"] == "PRUNED" for r in mine.values())
    assert_agree(store, st)


def test_threshold_prunes_a_trial_below_its_bound(store: Store) -> None:
    out = ok(
        sweep(
            store,
            "hydra.sweeper.n_trials=3",
            "hydra.sweeper.pruner.name=threshold",
            "+hydra.sweeper.pruner.lower=12",
            "hydra.sweeper.pruner.n_warmup_steps=0",
            *CAPPED,
        )
    )
    # the sweep file's median option n_startup_trials stays behind; n_warmup_steps goes
    assert "pruner threshold(lower=12, n_warmup_steps=0)" in out
    trials = study(store).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    bad = trials[2]
    assert bad.params["env.max_episode_steps"] == 10
    assert list(bad.intermediate_values) == [500]  # the first report point
    assert bad.intermediate_values[500] <= 10 < 12
    assert bad.user_attrs["env_steps"] < 1000
    assert "ThresholdPruner" in bad.system_attrs["pg.reason"]
    for good in trials[:2]:
        assert min(good.intermediate_values.values()) >= 12
    assert_agree(store, study(store))


def test_gp_sampler_and_successive_halving_run_a_sweep(store: Store) -> None:
    out = ok(
        sweep(
            store,
            "hydra.sweeper.n_trials=3",
            "hydra.sweeper.sampler.name=gp",
            "+hydra.sweeper.sampler.n_startup_trials=1",
            "+hydra.sweeper.sampler.deterministic_objective=false",
            "hydra.sweeper.pruner.name=successive_halving",
            "+hydra.sweeper.pruner.min_resource=500",
        )
    )
    first = out.splitlines()[0]
    assert "gp(seed=0, n_startup_trials=1, deterministic_objective=False) over" in first
    assert "pruner successive_halving(min_resource=500)" in first
    st = study(store)
    trials = st.get_trials()
    assert len(trials) == 3
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 3
    assert_agree(store, st)
