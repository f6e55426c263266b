"""``python -m analysis report|compare``: report folders from the command line.

Exit status: 0 on success, 2 for bad input (unknown experiment or run, no finished runs,
a metric no run has), 1 for anything unexpected.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pg.cli import Parser


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m analysis",
        description="Tables, learning curves and reports from pg's MLflow runs and sweeps.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    common = Parser(add_help=False)
    common.add_argument(
        "--metric",
        help="final metric to rank by (default: a sweep's objective, else rollout/ep_return_100)",
    )
    common.add_argument("--minimize", action="store_true", help="lower is better (default: higher)")
    common.add_argument(
        "--tracking-uri",
        help="MLflow store (default: MLFLOW_TRACKING_URI, else the project's mlruns/mlflow.db)",
    )
    common.add_argument("--out", type=Path, help="report folder to write")

    r = sub.add_parser("report", parents=[common], help="write a report folder")
    what = r.add_mutually_exclusive_group(required=True)
    what.add_argument("--experiment", help="experiment name")
    what.add_argument("--sweep", metavar="RUN_ID", help="the sweep's parent run id")
    r.add_argument("--top", type=int, default=5, help="configurations to plot (default 5)")
    r.add_argument("--log", action="store_true", help="attach the report to the sweep run")
    r.add_argument("--storage", help="Optuna storage URL (when the recorded one is redacted)")

    c = sub.add_parser("compare", parents=[common], help="compare runs or sweeps side by side")
    c.add_argument(
        "items", nargs="+", metavar="RUN", help="run ids, sweep ids, run names, experiments"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from analysis.loading import AnalysisError

    try:
        return _run(args)
    except AnalysisError as exc:
        print(f"analysis: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # one line, never a traceback; the message says what broke
        from pg.record.store import redact

        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(redact(f"analysis: failed: {type(exc).__name__}: {first}"), file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from analysis import loading
    from analysis import report as rp
    from analysis.loading import AnalysisError

    def say(msg: str) -> None:
        print(f"analysis: {msg}", file=sys.stderr)

    if args.command == "report":
        if args.top < 1:  # options first: bad input is refused before the store is read
            raise AnalysisError(f"--top {args.top} is not allowed: a number >= 1")
        if args.storage is not None:
            from pg.record.store import redact, study_storage_problem

            problem = study_storage_problem(args.storage)
            if problem is not None:
                raise AnalysisError(
                    f"--storage {redact(args.storage)!r} is not allowed: {problem}; use "
                    "sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
                )
        if args.log and not args.sweep:
            raise AnalysisError("--log attaches a report to a sweep's parent run: use --sweep")
        reader = loading.connect(args.tracking_uri)
        report = rp.build_report(
            experiment=args.experiment,
            sweep=args.sweep,
            metric=args.metric,
            top=args.top,
            storage=args.storage,
            minimize=True if args.minimize else None,
            reader=reader,
            progress=say,
        )
        out = args.out or rp.default_out(args.experiment or args.sweep[:8])
        folder = rp.write(report, out)
        for note in report.notes:
            say(f"note: {note}")
        print(rp.markdown_table(rp.display_table(report.tables[rp.SUMMARY_CSV]).head(args.top)))
        validated = report.tables.get("validation.csv")
        if validated is not None:
            from analysis.validation import HIDDEN

            print("Validation on fresh seeds (best first):")
            print(rp.markdown_table(validated.drop(columns=[c for c in HIDDEN if c in validated])))
        if args.log:
            rp.attach(reader, args.sweep, folder)
            say(f"attached the report to run {args.sweep} under report/")
        print(f"analysis: report written to {folder}/{rp.HTML_FILE}")
        return 0

    from analysis.comparison import build_comparison

    reader = loading.connect(args.tracking_uri)
    report = build_comparison(
        args.items, metric=args.metric or rp.DEFAULT_METRIC, minimize=args.minimize, reader=reader
    )
    out = args.out or Path("compare-" + "-vs-".join(rp._slug(i)[:16] for i in args.items))
    folder = rp.write(report, out)
    print(report.texts["compare.md"])
    print(f"analysis: comparison written to {folder}/{rp.HTML_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
