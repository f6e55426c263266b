"""How long analysis takes on a store of many runs (1000 by default).

    .venv/bin/python benchmarks/bench_analysis.py [--runs 1000] [--seeds 10] [--tracking-uri URI]

Fills a fresh experiment with synthetic runs shaped like pg's (the full flattened params,
final metrics, a 30-point ``rollout/ep_return_100`` history, ``pg.*`` tags), written with
``log_batch`` so creating them takes seconds, then times each stage of a report:
loading the run table (paged ``search_runs``), aggregating over seeds, fetching the
histories of the top configurations only, and the whole ``python -m analysis report``.
Without ``--tracking-uri`` it uses an SQLite store in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
METRIC = "rollout/ep_return_100"


def populate(uri: str, experiment: str, runs: int, seeds: int) -> float:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient
    from omegaconf import OmegaConf

    from pg.core.config import Config
    from pg.record.provenance import flatten

    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(experiment)
    base = flatten(OmegaConf.to_container(OmegaConf.structured(Config())))  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    configs = max(1, runs // seeds)
    steps = np.linspace(10_000, 300_000, 30).astype(int)
    start = time.perf_counter()
    for i in range(runs):
        config, seed = divmod(i, seeds)
        config %= configs
        lr = 10 ** (-4 + 3 * config / configs)
        params = {
            **base,
            "seed": str(seed),
            "algo.lr": f"{lr:.6g}",
            "tracking.experiment": experiment,
        }
        quality = 500 * np.exp(-((np.log10(lr) + 2) ** 2))
        curve = quality * (1 - np.exp(-steps / 80_000)) + rng.normal(0, 15, len(steps))
        now = int(time.time() * 1000)
        run = client.create_run(
            exp_id,
            run_name=f"cartpole-reinforce-s{seed}",
            tags={"pg.kind": "run", "pg.seed": str(seed), "pg.env": "CartPole-v1"},
        )
        metrics = [Metric(METRIC, float(v), now, int(s)) for s, v in zip(steps, curve, strict=True)]
        metrics += [
            Metric("objective", float(curve[-1]), now, int(steps[-1])),
            Metric("eval/return", float(curve[-1] + rng.normal(0, 5)), now, int(steps[-1])),
            Metric("time/sps", 20_000.0, now, int(steps[-1])),
        ]
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag("pg.steps", str(steps[-1]))],
        )
        client.set_terminated(run.info.run_id, "FINISHED")
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--tracking-uri")
    args = ap.parse_args()
    # Over HTTP, MLflow prints a "View run" link for every run it ends.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as tmp:
        uri = args.tracking_uri or f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        experiment = f"bench-analysis-{uuid.uuid4().hex[:8]}"
        made = populate(uri, experiment, args.runs, args.seeds)
        print(f"created {args.runs} runs in {made:.1f} s ({1000 * made / args.runs:.1f} ms/run)")

        from analysis.aggregate import aggregate
        from analysis.loading import connect, load_histories, load_runs

        reader = connect(uri)
        t = time.perf_counter()
        frame = load_runs(experiment, reader=reader)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        table = aggregate(frame, METRIC)
        agg_s = time.perf_counter() - t
        top_ids = [r for ids in table["run_ids"].head(args.top) for r in ids.split()]
        t = time.perf_counter()
        hist = load_histories(top_ids, [METRIC], reader=reader)
        hist_s = time.perf_counter() - t
        print(f"load_runs: {len(frame)} rows x {frame.shape[1]} columns in {load_s:.2f} s")
        print(f"aggregate: {len(table)} configurations in {agg_s:.2f} s")
        print(
            f"histories of the top {args.top} configurations ({len(top_ids)} runs, "
            f"{len(hist)} points) in {hist_s:.2f} s"
        )

        out = Path(tmp) / "report"
        t = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "analysis",
                "report",
                "--experiment",
                experiment,
                "--tracking-uri",
                uri,
                "--out",
                str(out),
                "--top",
                str(args.top),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        cli_s = time.perf_counter() - t
        if done.returncode != 0:
            sys.exit(f"report failed:\n{done.stderr}")
        print(f"python -m analysis report (whole command, incl. imports): {cli_s:.1f} s")


if __name__ == "__main__":
    main()
