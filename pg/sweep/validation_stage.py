"""The end of a search with ``hydra.sweeper.validate``: pick, queue, train, tabulate.

Runs in the sweep's process once its search has ended normally (the budget spent, or
the timeout of a sweep without ``n_trials``).  The ``top_k`` best distinct configurations
by search value are queued on the fresh seeds (:mod:`pg.sweep.validation`), the same
workers train them, and the table of validated means is written to the parent run.
Run again after an interruption, it queues only the pairs that have no finished trial.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from pg.record import names
from pg.sweep import validation as v
from pg.sweep.retries import cut_short
from pg.sweep.validation_table import (
    console_lines,
    pair_of,
    top_configurations,
    validation_table,
    winner,
)
from pg.sweep.worker import EXIT_FAILURES, EXIT_OK, Job

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna
    import pandas as pd
    from optuna.trial import FrozenTrial

    from pg.record.remote import RemoteRun
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
        self.failure: str | None = None  # why the stage ended with EXIT_FAILURES

    def describe(self) -> str:
        seeds = ",".join(map(str, self.seeds))
        return f"validation of the top {self.top_k} on fresh seeds {seeds}"

    def run(self) -> int:
        """The stage; an exit code like the search's (interrupted, failed, ok)."""
        from optuna.trial import TrialState

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
            self.failure = "validation study name taken"
            return EXIT_FAILURES
        vname = vplan.spec.study_name

        def on_orphans(orphans: list[Orphan]) -> None:
            self.label_orphans(orphans, vname)

        from pg.sweep.orphans import fail_orphans

        code = EXIT_OK
        # A pair cut short while this command runs (a worker process or Ray node died) is
        # queued once more right away; anything left after that waits for a re-run.
        for attempt in range(2):
            on_orphans(fail_orphans(vstudy, spec))
            queued = self._queue(vstudy, chosen)
            waiting = len(vstudy.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
            if attempt == 0:
                self._announce(chosen, queued, waiting, vname)
            if waiting:
                self.ran = True
                job = Job(**{**asdict(self.job), "stage": v.STAGE, "deadline": None})
                workers = replace(vplan.spec, workers=min(spec.workers, waiting))
                code = self.run_workers(job, replace(vplan, spec=workers), vstudy)
            if code == EXIT_FAILURES:
                self.failure = "validation stopped early"
                print(
                    "pg: a validation worker ended abnormally; run the same command to finish",
                    file=sys.stderr,
                    flush=True,
                )
            if code != EXIT_OK:
                break
            v.wait_for_running(vstudy, spec, on_orphans, "validation run(s)")
            self.table, self.complete = validation_table(self.study, vstudy, chosen, self.seeds)
            if self.complete:
                break
        return code

    def _announce(
        self, chosen: list[FrozenTrial], queued: int, waiting: int, study_name: str
    ) -> None:
        pairs = len(chosen) * len(self.seeds)
        numbers = ", ".join(str(t.number) for t in chosen)
        print(
            f"pg: validation: trial(s) {numbers} (top {len(chosen)} by search value) on fresh "
            f"seeds {','.join(map(str, self.seeds))}: {pairs} runs, {pairs - waiting} done or "
            f"running elsewhere{f', {queued} queued' if queued else ''}; study '{study_name}'",
            flush=True,
        )

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
        from pg.sweep.asking import BudgetLock

        queued = 0
        with BudgetLock(self.job.storage_url, vstudy.study_name).held():
            taken = {pair_of(t) for t in vstudy.get_trials(deepcopy=False) if not cut_short(t)}
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
    def publish(self, run: RemoteRun | None) -> None:
        """``sweep/validation.csv`` and the validated winner's tags, once the table is final."""
        if run is None or self.table is None or not self.complete:
            return
        files = {names.VALIDATION_CSV: self.table.to_csv(index=False)}
        best = winner(self.table)
        if best is not None:
            files[names.VALIDATED_YAML] = self.winner_yaml(best)
        run.log_files(files)
        if best is not None:
            run.set_tags(
                {
                    names.VALIDATED_BEST_TRIAL: str(best["trial"]),
                    names.VALIDATED_BEST_VALUE: repr(float(best["mean"])),
                    names.VALIDATED_BEST_RUN_IDS: str(best["run_ids"]),
                }
            )

    def winner_yaml(self, best: dict[str, Any]) -> str:
        """``sweep/validated_params.yaml``: ``best_params.yaml`` for the validated winner,
        the configuration to train again (its search trial's params)."""
        from pg.sweep.results import train_again_yaml

        (trial,) = [t for t in self.study.get_trials(deepcopy=False) if t.number == best["trial"]]
        ci95 = float(best["ci95"])  # NaN with one seed
        fields = {
            "study": self.study.study_name,
            "trial": trial.number,
            "validated_mean": float(best["mean"]),
            "ci95": None if math.isnan(ci95) else ci95,
            "seeds": [int(s) for s in str(best["seeds"]).split()],
            "search_value": trial.value,
            "validation_run_ids": str(best["run_ids"]).split(),
        }
        title = "Validated winner: the best mean on fresh seeds"
        return train_again_yaml(title, fields, dict(trial.params), self.plan)

    def lines(self) -> list[str]:
        """The console's last lines: the table, then the validated winner beside the
        search's (and whether they differ)."""
        if self.table is None:
            return []
        search_best = top_configurations(self.study, 1)
        best = search_best[0].number if search_best else None
        return console_lines(self.table, self.complete, self.seeds, best)


def _search_spent(study: optuna.Study, plan: Plan) -> bool:
    """The search has asked every trial of its budget (or, without one, its timeout ended
    it: the workers only return early on the deadline)."""
    from pg.sweep.asking import n_trials_in
    from pg.sweep.retries import budget

    limit = budget(study, plan.spec)
    return limit is None or n_trials_in(study) >= limit
