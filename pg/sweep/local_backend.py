"""``backend: local``: the sweep's process is worker 0, workers 1..N-1 are processes here.

A worker process is a fork of the sweep's process, made once its imports (torch, Optuna,
Hydra) and its Hydra setup and compose cache are done: a fresh interpreter spent ~2.5 s of
CPU importing them again, taken from the trials training on the same cores.  It records
through a connection of its own to the sweep's record process
(:meth:`pg.record.process.RecordProcess.share`), so MLflow is imported and the store
opened once per sweep rather than once more per worker (~4 CPU seconds each here), and
ends with ``os._exit`` so none of the sweep's exit handlers or frames run in it.  The
processes are kept for the sweep's later stages (its validation, retries queued after
every worker had ended).  A process is handed one job at a time on a pipe and answers
with the job's exit code on another, so its console lines still go straight to the
sweep's terminal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pg.sweep.worker import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, Job, serve_forked, work

if TYPE_CHECKING:
    from pg.sweep.spec import Plan

STOP_GRACE = 60.0  # seconds a worker gets to end its trial cleanly after Ctrl-C


class _Worker:
    """One forked worker process serving jobs (:func:`pg.sweep.worker.serve_forked`)."""

    def __init__(self, others: list[_Worker]) -> None:
        record = _record_connection()
        jobs_read, jobs_write = os.pipe()
        codes_read, codes_write = os.pipe()
        sys.stdout.flush()  # or the child would write the sweep's pending output again
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker: leaves only through os._exit, never into the sweep's frames
            code = 1
            try:
                # Only its own ends: with another worker's job pipe open here, that one
                # would read EOF only once this one has ended too.
                for fd in (jobs_write, codes_read, *(f for w in others for f in w.fds())):
                    with contextlib.suppress(OSError):
                        os.close(fd)
                code = serve_forked(jobs_read, codes_write, record)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except KeyboardInterrupt:  # before it serves: the sweep got the Ctrl-C too
                code = EXIT_INTERRUPTED
            except BaseException:
                traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        os.close(jobs_read)
        os.close(codes_write)  # the worker holds the only write end: its death reads as EOF
        if record is not None:  # the worker's alone: its death reads as EOF there too
            os.close(record)
        self.pid = pid
        self.returncode: int | None = None
        self.jobs: IO[str] = os.fdopen(jobs_write, "w")
        self.codes: IO[str] = os.fdopen(codes_read)

    def fds(self) -> tuple[int, ...]:
        return tuple(f.fileno() for f in (self.jobs, self.codes) if not f.closed)

    def send(self, path: Path) -> None:
        """Hand over a job (if the process is gone, :meth:`result` says how it ended)."""
        with contextlib.suppress(OSError):  # BrokenPipeError: it died
            self.jobs.write(f"{path}\n")
            self.jobs.flush()

    def result(self) -> int:
        """The job's exit code, or the process's own if it died (negative: a signal)."""
        line = self.codes.readline()
        if line.strip():
            return int(line)
        code = self._reap(block=True)
        assert code is not None
        return code

    def _reap(self, block: bool) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
            if pid == 0:
                return None
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def alive(self) -> bool:
        return self._reap(block=False) is None

    def finish(self) -> None:
        """End of input: an idle worker exits."""
        with contextlib.suppress(OSError):
            self.jobs.close()

    def wait(self, timeout: float) -> bool:
        """Until it has exited, SIGKILLed after ``timeout`` seconds; whether it had to be."""
        deadline = time.monotonic() + timeout
        killed = False
        while self._reap(block=False) is None:
            if time.monotonic() >= deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self._reap(block=True)
                killed = True
            else:
                time.sleep(0.02)
        self.codes.close()
        return killed


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
            self._workers.append(_Worker(self._workers))
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
        for i, worker in enumerate(self._workers, start=1):
            if worker.wait(grace):
                print(
                    f"pg: worker {i} had not ended {grace:g} s after the sweep's; killed",
                    file=sys.stderr,
                    flush=True,
                )
        self._workers = []
        self._folder.cleanup()

    def _job_file(self, job: Job, index: int) -> Path:
        self._jobs += 1
        path = Path(self._folder.name) / f"job{self._jobs}.json"
        job.for_worker(index).save(path)
        return path


def _record_connection() -> int | None:
    """A connection to the sweep's record process for a worker about to be forked (its
    fd), or None: the worker starts a record process of its own if it records."""
    from pg.record.process import RecordProcessError, shareable

    proc = shareable()
    if proc is None:
        return None
    try:
        return proc.share()
    except RecordProcessError:
        return None


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
