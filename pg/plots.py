"""Figures shared by runs, sweeps and reports.

Each figure function returns a matplotlib ``Figure`` (no pyplot state, so threads and
tests can build them side by side); :func:`png_bytes` renders one for an artifact.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

STATE_COLORS = {"COMPLETE": "tab:green", "PRUNED": "tab:orange", "FAIL": "tab:red"}
DPI = 100


def figure(width: float = 8.0, height: float = 4.5) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def optimization_history(trials: pd.DataFrame, maximize: bool, title: str) -> Figure:
    """Trial values by trial number, coloured by state, and the best value so far."""
    fig = figure()
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
    fig = figure(7.0, max(2.0, 0.45 * len(items) + 1.2))
    ax = fig.add_subplot()
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:blue")
    ax.set_xlabel("importance (fANOVA, sums to 1)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return fig
