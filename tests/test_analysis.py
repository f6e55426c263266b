"""analysis/: tables, curves and reports checked against MlflowClient and Optuna directly."""

from __future__ import annotations

import base64
import json
import math
import re
import statistics
import struct
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tests.conftest import FAST, Store, run_module
from tests.test_analysis_store import build_all, make_config

METRIC = "rollout/ep_return_100"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("analysis") / "home"
    home.mkdir()
    data = build_all(home)
    store = Store(home)
    # One run made by the real CLI joins the lr=0.01 configuration as a fourth seed:
    # its tracking.* params differ (no explicit URI), which must not split the group.
    done = run_module(
        "pg.run",
        [*FAST, "train.progress=false", "algo.lr=0.01", "seed=3", "tracking.experiment=grid"],
        store,
    )
    assert done.returncode == 0, done.stderr
    # An experiment whose only run crashed: no finished runs to report on.
    from pg.experiment import Snapshot, execute

    cfg = make_config(data["uri"], "broken")
    cfg.debug.fail_at_step = 500
    with pytest.raises(RuntimeError):
        execute(cfg, Snapshot.from_config(cfg))
    # A sweep made by the real sweeper CLI (two seeds per trial, study beside the store).
    done = run_module(
        "pg.run",
        [
            "-m",
            "hydra.sweeper.n_trials=3",
            "hydra.sweeper.seeds=2",
            *FAST,
            "train.progress=false",
            "tracking.experiment=cli-sweep",
        ],
        store,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"sweep run ([0-9a-f]{32})", done.stdout + done.stderr)
    assert found, done.stdout + done.stderr
    data["cli_sweep"] = found.group(1)
    data["store"] = store
    return data


def client(built: dict[str, Any]) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=built["uri"])


def analysis_cli(built: dict[str, Any], *args: str) -> Any:
    return run_module("analysis", [*args, "--tracking-uri", built["uri"]], built["store"])


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def check_pngs(folder: Path) -> None:
    pngs = sorted(folder.glob("*.png"))
    assert pngs
    for png in pngs:
        width, height = png_size(png)
        assert 200 <= width <= 2000 and 150 <= height <= 2000, (png, width, height)


def check_html(folder: Path) -> None:
    page = (folder / "index.html").read_text()
    refs = re.findall(r"href='([^']+)'", page)
    assert refs
    for ref in refs:
        assert (folder / ref).is_file(), ref
    embedded = re.findall(r"<a href='([^']+)'><img [^>]*src='data:image/png;base64,([^']+)'", page)
    assert embedded
    for name, data in embedded:
        assert base64.b64decode(data) == (folder / name).read_bytes()
    assert {name for name, _ in embedded} == {p.name for p in folder.glob("*.png")}


def independent_groups(built: dict[str, Any]) -> dict[str, list[float]]:
    """Final ep_return_100 of the grid's runs grouped by learning rate, via MlflowClient."""
    c = client(built)
    exp = c.get_experiment_by_name("grid")
    groups: dict[str, list[float]] = defaultdict(list)
    for run in c.search_runs([exp.experiment_id], max_results=1000):
        groups[run.data.params["algo.lr"]].append(run.data.metrics[METRIC])
    return groups


# -- the notebook API ------------------------------------------------------------------
def test_load_runs_one_row_per_run(built: dict[str, Any]) -> None:
    from analysis.loading import load_runs

    frame = load_runs("grid", tracking_uri=built["uri"])
    c = client(built)
    runs = c.search_runs([c.get_experiment_by_name("grid").experiment_id], max_results=1000)
    assert len(frame) == len(runs) == 7
    assert set(frame["run_id"]) == {r.info.run_id for r in runs}
    assert (frame["kind"] == "run").all() and frame["training"].all()
    assert (frame["status"] == "FINISHED").all()
    assert (frame["duration_s"] > 0).all()
    assert sorted(frame["seed"].astype(int)) == [0, 0, 1, 1, 2, 2, 3]
    by_id = {r.info.run_id: r for r in runs}
    for _, row in frame.iterrows():
        assert row[f"metrics.{METRIC}"] == by_id[row["run_id"]].data.metrics[METRIC]
        assert row["params.algo.lr"] == by_id[row["run_id"]].data.params["algo.lr"]


