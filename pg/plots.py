"""Figures shared by runs, sweeps and reports.

Each figure function returns a matplotlib ``Figure`` (no pyplot state, so threads and
tests can build them side by side); :func:`png_bytes` renders one for an artifact.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

STATE_COLORS = {"COMPLETE": "tab:green", "PRUNED": "tab:orange", "FAIL": "tab:red"}
DPI = 100


def figure(width: float = 8.0, height: float = 4.5, constrained: bool = True) -> Figure:
    """``constrained=False``: fixed margins, for a figure whose labels are known to fit
    (the constrained-layout solver is a third of drawing a simple plot)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained" if constrained else None)


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


@dataclass
class Curve:
    """What a learning curve is drawn from: a training result's episodes and evaluations,
    without its policy (so the record process can draw it without importing torch)."""

    episode_steps: Sequence[int] = field(default_factory=list)
    episode_returns: Sequence[float] = field(default_factory=list)
    eval_steps: Sequence[int] = field(default_factory=list)
    eval_returns: Sequence[float] = field(default_factory=list)


def learning_curve_png(result: Curve, title: str, target: float | None) -> bytes:
    """Episode returns, their running mean over 100 and the greedy evaluations.

    Drawn for every run (in the record process): fixed margins, as its labels are short."""
    fig = figure(7.0, 4.0, constrained=False)
    fig.subplots_adjust(left=0.1, right=0.98, top=0.92, bottom=0.12)
    ax = fig.add_subplot()
    steps = np.asarray(result.episode_steps)
    rets = np.asarray(result.episode_returns)
    if rets.size:
        ax.plot(steps, rets, color="0.75", lw=0.6, label="episode return")
        csum = np.concatenate([[0.0], np.cumsum(rets)])
        idx = np.arange(1, rets.size + 1)
        lo = np.maximum(idx - 100, 0)
        ax.plot(
            steps, (csum[idx] - csum[lo]) / (idx - lo), color="C0", lw=1.8, label="mean of last 100"
        )
    if result.eval_returns:
        ax.plot(result.eval_steps, result.eval_returns, "o-", color="C1", ms=4, label="greedy eval")
    if target is not None and math.isfinite(target):
        ax.axhline(target, color="C2", ls="--", lw=1, label=f"target {target:g}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return png_bytes(fig)


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
