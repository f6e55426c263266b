"""``analysis compare``: the best configuration of each run, sweep or experiment, side by side."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from analysis import aggregate as agg
from analysis import loading, plots
from analysis.loading import AnalysisError
from analysis.report import (
    CURVES_PNG,
    DEFAULT_METRIC,
    STATS_COLUMNS,
    Report,
    Section,
    check_usable,
    config_label,
    markdown_table,
)
from pg.record import names

if TYPE_CHECKING:
    from pg.record.reader import Reader, Run


@dataclass
class Member:
    """One side of a comparison: a label and the training runs it stands for."""

    label: str
    kind: str
    frame: pd.DataFrame


def resolve(reader: Reader, token: str) -> Member:
    """A run id, a sweep run id, a run name or an experiment name -> its training runs."""
    from pg.record.reader import RecordError

    if re.fullmatch(r"[0-9a-f]{32}", token):
        try:
            return _member_of_run(reader, reader.run(token))
        except RecordError:
            pass
    try:
        exp = reader.experiment(token)
    except RecordError:
        exp = None
    if exp is not None:
        return Member(token, "experiment", loading.runs_frame(reader.search([exp.experiment_id])))
    ids = reader.experiment_ids()
    named = reader.search(ids, f"attributes.run_name = {loading._quote(token)}") if ids else []
    if len(named) == 1:
        return _member_of_run(reader, named[0])
    if named:
        return Member(token, "runs named", loading.runs_frame(named))
    raise AnalysisError(f"{token!r} is not a run id, run name or experiment in {reader.display}")


def _member_of_run(reader: Reader, run: Run) -> Member:
    kind = run.data.tags.get(names.KIND, names.KIND_RUN)
    label = run.info.run_name or run.info.run_id
    if kind == names.KIND_SWEEP:
        frame, _ = loading.load_source(sweep=run.info.run_id, reader=reader)
        return Member(label, names.KIND_SWEEP, frame)
    children = reader.children(run)
    if children:
        return Member(label, kind, loading.runs_frame([run, *children]))
    return Member(label, kind, loading.runs_frame([run]))


def build_comparison(
    tokens: Sequence[str],
    *,
    metric: str = DEFAULT_METRIC,
    tracking_uri: str | None = None,
    minimize: bool = False,
    reader: Reader | None = None,
) -> Report:
    """Side by side: the best configuration of each member, its stats and its curve."""
    if len(tokens) < 2:
        raise AnalysisError("compare needs at least two runs, sweeps or experiments")
    reader = reader or loading.connect(tracking_uri)
    members = [resolve(reader, t) for t in tokens]
    rows = []
    groups: dict[str, list[str]] = {}
    for m in members:
        check_usable(m.frame, f"{m.kind} {m.label}", metric)
        table = agg.aggregate(m.frame, metric, maximize=not minimize)
        best = table.iloc[0]
        params = [
            c
            for c in table.columns
            if c not in ("rank", "config", "n_unfinished", "seeds", "run_ids", *STATS_COLUMNS)
        ]
        rows.append(
            {
                "name": m.label,
                "kind": m.kind,
                "runs": len(m.frame),
                "configurations": len(table),
                "best config": config_label(best, params) if params else "",
                **{c: best[c] for c in ("n_seeds", "mean", "std", "ci95", "min", "max")},
            }
        )
        key = m.label
        while key in groups:
            key += "'"
        groups[key] = str(best["run_ids"]).split()
    histories = loading.load_histories(
        [r for ids in groups.values() for r in ids], [metric], reader=reader
    )
    curves = agg.mean_curves(histories, groups, metric)
    table = pd.DataFrame(rows)
    facts: dict[str, Any] = {
        "compared": list(tokens),
        "tracking store": reader.display,
        "metric": metric,
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    report = Report("pg comparison: " + " vs ".join(m.label for m in members), facts)
    report.tables["compare.csv"] = table
    report.texts["compare.md"] = f"# {report.title}\n\n" + markdown_table(table)
    report.figures[CURVES_PNG] = plots.learning_curves(
        curves, {k: k for k in groups}, metric, "best configuration of each"
    )
    report.sections.append(Section(f"Final {metric} (best configuration of each)", table=table))
    report.sections.append(Section("Learning curves", image=CURVES_PNG))
    return report
