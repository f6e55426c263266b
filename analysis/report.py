"""Report folders: tables, learning curves, sweep plots and one HTML page showing all.

A report is assembled in a hidden temporary folder next to its destination and renamed
into place only when complete, so an error (unknown run, missing metric, full disk)
never leaves a half-written report behind.  Every figure is written as a PNG and also
embedded in ``index.html`` (base64) so the page still works when mailed or attached to
an MLflow run on its own; it also links the PNG and CSV files beside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from analysis import aggregate as agg
from analysis import loading, plots
from analysis.loading import AnalysisError
from analysis.render import (
    HTML_FILE,
    Report,
    Section,
    _slug,
    config_label,
    display_table,
    markdown_table,
    write,
)
from pg.record import names

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pg.record.reader import Reader

# The rendering moved to analysis.render; these names stay importable from here.
__all__ = [
    "HTML_FILE",
    "Report",
    "Section",
    "_slug",
    "config_label",
    "display_table",
    "markdown_table",
    "write",
]

DEFAULT_METRIC = "rollout/ep_return_100"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
RUNS_CSV = "runs.csv"
CURVES_PNG = "curves.png"
HISTORY_PNG = "history.png"
IMPORTANCE_PNG = "importance.png"
SLICES_PNG = "slices.png"
STATES_PNG = "states.png"
REPORT_DIR = "report"  # artifact folder of a report attached to a sweep's parent run
STATS_COLUMNS = ("n_seeds", "mean", "std", "ci95", "ci_low", "ci_high", "min", "max")


# -- the report ------------------------------------------------------------------------
def finished_training(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame
    done = (
        frame["completed"].astype(bool) if "completed" in frame else frame["status"] == agg.FINISHED
    )
    return frame[frame["training"].astype(bool) & done]


def check_usable(frame: pd.DataFrame, what: str, metric: str) -> None:
    """The bad-input checks, before anything is computed or written."""
    if frame.empty:
        raise AnalysisError(f"{what} has no runs")
    done = finished_training(frame)
    if done.empty:
        statuses = frame["status"].value_counts().to_dict()
        raise AnalysisError(f"{what} has no finished runs (statuses: {statuses})")
    try:
        loading.require_metric(done, metric)
    except AnalysisError as exc:
        raise AnalysisError(f"{what}: {exc}") from None


def curves_section(
    reader: Reader,
    table: pd.DataFrame,
    params: Sequence[str],
    metric: str,
    top: int,
    title: str,
) -> tuple[Figure, pd.DataFrame, dict[str, str]]:
    """Learning curves of the ``top`` configurations: histories of their runs only."""
    best = table[table["mean"].notna()].head(top)
    groups = {str(r["config"]): str(r["run_ids"]).split() for _, r in best.iterrows()}
    labels = {str(r["config"]): config_label(r, params) for _, r in best.iterrows()}
    run_ids = [rid for ids in groups.values() for rid in ids]
    histories = loading.load_histories(run_ids, [metric], reader=reader)
    curves = agg.mean_curves(histories, groups, metric)
    fig = plots.learning_curves(curves, labels, metric, title)
    return fig, curves, labels


def build_report(
    *,
    experiment: str | None = None,
    sweep: str | None = None,
    metric: str | None = None,
    top: int = 5,
    tracking_uri: str | None = None,
    storage: str | None = None,
    minimize: bool | None = None,
    reader: Reader | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Load, aggregate and plot; nothing is written here."""
    say = progress or (lambda _msg: None)
    if top < 1:
        raise AnalysisError("--top must be >= 1")
    t0 = time.perf_counter()
    reader = reader or loading.connect(tracking_uri)
    frame, source = loading.load_source(experiment, sweep=sweep, reader=reader)
    what = f"sweep {source.label} ({sweep})" if sweep else f"experiment {experiment!r}"
    parent = loading.get_run(reader, sweep) if sweep is not None else None
    if metric is None:
        recorded = parent.data.tags.get(names.OBJECTIVE) if parent is not None else None
        metric = recorded or DEFAULT_METRIC
    say(f"loaded {len(frame)} runs of {what} in {time.perf_counter() - t0:.1f} s")
    check_usable(frame, what, metric)

    study_data = None
    maximize = True if minimize is None else not minimize
    if parent is not None:
        from analysis import study as st

        direction = None if minimize is None else not minimize
        study_data = st.load_study_data(
            parent,
            frame,
            metric,
            storage=storage,
            maximize=direction,
            tracking_uri=reader.location.uri,
        )
        if minimize is None:
            maximize = study_data.maximize

    table = agg.aggregate(frame, metric, maximize=maximize)
    params = [c for c in table.columns if c not in ("rank", "config", *STATS_COLUMNS)]
    params = [p for p in params if p not in ("n_unfinished", "seeds", "run_ids")]
    counts = frame["status"].value_counts().to_dict()
    facts: dict[str, Any] = {
        "source": f"sweep {source.label} ({sweep})" if sweep else f"experiment {experiment}",
        "tracking store": reader.display,
        "metric": metric,
        "direction": "maximize" if maximize else "minimize",
        "runs": len(frame),
        "training runs": int(frame["training"].sum()),
        "run statuses": {str(k): int(v) for k, v in counts.items()},
        "configurations": len(table),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if source.study_name:
        facts["study"] = source.study_name
    report = Report(f"pg report: {facts['source']}", facts)

    shown = display_table(table)
    report.tables[SUMMARY_CSV] = table
    report.tables[RUNS_CSV] = frame
    report.texts[SUMMARY_MD] = (
        f"# {report.title}\n\nFinal `{metric}` per configuration over seeds "
        f"(FINISHED runs; 95 % CI of the mean from Student's t).\n\n" + markdown_table(shown)
    )
    report.sections.append(
        Section(
            f"Configurations by mean final {metric} (top {min(top, len(shown))} of {len(shown)})",
            table=shown.head(top),
            text="Mean over seeds of FINISHED runs; ci95 is the half-width of the 95 % "
            "Student-t interval of the mean (empty for one seed). All rows: summary.csv.",
        )
    )

    if parent is not None:
        _validation_section(report, reader, parent, frame)

    t1 = time.perf_counter()
    shown_top = min(top, int(table["mean"].notna().sum()))
    fig, _, _ = curves_section(
        reader, table, params, metric, top, f"{source.label}: top {shown_top} configurations"
    )
    say(f"fetched histories of the top configurations in {time.perf_counter() - t1:.1f} s")
    report.figures[CURVES_PNG] = fig
    report.sections.append(
        Section(
            f"Learning curves of the top {shown_top} configurations",
            image=CURVES_PNG,
            text="Mean over seeds with 95 % CI band (bands need >= 2 seeds).",
        )
    )

    if study_data is not None:
        _sweep_sections(report, study_data, source.label)
    facts["seconds"] = round(time.perf_counter() - t0, 2)
    return report


def _validation_section(report: Report, reader: Reader, parent: Any, frame: pd.DataFrame) -> None:
    """The sweep's table of its best configurations on fresh seeds, when it has one."""
    from analysis import validation as val

    found = val.load_validation(reader, parent, frame)
    report.notes.extend(found.notes)
    report.facts.update(found.facts)
    if found.table is None:
        return
    report.tables[val.VALIDATION_CSV] = found.table
    report.texts[SUMMARY_MD] += "\n## Validation on fresh seeds\n\n" + markdown_table(found.shown())
    report.sections.append(
        Section("Validation on fresh seeds", table=found.shown(), text=val.section_text(found))
    )


def _sweep_sections(report: Report, data: Any, label: str) -> None:
    from analysis import study as st

    report.notes.extend(data.notes)
    report.facts["trials from"] = data.origin
    counts = data.counts()
    report.facts["trial states"] = counts
    report.figures[STATES_PNG] = plots.state_counts(counts, f"{label}: trials by state")
    report.sections.append(Section("Trials by state", image=STATES_PNG))
    if data.trials.empty or not data.trials["value"].notna().any():
        report.notes.append("optimization history and slices skipped: no trial has a value")
        return
    report.figures[HISTORY_PNG] = plots.optimization_history(
        data.trials, data.maximize, f"{label}: optimization history"
    )
    report.sections.append(Section("Optimization history", image=HISTORY_PNG))
    values, reason = st.importance(data)
    if values:
        report.figures[IMPORTANCE_PNG] = plots.importance_bars(
            values, f"{label}: parameter importance"
        )
        report.sections.append(Section("Parameter importance", image=IMPORTANCE_PNG))
        report.tables["importance.csv"] = pd.DataFrame(
            {"param": list(values), "importance": list(values.values())}
        )
    elif reason:
        report.notes.append(f"skipped: {reason}")
    if data.params:
        report.figures[SLICES_PNG] = plots.slices(
            data.trials, data.params, f"{label}: objective by parameter"
        )
        report.sections.append(Section("Objective by parameter", image=SLICES_PNG))
    else:
        report.notes.append("skipped: slices (no parameter varies between trials)")


def default_out(report_source: str) -> Path:
    return Path(f"report-{_slug(report_source)}")


def attach(reader: Reader, run_id: str, folder: Path) -> None:
    """Upload the report folder under ``report/`` of the sweep's parent run."""
    from pg.record.tracker import attach_folder

    attach_folder(reader, run_id, folder, REPORT_DIR)
