"""``python -m pg.reproduce``: identical re-runs, overrides, differences, sweep trials, bad input.

One short training run per module is the source for most tests; runs with broken
snapshots or doctored histories are made from it with the real MLflow client.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pg.compare import MetricDiff, compare_histories, diff_history, lock_diff
from tests.conftest import FAST, NO_VALIDATION, Store, run_module

ARGS = [*FAST, "train.progress=false"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Iterator[Store]:
    home = tmp_path_factory.mktemp("repro") / "home"
    store = Store(home)
    store.db.parent.mkdir(parents=True)
    shutil.copyfile(migrated_db, store.db)
    yield store


@pytest.fixture(scope="module")
def source(shared: Store) -> str:
    """A finished short training run in the shared store."""
    proc = run_module("pg.run", ARGS, shared)
    assert proc.returncode == 0, proc.stderr
    (run,) = shared.runs()
    return str(run.info.run_id)


def reproduce(store: Store, *args: str) -> Any:
    return run_module("pg.reproduce", list(args), store)


def new_runs(store: Store, before: set[str]) -> list[Any]:
    return [r for r in store.runs() if r.info.run_id not in before]


def ids(store: Store) -> set[str]:
    return {r.info.run_id for r in store.runs()}


def copy_run(
    store: Store,
    source_id: str,
    *,
    config: str | None = None,
    tags: dict[str, str] | None = None,
    snapshot: bool = True,
    perturb: str | None = None,
    nudge: dict[str, float] | None = None,
) -> str:
    """A new run with the source's artifacts (``config`` replaces the snapshot text) and
    its metric histories (``perturb`` adds 1 to that metric's last value; ``nudge``
    multiplies every value of a metric by ``1 + factor``)."""
    from mlflow.entities import Metric

    client = store.client()
    src = client.get_run(source_id)
    run = client.create_run(src.info.experiment_id, run_name="copy", tags=tags or {})
    rid = run.info.run_id
    if snapshot:
        local = Path(client.download_artifacts(source_id, "", str(store.home / f"dl-{rid}")))
        if config is not None:
            (local / "config" / "config.yaml").write_text(config)
        for sub in ("config", "environment"):
            client.log_artifacts(rid, str(local / sub), sub)
    metrics = []
    for key in src.data.metrics:
        history = client.get_metric_history(source_id, key)
        for i, m in enumerate(history):
            value = m.value + 1 if key == perturb and i == len(history) - 1 else m.value
            value *= 1 + (nudge or {}).get(key, 0.0)
            metrics.append(Metric(key, value, m.timestamp, m.step))
    for i in range(0, len(metrics), 1000):
        client.log_batch(rid, metrics=metrics[i : i + 1000])
    client.set_terminated(rid, "FINISHED")
    return str(rid)


# -- whole program ----------------------------------------------------------------


def test_reproduce_is_identical_and_tagged(shared: Store, source: str) -> None:
    before = ids(shared)
    proc = reproduce(shared, source)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: IDENTICAL" in proc.stdout
    (ignored,) = [line for line in proc.stdout.splitlines() if "ignored wall-clock" in line]
    # MLflow's system metrics sample the machine, not the training: never compared.
    assert "time/sps" in ignored and "system/cpu_utilization_percentage" in ignored
    (new,) = new_runs(shared, before)
    assert new.data.tags["pg.source_run"] == source
    assert source in new.data.tags["mlflow.note.content"]
    assert new.info.status == "FINISHED"
    assert new.info.experiment_id == shared.client().get_run(source).info.experiment_id
    assert new.data.params == {
        **shared.client().get_run(source).data.params,
        "tracking.run_name": new.data.params["tracking.run_name"],
        "tracking.uri": new.data.params["tracking.uri"],
    }


def test_override_is_reported_without_verdict(shared: Store, source: str) -> None:
    before = ids(shared)
    proc = reproduce(shared, source, "algo.lr=0.05")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "algo.lr=0.05 (snapshot: " in proc.stdout
    assert "no verdict" in proc.stdout
    assert "IDENTICAL" not in proc.stdout
    (new,) = new_runs(shared, before)
    assert new.data.params["algo.lr"] == "0.05"
    assert "algo.lr=0.05" in new.data.tags["mlflow.note.content"]


def test_different_history_gives_table_and_environment(shared: Store, source: str) -> None:
    doctored = copy_run(
        shared,
        source,
        perturb="rollout/ep_return_100",
        tags={"pg.git_commit": "0" * 40, "pg.git_dirty": "false", "pg.kind": "run"},
    )
    proc = reproduce(shared, doctored)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "verdict: DIFFERENT" in proc.stdout
    rows = proc.stdout.splitlines()
    row = next(line for line in rows if line.startswith("  rollout/ep_return_100 "))
    last_step = shared.client().get_metric_history(source, "rollout/ep_return_100")[-1].step
    assert f"{last_step:,}" in row and row.split()[2] == "1"
    assert f"git commit: {'0' * 40} -> " in proc.stdout


def test_float_rounding_is_equivalent_not_different(shared: Store, source: str) -> None:
    """What another CPU's kernels give (AVX-512 vs AVX2): the same steps, values a few
    float32 units apart.  The default passes it as EQUIVALENT (exit 0); ``--exact`` and a
    tolerance below the deviation do not."""
    rounded = copy_run(
        shared,
        source,
        nudge={"losses/policy": 2e-6, "stats/grad_l2": -1e-6},
        tags={"pg.kind": "run"},
    )
    proc = reproduce(shared, rounded)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: EQUIVALENT" in proc.stdout and "DIFFERENT" not in proc.stdout
    assert "2 of " in proc.stdout  # the table still names what differs
    (verdict,) = [line for line in proc.stdout.splitlines() if "verdict:" in line]
    found = re.search(r"largest relative deviation (\S+) <= 0.0001", verdict)
    assert found is not None and 0 < float(found.group(1)) <= 2.0001e-6, verdict
    exact = reproduce(shared, rounded, "--exact")
    assert exact.returncode == 1 and "verdict: EQUIVALENT" in exact.stdout
    strict = reproduce(shared, rounded, "--tolerance", "1e-7")
    assert strict.returncode == 1 and "verdict: DIFFERENT" in strict.stdout
    # A whole unit on one value is not rounding, whatever else is close.
    moved = copy_run(shared, source, perturb="rollout/ep_return_100", nudge={"losses/policy": 2e-6})
    assert "verdict: DIFFERENT" in reproduce(shared, moved).stdout


def test_no_compare_only_reruns(shared: Store, source: str) -> None:
    proc = reproduce(shared, source, "--no-compare")
    assert proc.returncode == 0, proc.stderr
    assert "verdict" not in proc.stdout and "compared" not in proc.stdout


def test_stopped_run_is_rerun_to_the_same_step(shared: Store, source: str) -> None:
    """A pruned trial ends FINISHED at a report point (``pg.stopped`` says so); its
    reproduction stops there too, with the same status."""
    from pg.experiment import execute
    from pg.record.writer import Stopped

    cfg = config_for(shared, seed=2)

    def prune(step: int, value: float) -> None:
        if step >= 2000:
            raise Stopped("pruned by the test", "FINISHED")

    with pytest.raises(Stopped):
        execute(cfg, snapshot_of(cfg), on_report=prune)
    (pruned,) = [r for r in shared.runs() if r.data.tags.get("pg.stopped") == "pruned by the test"]
    before = ids(shared)
    proc = reproduce(shared, pruned.info.run_id)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: IDENTICAL" in proc.stdout
    (new,) = new_runs(shared, before)
    assert new.info.status == "FINISHED"
    assert new.data.tags["pg.stopped"].startswith("source run")


def config_for(store: Store, seed: int) -> Any:
    from omegaconf import OmegaConf

    from pg.core.config import to_config

    return to_config(OmegaConf.from_dotlist([*ARGS, f"seed={seed}", f"tracking.uri={store.uri}"]))


def snapshot_of(cfg: Any) -> Any:
    from pg.experiment import Snapshot

    return Snapshot.from_config(cfg, [f"seed={cfg.seed}"])


SWEEP = ["-m", *ARGS, "train.report_every=500", "hydra.sweeper.pruner.name=none", *NO_VALIDATION]


def test_multi_seed_sweep_trial_is_reproduced_seed_by_seed(shared: Store) -> None:
    """The real sweep record: sweep run > trial run > one seed run per seed."""
    proc = run_module(
        "pg.run", [*SWEEP, "hydra.sweeper.n_trials=1", "hydra.sweeper.seeds=2"], shared
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    runs = shared.runs()
    (sweep,) = [r for r in runs if r.data.tags.get("pg.kind") == "sweep"]
    (trial,) = [r for r in runs if r.data.tags.get("pg.kind") == "trial"]
    seeds = [r for r in runs if r.data.tags.get("pg.kind") == "seed"]
    assert {r.data.tags["mlflow.parentRunId"] for r in seeds} == {trial.info.run_id}

    before = ids(shared)
    proc = reproduce(shared, trial.info.run_id)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "with 2 seed runs" in proc.stdout
    assert "verdict: IDENTICAL" in proc.stdout
    new = new_runs(shared, before)
    assert sorted(r.data.tags["pg.source_run"] for r in new) == sorted(r.info.run_id for r in seeds)
    assert {r.data.tags["pg.source_trial"] for r in new} == {trial.info.run_id}
    assert sorted(r.data.params["seed"] for r in new) == ["0", "1"]

    proc = reproduce(shared, sweep.info.run_id)
    assert proc.returncode == 2 and "is a sweep" in proc.stderr
    assert ids(shared) == before | {r.info.run_id for r in new}


# -- bad input: exit 2, one line, no new run ---------------------------------------

CORRUPT = "seed: [0\nenv: {name: cartpole\n"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown", "no run with id"),
        ("no-snapshot", "has no config snapshot"),
        ("renamed-key", "no longer validates with the current schema: algo.learning_rate"),
        ("corrupted", "is corrupted (not YAML"),
        ("bad-override", "algo.gamma=2.0 is not allowed"),
        ("bad-tolerance", "--tolerance: a relative deviation in [0, 1)"),
    ],
)
def test_bad_input(shared: Store, source: str, case: str, message: str) -> None:
    extra: list[str] = []
    if case == "unknown":
        target = "0" * 32
    elif case == "no-snapshot":
        target = copy_run(shared, source, snapshot=False)
    elif case == "bad-override":
        target, extra = source, ["algo.gamma=2.0"]
    elif case == "bad-tolerance":
        target, extra = source, ["--tolerance", "-1"]
    else:
        text = shared.client().download_artifacts(source, "config/config.yaml", str(shared.home))
        good = Path(text).read_text()
        assert "  lr: " in good
        bad = good.replace("  lr: ", "  learning_rate: ") if case == "renamed-key" else CORRUPT
        target = copy_run(shared, source, config=bad)
    before = ids(shared)
    proc = reproduce(shared, target, *extra)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pg.reproduce: error: "), proc.stderr
    assert message in lines[0]
    assert ids(shared) == before


@pytest.mark.parametrize(
    "uri", ["http://127.0.0.1:9", "postgresql://postgres@127.0.0.1:9/pg", "sqlite:///{home}/x.db"]
)
def test_unreachable_store(fresh_store: Store, uri: str) -> None:
    store = fresh_store
    start = time.monotonic()
    proc = reproduce(store, "0" * 32, "--tracking-uri", uri.format(home=store.home))
    assert time.monotonic() - start < 10
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and ("not reachable" in lines[0] or "no MLflow store" in lines[0])
    assert not (store.home / "x.db").exists()
    assert not store.db.exists()


# -- the comparison rules ----------------------------------------------------------


def test_histories_compare_by_step_regardless_of_order() -> None:
    assert (
        diff_history(
            "m", [(1, 2.0), (1, 1.0), (2, float("nan"))], [(1, 1.0), (1, 2.0), (2, float("nan"))]
        )
        is None
    )


def test_first_step_and_largest_deviation() -> None:
    diff = diff_history("m", [(1, 1.0), (2, 2.0), (3, 3.0)], [(1, 1.0), (2, 2.5), (3, 1.0)])
    # relative: |3 - 1| / max(1, 3, 1) = 2/3 beats |2 - 2.5| / 2.5 = 0.2
    assert diff == MetricDiff("m", 2, 2.0, "", 2 / 3)
    assert not diff.rounding_only(0.5) and diff.rounding_only(0.7)
    small = diff_history("m", [(1, 0.5), (2, 1e3)], [(1, 0.5 + 1e-7), (2, 1e3 + 1e-3)])
    assert small is not None and small.relative == pytest.approx(1e-3 / (1e3 + 1e-3))
    assert small.rounding_only(1e-4) and not small.rounding_only(1e-7)
    # other steps or counts are never rounding, however close the values
    shifted = diff_history("m", [(1, 1.0)], [(2, 1.0)])
    assert shifted is not None and not shifted.rounding_only(1.0)


def test_missing_metric_and_point_counts() -> None:
    diffs = compare_histories({"a": [(1, 1.0)], "b": [(1, 1.0), (1, 1.0)]}, {"b": [(1, 1.0)]})
    assert [(d.key, d.note) for d in diffs] == [
        ("a", "only in the source run"),
        ("b", "2 vs 1 points; same values, repeated (step, value) points counted differently"),
    ]


def test_lock_diff_names_packages() -> None:
    assert lock_diff("a==1\nb==2\nc==3\n", "a==1\nb==2.1\nd==4\n") == [
        "b 2 -> 2.1",
        "c 3 -> not installed",
        "d not in the lock -> 4",
    ]


def test_repeated_metric_points_are_all_stored(shared: Store) -> None:
    """Two episodes ending at one step with one return must both reach the history."""
    from pg.record.tracker import Tracker

    store = shared
    tracker = Tracker(config_for(store, 0).tracking)
    with tracker.start_run("dups") as run:
        for _ in range(3):
            run.log_metrics({"rollout/ep_return": 9.0, "rollout/ep_length": 9.0}, 100)
        run.log_metrics({"rollout/ep_return": float("nan")}, 100)
        run.log_metrics({"rollout/ep_return": float("nan")}, 100)
    history = store.client().get_metric_history(run.run_id, "rollout/ep_return")
    assert sorted(str(m.value) for m in history) == ["9.0", "9.0", "9.0", "nan", "nan"]
