"""The sweep's first console lines: which rule applied (grid or search) and how it runs.

They are what a user checks before a long sweep starts (the sampler and pruner with the
options they really got, the seeds, the validation), so they are made in one place.
"""

from __future__ import annotations

from pg.sweep.factories import describe, per_seed, wilcoxon_note
from pg.sweep.spec import Plan


def header_lines(plan: Plan, done: int, base_seed: int, validation: str | None) -> list[str]:
    """``done``: trials already in the study; ``validation``: the stage, described."""
    spec = plan.spec
    timeout = f", timeout {spec.timeout:g} s" if spec.timeout is not None else ""
    seeds = plan.seed_list(base_seed)
    per_trial = f"seeds {','.join(map(str, seeds))} per trial" if len(seeds) > 1 else ""
    if plan.mode == "grid":
        axes = " x ".join(f"{k} ({len(v)})" for k, v in plan.grid.items())
        what = f"grid of {plan.n_combinations} combinations: {axes}"
    else:
        budget = f"{spec.n_trials} trials" if spec.n_trials is not None else "no trial limit"
        what = f"search: {budget}, {describe('sampler', spec)} over {', '.join(plan.space)}"
    extras = [
        f"study '{spec.study_name}' ({done} already in it){timeout}",
        f"{spec.workers} worker(s)",
        f"pruner {describe('pruner', spec)}",
    ]
    if per_trial:
        one_by_one = " (one after another)" if per_seed(spec) else ""
        extras.insert(2, per_trial + one_by_one)
    if validation is not None:
        extras.append(validation)
    lines = [f"pg: {what}; {'; '.join(extras)}"]
    note = wilcoxon_note(spec, len(seeds)) if per_seed(spec) else None
    if note:
        lines.append(f"pg: note: {note}")
    if plan.mode == "grid" and spec.validate.get("top_k"):
        lines.append(
            "pg: hydra.sweeper.validate is not used by a grid: every combination already "
            "trains on its seeds (see the configurations at the end)"
        )
    return lines
