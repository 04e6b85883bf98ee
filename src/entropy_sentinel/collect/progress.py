"""A rich progress bar for the collector: items, tokens per second, running accuracy, ETA.

When the console is not a terminal (a log file, CI, ``| tee``), the bar cannot redraw
and is not drawn at all: a plain status line is printed at the start, every
``log_every`` seconds, and at the end instead (each line whole, never wrapped).
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from entropy_sentinel.collect.collector import RecordInfo

__all__ = ["CollectProgress"]


class CollectProgress:
    """Context manager whose ``start`` / ``update`` plug into `Collector.run`'s callbacks."""

    def __init__(
        self, *, disable: bool = False, console: Console | None = None, log_every: float = 60.0
    ) -> None:
        self._console = console if console is not None else Console(stderr=True)
        self._log_every = log_every
        self._last_log = time.perf_counter()
        self._disable = disable
        self._plain = not disable and not self._console.is_terminal
        self._progress = Progress(
            TextColumn("[bold]collect[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            disable=disable or self._plain,
        )
        self._task: TaskID | None = None
        self._t0 = time.perf_counter()
        self._tokens = self._done = self._correct = self._graded = self._failed = 0
        self._truncated = 0

    def __enter__(self) -> CollectProgress:
        self._progress.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.__exit__(exc_type, exc, tb)
        if self._plain and self._task is not None:
            self._status("collected")

    def start(self, total: int, skipped: int) -> None:
        """Called once: ``total`` items, ``skipped`` of them already collected."""
        self._t0 = time.perf_counter()
        self._task = self._progress.add_task(
            "collect", total=total, completed=skipped, stats=f"resumed {skipped}"
        )
        if self._plain:
            self._status("collect")

    def update(self, info: RecordInfo) -> None:
        """Called after each item."""
        if self._task is None:
            return
        self._done += 1
        if info.ok:
            self._tokens += info.completion_tokens
            self._truncated += int(info.truncated)
            if info.correct is not None:
                self._graded += 1
                self._correct += int(info.correct)
        else:
            self._failed += 1
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        acc = f"acc {self._correct / self._graded:.2f}" if self._graded else "acc -"
        stats = (
            f"{self._done / elapsed * 60:.1f} items/min  {self._tokens / elapsed:.1f} tok/s  "
            f"{acc}  cut {self._truncated}  failed {self._failed}"
        )
        self._progress.update(self._task, advance=1, stats=stats)
        now = time.perf_counter()
        if self._plain and now - self._last_log >= self._log_every:
            self._last_log = now
            self._status("collect")

    def _status(self, what: str) -> None:
        """One plain line: items done of the total, and the running statistics."""
        task = self._progress.tasks[0]
        self._console.print(
            f"{what} {task.completed:.0f}/{task.total:.0f} items  {task.fields['stats']}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
