"""A store written by pg 0.1.0 keeps working: listed by analysis, reproduced IDENTICAL.

``tests/data/store-0.1.0`` (see its README) holds one run and one 3-trial, 2-seed sweep
recorded by the first release.  Record names are a public format; this is the test that
fails when a change stops reading what users' stores already hold.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Store, run_module

DATA = Path(__file__).resolve().parent / "data" / "store-0.1.0"
RECORDED_ROOT = "/tmp/oldstore/mlruns"
SINGLE_RUN = "20f5e6ec6d2442ee96640a0e97d69e74"
SWEEP_RUN = "fc42f74ce14c4f91b7f31769e4a748d3"
BEST_TRIAL = "51497533c2004f49919ad7b4e28a7e6f"


@pytest.fixture
def old_store(tmp_path: Path) -> Store:
    """A copy of the old store whose artifact locations point at the copy."""
    mlruns = tmp_path / "home" / "mlruns"
    mlruns.mkdir(parents=True)
    for name in ("mlflow.db", "optuna.db"):
        shutil.copy(DATA / name, mlruns / name)
    shutil.copytree(DATA / "artifacts", mlruns / "artifacts")
    with sqlite3.connect(mlruns / "mlflow.db") as db:
        db.execute(
            "UPDATE experiments SET artifact_location = replace(artifact_location, ?, ?)",
            (RECORDED_ROOT, str(mlruns)),
        )
        db.execute(
            "UPDATE runs SET artifact_uri = replace(artifact_uri, ?, ?)",
            (RECORDED_ROOT, str(mlruns)),
        )
    return Store(mlruns.parent)


def test_analysis_lists_the_old_runs(old_store: Store) -> None:
    from analysis.loading import load_runs

    frame = load_runs("pg", tracking_uri=old_store.uri)
    kinds = frame.set_index("run_id")["kind"].to_dict()
    assert kinds[SINGLE_RUN] == "run"
    assert kinds[BEST_TRIAL] == "trial"
    # One run; the sweep, its 3 trials and 2 seed runs under each.
    assert frame["kind"].value_counts().to_dict() == {"seed": 6, "trial": 3, "run": 1, "sweep": 1}
    sweep = load_runs(sweep=SWEEP_RUN, tracking_uri=old_store.uri)
    trials = sweep[sweep["kind"] == "trial"]
    assert sorted(trials["trial_state"]) == ["COMPLETE", "PRUNED", "PRUNED"]
    assert sweep["training"].sum() == 6  # the seed runs are the training runs


def test_analysis_report_of_the_old_sweep(old_store: Store, tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = run_module(
        "analysis",
        ["report", "--sweep", SWEEP_RUN, "--out", str(out), "--tracking-uri", old_store.uri],
        old_store,
    )
    assert done.returncode == 0, done.stderr
    assert (out / "index.html").is_file() and (out / "summary.csv").is_file()


@pytest.mark.parametrize("run_id", [SINGLE_RUN, BEST_TRIAL], ids=["run", "two-seed-trial"])
def test_old_runs_reproduce_identical_or_equivalent(old_store: Store, run_id: str) -> None:
    """Bit-identical on the kind of CPU the store was made on; on another (AVX-512 vs AVX2
    kernels) only float rounding may differ: EQUIVALENT, never DIFFERENT."""
    done = run_module("pg.reproduce", [run_id], old_store)
    assert done.returncode == 0, done.stdout + done.stderr
    verdict = next(line for line in done.stdout.splitlines() if "verdict:" in line)
    assert "verdict: IDENTICAL" in verdict or "verdict: EQUIVALENT" in verdict, done.stdout
    if "EQUIVALENT" in verdict:  # pg 0.1.0 did not record the CPU: shown as unknown
        assert "cpu_capability: unknown -> " in done.stdout
