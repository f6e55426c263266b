"""Report folders: tables, learning curves, sweep plots and one HTML page showing all.

A report is assembled in a hidden temporary folder next to its destination and renamed
into place only when complete, so an error (unknown run, missing metric, full disk)
never leaves a half-written report behind.  Every figure is written as a PNG and also
embedded in ``index.html`` (base64) so the page still works when mailed or attached to
an MLflow run on its own; it also links the PNG and CSV files beside it.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from analysis import aggregate as agg
from analysis import loading, plots
from analysis.loading import AnalysisError
from pg.record import names

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pg.record.reader import Reader

DEFAULT_METRIC = "rollout/ep_return_100"
HTML_FILE = "index.html"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
RUNS_CSV = "runs.csv"
META_FILE = "report.json"
CURVES_PNG = "curves.png"
HISTORY_PNG = "history.png"
IMPORTANCE_PNG = "importance.png"
SLICES_PNG = "slices.png"
STATES_PNG = "states.png"
REPORT_DIR = "report"  # artifact folder of a report attached to a sweep's parent run
STATS_COLUMNS = ("n_seeds", "mean", "std", "ci95", "ci_low", "ci_high", "min", "max")


@dataclass
class Section:
    title: str
    image: str | None = None  # file name inside the report folder
    table: pd.DataFrame | None = None
    text: str = ""


@dataclass
class Report:
    """Everything a report folder holds, before it is written."""

    title: str
    facts: dict[str, Any]
    sections: list[Section] = field(default_factory=list)
    figures: dict[str, Figure] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# -- formatting -----------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:,.0f}" if abs(value) >= 1e6 else f"{value:.4g}"
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return value if number.is_integer() or not math.isfinite(number) else _fmt(number)
    return "" if value is None else str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (without pulling in ``tabulate``)."""
    cols = [str(c) for c in frame.columns]

    def cell(v: Any) -> str:
        return _fmt(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False, name=None):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The summary without the long id lists, for Markdown, HTML and the terminal."""
    return table.drop(columns=[c for c in ("run_ids", "ci_low", "ci_high") if c in table])


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "report"


def config_label(row: pd.Series, params: Sequence[str]) -> str:
    parts = [f"{p}={_fmt(row[p])}" for p in params if p in row]
    return ", ".join(parts) if parts else str(row["config"])


# -- writing ---------------------------------------------------------------------------
@contextmanager
def atomic_dir(out: Path) -> Iterator[Path]:
    """Yield a temp folder that becomes ``out`` only if the block succeeds.

    An existing ``out`` is replaced only when it is an earlier report (it holds
    ``report.json``); anything else is refused rather than deleted.
    """
    out = out.resolve()
    if out.exists() and not (out / META_FILE).is_file():
        raise AnalysisError(f"{out} exists and is not a report folder; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide the report from other users
    try:
        yield tmp
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{time.time_ns()}"
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write(report: Report, out: Path) -> Path:
    with atomic_dir(out) as tmp:
        for name, fig in report.figures.items():
            plots.save_png(fig, tmp / name)
        for name, frame in report.tables.items():
            frame.to_csv(tmp / name, index=False)
        for name, text in report.texts.items():
            (tmp / name).write_text(text)
        meta = {**report.facts, "notes": report.notes, "files": sorted(_files(report))}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        (tmp / HTML_FILE).write_text(render_html(report, tmp))
    return out.resolve()


def _files(report: Report) -> list[str]:
    return [*report.figures, *report.tables, *report.texts, HTML_FILE]


def render_html(report: Report, folder: Path) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(report.title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
        "padding:3px 6px;text-align:right}th{background:#f3f3f3}img{max-width:100%}"
        ".note{color:#8a4b00}</style></head><body>",
        f"<h1>{esc(report.title)}</h1>",
        "<table>",
    ]
    for key, value in report.facts.items():
        if isinstance(value, dict | list):
            value = json.dumps(value)
        parts.append(f"<tr><th>{esc(str(key))}</th><td>{esc(_fmt(value))}</td></tr>")
    parts.append("</table>")
    if report.notes:
        parts.append("<h2>Notes</h2><ul>")
        parts += [f"<li class='note'>{esc(n)}</li>" for n in report.notes]
        parts.append("</ul>")
    for section in report.sections:
        parts.append(f"<h2>{esc(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{esc(section.text)}</p>")
        if section.table is not None:
            shown = section.table.map(_fmt)
            parts.append(shown.to_html(index=False, escape=True, border=0))
        if section.image is not None:
            data = base64.b64encode((folder / section.image).read_bytes()).decode()
            parts.append(
                f"<p><a href='{esc(section.image)}'><img alt='{esc(section.title)}' "
                f"src='data:image/png;base64,{data}'></a></p>"
            )
    links = " · ".join(f"<a href='{esc(f)}'>{esc(f)}</a>" for f in sorted(_files(report)))
    parts.append(f"<h2>Files</h2><p>{links}</p></body></html>\n")
    return "\n".join(parts)


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
