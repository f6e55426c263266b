"""Ray backend benchmark: what running the workers as Ray tasks costs in trials per hour.

    .venv/bin/python benchmarks/bench_ray.py [--trials 16] [--repeat 3] [--address HOST:PORT]

The same 16-trial random-sampler sweep (no pruner, every trial the same env steps) with
``backend=local`` and ``backend=ray``, 2 workers each, in interleaved repeats (a shared
machine skews any single pair).  Without ``--address`` the Ray sweep starts its own local
instance, as ``python -m pg.run -m hydra.sweeper.backend=ray`` does with no RAY_ADDRESS.

Trials/hour are taken over the sweep itself (first trial start to last trial end, as
recorded by Optuna), so they compare how fast workers turn trials over; the command's
wall time, start-up included (Ray's instance start, ~3-5 s here), is printed beside them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sweep import Result, run_sweep


def show(r: Result) -> None:
    print(
        f"{r.label:<12} {r.trials:>3} trials  sweep {r.span:6.1f} s  command {r.wall:6.1f} s  "
        f"{3600 * r.trials / r.span:6.0f} trials/h",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--max-steps", type=int, default=150_000)
    parser.add_argument("--repeat", type=int, default=3, help="local-vs-ray pairs")
    parser.add_argument("--address", default=None, help="an existing Ray head (host:port)")
    ns = parser.parse_args()

    common = [
        f"hydra.sweeper.n_trials={ns.trials}",
        "hydra.sweeper.workers=2",
        "hydra.sweeper.sampler.name=random",
        "hydra.sweeper.pruner.name=none",
        f"train.max_steps={ns.max_steps}",
        "train.target_return=null",  # every trial does the same number of env steps
    ]
    ray_args = ["hydra.sweeper.backend=ray"]
    if ns.address:
        ray_args.append(f"hydra.sweeper.ray.address={ns.address}")
    os.environ.pop("RAY_ADDRESS", None)
    print(f"CPU cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.2f}", flush=True)
    ratios, walls = [], []
    for i in range(ns.repeat):
        # Alternate which goes first, so neither always meets the same background load.
        order = [("local", ["hydra.sweeper.backend=local"]), ("ray", ray_args)]
        if i % 2:
            order.reverse()
        got = {}
        for label, extra in order:
            got[label] = run_sweep(label, [*common, *extra])
            show(got[label])
        local, ray = got["local"], got["ray"]
        ratios.append((ray.trials / ray.span) / (local.trials / local.span))
        walls.append(ray.wall - local.wall)
    overhead = [1 - r for r in ratios]
    print(
        f"Ray overhead in trials/hour: median {statistics.median(overhead):+.1%} "
        f"(runs: {', '.join(f'{o:+.1%}' for o in overhead)}; target <= 10%); "
        f"command wall time {statistics.median(walls):+.1f} s vs local (median); "
        f"load average now {os.getloadavg()[0]:.2f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
