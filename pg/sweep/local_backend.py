"""``backend: local``: the sweep's process is worker 0, workers 1..N-1 are processes here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pg.sweep.worker import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, Job, work

if TYPE_CHECKING:
    from pg.sweep.spec import Plan


def run_local(job: Job, plan: Plan, workers: int) -> int:
    """Run ``workers`` ask -> train -> tell loops to their end; the sweep's exit code.

    Each process gets its own sampler seed offset, so no two draw the same trial.
    """
    if workers == 1:
        return work(job, plan)
    with tempfile.TemporaryDirectory(prefix="pg-sweep-") as tmp:
        procs = []
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        for i in range(1, workers):
            path = Path(tmp) / f"job{i}.json"
            Job(**{**job.__dict__, "seed_offset": job.seed_offset + 7919 * i}).save(path)
            procs.append(
                subprocess.Popen([sys.executable, "-m", "pg.sweep.worker", str(path)], env=env)
            )
        try:
            codes = [work(job, plan)]
            codes += [p.wait() for p in procs]
        except KeyboardInterrupt:
            for p in procs:  # they got the same SIGINT; give them time to clean up
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.send_signal(signal.SIGKILL)
            return EXIT_INTERRUPTED
    if EXIT_INTERRUPTED in codes:
        return EXIT_INTERRUPTED
    for i, c in enumerate(codes):
        if c < 0:  # killed: its trial is an orphan, run again (Sweep._drain)
            print(f"pg: worker {i} was killed (signal {-c})", file=sys.stderr, flush=True)
        elif c not in (EXIT_OK, EXIT_FAILURES):
            print(f"pg: worker {i} exited with status {c}", file=sys.stderr, flush=True)
    if any(c > 0 for c in codes):
        return EXIT_FAILURES
    return EXIT_OK
