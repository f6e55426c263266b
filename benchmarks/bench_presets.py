"""How well each environment's preset learns: seeds that reach the target, steps and time.

Every row is the real command a user types (``python -m pg.run PRESET seed=S``), run as
a subprocess into a throw-away store, so the numbers are what that command gives here,
tracking included.  The final line ``pg.run`` prints (``solved``/``not solved``, env steps,
training seconds) is the only thing read back: the script does not import ``pg`` and keeps
working while the package is reorganized.  Training stops at the env's target (the
mean return of the last 100 episodes) or at the preset's budget, whichever comes first.

Usage: .venv/bin/python benchmarks/bench_presets.py [--env acrobot] [--seeds 5] [--first-seed 0]
       [--custom "env=acrobot algo=pg algo.lr=0.003 ..." --target -100]

``--custom`` measures any command line the same way instead of the presets, e.g. the
configuration a sweep's validation picked (its ``pg.validated_best_trial``'s overrides).

It prints each seed as it finishes, then one Markdown table per env (the README's).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Preset:
    env: str  # the table this row belongs to
    label: str  # what the README calls it
    args: tuple[str, ...]  # pg.run arguments, seed aside
    target: float  # the env's target mean-100 return


PRESETS = (
    Preset("cartpole", "defaults (`reinforce`)", (), 475.0),
    Preset("acrobot", "`env=acrobot` (picks `algo=pg`)", ("env=acrobot",), -100.0),
    Preset("acrobot", "`+experiment=acrobot`", ("+experiment=acrobot",), -100.0),
    Preset("lunarlander", "`+experiment=lunarlander`", ("+experiment=lunarlander",), 200.0),
)

# The line pg.run ends a training run with (see the README's "Training").
RESULT = re.compile(
    r"pg: \S+ \S+ seed (?P<seed>\d+): (?P<state>solved|not solved), \S+ = (?P<value>\S+) "
    r"after (?P<steps>[\d,]+) env steps, (?P<episodes>\d+) episodes, "
    r"(?P<seconds>[\d.]+) s of training"
)


@dataclass(frozen=True)
class SeedResult:
    seed: int
    solved: bool
    value: float
    steps: int
    seconds: float


def parse_result(stdout: str) -> SeedResult:
    """The run's outcome from pg.run's closing line; a missing line is a broken run."""
    match = RESULT.search(stdout)
    if match is None:
        raise RuntimeError(f"no result line in pg.run's output:\n{stdout}")
    return SeedResult(
        seed=int(match["seed"]),
        solved=match["state"] == "solved",
        value=float(match["value"]),
        steps=int(match["steps"].replace(",", "")),
        seconds=float(match["seconds"]),
    )


def run_seed(preset: Preset, seed: int, home: Path) -> SeedResult:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PG_HOME"] = str(home)
    proc = subprocess.run(
        [sys.executable, "-m", "pg.run", *preset.args, f"seed={seed}", "train.torch_threads=1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pg.run {' '.join(preset.args)} seed={seed} failed:\n{proc.stderr}")
    return parse_result(proc.stdout)


def command(preset: Preset, seeds: list[int]) -> str:
    args = " ".join(preset.args)
    run = f"python -m pg.run {args} seed=$s" if args else "python -m pg.run seed=$s"
    return f"`for s in {' '.join(str(s) for s in seeds)}; do {run}; done`"


def row(preset: Preset, results: list[SeedResult]) -> str:
    """Medians over the seeds that reached the target: the cost of getting there."""
    reached = [r for r in results if r.solved]
    if reached:
        steps = f"{statistics.median(r.steps for r in reached):,.0f}"
        seconds = f"{statistics.median(r.seconds for r in reached):.1f}"
    else:
        steps = seconds = "-"
    return (
        f"| {preset.label} | {len(reached)}/{len(results)} | {steps} | {seconds} | "
        f"{command(preset, [r.seed for r in results])} |"
    )


def table(env: str, target: float, rows: list[str]) -> str:
    head = (
        f"{env} (target: mean-100 return >= {target:g})\n\n"
        "| preset | seeds reaching the target | median env steps to target "
        "| median training s to target | command |\n| --- | --- | --- | --- | --- |"
    )
    return "\n".join([head, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    envs = sorted({p.env for p in PRESETS})
    parser.add_argument("--env", choices=envs, action="append", help="default: every env")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds first..first+n-1; the sweeps chose presets on seeds 0 and 1, so "
        "--first-seed 10 measures on seeds no choice was made on",
    )
    parser.add_argument("--custom", help="pg.run arguments to measure instead of the presets")
    parser.add_argument("--target", type=float, help="with --custom: its target return")
    args = parser.parse_args()
    chosen = args.env or envs
    presets_of = {env: [p for p in PRESETS if p.env == env] for env in chosen}
    if args.custom is not None:
        if args.target is None:
            parser.error("--custom needs --target")
        label = f"`{args.custom}`"
        presets_of = {"custom": [Preset("custom", label, tuple(args.custom.split()), args.target)]}

    tables = []
    with tempfile.TemporaryDirectory(prefix="bench-presets-") as tmp:
        for env, presets in presets_of.items():
            rows = []
            for preset in presets:
                results = []
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    r = run_seed(preset, seed, Path(tmp))
                    results.append(r)
                    print(
                        f"{env} {' '.join(preset.args) or '(defaults)'} seed {r.seed}: "
                        f"{'reached' if r.solved else 'did not reach'} the target, "
                        f"mean-100 {r.value:.1f} after {r.steps:,} env steps, "
                        f"{r.seconds:.1f} s of training",
                        flush=True,
                    )
                rows.append(row(preset, results))
            tables.append(table(env, presets[0].target, rows))
    print()
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
