"""Trial ``n`` draws the same random configuration whatever the number of workers.

The oracle is Optuna's own sampler asked by one process, one trial after another: what a
sweep on one worker drew before :mod:`pg.sweep.draws` existed, and still draws.
"""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from pg.sweep.factories import make_sampler
from pg.sweep.spec import SweepSpec
from pg.sweep.worker import SEED_STRIDE
from tests.conftest import Store
from tests.test_sweep import ok, study, sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE: dict[str, Any] = {  # the default sweep's space, in its order
    "algo.lr": FloatDistribution(1e-4, 1e-1, log=True),
    "algo.gamma": FloatDistribution(0.9, 0.999),
    "algo.batch_size": CategoricalDistribution([1, 2, 4, 8, 16]),
}
WORKER = SEED_STRIDE  # worker i's seed offset is i * SEED_STRIDE (local and Ray backends)


def one_process(sampler: optuna.samplers.BaseSampler, n: int) -> list[dict[str, Any]]:
    st = optuna.create_study(sampler=sampler)
    return [st.ask(fixed_distributions=SPACE).params for _ in range(n)]


def side_by_side(name: str, seed: int, order: list[int], first: int = 0) -> list[dict[str, Any]]:
    """Trials asked by two workers' samplers on one study, ``order`` saying which asks."""
    storage = optuna.storages.InMemoryStorage()
    spec = SweepSpec(sampler={"name": name, "seed": seed})
    studies = [
        optuna.create_study(
            study_name="s",
            storage=storage,
            load_if_exists=True,
            sampler=make_sampler(spec, first + WORKER * i, stream=(first, SPACE)),
        )
        for i in (0, 1)
    ]
    trials = [studies[w].ask(fixed_distributions=SPACE) for w in order]
    return [t.params for t in sorted(trials, key=lambda t: t.number)]


@pytest.mark.parametrize(
    ("name", "oracle"),
    [
        ("random", lambda seed: optuna.samplers.RandomSampler(seed=seed)),
        ("tpe", lambda seed: optuna.samplers.TPESampler(seed=seed)),  # its startup trials
    ],
)
def test_two_workers_draw_what_one_draws(name: str, oracle: Any) -> None:
    expected = one_process(oracle(11), 8)
    assert len({str(p) for p in expected}) == 8
    spec = SweepSpec(sampler={"name": name, "seed": 11})
    one = one_process(make_sampler(spec, 0, stream=(0, SPACE)), 8)
    assert one == expected  # one worker: exactly the draws it made before
    assert side_by_side(name, 11, [1, 0, 0, 1, 1, 1, 0, 0]) == expected
    assert side_by_side(name, 11, [0, 1, 1, 0, 1, 0, 1, 0]) == expected
    # Without the stream the second worker draws from a stream of its own (the reason for
    # pg.sweep.draws): the same trial numbers get other configurations.
    storage = optuna.storages.InMemoryStorage()
    plain = [
        optuna.create_study(
            study_name="s", storage=storage, load_if_exists=True, sampler=make_sampler(spec, off)
        )
        for off in (0, WORKER)
    ]
    mixed = [plain[w].ask(fixed_distributions=SPACE) for w in (1, 0, 0, 1)]
    assert [t.params for t in sorted(mixed, key=lambda t: t.number)] != expected[:4]


def test_a_resumed_sweep_draws_from_its_own_stream_and_a_queued_trial_shifts_nothing() -> None:
    # A sweep resumed with 3 trials in its study: one worker seeded seed + 3 (as before).
    expected = one_process(optuna.samplers.RandomSampler(seed=11 + 3), 4)
    storage = optuna.storages.InMemoryStorage()
    spec = SweepSpec(sampler={"name": "random", "seed": 11})
    done = optuna.create_study(study_name="s", storage=storage)
    for _ in range(3):
        done.tell(done.ask(fixed_distributions=SPACE), 1.0)
    workers = [
        optuna.load_study(
            study_name="s",
            storage=storage,
            sampler=make_sampler(spec, 3 + WORKER * i, stream=(3, SPACE)),
        )
        for i in (0, 1)
    ]
    asked = [workers[w].ask(fixed_distributions=SPACE) for w in (1, 0)]
    assert [t.params for t in sorted(asked, key=lambda t: t.number)] == expected[:2]
    # A queued retry (fixed params) takes trial 5 and draws nothing: trial 6 still gets
    # slice 3 of the stream, the slice it has with nothing queued.
    workers[0].enqueue_trial({"algo.lr": 0.01, "algo.gamma": 0.95, "algo.batch_size": 4})
    retry = workers[1].ask(fixed_distributions=SPACE)
    assert retry.number == 5 and retry.params["algo.lr"] == 0.01
    after = workers[0].ask(fixed_distributions=SPACE)
    assert after.number == 6
    assert after.params == one_process(optuna.samplers.RandomSampler(seed=14), 4)[3]


def test_a_sweep_on_three_workers_trains_the_configurations_one_worker_draws(
    store: Store,
) -> None:
    """The CLI: three worker processes ask TPE's startup trials; each trial number gets
    what Optuna's TPE asked by one process gives it.  The forked workers end on their own
    when the sweep does."""
    done = sweep(
        store,
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.workers=3",
        "hydra.sweeper.sampler.seed=4",
        "hydra.sweeper.pruner.name=none",
        # Trials of ~1 s: several workers ask some.
        "train.max_steps=150000",
        "train.report_every=50000",
        "train.target_return=null",
        "tracking.enabled=false",
    )
    ok(done)
    assert "had not ended" not in done.stderr
    trials = study(store).get_trials()
    assert [t.number for t in trials] == list(range(6))
    owners = {t.system_attrs["pg.owner"] for t in trials}
    assert len(owners) >= 2, owners  # the sweep's process and a worker process asked
    expected = one_process(optuna.samplers.TPESampler(seed=4), 6)
    assert [t.params for t in trials] == expected
