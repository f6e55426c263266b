"""The end of a search with ``hydra.sweeper.validate``: pick, queue, train, tabulate.

Runs in the sweep's process once its search has ended normally (the budget spent, or
the timeout of a sweep without ``n_trials``).  The ``top_k`` best distinct configurations
by search value are queued on the fresh seeds (:mod:`pg.sweep.validation`), the same
workers train them, and the table of validated means is written to the parent run.
Run again after an interruption, it queues only the pairs that have no finished trial.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from pg.record import names
from pg.sweep import validation as v
from pg.sweep.worker import EXIT_FAILURES, EXIT_OK, Job

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna
    import pandas as pd
    from optuna.trial import FrozenTrial

    from pg.record.writer import TrackedRun
    from pg.sweep.orphans import Orphan
    from pg.sweep.spec import Plan


class ValidationStage:
    def __init__(
        self,
        study: optuna.Study,
        plan: Plan,
        search_seeds: list[int],
        job: Job,
        run_workers: Callable[[Job, Plan, optuna.Study], int],
        label_orphans: Callable[[list[Orphan], str], None],
    ) -> None:
        self.study = study
        self.plan = plan
        self.job = job
        self.run_workers = run_workers
        self.label_orphans = label_orphans
        self.top_k = int(plan.spec.validate["top_k"])
        self.seeds = v.validation_seeds(search_seeds, int(plan.spec.validate["seeds"]))
        self.table: pd.DataFrame | None = None
        self.complete = False  # every pair has a finished trial: the table is final
        self.ran = False  # this invocation trained validation runs (or tried to)

    def describe(self) -> str:
        seeds = ",".join(map(str, self.seeds))
        return f"validation of the top {self.top_k} on fresh seeds {seeds}"

    def run(self) -> int:
        """The stage; an exit code like the search's (interrupted, failed, ok)."""
        import optuna

        spec = self.plan.spec
        if not _search_spent(self.study, self.plan):
            print(
                "pg: validation starts once the search has all its n_trials; run the same "
                "command to continue",
                flush=True,
            )
            return EXIT_OK
        v.wait_for_running(
            self.study, spec, lambda o: self.label_orphans(o, spec.study_name), "search trial(s)"
        )
        chosen = top_configurations(self.study, self.top_k)
        if not chosen:
            print("pg: validation skipped: no trial completed", flush=True)
            return EXIT_OK
        vplan = v.validation_plan(self.plan)
        vstudy = self._open(vplan)
        if vstudy is None:
            return EXIT_FAILURES
        vname = vplan.spec.study_name

        def on_orphans(orphans: list[Orphan]) -> None:
            self.label_orphans(orphans, vname)

        from pg.sweep.orphans import fail_orphans

        on_orphans(fail_orphans(vstudy, spec))
        queued = self._queue(vstudy, chosen)
        waiting = len(vstudy.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
        pairs = len(chosen) * len(self.seeds)
        numbers = ", ".join(str(t.number) for t in chosen)
        print(
            f"pg: validation: trial(s) {numbers} (top {len(chosen)} by search value) on fresh "
            f"seeds {','.join(map(str, self.seeds))}: {pairs} runs, {pairs - waiting} done or "
            f"running elsewhere{f', {queued} queued' if queued else ''}; study '{vname}'",
            flush=True,
        )
        code = EXIT_OK
        if waiting:
            self.ran = True
            job = Job(**{**asdict(self.job), "stage": v.STAGE, "deadline": None})
            workers = replace(vplan.spec, workers=min(spec.workers, waiting))
            code = self.run_workers(job, replace(vplan, spec=workers), vstudy)
        if code == EXIT_OK:
            v.wait_for_running(vstudy, spec, on_orphans, "validation run(s)")
        self.table, self.complete = validation_table(self.study, vstudy, chosen, self.seeds)
        return code

    def _open(self, vplan: Plan) -> optuna.Study | None:
        import optuna

        from pg.sweep.study import open_storage

        name = vplan.spec.study_name
        storage = open_storage(self.job.storage_url, vplan.spec)
        vstudy = optuna.create_study(
            study_name=name, storage=storage, direction=self.study.direction, load_if_exists=True
        )
        mode = vstudy.user_attrs.get(names.ATTR_MODE)
        if mode not in (None, names.MODE_VALIDATION) or (mode is None and vstudy.get_trials()):
            print(
                f"pg: cannot validate: study '{name}' exists and is not this sweep's "
                "validation; rename that study or choose another hydra.sweeper.study_name",
                file=sys.stderr,
                flush=True,
            )
            return None
        if mode is None:
            vstudy.set_user_attr(names.ATTR_MODE, names.MODE_VALIDATION)
        return vstudy

    def _queue(self, vstudy: optuna.Study, chosen: list[FrozenTrial]) -> int:
        """Queue each (configuration, seed) without a trial that is queued, running or
        finished by its own doing; a pair cut short (orphaned, Ctrl-C) is queued again."""
        from pg.sweep.study import BudgetLock

        queued = 0
        with BudgetLock(self.job.storage_url, vstudy.study_name).held():
            taken = {_pair(t) for t in vstudy.get_trials(deepcopy=False) if not _cut_short(t)}
            # Seed by seed: a validation cut short has every finalist on its first seeds.
            for seed in self.seeds:
                for trial in chosen:
                    if (trial.number, seed) in taken:
                        continue
                    vstudy.enqueue_trial(
                        dict(trial.params),
                        user_attrs={
                            names.ATTR_VALIDATES: trial.number,
                            names.ATTR_VALIDATION_SEED: seed,
                            names.ATTR_VALIDATION_PARAMS: dict(trial.params),
                        },
                        skip_if_exists=False,
                    )
                    queued += 1
        return queued

    # -- results -----------------------------------------------------------------------
    def publish(self, run: TrackedRun | None) -> None:
        """``sweep/validation.csv`` and the validated winner's tags, once the table is final."""
        if run is None or self.table is None or not self.complete:
            return
        run.log_files({names.VALIDATION_CSV: self.table.to_csv(index=False)})
        best = winner(self.table)
        if best is not None:
            run.set_tags(
                {
                    names.VALIDATED_BEST_TRIAL: str(best["trial"]),
                    names.VALIDATED_BEST_VALUE: repr(float(best["mean"])),
                    names.VALIDATED_BEST_RUN_IDS: str(best["run_ids"]),
                }
            )

    def lines(self) -> list[str]:
        """The console's last lines: the table, then the validated winner beside the
        search's (and whether they differ)."""
        if self.table is None:
            return []
        seeds = ",".join(map(str, self.seeds))
        if not self.complete:
            return [f"pg: validation incomplete on seeds {seeds}; run the same command to finish"]
        out = [f"pg: validation on fresh seeds {seeds} (mean ± 95% CI, best first):"]
        for row in self.table.to_dict("records"):
            params = " ".join(
                f"{k[len('params.') :]}={_fmt(x)}" for k, x in row.items() if k[:7] == "params."
            )
            failed = f", {row['n_failed']} failed" if row["n_failed"] else ""
            out.append(
                f"pg:   trial {row['trial']}: {_mean_text(row)} (n={row['n_seeds']}{failed}; "
                f"search value {_fmt(row['search_value'])})  {params}"
            )
        best = winner(self.table)
        search_best = top_configurations(self.study, 1)
        if best is None:
            out.append("pg: validated best: none (no configuration completed every seed)")
        elif search_best and search_best[0].number != best["trial"]:
            other = self.table[self.table["trial"] == search_best[0].number]
            theirs = f" ({_mean_text(other.iloc[0].to_dict())})" if len(other) else ""
            out.append(
                f"pg: validated best: trial {best['trial']} ({_mean_text(best)}): NOT the "
                f"search's best, trial {search_best[0].number}{theirs}; prefer trial "
                f"{best['trial']}"
            )
        else:
            out.append(
                f"pg: validated best: trial {best['trial']} ({_mean_text(best)}), the same "
                "configuration as the search's best"
            )
        return out


def _search_spent(study: optuna.Study, plan: Plan) -> bool:
    """The search has asked every trial of its budget (or, without one, its timeout ended
    it: the workers only return early on the deadline)."""
    from pg.sweep.study import budget, n_trials_in

    limit = budget(study, plan.spec)
    return limit is None or n_trials_in(study) >= limit


def _pair(trial: FrozenTrial) -> tuple[int, int]:
    attrs = trial.user_attrs
    return int(attrs.get(names.ATTR_VALIDATES, -1)), int(attrs.get(names.ATTR_VALIDATION_SEED, -1))


def _cut_short(trial: FrozenTrial) -> bool:
    from optuna.trial import TrialState

    from pg.sweep.study import RERUN_REASONS

    reason = str(trial.system_attrs.get(names.ATTR_REASON, ""))
    return trial.state == TrialState.FAIL and reason.startswith(RERUN_REASONS)


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

    from pg.sweep.results import mean_std_ci

    by_pair: dict[tuple[int, int], list[FrozenTrial]] = {}
    for t in vstudy.get_trials(deepcopy=False):
        by_pair.setdefault(_pair(t), []).append(t)
    complete = True
    rows = []
    for trial in chosen:
        values, used, run_ids, failed = [], [], [], 0
        for seed in seeds:
            trials = [t for t in by_pair.get((trial.number, seed), []) if not _cut_short(t)]
            done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
            if done:
                values.append(float(done[0].value or 0.0))
                used.append(seed)
                run_ids.append(str(done[0].user_attrs.get(names.ATTR_MLFLOW_RUN, "")))
            elif any(t.state.is_finished() for t in trials):
                failed += 1
            else:
                complete = False
        mean, std, half = mean_std_ci(values)
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


def _mean_text(row: dict[str, Any]) -> str:
    if math.isnan(row["mean"]):
        return "no seed completed"
    if math.isnan(row["ci95"]):
        return f"{row['mean']:.4g}"
    return f"{row['mean']:.4g} ± {row['ci95']:.3g}"


def _fmt(value: Any) -> str:
    from pg.sweep.worker import _fmt as fmt

    return fmt(value)
