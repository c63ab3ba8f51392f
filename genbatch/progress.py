"""What a person watching sees while a run goes: a rich bar on a terminal, plain periodic
lines for cron and CI logs (no carriage-return spam), nothing with ``--quiet``."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, *, quiet: bool = False, stream: TextIO | None = None, interval: float = 10.0):
        self.total, self.quiet, self.interval = total, quiet, interval
        self.stream = stream or sys.stderr
        self.done = self.failed = 0
        self.started = time.monotonic()
        self._last_line = self.started
        self._printed = 0
        self._bar = None
        if not quiet and total and self.stream.isatty():
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._bar = RichProgress(
                TextColumn("[bold]generating"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._task = self._bar.add_task("generating", total=total, rate="")
            self._bar.start()

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def advance(self, ok: bool) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1, rate=f"{self.rate:.2f} img/s")
        elif not self.quiet and time.monotonic() - self._last_line >= self.interval:
            self._last_line = time.monotonic()
            self._line()

    def _line(self) -> None:
        finished = self.done + self.failed
        remaining = (self.total - finished) / self.rate if self.rate else float("nan")
        eta = f"{remaining:.0f}s" if remaining == remaining else "?"
        self._printed = finished
        print(f"genbatch: {finished}/{self.total} images ({self.failed} failed), {self.rate:.2f} img/s, ETA {eta}",
              file=self.stream, flush=True)

    def log(self, message: str) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=self.stream, flush=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif not self.quiet and self.total and self._printed != self.done + self.failed:
            self._line()
