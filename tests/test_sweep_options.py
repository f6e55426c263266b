"""Samplers and pruners by name: their own options reach them, typed; bad ones are named.

Unit tests of :mod:`pg.sweep.factories` and of the retry queue in :mod:`pg.sweep.asking`,
on real Optuna objects and a real SQLite study.  The sweeps themselves, through the CLI,
are in tests/test_sweep_pruning.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from pg.sweep.factories import describe, make_pruner, make_sampler, wilcoxon_note
from pg.sweep.spec import SweepError, SweepSpec, build_spec


def test_tpe_and_gp_get_their_own_options() -> None:
    # Optuna keeps its options in private attributes: an Optuna release that renames one
    # fails here, not silently in a sweep.
    tpe: Any = make_sampler(
        SweepSpec(
            sampler={
                "name": "tpe",
                "seed": 3,
                "multivariate": False,
                "constant_liar": False,
                "n_startup_trials": 7,
            }
        ),
        seed_offset=10,
    )
    assert isinstance(tpe, optuna.samplers.TPESampler)
    assert tpe._multivariate is False and tpe._constant_liar is False
    assert tpe._n_startup_trials == 7
    gp: Any = make_sampler(
        SweepSpec(sampler={"name": "gp", "n_startup_trials": 2, "deterministic_objective": True})
    )
    assert isinstance(gp, optuna.samplers.GPSampler)
    assert gp._n_startup_trials == 2 and gp._deterministic is True


def test_new_pruners_get_their_options() -> None:
    wilcoxon: Any = make_pruner(
        SweepSpec(pruner={"name": "wilcoxon", "p_threshold": 0.3, "n_startup_steps": 3})
    )
    assert isinstance(wilcoxon, optuna.pruners.WilcoxonPruner)
    assert wilcoxon._p_threshold == 0.3 and wilcoxon._n_startup_steps == 3
    threshold: Any = make_pruner(SweepSpec(pruner={"name": "threshold", "lower": 10}))
    assert isinstance(threshold, optuna.pruners.ThresholdPruner)
    assert threshold._lower == 10.0 and threshold._upper == float("inf")
    halving: Any = make_pruner(
        SweepSpec(pruner={"name": "successive_halving", "min_resource": 500})
    )
    assert isinstance(halving, optuna.pruners.SuccessiveHalvingPruner)
    assert halving._min_resource == 500


def test_the_header_shows_the_options_each_class_gets() -> None:
    spec = SweepSpec(
        sampler={"name": "tpe", "seed": 0, "multivariate": False},
        # the sweep file's median options stay behind when the command line picks threshold;
        # n_warmup_steps means the same to both and goes with it
        pruner={"name": "threshold", "lower": 12.5, "n_startup_trials": 4, "n_warmup_steps": 0},
    )
    assert describe("sampler", spec) == "tpe(seed=0, multivariate=False)"
    assert describe("pruner", spec) == "threshold(lower=12.5, n_warmup_steps=0)"
    assert describe("pruner", SweepSpec(pruner={"name": "none"})) == "none"


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        (
            "sampler",
            {"name": "tpe", "multivariat": True},
            "sampler 'tpe' has no option multivariat",
        ),
        ("sampler", {"name": "gp", "bogus": 1}, "sampler 'gp' has no option bogus"),
        ("pruner", {"name": "wilcoxon", "p_treshold": 0.1}, "has no option p_treshold"),
        # a default of None says nothing of the type: the annotation does
        ("pruner", {"name": "threshold", "lower": "10"}, r"pruner\.lower='10'.*finite number"),
        ("sampler", {"name": "tpe", "multivariate": "yes"}, "true or false"),
        ("sampler", {"name": "tpe", "constant_liar": 1}, "true or false"),
        ("sampler", {"name": "gp", "deterministic_objective": "x"}, "true or false"),
        ("pruner", {"name": "wilcoxon", "n_startup_steps": 1.5}, r"integer in \[0, "),
        ("pruner", {"name": "wilcoxon", "p_threshold": 2.0}, "between 0 and 1"),
        ("pruner", {"name": "threshold"}, "lower or upper"),
        ("sampler", {"name": "tpe", "gamma": 3}, "Python object"),
    ],
)
def test_bad_options_are_one_message(kind: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(SweepError, match=message) as info:
        if kind == "sampler":
            make_sampler(SweepSpec(sampler=options))
        else:
            make_pruner(SweepSpec(pruner=options))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", [-1, "1", True, 1.0, 101])
def test_max_retries_is_a_small_integer(value: object) -> None:
    with pytest.raises(SweepError) as info:
        build_spec({"max_retries": value})
    assert str(info.value).startswith("hydra.sweeper.max_retries=")
    assert build_spec({"max_retries": 0}).max_retries == 0


def test_wilcoxon_says_when_it_can_never_prune() -> None:
    """p = 1/2^n for n seeds all worse than the best: 0.25, 0.125, 0.0625 (n = 2, 3, 4)."""
    default = SweepSpec(pruner={"name": "wilcoxon"})  # p_threshold 0.1: 4 seeds needed
    assert wilcoxon_note(default, 4) is not None  # pruning after the last seed saves nothing
    assert wilcoxon_note(default, 5) is None
    loose = SweepSpec(pruner={"name": "wilcoxon", "p_threshold": 0.3})
    assert wilcoxon_note(loose, 3) is None  # may stop after seed 2 of 3
    late = SweepSpec(pruner={"name": "wilcoxon", "p_threshold": 0.3, "n_startup_steps": 3})
    assert wilcoxon_note(late, 3) is not None


def _fail(study: optuna.Study, trial: optuna.trial.Trial, reason: str) -> None:
    from pg.record.names import ATTR_REASON
    from pg.sweep.study import set_system_attr

    set_system_attr(study, trial, ATTR_REASON, reason)
    study.tell(trial, state=TrialState.FAIL)


def test_retries_replace_trials_cut_short_up_to_max_retries(tmp_path: Path) -> None:
    """Orphans run again until max_retries; Ctrl-C is not counted; a trial's own failure is
    a result.  The budget grows by one per retry queued."""
    from optuna.distributions import FloatDistribution

    from pg.sweep.asking import BudgetLock, n_trials_in, reserve
    from pg.sweep.retries import budget, retry_cut_short
    from pg.sweep.study import open_storage

    url = f"sqlite:///{tmp_path / 'r.db'}"
    spec = SweepSpec(study_name="r", n_trials=3, max_retries=1)
    study = optuna.create_study(study_name="r", storage=open_storage(url, spec))
    lock = BudgetLock(url, "r")
    space = {"x": FloatDistribution(0, 1)}

    def ask() -> optuna.trial.Trial:
        trial = reserve(study, lock, spec, space)
        assert trial is not None
        return trial

    done, orphan, broken = ask(), ask(), ask()
    study.tell(done, 1.0)
    _fail(study, orphan, "orphaned: process host:1 is gone")
    _fail(study, broken, "RuntimeError: objective rollout/ep_return_100 is NaN")
    assert reserve(study, lock, spec, space) is None  # 3 of 3
    (first,) = retry_cut_short(study, lock, spec)
    assert (first.of, first.attempt, first.queued) == (orphan.number, 1, True)
    assert budget(study, spec) == 4 and n_trials_in(study) == 3
    retry = ask()
    assert retry.params == orphan.params
    assert retry.user_attrs == {"pg.retry_of": orphan.number, "pg.retries": 1}

    _fail(study, retry, "interrupted (Ctrl-C)")  # the user's doing: not counted
    (second,) = retry_cut_short(study, lock, spec)
    assert (second.of, second.attempt, second.queued) == (retry.number, 1, True)
    again = ask()
    assert again.params == orphan.params

    _fail(study, again, "orphaned: no heartbeat from host:2 for 60 s")  # second orphaning
    (given_up,) = retry_cut_short(study, lock, spec)
    assert (given_up.of, given_up.attempt, given_up.queued) == (again.number, 2, False)
    assert reserve(study, lock, spec, space) is None
    assert retry_cut_short(study, lock, spec)[0].queued is False  # still not queued
    retried = {t.user_attrs.get("pg.retry_of") for t in study.get_trials()}
    assert broken.number not in retried  # failed by itself: a result, not retried