def test_aggregate_matches_independent_statistics(built: dict[str, Any]) -> None:
    from analysis.aggregate import aggregate
    from analysis.loading import load_runs

    table = aggregate(load_runs("grid", tracking_uri=built["uri"]), METRIC)
    groups = independent_groups(built)
    assert len(table) == 2  # tracking.* and seed differences do not split a configuration
    for _, row in table.iterrows():
        values = groups[row["algo.lr"]]
        n = len(values)
        assert row["n_seeds"] == n
        assert row["mean"] == pytest.approx(statistics.fmean(values))
        assert row["std"] == pytest.approx(statistics.stdev(values))
        half = stats.t.ppf(0.975, n - 1) * statistics.stdev(values) / math.sqrt(n)
        assert row["ci95"] == pytest.approx(half)
    assert sorted(table["n_seeds"]) == [3, 4]
    assert table["mean"].is_monotonic_decreasing
    assert list(table["rank"]) == [1, 2]


def test_t_interval_by_hand() -> None:
    from analysis.aggregate import t_interval

    mean, std, half = t_interval([1.0, 2.0, 3.0])
    assert (mean, std) == (2.0, 1.0)
    assert half == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert math.isnan(t_interval([5.0])[2])
    # NaN (a run without the metric) is left out; 90 %: t(0.95, 2) = 2.9199856
    assert t_interval([1.0, math.nan, 2.0, 3.0], 0.90) == pytest.approx(
        (2.0, 1.0, 2.9199856 / math.sqrt(3))
    )


def test_histories_fetch_only_requested(built: dict[str, Any]) -> None:
    from analysis.loading import load_histories

    ids = built["grid"]["0.01"][:2]
    hist = load_histories(ids, [METRIC, "eval/return"], tracking_uri=built["uri"])
    assert list(hist.columns) == ["run_id", "step", "metric", "value"]
    assert set(hist["run_id"]) == set(ids)
    assert set(hist["metric"]) == {METRIC, "eval/return"}
    c = client(built)
    for run_id in ids:
        expected = [(m.step, m.value) for m in c.get_metric_history(run_id, METRIC)]
        got = hist[(hist["run_id"] == run_id) & (hist["metric"] == METRIC)]
        assert sorted(zip(got["step"], got["value"], strict=True)) == sorted(expected)


def test_curves_figure_has_one_line_and_band_per_config(built: dict[str, Any]) -> None:
    from analysis.report import CURVES_PNG, build_report

    report = build_report(experiment="grid", tracking_uri=built["uri"], top=5)
    ax = report.figures[CURVES_PNG].axes[0]
    assert len(ax.get_lines()) == 2
    assert len(ax.collections) == 2  # one CI band per configuration (both have >= 2 seeds)
    report = build_report(experiment="grid", tracking_uri=built["uri"], top=1)
    ax = report.figures[CURVES_PNG].axes[0]
    assert len(ax.get_lines()) == 1 and len(ax.collections) == 1


