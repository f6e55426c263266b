"""A live progress line for terminals; silent when output is piped or captured."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any


class Progress:
    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled and sys.stdout.isatty()
        self.total = total
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._progress = RichProgress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("train", total=self.total, info="")
        return self

    def update(self, steps: int, episodes: int, mean_return: float) -> None:
        if self._progress is None:
            return
        elapsed = self._progress.tasks[0].elapsed or 1e-9
        info = f"episodes {episodes}  mean100 {mean_return:7.1f}  {steps / elapsed:,.0f} steps/s"
        self._progress.update(self._task, completed=steps, info=info)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)
