"""Metric rows as the training loop produces them: plain tuples, stamped once, buffered.

Shared by the run written in this process (:class:`pg.record.writer.TrackedRun`) and the
run whose record is written by the record process (:class:`pg.record.remote.RemoteRun`):
the timestamps are taken where the values are produced, whoever writes them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

Row = tuple[str, float, int, int]  # key, value, timestamp (ms), step


class RowBuffer:
    """Rows waiting to be written, with MLflow-safe timestamps."""

    def __init__(self) -> None:
        self.pending: list[Row] = []
        self._stamp_step: int | None = None
        self._last_stamp = 0
        self._stamps: dict[tuple[str, float | None], int] = {}
        self.lock = threading.Lock()

    def add(self, metrics: Mapping[str, float], step: int) -> int:
        """Buffer one logging call's values; the number of rows now pending."""
        with self.lock:
            # Never earlier than the last stamp: MLflow orders a history by timestamp
            # first, so a stamp bumped by _distinct_stamp must not overtake later steps.
            now = max(int(time.time() * 1000), self._last_stamp)
            now = self._distinct_stamp(metrics, now, step)
            self._last_stamp = now
            self.pending.extend((k, float(v), now, step) for k, v in metrics.items())
            return len(self.pending)

    def _distinct_stamp(self, metrics: Mapping[str, float], now: int, step: int) -> int:
        """A timestamp that no equal (key, value) at this step already carries.

        MLflow keys a metric row by (key, timestamp, step, value) and silently drops
        repeats, so two episodes ending at the same step with the same return within one
        millisecond would be stored once (or twice, if the clock ticked in between):
        lost data, and a history that differs between two identical runs.
        """
        if step != self._stamp_step:
            self._stamp_step, self._stamps = step, {}
        keys = [(k, v if v == v else None) for k, v in metrics.items()]  # NaN != NaN
        for key in keys:
            last = self._stamps.get(key)
            if last is not None and last >= now:
                now = last + 1
        for key in keys:
            self._stamps[key] = now
        return now

    def take(self, limit: int | None = None) -> list[Row]:
        """The oldest ``limit`` pending rows (all by default), no longer pending."""
        with self.lock:
            if limit is None or limit >= len(self.pending):
                batch, self.pending = self.pending, []
            else:
                batch, self.pending = self.pending[:limit], self.pending[limit:]
        return batch

    def put_back(self, batch: list[Row]) -> None:
        with self.lock:
            self.pending = batch + self.pending

    def extend(self, rows: list[Row]) -> None:
        """Rows stamped elsewhere (the training process), to be written here."""
        with self.lock:
            self.pending.extend(rows)
