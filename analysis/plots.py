"""Figures of a report.  Each function returns the matplotlib Figure so callers (and
tests) can inspect its artists before :func:`save_png` writes and closes it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from pg.plots import DPI, STATE_COLORS, importance_bars, optimization_history
from pg.plots import figure as _figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "importance_bars",
    "learning_curves",
    "optimization_history",
    "save_png",
    "slices",
    "state_counts",
]


def save_png(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png", dpi=DPI)
    return path


def learning_curves(
    curves: pd.DataFrame,
    labels: Mapping[str, str],
    metric: str,
    title: str,
    target: float | None = None,
) -> Figure:
    """One line per group (mean over seeds) with its 95 % CI band where n >= 2."""
    fig = _figure()
    ax = fig.add_subplot()
    for i, (group, label) in enumerate(labels.items()):
        c = curves[curves["group"] == group]
        if c.empty:
            continue
        color = f"C{i % 10}"
        n = int(c["n"].iloc[0])
        ax.plot(c["step"], c["mean"], color=color, label=f"{label} (n={n})")
        if n >= 2:
            ax.fill_between(c["step"], c["low"], c["high"], color=color, alpha=0.2, lw=0)
    if target is not None and math.isfinite(target):
        ax.axhline(target, color="grey", ls=":", lw=1)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="best")
    return fig


def slices(trials: pd.DataFrame, params: Sequence[str], title: str) -> Figure:
    """Objective against each parameter, one panel per parameter (complete trials)."""
    done = trials[(trials["state"] == "COMPLETE") & trials["value"].notna()]
    cols = min(3, max(1, len(params)))
    rows = max(1, math.ceil(len(params) / cols))
    fig = _figure(4.0 * cols, 3.2 * rows)
    fig.suptitle(title)
    for i, p in enumerate(params):
        ax = fig.add_subplot(rows, cols, i + 1)
        values = done[p] if p in done else pd.Series(dtype=object)
        ok = values.notna()
        x = values[ok]
        y = done["value"][ok]
        numeric = pd.to_numeric(x, errors="coerce")
        if len(x) and numeric.notna().all() and not x.map(lambda v: isinstance(v, bool)).any():
            ax.scatter(numeric, y, s=16, c=done["number"][ok], cmap="viridis")
            positive = (numeric > 0).all()
            if positive and len(numeric) and numeric.max() / numeric.min() > 100:
                ax.set_xscale("log")
        else:
            ax.scatter(x.astype(str), y, s=16, c=done["number"][ok], cmap="viridis")
        ax.set_xlabel(p)
        ax.set_ylabel("objective")
        ax.grid(alpha=0.3)
    return fig


def state_counts(counts: Mapping[str, int], title: str) -> Figure:
    """One bar per trial state (complete, pruned, failed, then anything else seen)."""
    fig = _figure(5.0, 3.5)
    ax = fig.add_subplot()
    names = list(counts)
    bars = ax.bar(
        names, [counts[n] for n in names], color=[STATE_COLORS.get(n, "grey") for n in names]
    )
    ax.bar_label(bars)
    ax.set_ylabel("trials")
    ax.set_title(title)
    ax.margins(y=0.15)
    return fig
