"""What tracking costs, every figure of "Tracking off the hot path" in one run.

1. A fixed 1 M-step run, tracked vs untracked (in this process, after a warm-up; pairs of
   runs back to back, the best of each side and the median of the pairs' ratios).
2. Whole ``python -m pg.run`` (default, solving) tracked vs ``tracking.enabled=false``.
3. The default sweep (20 trials, 1 worker) tracked vs untracked, whole process; 3'. the
   same without its validation stage (the sweep the issue measured, before it had one).
4. The default sweep with 2 workers vs 1 (same sampler seed; several sampler seeds);
   4h. first, what two trainings at once cost on this machine's cores (the floor of 4);
   4u. each seed's sweeps again untracked (the part of 4 that is not tracking).
5. The training loop vs the raw vector env at 32 envs (updates included).

Every figure is a ratio of two things measured here, interleaved, so a busy machine moves
both sides; the load average is printed with each.  Each command gets a fresh copy of an
empty store whose tables exist (making them is a one-time cost of a new store).
``--before DIR`` also measures the whole-process figures (2, 3) with the pg checkout in
DIR, interleaved with this one: a before/now comparison under the same load.

Single commands of ~2 s spread by ±15 % on a noisy machine, more than figure 2's
distance to its target: figure 2 takes three times ``--repeats`` pairs (~5 s a pair), and
figure 1 eight pairs by default.

Usage: .venv/bin/python benchmarks/bench_overhead.py [--repeats 3] [--pairs 8]
       [--sampler-seeds 0,1,2] [--skip-sweeps] [--before /path/to/older/checkout]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pg.core.config import Config

ROOT = Path(__file__).resolve().parent.parent


def steal() -> float | None:
    """CPU seconds the host has taken from this virtual machine's cores since boot (the
    ``steal`` column of ``/proc/stat``); ``None`` where there is no such column."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


_STOLEN: list[float] = []  # the steal counter when load() last read it


def load() -> str:
    """The load average, and the CPU time the host took since the line before: on a
    shared virtual machine that is the noise no interleaving removes (a ~5 s run lost
    up to ~1 s to it here)."""
    one, five, _ = os.getloadavg()
    text = f"load {one:.1f}/{five:.1f} on {os.cpu_count()} cores"
    now = steal()
    if now is not None:
        if _STOLEN:
            text += f"; host steal {now - _STOLEN[0]:.1f} CPU s since the line before"
        _STOLEN[:] = [now]
    return text


_TEMPLATE: list[Path] = []


