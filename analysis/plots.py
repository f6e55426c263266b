"""Figures of a report.  Each function returns the matplotlib Figure so callers (and
tests) can inspect its artists before :func:`save_png` writes and closes it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STATE_COLORS = {"COMPLETE": "tab:green", "PRUNED": "tab:orange", "FAIL": "tab:red"}
DPI = 100


def _figure(width: float = 8.0, height: float = 4.5) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


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


def optimization_history(trials: pd.DataFrame, maximize: bool, title: str) -> Figure:
    """Trial values by trial number, coloured by state, and the best value so far."""
    fig = _figure()
    ax = fig.add_subplot()
    ordered = trials.sort_values("number")
    for state, color in STATE_COLORS.items():
        t = ordered[(ordered["state"] == state) & ordered["value"].notna()]
        if len(t):
            ax.scatter(t["number"], t["value"], color=color, s=18, label=state.lower())
    done = ordered[(ordered["state"] == "COMPLETE") & ordered["value"].notna()]
    if len(done):
        best = done["value"].cummax() if maximize else done["value"].cummin()
        ax.step(done["number"], best, where="post", color="black", lw=1.2, label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return fig


def importance_bars(importances: Mapping[str, float], title: str) -> Figure:
    """Horizontal bars, most important parameter on top."""
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = _figure(7.0, max(2.0, 0.45 * len(items) + 1.2))
    ax = fig.add_subplot()
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:blue")
    ax.set_xlabel("importance (fANOVA, sums to 1)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
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
