"""Group runs by configuration and summarise them over seeds.

Two runs share a configuration when every param is equal except ``seed`` and the
``tracking.*`` keys (where a run was stored says nothing about what was trained).  The
summary of a configuration is the mean of a metric's final value over its finished
runs, the sample standard deviation and a 95 % confidence interval of the mean from
Student's t distribution (``mean ± t(0.975, n-1) · std / sqrt(n)``): with the 3-10 seeds
RL papers use, the normal approximation would claim far too narrow intervals.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from pg.stats import t_interval as t_interval  # analysis's API before pg.stats

IGNORED_PARAMS = ("params.seed",)
IGNORED_PREFIXES = ("params.tracking.",)
FINISHED = "FINISHED"


def config_columns(frame: pd.DataFrame) -> list[str]:
    """Param columns that define a configuration."""
    return sorted(
        c
        for c in frame.columns
        if c.startswith("params.")
        and c not in IGNORED_PARAMS
        and not c.startswith(IGNORED_PREFIXES)
    )


def varying_columns(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> list[str]:
    """Configuration columns whose value differs between rows (what a table should show)."""
    cols = config_columns(frame) if columns is None else list(columns)
    return [c for c in cols if frame[c].fillna("null").astype(str).nunique() > 1]


def with_config_ids(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``config``: a short id of the configuration of each row.

    Only the params a run actually has enter the id, so the same configuration gets the
    same id in every table (an experiment's table also has the columns of its sweep
    runs' own params, absent from the training runs).
    """
    cols = config_columns(frame)
    out = frame.copy()
    if out.empty:
        out["config"] = pd.Series(dtype=str)
        return out
    keys = out[cols] if cols else pd.DataFrame(index=out.index)

    def digest(values: Sequence[object]) -> str:
        text = "\x1f".join(f"{c}={v}" for c, v in zip(cols, values, strict=True) if not pd.isna(v))
        return hashlib.sha1(text.encode()).hexdigest()[:8]

    out["config"] = [digest(list(row)) for row in keys.itertuples(index=False, name=None)]
    return out


def aggregate(
    frame: pd.DataFrame, metric: str, *, maximize: bool = True, confidence: float = 0.95
) -> pd.DataFrame:
    """One row per configuration of the training runs in ``frame``, best first.

    Only runs that ran to the end enter the statistics; the others (failed, pruned, killed) are
    counted in ``n_unfinished`` so a fragile configuration does not look robust.
    """
    runs = frame[frame["training"].astype(bool)] if "training" in frame else frame
    runs = with_config_ids(runs)
    col = f"metrics.{metric}"
    shown = varying_columns(runs)
    # Plain-Python grouping: a pandas groupby with per-group filtering costs ~10 ms per
    # configuration, which dominates a report over thousands of runs.
    n = len(runs)
    values_all = runs[col].astype(float).tolist() if col in runs else [math.nan] * n
    seeds_all = runs["seed"].tolist() if "seed" in runs else [math.nan] * n
    done_all = (
        runs["completed"].astype(bool) if "completed" in runs else runs["status"] == FINISHED
    ).tolist()
    firsts: dict[str, int] = {}
    members: dict[str, list[int]] = {}
    for i, config in enumerate(runs["config"].tolist()):
        firsts.setdefault(config, i)
        members.setdefault(config, []).append(i)
    shown_values = {c: runs[c].tolist() for c in shown}
    run_ids = runs["run_id"].tolist()
    rows = []
    for config, idx in members.items():
        done = [i for i in idx if done_all[i]]
        values = [values_all[i] for i in done if not math.isnan(values_all[i])]
        mean, std, half = t_interval(values, confidence)
        row: dict[str, object] = {"config": config}
        row.update({c[len("params.") :]: shown_values[c][firsts[config]] for c in shown})
        seeds = sorted(int(seeds_all[i]) for i in done if not pd.isna(seeds_all[i]))
        row.update(
            {
                "n_seeds": len(values),
                "mean": mean,
                "std": std,
                "ci95": half,
                "ci_low": mean - half if not math.isnan(half) else math.nan,
                "ci_high": mean + half if not math.isnan(half) else math.nan,
                "min": min(values) if values else math.nan,
                "max": max(values) if values else math.nan,
                "n_unfinished": len(idx) - len(done),
                "seeds": " ".join(map(str, seeds)),
                "run_ids": " ".join(run_ids[i] for i in done),
            }
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.sort_values("mean", ascending=not maximize, na_position="last", kind="stable")
    table.insert(0, "rank", range(1, len(table) + 1))
    return table.reset_index(drop=True)


def mean_curves(
    histories: pd.DataFrame,
    groups: Mapping[str, Sequence[str]],
    metric: str,
    *,
    points: int = 100,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Mean ± CI curve of each group of runs on a shared step grid.

    Seeds log at slightly different env steps, so each run's curve is interpolated onto
    a grid that ends at the shortest run of the group: past it the mean would silently
    switch to fewer seeds.  Columns: ``group, step, mean, low, high, n``.
    """
    from scipy import stats

    out = []
    hist = histories[histories["metric"] == metric]
    for name, run_ids in groups.items():
        curves = []
        for run_id in run_ids:
            h = hist[hist["run_id"] == run_id].sort_values("step")
            if len(h):
                curves.append((h["step"].to_numpy(float), h["value"].to_numpy(float)))
        if not curves:
            continue
        start = max(c[0][0] for c in curves)
        end = min(c[0][-1] for c in curves)
        grid = np.linspace(start, end, points) if end > start else np.array([end])
        ys = np.vstack([np.interp(grid, x, y) for x, y in curves])
        n = ys.shape[0]
        mean = ys.mean(axis=0)
        if n > 1:
            sem = ys.std(axis=0, ddof=1) / math.sqrt(n)
            half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sem
        else:
            half = np.full_like(mean, np.nan)
        out.append(
            pd.DataFrame(
                {
                    "group": name,
                    "step": grid,
                    "mean": mean,
                    "low": mean - half,
                    "high": mean + half,
                    "n": n,
                }
            )
        )
    if not out:
        return pd.DataFrame(columns=["group", "step", "mean", "low", "high", "n"])
    return pd.concat(out, ignore_index=True)