def template_store() -> Path:
    """An empty MLflow store with its tables made (once; creating them takes seconds, once
    per store, which is not what a run costs)."""
    if not _TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="pg-bench-template-"))
        db = folder / "mlflow.db"
        subprocess.run(
            [sys.executable, "-c", f"from mlflow.tracking import MlflowClient as C; "
             f"C(tracking_uri='sqlite:///{db}').search_experiments()"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        _TEMPLATE.append(db)
    return _TEMPLATE[0]


STEPS = re.compile(r"after ([\d,]+) steps, ([\d.]+) s")


def env_steps(output: str) -> int:
    """Env steps of every trial and validation run a sweep printed (0 for one run)."""
    return sum(int(n.replace(",", "")) for n, _ in STEPS.findall(output))


def trial_seconds(output: str) -> float:
    """Seconds of every trial and validation run a sweep printed, as each timed itself
    (from composing its config to its outcome: training, its runs' calls and reports;
    not the ask and tell around it).  With one worker the sweep takes at least this."""
    return sum(float(s) for _, s in STEPS.findall(output))


def whole(args: list[str], home: Path, code: Path = ROOT) -> tuple[float, int, float, float]:
    """Seconds of one ``python -m pg.run …`` process in a store of its own (a copy of an
    empty store whose tables exist), the env steps it printed, and the CPU seconds of it
    and every process it started (workers, record processes: each waits for its own), and
    the seconds its trials took by their own account (:func:`trial_seconds`)."""
    (home / "mlruns").mkdir(parents=True)
    shutil.copyfile(template_store(), home / "mlruns" / "mlflow.db")
    env = {**os.environ, "PG_HOME": str(home), "PYTHONPATH": str(code)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pg.run",
            *args,  # -m first: Hydra's parser takes the overrides after its flags
            f"hydra.run.dir={home}/o",
            f"hydra.sweep.dir={home}/m",
        ],
        env=env,
        cwd=code,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"pg.run {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    output = done.stdout + done.stderr
    return elapsed, env_steps(output), cpu, trial_seconds(output)


def paired(
    label: str,
    a: list[str],
    b: list[str],
    repeats: int,
    target: str,
    trees: dict[str, Path] | None = None,
    floor: bool = False,
) -> None:
    """Median seconds of ``a`` and ``b`` (interleaved, fresh stores) and their ratio, for
    each checkout in ``trees``.  ``floor``: also the best ratio ``a`` could reach on this
    machine's cores with the CPU work it did (its CPU seconds spread evenly over them)."""
    trees = trees or {"now": ROOT}
    times: dict[tuple[str, str], list[float]] = {}
    steps: dict[tuple[str, str], list[int]] = {}
    cpus: dict[tuple[str, str], list[float]] = {}
    trained: dict[tuple[str, str], list[float]] = {}
    for i in range(repeats):
        for name, code in trees.items():
            for side, args in (("a", a), ("b", b)):
                with tempfile.TemporaryDirectory() as tmp:
                    t, n, c, s = whole(args, Path(tmp) / f"{side}{i}", code)
                times.setdefault((name, side), []).append(t)
                steps.setdefault((name, side), []).append(n)
                cpus.setdefault((name, side), []).append(c)
                trained.setdefault((name, side), []).append(s)
    for name in trees:
        ta, tb = times[(name, "a")], times[(name, "b")]
        ma, mb = statistics.median(ta), statistics.median(tb)
        tag = f" [{name}]" if len(trees) > 1 else ""
        # Each a ran right before its b: a pair's ratio is less moved by a machine whose
        # speed drifts within minutes than the ratio of the two medians.
        pairs = statistics.median(x / y for x, y in zip(ta, tb, strict=True))
        print(
            f"{label}{tag}: {ma:.2f} s vs {mb:.2f} s (medians of {repeats}) = {ma / mb:.2f}x; "
            f"median of the pairs' ratios {pairs:.2f}x  "
            f"[{', '.join(f'{t:.1f}' for t in ta)} | {', '.join(f'{t:.1f}' for t in tb)}]"
            f"  target {target}; {load()}",
            flush=True,
        )
        ca, cb = statistics.median(cpus[(name, "a")]), statistics.median(cpus[(name, "b")])
        cores = os.cpu_count() or 1
        # The second: even a free second worker doing b's very work needs b's CPU
        # seconds, spread over the cores at best; no parallelism gets below it.
        bound = (
            f"; floor on {cores} cores {ca / cores / mb:.2f}x, "
            f"{cb / cores / mb:.2f}x for b's own work and CPU"
            if floor
            else ""
        )
        print(f"   CPU seconds (all processes) {ca:.1f} vs {cb:.1f}{bound}", flush=True)
        na, nb = statistics.median(steps[(name, "a")]), statistics.median(steps[(name, "b")])
        if na and nb and na != nb:  # sweeps that sampled different trials did different work
            print(
                f"   env steps {na / 1e6:.2f} M vs {nb / 1e6:.2f} M: per env step "
                f"{(ma / na) / (mb / nb):.2f}x",
                flush=True,
            )
        sa, sb = statistics.median(trained[(name, "a")]), statistics.median(trained[(name, "b")])
        if sa and sb:  # a sweep: how much of it its trials' own training took
            print(
                f"   its trials' own seconds (summed, each from compose to outcome) {sa:.1f} of "
                f"{ma:.1f} s vs {sb:.1f} of {mb:.1f} s",
                flush=True,
            )


def in_process(steps: int, pairs: int) -> None:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_core import collection_sps, env_share, fixed_budget, raw_env_sps

    from pg.core.train import train
    from pg.experiment import Snapshot, execute

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        untracked = fixed_budget(steps, 0, False, home)
        tracked = fixed_budget(steps, 0, True, home)
        execute(fixed_budget(2_000, 0, True, home), Snapshot.from_config(tracked))  # warm-up
        plain, plain_loop, with_tracking, inside, loop, raw = [], [], [], [], [], []
        for _ in range(pairs):
            raw.append(raw_env_sps(untracked, steps // 4))
            t0 = time.perf_counter()
            result = train(untracked)
            plain.append(time.perf_counter() - t0)
            plain_loop.append(result.seconds)
            loop.append(result.steps / result.seconds)
            t0 = time.perf_counter()
            outcome = execute(tracked, Snapshot.from_config(tracked))
            with_tracking.append(time.perf_counter() - t0)
            inside.append(outcome.result.seconds)
        p, w, i, pl = min(plain), min(with_tracking), min(inside), min(plain_loop)
        # Each pair ran back to back, so its ratio saw one load; the median of them is the
        # figure least moved by a noisy neighbour.
        ratio = statistics.median(b / a for a, b in zip(plain, with_tracking, strict=True))
        print(
            f"1. {steps:,} steps untracked {p:.2f} s, tracked {w:.2f} s (loops {pl:.2f} s and "
            f"{i:.2f} s): {100 * (w / p - 1):+.1f} % wall, {100 * (i / pl - 1):+.1f} % inside "
            f"the loop (best of {pairs}); median of the {pairs} pairs {100 * (ratio - 1):+.1f} % "
            f"(target <= 5 % wall); {load()}",
            flush=True,
        )
        raw.append(raw_env_sps(untracked, steps // 4))
        collect = collection_sps(untracked, steps)
        raw.append(raw_env_sps(untracked, steps // 4))
        share, timed_sps = env_share(untracked)
        stock = max(raw_env_sps(untracked, steps // 4, stock=True) for _ in range(2))
        # Best of each: another process on the two cores only ever slows a side down.
        print(
            f"5. loop {max(loop):,.0f} steps/s vs raw vector env {max(raw):,.0f} at 32 envs = "
            f"{max(loop) / max(raw):.2f} (target >= 0.50); collection alone "
            f"{collect / max(raw):.2f} (best of {pairs} loops, {pairs + 2} raw measurements); "
            f"{load()}",
            flush=True,
        )
        print(
            f"   against gymnasium's own CartPole step ({stock:,.0f} steps/s, best of 2): "
            f"loop {max(loop) / stock:.2f}, collection {collect / stock:.2f}",
            flush=True,
        )
        print(
            f"   within one run: {100 * share:.0f} % of the loop's time is the vector env's "
            f"step ({timed_sps:,.0f} steps/s); {load()}",
            flush=True,
        )


def _training_seconds(cfg: Config) -> float:
    from pg.core.train import train

    return train(cfg).seconds


def side_by_side(steps: int, repeats: int) -> None:
    """4's floor set by the machine: the same untracked training (a fixed number of steps,
    the training loop's own seconds) in one forked process alone, then in two at once.
    Two workers on two cores run each trial this much slower whatever pg does around it,
    so a 2-worker sweep takes at least half of that factor of a 1-worker sweep's time."""
    import multiprocessing

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_core import fixed_budget

    torch.set_num_threads(1)
    untracked = Path(tempfile.gettempdir())  # the store's place: nothing is written there
    cfg = fixed_budget(steps, 0, False, untracked)
    _training_seconds(fixed_budget(20_000, 0, False, untracked))  # warm-up
    fork = multiprocessing.get_context("fork")  # children start warm: no import in the timing
    alone: list[float] = []
    together: list[float] = []
    for _ in range(repeats):
        for n, into in ((1, alone), (2, together)):
            with fork.Pool(n) as pool:
                into.extend(pool.map(_training_seconds, [cfg] * n))
    a, b = statistics.median(alone), statistics.median(together)
    print(
        f"4h. the machine: {steps:,} untracked steps alone {a:.2f} s, two at once "
        f"{b:.2f} s each (medians of {len(alone)} and {len(together)}) = {b / a:.2f}x slower; "
        f"2 workers vs 1 cannot go below ~{b / a / 2:.2f}x here; {load()}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=8, help="untracked/tracked runs for 1.")
    parser.add_argument("--sampler-seeds", default="0,1,2")
    parser.add_argument("--skip-sweeps", action="store_true")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--before", type=Path, help="an older pg checkout to compare with")
    args = parser.parse_args()
    trees = {"now": ROOT}
    if args.before is not None:
        trees = {"before": args.before.resolve(), "now": ROOT}
    print(f"pg at {ROOT}; {load()}", flush=True)
    if not args.skip_in_process:
        in_process(args.steps, args.pairs)
    paired(
        "2. whole pg.run tracked vs untracked",
        [],
        ["tracking.enabled=false"],
        3 * args.repeats,  # ~5 s a pair: the noise of a ~2 s command needs more of them
        "<= 1.15x, tracked <= 4 s",
        trees,
    )
    if args.skip_sweeps:
        return
    paired(
        "3. default sweep tracked vs untracked",
        ["-m"],
        ["-m", "tracking.enabled=false"],
        max(1, args.repeats - 1),
        "<= 1.10x, tracked <= 15 s",
        trees,
    )
    paired(
        "3'. the issue's sweep (20 trials, no validation stage) tracked vs untracked",
        ["-m", "hydra.sweeper.validate.top_k=0"],
        ["-m", "hydra.sweeper.validate.top_k=0", "tracking.enabled=false"],
        max(1, args.repeats - 1),
        "<= 1.10x, tracked <= 15 s",
        trees,
    )
    side_by_side(args.steps, max(2, args.repeats))
    for seed in args.sampler_seeds.split(","):
        two, one = ["hydra.sweeper.workers=2"], [f"hydra.sweeper.sampler.seed={seed}"]
        paired(
            f"4. default sweep, sampler seed {seed}: 2 workers vs 1",
            ["-m", *two, *one],
            ["-m", *one],
            max(1, args.repeats - 1),
            "<= 0.6x",
            floor=True,
        )
        paired(  # what 4 would be if tracking cost nothing
            f"4u. the same untracked, sampler seed {seed}: 2 workers vs 1",
            ["-m", *two, *one, "tracking.enabled=false"],
            ["-m", *one, "tracking.enabled=false"],
            max(1, args.repeats - 1),
            "(none: the part of 4 that is not tracking)",
            floor=True,
        )


if __name__ == "__main__":
    main()
