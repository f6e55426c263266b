"""Learning-curve figure logged with every run."""

from __future__ import annotations

import io

import numpy as np

from pg.train import TrainResult


def learning_curve_png(result: TrainResult, title: str, target: float | None) -> bytes:
    """Episode returns, their running mean over 100 and the greedy evaluations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
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
    if target is not None:
        ax.axhline(target, color="C2", ls="--", lw=1, label=f"target {target:g}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
