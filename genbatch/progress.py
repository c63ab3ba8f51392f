"""What a person watching sees while a run goes: a rich bar on a terminal, plain periodic
lines for cron and CI logs (no carriage-return spam), nothing with ``--quiet``.

Plain lines start with a UTC timestamp; their ETA is given once there is a rate to base it on
(images finished after the first, which also carries the model's warm-up). Progress bars of
the libraries underneath (transformers' "Loading weights", "Writing model shards", hub
downloads) are turned off: :func:`silence_library_progress`.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timezone
from typing import TextIO

# The rate behind an ETA: at least this many images after the first, over this many seconds.
ETA_MIN_IMAGES = 2
ETA_MIN_SECONDS = 5.0


def silence_library_progress() -> None:
    """Turn off the tqdm bars of huggingface_hub, transformers and diffusers, unless the user
    asked for them (``HF_HUB_DISABLE_PROGRESS_BARS=0``). Called before genbatch builds, loads
    or saves a model."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"].strip().lower() in ("0", "false", "no", "off"):
        return
    import diffusers
    import huggingface_hub.utils
    import transformers

    huggingface_hub.utils.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.disable_progress_bar()


def timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Progress:
    def __init__(self, total: int, *, quiet: bool = False, stream: TextIO | None = None, interval: float = 10.0):
        self.total, self.quiet, self.interval = total, quiet, interval
        self.stream = stream or sys.stderr
        self.done = self.failed = 0
        self.started = time.monotonic()
        self._last_line = self.started
        self._printed = 0
        self._first: tuple[float, int] | None = None  # (when, how many) at the first finished image
        self._bar = None
        if not quiet and total and self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

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
        if self._first is None:
            self._first = (time.monotonic(), self.done + self.failed)
        if self._bar is not None:
            self._bar.update(self._task, advance=1, rate=f"{self.rate:.2f} img/s")
        elif not self.quiet and time.monotonic() - self._last_line >= self.interval:
            self._last_line = time.monotonic()
            self._line()

    def eta(self) -> float | None:
        """Seconds left at the rate since the first finished image, once that rate rests on
        enough images and time; None before."""
        if self._first is None:
            return None
        since, count = self._first
        finished, elapsed = self.done + self.failed, time.monotonic() - since
        if finished - count < ETA_MIN_IMAGES or elapsed < ETA_MIN_SECONDS:
            return None
        return (self.total - finished) / ((finished - count) / elapsed)

    def _line(self) -> None:
        finished = self.done + self.failed
        self._printed = finished
        eta = self.eta()
        left = f", ETA {_duration(eta)}" if eta is not None and finished < self.total else ""
        print(
            f"{timestamp()} genbatch: {finished}/{self.total} images ({self.failed} failed), "
            f"{self.rate:.2f} img/s{left}",
            file=self.stream,
            flush=True,
        )

    def log(self, message: str) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.console.print(message, markup=False, highlight=False)
        else:
            print(f"{timestamp()} {message}", file=self.stream, flush=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif not self.quiet and self.total and self._printed != self.done + self.failed:
            self._line()


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"
