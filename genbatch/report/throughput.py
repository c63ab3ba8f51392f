"""Runs and throughput of an output folder, from the ledger's timestamps: the report's charts.

A run is the finished jobs of one ``run_id`` (``report_scan.Scan.runs`` groups them while it
reads the ledger); its chart is images per second per time
bucket (failed jobs stacked on top). This module computes the numbers and the chart's
geometry; ``templates/report.html`` draws it as SVG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from genbatch.report.folder import Folder

# Bucket widths in seconds, the smallest that keeps a chart within its number of bars.
_BUCKETS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)


@dataclass
class Run:
    run_id: str
    start: float
    end: float
    events: Sequence[tuple[float, bool]]  # (finished_at, done?)

    @property
    def span(self) -> float:
        return max(self.end - self.start, 1e-3)

    @property
    def done(self) -> int:
        return sum(1 for _, ok in self.events if ok)


@dataclass
class Bar:
    x: float
    width: float
    y_done: float
    h_done: float
    y_failed: float
    h_failed: float  # 0: no failed jobs in this bucket
    tip: str


@dataclass
class Chart:
    """One run's throughput chart, in SVG user units (``width`` × ``height``)."""

    caption: str
    width: int
    height: int
    left: int  # x of the plot's left edge
    right: int  # x of the plot's right edge
    plot_top: int  # y of the plot's top edge
    x_label_y: int  # baseline of the time labels under the plot
    y_ticks: list[tuple[float, str]]  # (y, label)
    x_ticks: list[tuple[float, str, str]]  # (x, text-anchor, label)
    legend: str
    bars: list[Bar]


def wall_and_rate(folder: Folder, found: list[Run]) -> tuple[float | None, float | None, str]:
    """Wall time and images per second, and where they come from: the last run's
    ``run.json`` when there is one, else the ledger's timestamps summed over runs."""
    run = folder.run
    wall = as_float(run.get("wall_seconds"))
    if wall is not None:
        rate = as_float(run.get("images_per_second"))
        counts = run.get("counts")
        done = as_float(counts.get("done")) if isinstance(counts, dict) else None
        if rate is None and done is not None and wall > 0:
            rate = done / wall
        return wall, rate, "last run (run.json)"
    if not found:
        return None, None, ""
    total = sum(r.span for r in found)
    return total, sum(r.done for r in found) / total, "from ledger timestamps"


def chart(run: Run, width: int = 900, height: int = 170, max_bars: int = 60) -> Chart:
    """Bars of images/s per time bucket over ``run`` (failed jobs stacked on top)."""
    bucket = next((b for b in _BUCKETS if run.span / b <= max_bars), None)
    if bucket is None:
        bucket = math.ceil(run.span / max_bars)
    n = max(1, math.ceil(run.span / bucket))
    done, failed = [0] * n, [0] * n
    for t, ok in run.events:
        i = min(n - 1, max(0, int((t - run.start) / bucket)))
        (done if ok else failed)[i] += 1
    top = nice_ceiling(max((d + f) / bucket for d, f in zip(done, failed)))
    left, right, up, bottom = 52, 10, 10, 24
    plot_w, plot_h = width - left - right, height - up - bottom
    bar_w = plot_w / n
    margin = min(1.0, bar_w * 0.1)
    bars = []
    for i, (d, f) in enumerate(zip(done, failed)):
        if not d and not f:
            continue
        h_done, h_failed = plot_h * (d / bucket) / top, plot_h * (f / bucket) / top
        y_done = up + plot_h - h_done
        tip = (
            f"{fmt_duration(i * bucket)}–{fmt_duration((i + 1) * bucket)}: "
            f"{d} images, {f} failed, {(d + f) / bucket:.2f}/s"
        )
        x, w = left + i * bar_w + margin, max(bar_w - 2 * margin, 0.5)
        bars.append(Bar(x, w, y_done, h_done, y_done - h_failed, h_failed if f else 0.0, tip))
    n_failed = len(run.events) - run.done
    caption = (
        f"run {run.run_id} · {run.done:,} images"
        + (f", {n_failed:,} failed" if n_failed else "")
        + f" in {fmt_duration(run.span)} · {run.done / run.span:.2f} images/s"
    )
    return Chart(
        caption=caption,
        width=width,
        height=height,
        left=left,
        right=width - right,
        plot_top=up,
        x_label_y=height - 6,
        y_ticks=[(up + plot_h * (1 - q), fmt_rate(top * q)) for q in (0, 0.5, 1)],
        x_ticks=[
            (left + plot_w * q, anchor, fmt_duration(n * bucket * q))
            for q, anchor in ((0, "start"), (0.5, "middle"), (1, "end"))
        ],
        legend=f"images/s, {fmt_duration(bucket)} buckets",
        bars=bars,
    )


def nice_ceiling(x: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``x``."""
    if x <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(x))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= x:
            return step * power
    return 10 * power


def timestamp(value: object) -> float | None:
    """An ISO 8601 time (UTC when it names no zone) as seconds since the epoch, or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def as_float(value: object) -> float | None:
    """``value`` as a finite float, or None (bools, strings, NaN and infinities)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def fmt_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 and seconds != int(seconds) else f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def fmt_rate(rate: float) -> str:
    return f"{rate:.0f}" if rate >= 10 or rate == 0 else f"{rate:.2g}"
