"""A report as files: Markdown and HTML rendering, and writing a folder atomically."""

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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from analysis import plots
from analysis.loading import AnalysisError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HTML_FILE = "index.html"
META_FILE = "report.json"


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
