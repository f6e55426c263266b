"""What the UI extras cost: the LoggedModel, the GIF and MLflow's system metrics.

One process, one embedded store.  The same solved CartPole run (default configuration,
seed 0) is recorded three ways: bare (no GIF, no system metrics), with system metrics,
and with the GIF; then the model logging and the clip are timed on their own.

Usage: .venv/bin/python benchmarks/bench_ui.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from pg.core.config import Config, to_config
from pg.core.policy import policy_files
from pg.core.video import greedy_clip
from pg.experiment import Outcome, Snapshot, execute


def config(home: Path, *, video: bool, system: bool, steps: int | None = None) -> Config:
    train: dict[str, Any] = {"progress": False, "video": video}
    if steps is not None:
        train.update(max_steps=steps, target_return=None, eval_every=0)
    return to_config(
        {
            "seed": 0,
            "train": train,
            "tracking": {
                "uri": f"sqlite:///{home / 'mlflow.db'}",
                "experiment": "bench",
                "system_metrics": system,
            },
        }
    )


def timed(cfg: Config) -> tuple[float, Outcome]:
    start = time.perf_counter()
    outcome = execute(cfg, Snapshot.from_config(cfg))
    return time.perf_counter() - start, outcome


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        timed(config(home, video=True, system=True, steps=2_000))  # imports, tables
        rows = {
            "bare (no GIF, no system metrics)": dict(video=False, system=False),
            "+ system metrics": dict(video=False, system=True),
            "+ GIF": dict(video=True, system=False),
        }
        walls: dict[str, list[float]] = {k: [] for k in rows}
        loops: dict[str, list[float]] = {k: [] for k in rows}
        outcome = None
        for _ in range(args.repeats):
            for name, flags in rows.items():
                wall, outcome = timed(config(home, **flags))
                walls[name].append(wall)
                loops[name].append(outcome.result.seconds)
        for name in rows:
            print(
                f"{name:<34} wall {statistics.median(walls[name]):.2f} s, "
                f"training loop {statistics.median(loops[name]):.2f} s (median of {args.repeats})"
            )
        assert outcome is not None and outcome.run_id is not None
        result = outcome.result
        from pg.record.models import log_policy_model
        from pg.record.tracker import tracker_for

        client = tracker_for(config(home, video=False, system=False).tracking).client
        files = policy_files(result.policy, result.spec)
        costs = []
        for _ in range(5):
            start = time.perf_counter()
            log_policy_model(
                client,
                outcome.run_id,
                files,
                obs_shape=result.spec.obs_shape,
                pixels=False,
                metrics={"objective": result.objective},
                step=result.steps,
            )
            costs.append(time.perf_counter() - start)
        print(f"LoggedModel (pyfunc from code), warm: median {statistics.median(costs):.2f} s")
        env = config(home, video=True, system=False).env
        clip = greedy_clip(env, result.policy, seed=0)
        per_frame = 1000 * clip.seconds / (clip.steps + 1)
        print(
            f"GIF of one greedy episode: {clip.steps} steps, {len(clip.gif) / 1024:.0f} KiB, "
            f"{clip.seconds:.2f} s to render and encode ({per_frame:.1f} ms/frame)"
        )


if __name__ == "__main__":
    main()
