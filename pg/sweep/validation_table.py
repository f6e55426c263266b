"""The validation table: the finalists of a search, their fresh-seed results, the winner.

Pure functions of the two Optuna studies (the search's and ``<study>.validation``), so the
sweep, a test or a notebook get the same numbers.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from pg.record import names
from pg.sweep.retries import cut_short

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from optuna.trial import FrozenTrial


def pair_of(trial: FrozenTrial) -> tuple[int, int]:
    attrs = trial.user_attrs
    return int(attrs.get(names.ATTR_VALIDATES, -1)), int(attrs.get(names.ATTR_VALIDATION_SEED, -1))


def top_configurations(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The ``k`` best COMPLETE trials by value (ties: the earlier trial), one per distinct
    set of params: a sampler that proposes a configuration twice gets it validated once."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and not math.isnan(t.value)
    ]
    complete.sort(key=lambda t: (sign * float(t.value or 0.0), t.number))
    chosen: list[FrozenTrial] = []
    seen: set[str] = set()
    for trial in complete:
        key = json.dumps(trial.params, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            chosen.append(trial)
        if len(chosen) == k:
            break
    return chosen


def validation_table(
    study: optuna.Study, vstudy: optuna.Study, chosen: list[FrozenTrial], seeds: list[int]
) -> tuple[pd.DataFrame, bool]:
    """One row per validated configuration, best validated mean first; and whether every
    (configuration, seed) pair has finished.

    ``mean``, ``std`` (sample), ``ci95`` (half-width of the 95 % Student-t interval),
    ``ci_low``/``ci_high`` are over the seeds that completed; ``n_failed`` counts seeds
    whose training failed by itself (an error, a NaN loss).  Configurations that completed
    every seed rank before the others (see :func:`winner`).
    """
    import pandas as pd
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    from pg.stats import t_interval

    by_pair: dict[tuple[int, int], list[FrozenTrial]] = {}
    for t in vstudy.get_trials(deepcopy=False):
        by_pair.setdefault(pair_of(t), []).append(t)
    complete = True
    rows = []
    for trial in chosen:
        values, used, run_ids, failed = [], [], [], 0
        for seed in seeds:
            trials = [t for t in by_pair.get((trial.number, seed), []) if not cut_short(t)]
            done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
            if done:
                values.append(float(done[0].value or 0.0))
                used.append(seed)
                run_ids.append(str(done[0].user_attrs.get(names.ATTR_MLFLOW_RUN, "")))
            elif any(t.state.is_finished() for t in trials):
                failed += 1
            else:
                complete = False
        mean, std, half = t_interval(values)
        rows.append(
            {
                "trial": trial.number,
                **{f"params.{k}": p for k, p in trial.params.items()},
                "search_value": trial.value,
                "mean": mean,
                "std": std,
                "ci95": half,
                "ci_low": mean - half,
                "ci_high": mean + half,
                "n_seeds": len(values),
                "n_failed": failed,
                "seeds": " ".join(map(str, used)),
                "values": " ".join(repr(x) for x in values),
                "run_ids": " ".join(run_ids),
            }
        )
    table = pd.DataFrame(rows)
    maximize = study.direction == StudyDirection.MAXIMIZE
    table["_whole"] = table["n_failed"] == 0
    table = table.sort_values(
        ["_whole", "mean"], ascending=[False, not maximize], na_position="last", kind="stable"
    )
    return table.drop(columns="_whole").reset_index(drop=True), complete


def winner(table: pd.DataFrame) -> dict[str, Any] | None:
    """The best validated mean among configurations that completed every seed; a finalist
    that diverged on a fresh seed is not a winner to trust."""
    whole = table[(table["n_failed"] == 0) & table["mean"].notna()]
    return None if whole.empty else dict(whole.iloc[0].to_dict())


def console_lines(
    table: pd.DataFrame, complete: bool, seeds: list[int], search_best: int | None
) -> list[str]:
    """The table for the console, then the validated winner beside the search's best."""
    shown = ",".join(map(str, seeds))
    if not complete:
        return [f"pg: validation incomplete on seeds {shown}; run the same command to finish"]
    out = [f"pg: validation on fresh seeds {shown} (mean ± 95% CI, best first):"]
    for row in table.to_dict("records"):
        params = " ".join(
            f"{k[len('params.') :]}={_fmt(x)}" for k, x in row.items() if k[:7] == "params."
        )
        failed = f", {row['n_failed']} failed" if row["n_failed"] else ""
        out.append(
            f"pg:   trial {row['trial']}: {_mean_text(row)} (n={row['n_seeds']}{failed}; "
            f"search value {_fmt(row['search_value'])})  {params}"
        )
    best = winner(table)
    if best is None:
        out.append("pg: validated best: none (no configuration completed every seed)")
    elif search_best is not None and search_best != best["trial"]:
        other = table[table["trial"] == search_best]
        theirs = f" ({_mean_text(other.iloc[0].to_dict())})" if len(other) else ""
        out.append(
            f"pg: validated best: trial {best['trial']} ({_mean_text(best)}): NOT the "
            f"search's best, trial {search_best}{theirs}; prefer trial {best['trial']}"
        )
    else:
        out.append(
            f"pg: validated best: trial {best['trial']} ({_mean_text(best)}), the same "
            "configuration as the search's best"
        )
    return out


def _mean_text(row: dict[str, Any]) -> str:
    if math.isnan(row["mean"]):
        return "no seed completed"
    if math.isnan(row["ci95"]):
        return f"{row['mean']:.4g}"
    return f"{row['mean']:.4g} ± {row['ci95']:.3g}"


def _fmt(value: Any) -> str:
    from pg.sweep.worker import _fmt as fmt

    return fmt(value)