# -- reports through the CLI -----------------------------------------------------------
def test_experiment_report(built: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "grid-report"
    done = analysis_cli(built, "report", "--experiment", "grid", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert {p.name for p in out.iterdir()} >= {
        "summary.csv",
        "summary.md",
        "runs.csv",
        "curves.png",
        "index.html",
        "report.json",
    }
    summary = pd.read_csv(out / "summary.csv")
    groups = independent_groups(built)
    for _, row in summary.iterrows():
        values = groups[str(row["algo.lr"])]
        assert row["n_seeds"] == len(values)
        assert row["mean"] == pytest.approx(statistics.fmean(values))
    assert len(pd.read_csv(out / "runs.csv")) == 7
    md = (out / "summary.md").read_text()
    assert md.count("\n| ") == 3  # header + two configurations
    check_pngs(out)
    check_html(out)
    meta = json.loads((out / "report.json").read_text())
    assert meta["runs"] == 7 and meta["configurations"] == 2
    assert not list(tmp_path.glob(".*tmp*"))


def test_sweep_report_reads_the_study(built: dict[str, Any], tmp_path: Path) -> None:
    from analysis.report import HISTORY_PNG, IMPORTANCE_PNG, SLICES_PNG, STATES_PNG, build_report

    sweep = built["sweep"]
    report = build_report(sweep=sweep.run_id, tracking_uri=built["uri"])
    assert report.facts["trials from"].startswith("Optuna study 's1'")
    c = client(built)
    tags = [c.get_run(r).data.tags["pg.trial_state"] for r in sweep.trial_runs.values()]
    expected = {s: tags.count(s) for s in ("COMPLETE", "PRUNED", "FAIL")}
    # The MLflow tags agree with the study, and the sweep holds every state.
    assert expected == {s: list(sweep.states.values()).count(s) for s in expected}
    assert all(expected.values()), expected
    assert report.facts["trial states"] == expected
    bars = report.figures[STATES_PNG].axes[0].patches
    heights = [b.get_height() for b in bars]  # type: ignore[attr-defined]
    assert heights == [expected[s] for s in ("COMPLETE", "PRUNED", "FAIL")]
    history = report.figures[HISTORY_PNG].axes[0]
    assert len(history.get_lines()) == 1  # best so far
    importance = report.figures[IMPORTANCE_PNG].axes[0]
    assert 1 <= len(importance.patches) <= len(sweep.params)
    assert len(report.figures[SLICES_PNG].axes) == len(sweep.params)
    assert report.facts["runs"] == 6

    out = tmp_path / "sweep"
    done = analysis_cli(built, "report", "--sweep", sweep.run_id, "--out", str(out), "--log")
    assert done.returncode == 0, done.stderr
    for name in ("history.png", "importance.png", "slices.png", "states.png", "curves.png"):
        assert (out / name).is_file(), name
    check_pngs(out)
    check_html(out)
    attached = {a.path for a in c.list_artifacts(sweep.run_id, "report")}
    assert "report/index.html" in attached and "report/summary.csv" in attached


def test_sweep_report_without_the_study(built: dict[str, Any], tmp_path: Path) -> None:
    """A redacted storage URL: trials are rebuilt from the MLflow runs."""
    from analysis.report import IMPORTANCE_PNG, STATES_PNG, SUMMARY_CSV, build_report

    seeded = built["seeded"]
    report = build_report(sweep=seeded.run_id, tracking_uri=built["uri"])
    assert report.facts["trials from"] == "MLflow trial runs"
    assert any("redacted" in n for n in report.notes)
    bars = report.figures[STATES_PNG].axes[0].patches
    assert [b.get_height() for b in bars] == [3, 0, 0]  # type: ignore[attr-defined]
    assert len(report.figures[IMPORTANCE_PNG].axes[0].patches) == len(seeded.params)
    summary = report.tables[SUMMARY_CSV]
    assert list(summary["n_seeds"]) == [2, 2, 2]
    c = client(built)
    for trial_run in seeded.trial_runs.values():
        exp = c.get_run(trial_run).info.experiment_id
        seeds = c.search_runs([exp], f"tags.mlflow.parentRunId = '{trial_run}'")
        values = [r.data.metrics[METRIC] for r in seeds]
        ids = {r.info.run_id for r in seeds}
        row = summary[summary["run_ids"].map(lambda s, ids=ids: set(s.split()) == ids)]
        assert len(row) == 1
        assert row["mean"].iloc[0] == pytest.approx(statistics.fmean(values))
        objective = c.get_run(trial_run).data.metrics["objective"]
        assert objective == pytest.approx(
            statistics.fmean(r.data.metrics["objective"] for r in seeds)
        )

    # With the real storage given, the study itself is read.
    report = build_report(sweep=seeded.run_id, tracking_uri=built["uri"], storage=seeded.storage)
    assert report.facts["trials from"].startswith("Optuna study 's2'")
    assert not report.notes


def test_report_of_a_sweep_made_by_the_sweeper(built: dict[str, Any], tmp_path: Path) -> None:
    from analysis.report import HISTORY_PNG, STATES_PNG, SUMMARY_CSV, build_report

    sweep = built["cli_sweep"]
    report = build_report(sweep=sweep, tracking_uri=built["uri"])
    assert report.facts["trials from"].startswith("Optuna study ")
    assert report.facts["metric"] == METRIC  # the sweep's recorded objective
    c = client(built)
    exp = c.get_run(sweep).info.experiment_id
    children = c.search_runs([exp], f"tags.mlflow.parentRunId = '{sweep}'")
    trials = [t for t in children if t.data.tags["pg.kind"] == "trial"]
    states = [t.data.tags["pg.trial_state"] for t in trials]
    assert len(trials) == 3
    # The default sweep validated its top 2 on 3 fresh seeds: the report shows that table.
    validation = [t for t in children if t.data.tags["pg.kind"] == "validation"]
    assert len(validation) == 6
    table = report.tables["validation.csv"]
    assert len(table) == 2
    for row in table.to_dict("records"):
        mine = [r for r in validation if r.data.tags["pg.validated_trial"] == str(row["trial"])]
        values = [r.data.metrics["objective"] for r in mine]
        assert row["mean"] == pytest.approx(statistics.fmean(values))
    assert any(s.title == "Validation on fresh seeds" for s in report.sections)
    bars = report.figures[STATES_PNG].axes[0].patches
    expected = [states.count(s) for s in ("COMPLETE", "PRUNED", "FAIL")]
    assert [b.get_height() for b in bars] == expected  # type: ignore[attr-defined]
    summary = report.tables[SUMMARY_CSV]
    complete = [t for t in trials if t.data.tags["pg.trial_state"] == "COMPLETE"]
    for trial in complete:
        seeds = c.search_runs([exp], f"tags.mlflow.parentRunId = '{trial.info.run_id}'")
        assert len(seeds) == 2
        assert {r.data.tags["pg.kind"] for r in seeds} == {"seed"}
        ids = {r.info.run_id for r in seeds}
        row = summary[summary["run_ids"].map(lambda s, ids=ids: set(s.split()) == ids)]
        assert len(row) == 1 and row["n_seeds"].iloc[0] == 2
        values = [r.data.metrics[METRIC] for r in seeds]
        assert row["mean"].iloc[0] == pytest.approx(statistics.fmean(values))
    # History points are the study's trial values: the trials' mean objective.
    points = report.figures[HISTORY_PNG].axes[0].collections
    plotted = sorted(float(y) for p in points for y in np.asarray(p.get_offsets())[:, 1])
    logged = sorted(t.data.metrics["objective"] for t in complete)
    assert plotted == pytest.approx(logged)


def test_compare(built: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    sweep = built["seeded"].run_id
    done = analysis_cli(built, "compare", "grid", sweep, "--out", str(out))
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out / "compare.csv")
    assert list(table["kind"]) == ["experiment", "sweep"]
    groups = independent_groups(built)
    best = max(groups.values(), key=statistics.fmean)
    assert table["mean"].iloc[0] == pytest.approx(statistics.fmean(best))
    assert table["n_seeds"].tolist() == [len(best), 2]
    check_pngs(out)
    check_html(out)


# -- bad input -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "--experiment", "nope"], "no experiment named 'nope'"),
        (["report", "--sweep", "0" * 32], "no run with id"),
        (["report", "--experiment", "broken"], "no finished runs"),
        (["report", "--experiment", "grid", "--metric", "no/such"], "no run has metric"),
        (["report", "--experiment", "grid", "--log"], "--log attaches"),
        (["compare", "grid", "nope"], "is not a run id, run name or experiment"),
    ],
)
def test_bad_input(
    built: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    from analysis.__main__ import main

    out = tmp_path / "out"
    code = main([*args, "--out", str(out), "--tracking-uri", built["uri"]])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    assert list(tmp_path.iterdir()) == []


def test_bad_input_through_the_cli(built: dict[str, Any], tmp_path: Path) -> None:
    done = analysis_cli(built, "report", "--experiment", "nope", "--out", str(tmp_path / "o"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no experiment named 'nope'" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_grid_run_is_not_a_sweep(
    built: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from analysis.__main__ import main

    run_id = built["grid"]["0.01"][0]
    args = ["report", "--sweep", run_id, "--out", str(tmp_path / "o")]
    assert main([*args, "--tracking-uri", built["uri"]]) == 2
    assert "is not a sweep" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_a_foreign_folder(built: dict[str, Any], tmp_path: Path) -> None:
    from analysis.loading import AnalysisError
    from analysis.report import build_report, write

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    report = build_report(experiment="grid", tracking_uri=built["uri"], top=1)
    with pytest.raises(AnalysisError, match="not a report folder"):
        write(report, foreign)
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]
    again = tmp_path / "again"
    write(report, again)
    write(report, again)  # a second report replaces the first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "mine"]
