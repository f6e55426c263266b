"""``backend: local``: the sweep's process is worker 0, workers 1..N-1 are processes here.

The worker processes are started once and kept for the sweep's later stages (its
validation, retries queued after every worker had ended): a start costs seconds of CPU
(Python, torch, Optuna, a record process importing MLflow) that a second start would
take from the trials training on the same cores.  A process is handed one job at a time
on its stdin and answers with the job's exit code on a pipe of its own, so its console
lines still go straight to the sweep's terminal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pg.sweep.worker import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, Job, work

if TYPE_CHECKING:
    from pg.sweep.spec import Plan

STOP_GRACE = 60.0  # seconds a worker gets to end its trial cleanly after Ctrl-C


class _Worker:
    """One ``python -m pg.sweep.worker --serve`` process."""

    def __init__(self) -> None:
        read, write = os.pipe()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pg.sweep.worker", "--serve", str(write)],
                stdin=subprocess.PIPE,
                pass_fds=(write,),
                env=env,
                text=True,
            )
        finally:
            os.close(write)  # the worker holds the only write end: its death reads as EOF
        self.codes: IO[str] = os.fdopen(read)

    def send(self, path: Path) -> None:
        """Hand over a job (if the process is gone, :meth:`result` says how it ended)."""
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):  # BrokenPipeError: it died
            self.proc.stdin.write(f"{path}\n")
            self.proc.stdin.flush()

    def result(self) -> int:
        """The job's exit code, or the process's own if it died (negative: a signal)."""
        line = self.codes.readline()
        if line.strip():
            return int(line)
        return self.proc.wait()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def finish(self) -> None:
        """End of input: an idle worker exits."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()

    def wait(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.codes.close()


class LocalWorkers:
    """A sweep's worker processes 1..N-1, started when a stage first needs them."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="pg-sweep-")
        self._workers: list[_Worker] = []
        self._jobs = 0

    def run(self, job: Job, plan: Plan, workers: int) -> int:
        """Run ``workers`` ask -> train -> tell loops to their end; the stage's exit code.

        Each process gets its own sampler seed offset, so no two draw the same trial.
        """
        if workers == 1:
            return work(job, plan)
        self._workers = [w for w in self._workers if w.alive()]
        while len(self._workers) < workers - 1:
            self._workers.append(_Worker())
        helpers = self._workers[: workers - 1]
        for i, helper in enumerate(helpers, start=1):
            helper.send(self._job_file(job, i))
        try:
            codes = [work(job, plan)]
            codes += [helper.result() for helper in helpers]
        except KeyboardInterrupt:
            self.close(grace=STOP_GRACE)  # they got the same SIGINT: time to clean up
            return EXIT_INTERRUPTED
        return _stage_code(codes)

    def close(self, grace: float = STOP_GRACE) -> None:
        """Let every worker exit (an idle one at once) and remove the job files."""
        for worker in self._workers:
            worker.finish()
        for worker in self._workers:
            worker.wait(grace)
        self._workers = []
        self._folder.cleanup()

    def _job_file(self, job: Job, index: int) -> Path:
        self._jobs += 1
        path = Path(self._folder.name) / f"job{self._jobs}.json"
        Job(**{**job.__dict__, "seed_offset": job.seed_offset + 7919 * index}).save(path)
        return path


def _stage_code(codes: list[int]) -> int:
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
