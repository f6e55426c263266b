"""``python -m pg.reproduce RUN_ID``: re-run a past run from its config snapshot and judge it.

Parses, calls :mod:`pg.reproduction`, prints the verdict.
Exit codes: 0 identical or equivalent (or re-run without a verdict), 1 different,
2 bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from pg.cli import Parser
from pg.overrides import BadInput, parse_overrides
from pg.record import names
from pg.reproduction import (
    PROG,
    compare,
    get_run,
    make_plan,
    open_reader,
    run_plan,
    source_runs,
    warn_packages,
)

if TYPE_CHECKING:
    from pg.reproduction import Result

# float32 keeps ~7 digits; sums taken in another order (other CPU kernels) drift by a few
# units in the last of them over hundreds of updates, never by 1e-4 of the value.
TOLERANCE = 1e-4


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(
        prog="python -m pg.reproduce",
        description=(
            "Re-run a past run (or every seed of a sweep trial) from its stored config "
            "snapshot as a new run in the same experiment, then compare every metric at "
            "every step. Exit 0: identical, or equivalent (only float rounding differs); "
            "1: different; 2: bad input (nothing created)."
        ),
    )
    parser.add_argument("run_id", help="MLflow run id of a training run or sweep trial")
    parser.add_argument(
        "--tracking-uri",
        help="store holding the run and receiving the new one "
        "(default: MLFLOW_TRACKING_URI, else $PG_HOME/mlruns/mlflow.db)",
    )
    parser.add_argument(
        "--no-compare", action="store_true", help="only re-run; no comparison, no verdict"
    )
    parser.add_argument(
        "--exact",
        action="store_true",
        help="only bit-identical histories pass: EQUIVALENT exits 1 as well",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=TOLERANCE,
        metavar="REL",
        help=f"largest relative deviation counted as float rounding (default {TOLERANCE:g})",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="applied on top of the snapshot (e.g. algo.lr=0.02 seed=3 algo=pg); "
        "the run is then reported without a verdict",
    )
    return parser.parse_args(argv)


def status_differs(result: Result) -> bool:
    new = result.new_run
    return new is None or new.info.status != result.plan.run.info.status


def print_verdict(
    results: list[Result], overridden: bool, tolerance: float = TOLERANCE, exact: bool = False
) -> int:
    from pg.compare import format_table

    ignored = sorted({k for r in results for k in r.ignored})
    compared = max(r.compared for r in results)
    points = sum(r.points for r in results)
    many = len(results) > 1
    label = f"{len(results)} seed runs" if many else "the source run"
    print(
        f"{PROG}: compared {compared} metrics ({points:,} source points) with {label}, "
        f"step by step and exactly; ignored wall-clock metrics: {', '.join(ignored) or 'none'}"
    )
    differing = [r for r in results if r.diffs or status_differs(r)]
    for r in differing:
        prefix = f"seed {r.plan.config.seed}: " if many else ""
        if r.diffs:
            print(f"{PROG}: {prefix}{len(r.diffs)} of {r.compared} metrics differ:")
            print("\n".join(format_table(r.diffs)))
    if overridden:
        state = "differ as shown above" if differing else "happen to be equal"
        print(f"{PROG}: no verdict: the config was changed by overrides; the histories {state}")
        return 0
    if not differing:
        print(f"{PROG}: verdict: IDENTICAL (every metric equal at every step)")
        return 0
    rounding = [d for r in differing for d in r.diffs]
    if (
        not any(status_differs(r) for r in differing)
        and rounding
        and all(d.rounding_only(tolerance) for d in rounding)
    ):
        largest = max(d.relative or 0.0 for d in rounding)
        print(
            f"{PROG}: verdict: EQUIVALENT (same steps and points; values differ only by float "
            f"rounding: largest relative deviation {largest:.2g} <= {tolerance:g}; PyTorch's "
            "results are bit-identical only on the same platform and build)"
        )
        _print_environment(differing, many)
        return 1 if exact else 0
    print(f"{PROG}: verdict: DIFFERENT")
    _print_environment(differing, many)
    return 1


def _print_environment(differing: list[Result], many: bool) -> None:
    for r in differing:
        prefix = f"seed {r.plan.config.seed} " if many else ""
        lines = r.environment or ["nothing recorded differs (same commit, packages, system)"]
        print(f"{PROG}: {prefix}environment, source -> now:")
        print("\n".join(f"  {line}" for line in lines))


def reproduce(args: argparse.Namespace) -> int:
    if not 0 <= args.tolerance < 1:  # NaN fails too
        raise BadInput(f"--tolerance: a relative deviation in [0, 1), got {args.tolerance}")
    overrides = parse_overrides(args.overrides)
    reader = open_reader(args.tracking_uri)
    run = get_run(reader, args.run_id)
    experiment = reader.experiment_name(run.info.experiment_id)
    sources = source_runs(reader, run)
    # Every plan is built (and so every snapshot validated) before the first new run.
    plans = [make_plan(reader, s, overrides, experiment) for s in sources]
    trial_id = run.info.run_id if sources[0] is not run else None

    kind = run.data.tags.get(names.KIND, names.KIND_RUN)
    label = "run" if kind == names.KIND_RUN else f"{kind} run"
    what = f"{label} {run.info.run_id} ({run.info.run_name})"
    if trial_id:
        what += f" with {len(plans)} seed runs"
    print(f"{PROG}: reproducing {what} in experiment '{experiment}' at {reader.display}")
    if overrides:
        changes = ", ".join(f"{ov} (snapshot: {ov.old})" for ov in overrides)
        print(f"{PROG}: overrides applied on top of the snapshot: {changes}")
    for plan in plans:
        if plan.stop_at is not None:
            print(
                f"{PROG}: run {plan.run.info.run_id} was stopped early "
                f"({plan.run.data.tags.get(names.STOPPED)}); re-running up to step {plan.stop_at:,}"
            )
    warn_packages(plans[0])

    results = []
    for plan in plans:
        result = run_plan(reader, plan, overrides, trial_id)
        if result.new_run is not None:
            print(
                f"{PROG}: new run {result.new_run.info.run_id} "
                f"(tag {names.SOURCE_RUN}={plan.run.info.run_id})"
            )
        results.append(result)
    if any(r.new_run is None for r in results):
        return 1
    if args.no_compare:
        return 1 if any(r.error for r in results) else 0
    for result in results:
        compare(reader, result)
    if overrides:
        print_verdict(results, overridden=True)
        return 0 if all(r.new_run and r.new_run.info.status == "FINISHED" for r in results) else 1
    return print_verdict(results, overridden=False, tolerance=args.tolerance, exact=args.exact)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Progress bars for each small artifact download would drown the report.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return reproduce(args)
    except BadInput as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # one line, never a traceback; a new run holds its own
        from pg.record.store import redact

        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(redact(f"{PROG}: failed: {type(exc).__name__}: {first}"), file=sys.stderr)
        return 1


if __name__ == "__main__":
    from pg.core.collection import pause_collection

    pause_collection()  # until its training starts
    sys.exit(main())
