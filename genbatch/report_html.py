"""The HTML report of an output folder: ``OUT/report.html``.

Built from the ledger alone (``OUT/genbatch.jsonl``, plus ``OUT/run.json`` when it is
there), so it can be written at the end of any run, after an interrupt, or later by
``genbatch report OUT``.

The page is self-contained and works offline from ``file://``: CSS, script and the
throughput chart (SVG computed here) are inline; images are shown through small WebP
thumbnails in ``OUT/.genbatch-thumbs/``. Card data goes in as one JSON blob that the
page renders a page at a time, so 100,000 images stay fast. User text (prompts, ids,
errors, file names) reaches the page only as escaped JSON or ``html.escape``-d text, and
the script puts it in the DOM with ``textContent``, never ``innerHTML``.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import html
import json
import math
import os
import re
import stat
import time
import urllib.parse
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from .ledger import current_records, iter_records
from .writer import write_atomic


RUN_NAME = "run.json"
REPORT_NAME = "report.html"
THUMBS_DIR = ".genbatch-thumbs"
THUMB_SIZE = 256
PAGE_SIZE = 200
MAX_CHARTS = 3

_KEY_RE = re.compile(r"^[0-9A-Za-z]{8,64}$")

# Column order of the rows in the JSON blob; the page looks columns up by these names.
CARD_COLS = (
    "src", "thumb", "prompt", "negative_prompt", "seed", "steps", "guidance_scale",
    "width", "height", "scheduler", "id", "model", "seconds", "index", "k",
)
FAILED_COLS = ("index", "line", "id", "prompt", "seed", "model", "error", "finished_at")
SKIPPED_COLS = ("line", "manifest", "id", "prompt", "error")
MISSING_COLS = ("index", "file", "prompt", "seed")


def write_html_report(out: Path, *, thumbs: bool = True, records: list[dict] | None = None) -> Path:
    """Write ``OUT/report.html`` from the ledger in ``out`` and return its path.

    With ``thumbs`` (the default) missing or stale thumbnails are made first; without,
    cards show an existing thumbnail or else the image itself (lazily loaded).
    ``records``: the ledger as ``ledger.iter_records`` reads it, if the caller has it.
    """
    out = Path(out)
    started_ns = time.time_ns()
    with _gc_paused():
        # 1. Read the folder: latest ledger record per key, and run.json if there is one.
        folder = load_folder(out, records)
        # 2. Thumbnails for the cards (made only when missing or older than the image);
        #    those of images no current record shows any more are removed.
        thumb_urls = _thumbnails(out, folder, make=thumbs)
        if thumbs:
            _remove_stale_thumbnails(out / THUMBS_DIR, folder, older_than_ns=started_ns)
        # 3. Summary, charts and the data blob, then the page.
        page = _render_page(out, folder, thumb_urls)
    # 4. Write atomically: a temp file in OUT, then os.replace.
    return _write_atomic(out / REPORT_NAME, page)


@contextlib.contextmanager
def _gc_paused():
    """No cyclic GC passes while some 100,000 acyclic records are built (~15% faster)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --- Reading -----------------------------------------------------------------------------


def _read_run(out: Path) -> dict:
    """``OUT/run.json`` as a dict, or ``{}`` when it is absent or unreadable."""
    try:
        run = json.loads((out / RUN_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return run if isinstance(run, dict) else {}


@dataclass
class Folder:
    """An output folder as the ledger tells it, shared by the report and the contact sheets."""

    records: list[dict]  # latest record per key, in ledger order
    cards: list[dict] = field(default_factory=list)  # done, file on disk; by index
    missing: list[dict] = field(default_factory=list)  # done, file not on disk
    failed: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    run: dict = field(default_factory=dict)
    n_records: int = 0
    image_mtimes: dict[str, int] = field(default_factory=dict)  # file -> st_mtime_ns


def load_folder(out: Path, records: list[dict] | None = None) -> Folder:
    """Read ``out``: its current records (ledger.current_records), sorted into cards,
    missing, failed and skipped. ``records``: the ledger as ``iter_records`` reads it,
    when the caller has read it already."""
    out = Path(out)
    if records is None:
        records = list(iter_records(out))
    folder = Folder(records=current_records(records), run=_read_run(out), n_records=len(records))
    root = os.fspath(out)
    for record in folder.records:
        status = record.get("status")
        if status == "done":
            path = _safe_relative(record.get("file"))
            mtime = _mtime_ns(os.path.join(root, path)) if path is not None else None
            if mtime is not None:
                folder.cards.append(record)
                folder.image_mtimes[path] = mtime
            else:
                folder.missing.append(record)
        elif status == "failed":
            folder.failed.append(record)
        elif status == "skipped":
            folder.skipped.append(record)
    folder.cards.sort(key=_job_order)
    folder.missing.sort(key=_job_order)
    folder.failed.sort(key=_job_order)
    folder.skipped.sort(key=lambda r: (str(r.get("manifest") or ""), _int(r.get("line"), 0)))
    return folder


def _mtime_ns(path: str) -> int | None:
    """Modification time of a regular file, or None when there is none."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_mtime_ns if stat.S_ISREG(st.st_mode) else None


def _job_order(record: dict) -> tuple:
    return (_int(record.get("index"), 1 << 62), _int(record.get("k"), 0), str(record.get("key")))


def _safe_relative(file: object) -> str | None:
    """The ledger's ``file`` if it is a plain relative path inside OUT, else None."""
    if not isinstance(file, str) or not file:
        return None
    parts = file.replace("\\", "/").split("/")
    if file.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        return None
    return file


# --- Thumbnails --------------------------------------------------------------------------


def _thumbnails(out: Path, folder: Folder, *, make: bool) -> list[str]:
    """URL (relative to the report) of each card's picture: its thumbnail, or the image."""
    thumb_dir = out / THUMBS_DIR
    if make:
        thumb_dir.mkdir(exist_ok=True)
    look = make or thumb_dir.is_dir()
    thumb_root = os.fspath(thumb_dir)
    urls: list[str] = []
    todo: list[tuple[int, Path, Path]] = []
    for position, card in enumerate(folder.cards):
        file = card["file"]
        name = _thumb_name(card)
        fresh = False
        if look:
            thumb_mtime = _mtime_ns(os.path.join(thumb_root, name))
            fresh = thumb_mtime is not None and thumb_mtime >= folder.image_mtimes[file]
        if fresh:
            urls.append(f"{THUMBS_DIR}/{name}")
        else:
            urls.append(_url(file))
            if make:
                todo.append((position, out / file, thumb_dir / name))
    if todo:
        workers = min(8, (os.cpu_count() or 2) + 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            made = pool.map(lambda job: _make_thumb(job[1], job[2]), todo)
            for (position, _, thumb), ok in zip(todo, made):
                if ok:
                    urls[position] = f"{THUMBS_DIR}/{thumb.name}"
    return urls


def _remove_stale_thumbnails(thumb_dir: Path, folder: Folder, *, older_than_ns: int) -> None:
    """Delete the thumbnails of records that are no longer current (a rerun with other
    parameters gives the images new keys), so the folder does not grow with every rerun,
    and the temp files of a report that was killed while making thumbnails.

    Only files older than this report's start go: a report written at the same time
    from a longer ledger may just have made a thumbnail this one does not know."""
    keep = {_thumb_name(card) for card in folder.cards}
    with os.scandir(thumb_dir) as entries:
        for entry in entries:
            stale = entry.name.endswith(".webp") and entry.name not in keep
            if stale or ".webp.tmp-" in entry.name:
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime_ns < older_than_ns:
                        os.unlink(entry.path)


def _thumb_name(card: dict) -> str:
    key = card.get("key")
    if not (isinstance(key, str) and _KEY_RE.match(key)):
        key = hashlib.sha1(card["file"].encode("utf-8")).hexdigest()[:20]
    return f"{key}.webp"


def _make_thumb(image: Path, thumb: Path) -> bool:
    """Write a WebP thumbnail of ``image`` (at most THUMB_SIZE px a side); False on failure."""
    tmp = thumb.with_name(f"{thumb.name}.tmp-{os.getpid()}-{id(image)}")
    try:
        with Image.open(image) as im:
            im.draft("RGB", (THUMB_SIZE, THUMB_SIZE))
            im.thumbnail((THUMB_SIZE, THUMB_SIZE))
            if im.mode not in ("RGB", "RGBA"):
                im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
            im.save(tmp, "WEBP", quality=80, method=4)
        os.replace(tmp, thumb)
        return True
    except (OSError, ValueError, Image.DecompressionBombError):
        tmp.unlink(missing_ok=True)
        return False


def _url(relative: str) -> str:
    return urllib.parse.quote(relative.replace("\\", "/"), safe="/")


# --- Page --------------------------------------------------------------------------------


def _render_page(out: Path, folder: Folder, thumb_urls: list[str]) -> str:
    blob = {
        "page_size": PAGE_SIZE,
        "card_cols": CARD_COLS,
        "cards": [_card_row(c, u) for c, u in zip(folder.cards, thumb_urls)],
        "failed_cols": FAILED_COLS,
        "failed": [_failed_row(r) for r in folder.failed],
        "skipped_cols": SKIPPED_COLS,
        "skipped": [_row(r, SKIPPED_COLS) for r in folder.skipped],
        "missing_cols": MISSING_COLS,
        "missing": [_row(r, MISSING_COLS) for r in folder.missing],
    }
    title = f"genbatch report — {out.resolve().name}"
    runs = _runs(folder)
    fills = {
        "title": _esc(title),
        "generated": _esc(_now_text()),
        "summary": _summary_html(folder, runs),
        "charts": _charts_html(runs),
        "n_cards": str(len(folder.cards)),
        "n_failed": str(len(folder.failed)),
        "n_skipped": str(len(folder.skipped)),
        "n_missing": str(len(folder.missing)),
        "missing_hidden": "" if folder.missing else " hidden",
        "pager": _PAGER,
        "data": _script_json(blob),
    }
    # One pass, so user text inside a filling is never taken for a marker.
    return re.sub(r"\{\{(\w+)\}\}", lambda m: fills[m.group(1)], _PAGE)


def _card_row(card: dict, picture_url: str) -> list:
    row = _row(card, CARD_COLS)
    # The picture is the image itself unless a thumbnail stands in for it.
    row[0] = _url(card["file"]) if picture_url.startswith(THUMBS_DIR + "/") else picture_url
    row[1] = picture_url
    return row


def _failed_row(record: dict) -> list:
    row = _row(record, FAILED_COLS)
    at = FAILED_COLS.index("finished_at")
    if isinstance(row[at], str):  # 2026-11-22T20:01:02.123456+00:00 -> 2026-11-22 20:01:02
        row[at] = row[at][:19].replace("T", " ")
    return row


def _row(record: dict, cols: tuple[str, ...]) -> list:
    return list(map(record.get, cols))


def _script_json(value: object) -> str:
    """JSON safe inside ``<script type="application/json">``: no <, >, & or line separators."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # NaN or infinity somewhere in the ledger: show it as empty
        text = json.dumps(_finite(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _finite(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- Summary -----------------------------------------------------------------------------


def _summary_html(folder: Folder, runs: list[_Run]) -> str:
    run = folder.run
    wall, rate, source = _wall_and_rate(folder, runs)
    done_records = folder.cards + folder.missing
    tiles = [
        ("Images", f"{len(folder.cards):,}", "done, on disk"),
        ("Failed", f"{len(folder.failed):,}", ""),
        ("Skipped", f"{len(folder.skipped):,}", "invalid manifest rows"),
        ("Wall time", _fmt_duration(wall) if wall is not None else "—", source),
        ("Images/s", f"{rate:.2f}" if rate is not None else "—", source),
    ]
    if folder.missing:
        tiles.insert(3, ("Missing", f"{len(folder.missing):,}", "done, file not on disk"))
    all_records = done_records + folder.failed
    models = [m["name"] for m in run.get("models") or [] if isinstance(m, dict) and m.get("name")]
    facts = [
        ("Model", _values(all_records, "model") or ", ".join(map(str, models)) or "—"),
        ("Backend", _values(all_records, "backend") or str(run.get("backend") or "—")),
        ("Device", _values(all_records, "device") or str(run.get("device") or "—")),
        ("dtype", _values(all_records, "dtype") or str(run.get("dtype") or "—")),
        ("Versions", _versions_text(run.get("versions"))),
        ("Runs in ledger", f"{len(runs)} ({folder.n_records:,} ledger records)"),
    ]
    if run:
        facts.append(("Last run", _last_run_text(run)))
        if run.get("command"):
            command = run["command"]
            facts.append(("Command", " ".join(map(str, command)) if isinstance(command, list) else str(command)))
    tiles_html = "".join(
        f'<div class="tile"><div class="label">{_esc(label)}</div>'
        f'<div class="value">{_esc(value)}</div><div class="note">{_esc(note)}</div></div>'
        for label, value, note in tiles
    )
    facts_html = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in facts)
    return f'<div class="tiles">{tiles_html}</div><dl class="facts">{facts_html}</dl>'


def _values(records: list[dict], name: str, limit: int = 4) -> str:
    counts = Counter(str(r[name]) for r in records if r.get(name) not in (None, ""))
    if not counts:
        return ""
    if len(counts) == 1:
        return next(iter(counts))
    common = counts.most_common(limit)
    text = ", ".join(f"{value} ({n:,})" for value, n in common)
    return text + (f", and {len(counts) - limit} more" if len(counts) > limit else "")


def _versions_text(versions: object) -> str:
    if not isinstance(versions, dict) or not versions:
        return "— (no run.json)"
    return " · ".join(f"{k} {v}" for k, v in versions.items() if v is not None)


def _last_run_text(run: dict) -> str:
    parts = [str(run.get("run_id") or "?")]
    if run.get("started_at"):
        parts.append(f"started {run['started_at']}")
    counts = run.get("counts")
    if isinstance(counts, dict):
        parts.append(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
    if run.get("interrupted"):
        parts.append("interrupted")
    if run.get("exit_code") is not None:
        parts.append(f"exit code {run['exit_code']}")
    return " · ".join(parts)


# --- Runs and throughput -----------------------------------------------------------------


@dataclass
class _Run:
    run_id: str
    start: float
    end: float
    events: list[tuple[float, bool]]  # (finished_at, done?)

    @property
    def span(self) -> float:
        return max(self.end - self.start, 1e-3)

    @property
    def done(self) -> int:
        return sum(1 for _, ok in self.events if ok)


def _runs(folder: Folder) -> list[_Run]:
    """Finished jobs grouped by run id, oldest run first."""
    grouped: dict[str, list[tuple[float, float, bool]]] = defaultdict(list)
    for record in folder.cards + folder.missing + folder.failed:
        t = _timestamp(record.get("finished_at"))
        if t is None:
            continue
        took = (_float(record.get("seconds")) or 0.0) * max(_int(record.get("batch_size"), 1), 1)
        grouped[str(record.get("run_id") or "?")].append((t, took, record.get("status") == "done"))
    runs = []
    for run_id, items in grouped.items():
        start = min(t - took for t, took, _ in items)
        if run_id == str(folder.run.get("run_id")):
            started = _timestamp(folder.run.get("started_at"))
            start = started if started is not None and started <= start else start
        events = sorted((t, ok) for t, _, ok in items)
        runs.append(_Run(run_id, start, events[-1][0], events))
    runs.sort(key=lambda r: r.start)
    return runs


def _wall_and_rate(folder: Folder, runs: list[_Run]) -> tuple[float | None, float | None, str]:
    run = folder.run
    wall = _float(run.get("wall_seconds"))
    if wall is not None:
        rate = _float(run.get("images_per_second"))
        done = _float((run.get("counts") or {}).get("done")) if isinstance(run.get("counts"), dict) else None
        if rate is None and done is not None and wall > 0:
            rate = done / wall
        return wall, rate, "last run (run.json)"
    if not runs:
        return None, None, ""
    total = sum(r.span for r in runs)
    return total, sum(r.done for r in runs) / total, "from ledger timestamps"


def _charts_html(runs: list[_Run]) -> str:
    if not runs:
        return '<p class="muted">No timestamps in the ledger yet.</p>'
    shown = runs[-MAX_CHARTS:]
    parts = []
    if len(runs) > len(shown):
        parts.append(f'<p class="muted">Latest {len(shown)} of {len(runs)} runs.</p>')
    for run in reversed(shown):
        failed = len(run.events) - run.done
        caption = (
            f"run {run.run_id} · {run.done:,} images"
            + (f", {failed:,} failed" if failed else "")
            + f" in {_fmt_duration(run.span)} · {run.done / run.span:.2f} images/s"
        )
        parts.append(
            f'<figure class="chart"><figcaption>{_esc(caption)}</figcaption>'
            f"{_throughput_svg(run)}</figure>"
        )
    return "".join(parts)


_BUCKETS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)


def _throughput_svg(run: _Run, width: int = 900, height: int = 170, max_bars: int = 60) -> str:
    """Bars of images/s per time bucket over a run (failed jobs stacked in red)."""
    bucket = next((b for b in _BUCKETS if run.span / b <= max_bars), None)
    if bucket is None:
        bucket = math.ceil(run.span / max_bars)
    n = max(1, math.ceil(run.span / bucket))
    done, failed = [0] * n, [0] * n
    for t, ok in run.events:
        i = min(n - 1, max(0, int((t - run.start) / bucket)))
        (done if ok else failed)[i] += 1
    peak = max((d + f) / bucket for d, f in zip(done, failed))
    top = _nice_ceiling(peak)
    left, right, up, bottom = 52, 10, 10, 24
    plot_w, plot_h = width - left - right, height - up - bottom
    bar_w = plot_w / n
    parts = [
        f'<svg class="throughput" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="images per second over time" xmlns="http://www.w3.org/2000/svg">'
    ]
    for fraction in (0, 0.5, 1):
        y = up + plot_h * (1 - fraction)
        parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt_rate(top * fraction)}</text>'
        )
    for i, (d, f) in enumerate(zip(done, failed)):
        if not d and not f:
            continue
        x = left + i * bar_w + min(1.0, bar_w * 0.1)
        w = max(bar_w - 2 * min(1.0, bar_w * 0.1), 0.5)
        h_done = plot_h * (d / bucket) / top
        h_fail = plot_h * (f / bucket) / top
        tip = _esc(
            f"{_fmt_duration(i * bucket)}–{_fmt_duration((i + 1) * bucket)}: "
            f"{d} images, {f} failed, {(d + f) / bucket:.2f}/s"
        )
        y = up + plot_h - h_done
        parts.append(f'<g><title>{tip}</title>')
        parts.append(f'<rect class="done" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h_done:.1f}"/>')
        if f:
            y_fail = y - h_fail
            parts.append(f'<rect class="failed" x="{x:.1f}" y="{y_fail:.1f}" width="{w:.1f}" height="{h_fail:.1f}"/>')
        parts.append("</g>")
    for fraction, anchor in ((0, "start"), (0.5, "middle"), (1, "end")):
        x = left + plot_w * fraction
        parts.append(
            f'<text class="axis" x="{x:.1f}" y="{height - 6}" text-anchor="{anchor}">'
            f"{_fmt_duration(n * bucket * fraction)}</text>"
        )
    parts.append(
        f'<text class="axis" x="{left + 4}" y="{up + 12}">images/s, {_fmt_duration(bucket)} buckets</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _nice_ceiling(x: float) -> float:
    if x <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(x))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= x:
            return step * power
    return 10 * power


# --- Small conversions -------------------------------------------------------------------


def _timestamp(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _fmt_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 and seconds != int(seconds) else f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def _fmt_rate(rate: float) -> str:
    return f"{rate:.0f}" if rate >= 10 or rate == 0 else f"{rate:.2g}"


def _write_atomic(path: Path, text: str) -> Path:
    write_atomic(path, text.encode("utf-8"))
    return path


# --- Template ----------------------------------------------------------------------------

_PAGER = (
    '<div class="pager"><button class="prev" type="button">‹ Prev</button>'
    '<span class="info"></span><button class="next" type="button">Next ›</button></div>'
)

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self' data: file:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{{title}}</title>
<style>
:root { --fg: #1d2125; --muted: #6a737d; --line: #e1e4e8; --bg: #f6f8fa; --accent: #2f6fde; --bad: #d73a49; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: #fff; }
header, main { max-width: 1400px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 18px; }
h1 { font-size: 20px; margin: 0 0 2px; }
h2 { font-size: 16px; margin: 28px 0 10px; display: flex; gap: 8px; align-items: baseline; }
h2 .count { color: var(--muted); font-weight: normal; }
.muted { color: var(--muted); }
.tiles { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0 10px; }
.tile { border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; min-width: 130px; background: var(--bg); }
.tile .label { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.tile .value { font-size: 22px; font-weight: 600; }
.tile .note { font-size: 11px; color: var(--muted); }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 3px 14px; margin: 10px 0; font-size: 13px; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; word-break: break-word; }
.chart { margin: 8px 0 14px; }
.chart figcaption { font-size: 13px; color: var(--muted); margin-bottom: 2px; }
svg.throughput { width: 100%; max-width: 900px; height: auto; display: block; }
svg .grid { stroke: var(--line); }
svg .axis { fill: var(--muted); font-size: 11px; }
svg .done { fill: var(--accent); }
svg .failed { fill: var(--bad); }
.toolbar { position: sticky; top: 0; z-index: 2; background: rgba(255,255,255,.96); border-bottom: 1px solid var(--line); padding: 10px 0; display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
.toolbar input[type=search] { flex: 1 1 320px; font: inherit; padding: 7px 10px; border: 1px solid #c8ccd1; border-radius: 6px; }
.toolbar select, .pager button { font: inherit; padding: 5px 10px; border: 1px solid #c8ccd1; border-radius: 6px; background: #fff; }
.pager { display: flex; gap: 8px; align-items: center; margin: 10px 0; font-size: 13px; color: var(--muted); }
.pager button:disabled { opacity: .4; }
.grid-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 12px; }
.card { margin: 0; border: 1px solid var(--line); border-radius: 8px; overflow: hidden; background: #fff; display: flex; flex-direction: column; }
.card a.pic { display: block; background: var(--bg); }
.card img { display: block; width: 100%; height: auto; aspect-ratio: 1 / 1; object-fit: contain; }
.card figcaption { padding: 7px 9px 9px; font-size: 12px; }
.card .prompt { margin: 0 0 4px; font-size: 13px; display: -webkit-box; -webkit-line-clamp: 3; -webkit-box-orient: vertical; overflow: hidden; word-break: break-word; }
.card .neg { margin: 0 0 4px; color: var(--bad); opacity: .8; word-break: break-word; }
.card .meta { margin: 0; color: var(--muted); }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; border-bottom: 1px solid var(--line); padding: 5px 8px; vertical-align: top; }
th { background: var(--bg); font-weight: 600; }
td.reason { color: var(--bad); white-space: pre-wrap; word-break: break-word; }
td.text { word-break: break-word; }
.empty { color: var(--muted); padding: 8px 0; }
footer { max-width: 1400px; margin: 30px auto; padding: 0 20px; color: var(--muted); font-size: 12px; }
</style>
</head>
<body>
<header>
<h1>{{title}}</h1>
<div class="muted">Generated {{generated}} from genbatch.jsonl</div>
</header>
<main>
<section id="summary">{{summary}}</section>
<section id="throughput"><h2>Throughput</h2>{{charts}}</section>
<div class="toolbar">
<input id="filter" type="search" placeholder="Filter by prompt, seed, id, steps, size, scheduler, error… (all words must match)" autocomplete="off" aria-label="Filter">
<label class="muted">Sort <select id="sort"><option value="index">manifest order</option><option value="slow">slowest first</option><option value="fast">fastest first</option></select></label>
<span id="filter-info" class="muted"></span>
</div>
<noscript><p>This report needs JavaScript to list its images; the data is in genbatch.jsonl.</p></noscript>
<section id="images" data-total="{{n_cards}}"><h2>Images <span class="count">{{n_cards}}</span></h2>
{{pager}}
<div class="items grid-cards"></div>
{{pager}}
</section>
<section id="failed" data-total="{{n_failed}}"><h2>Failed <span class="count">{{n_failed}}</span></h2>
{{pager}}
<table><thead><tr><th>#</th><th>line</th><th>id</th><th>prompt</th><th>seed</th><th>model</th><th>reason</th><th>finished</th></tr></thead><tbody class="items"></tbody></table>
</section>
<section id="skipped" data-total="{{n_skipped}}"><h2>Skipped <span class="count">{{n_skipped}}</span></h2>
{{pager}}
<table><thead><tr><th>line</th><th>manifest</th><th>id</th><th>prompt</th><th>reason</th></tr></thead><tbody class="items"></tbody></table>
</section>
<section id="missing" data-total="{{n_missing}}"{{missing_hidden}}><h2>Missing files <span class="count">{{n_missing}}</span></h2>
<p class="muted">Recorded as done, but the image is no longer on disk.</p>
{{pager}}
<table><thead><tr><th>#</th><th>file</th><th>prompt</th><th>seed</th></tr></thead><tbody class="items"></tbody></table>
</section>
</main>
<footer>genbatch · thumbnails in .genbatch-thumbs/ · click an image to open it full size</footer>
<script type="application/json" id="gb-data">{{data}}</script>
<script>
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("gb-data").textContent);
  var PAGE = data.page_size;

  function cols(names) { var m = {}; names.forEach(function (n, i) { m[n] = i; }); return m; }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function str(v) { return v === null || v === undefined ? "" : String(v); }
  function cell(tr, text, cls) { tr.appendChild(el("td", cls || "", str(text))); }

  // A list shown a page at a time, filtered by words and optionally sorted.
  function Section(id, rows, haystack, render) {
    var root = document.getElementById(id);
    var list = root.querySelector(".items");
    var infos = root.querySelectorAll(".pager .info");
    var prevs = root.querySelectorAll(".pager .prev");
    var nexts = root.querySelectorAll(".pager .next");
    var order = rows.map(function (_, i) { return i; });
    var shown = order, page = 0, hay = null, terms = [];
    function draw() {
      var pages = Math.max(1, Math.ceil(shown.length / PAGE));
      if (page > pages - 1) page = pages - 1;
      var start = page * PAGE, end = Math.min(shown.length, start + PAGE);
      var frag = document.createDocumentFragment();
      for (var i = start; i < end; i++) frag.appendChild(render(rows[shown[i]]));
      list.replaceChildren(frag);
      if (!shown.length) list.appendChild(el(list.tagName === "TBODY" ? "tr" : "div", "empty",
          rows.length ? "Nothing matches the filter." : "None."));
      var text = shown.length ? "Showing " + (start + 1).toLocaleString() + "–" + end.toLocaleString() +
          " of " + shown.length.toLocaleString() +
          (shown.length !== rows.length ? " (filtered from " + rows.length.toLocaleString() + ")" : "") +
          (pages > 1 ? " · page " + (page + 1) + " of " + pages : "") : "";
      infos.forEach(function (n, i) { n.textContent = text; n.parentNode.hidden = !text || (i > 0 && pages <= 1); });
      prevs.forEach(function (b) { b.disabled = page === 0; b.hidden = pages <= 1; });
      nexts.forEach(function (b) { b.disabled = page >= pages - 1; b.hidden = pages <= 1; });
    }
    function go(delta) { page += delta; draw(); root.scrollIntoView(); }
    prevs.forEach(function (b) { b.addEventListener("click", function () { go(-1); }); });
    nexts.forEach(function (b) { b.addEventListener("click", function () { go(1); }); });
    function apply() {
      if (!terms.length) { shown = order; }
      else {
        if (!hay) hay = rows.map(function (r) { return haystack(r).toLowerCase(); });
        shown = order.filter(function (i) {
          for (var t = 0; t < terms.length; t++) if (hay[i].indexOf(terms[t]) < 0) return false;
          return true;
        });
      }
      page = 0; draw();
    }
    draw();
    return {
      filter: function (words) { terms = words; apply(); return shown.length; },
      sort: function (cmp) {
        order = rows.map(function (_, i) { return i; });
        if (cmp) order.sort(function (a, b) { return cmp(rows[a], rows[b]) || a - b; });
        apply();
      },
      total: rows.length
    };
  }

  var C = cols(data.card_cols);
  function params(r) {
    var p = [];
    if (r[C.seed] !== null) p.push("seed " + r[C.seed]);
    if (r[C.steps] !== null) p.push(r[C.steps] + " steps");
    if (r[C.guidance_scale] !== null) p.push("cfg " + r[C.guidance_scale]);
    if (r[C.width] !== null && r[C.height] !== null) p.push(r[C.width] + "×" + r[C.height]);
    if (r[C.scheduler]) p.push(r[C.scheduler]);
    if (r[C.seconds] !== null) p.push(Number(r[C.seconds]).toFixed(2) + " s");
    return p.join(" · ");
  }
  var images = Section("images", data.cards, function (r) {
    return [r[C.prompt], r[C.negative_prompt], "seed:" + r[C.seed], "id:" + str(r[C.id]), "#" + r[C.index],
      params(r), "steps:" + r[C.steps], "cfg:" + r[C.guidance_scale], r[C.width] + "x" + r[C.height],
      r[C.model], r[C.src]].map(str).join("\\n");
  }, function (r) {
    var card = el("figure", "card");
    var a = el("a", "pic"); a.href = r[C.src]; a.target = "_blank"; a.rel = "noopener";
    var img = el("img"); img.loading = "lazy"; img.decoding = "async"; img.alt = str(r[C.prompt]).slice(0, 200);
    if (r[C.width] > 0 && r[C.height] > 0) img.style.aspectRatio = Number(r[C.width]) + " / " + Number(r[C.height]);
    img.src = r[C.thumb];
    a.appendChild(img); card.appendChild(a);
    var cap = el("figcaption");
    var prompt = el("p", "prompt", r[C.prompt]); prompt.title = str(r[C.prompt]); cap.appendChild(prompt);
    if (r[C.negative_prompt]) cap.appendChild(el("p", "neg", "− " + r[C.negative_prompt]));
    var head = "#" + r[C.index] + (r[C.k] ? "." + r[C.k] : "") +
        (r[C.id] !== null && r[C.id] !== "" ? " · id " + r[C.id] : "");
    cap.appendChild(el("p", "meta", head));
    cap.appendChild(el("p", "meta", params(r)));
    card.appendChild(cap);
    return card;
  });

  var F = cols(data.failed_cols);
  var failed = Section("failed", data.failed, function (r) { return r.map(str).join("\\n"); }, function (r) {
    var tr = el("tr");
    cell(tr, r[F.index]); cell(tr, r[F.line]); cell(tr, r[F.id]); cell(tr, r[F.prompt], "text");
    cell(tr, r[F.seed]); cell(tr, r[F.model]); cell(tr, r[F.error], "reason"); cell(tr, r[F.finished_at]);
    return tr;
  });
  var S = cols(data.skipped_cols);
  var skipped = Section("skipped", data.skipped, function (r) { return r.map(str).join("\\n"); }, function (r) {
    var tr = el("tr");
    cell(tr, r[S.line]); cell(tr, r[S.manifest], "text"); cell(tr, r[S.id]); cell(tr, r[S.prompt], "text");
    cell(tr, r[S.error], "reason");
    return tr;
  });
  var M = cols(data.missing_cols);
  var missing = Section("missing", data.missing, function (r) { return r.map(str).join("\\n"); }, function (r) {
    var tr = el("tr");
    cell(tr, r[M.index]); cell(tr, r[M.file], "text"); cell(tr, r[M.prompt], "text"); cell(tr, r[M.seed]);
    return tr;
  });

  var sections = [images, failed, skipped, missing];
  var input = document.getElementById("filter"), info = document.getElementById("filter-info");
  var timer = null;
  function runFilter() {
    var words = input.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var counts = sections.map(function (s) { return s.filter(words); });
    info.textContent = words.length ? counts[0].toLocaleString() + " images, " + counts[1].toLocaleString() +
        " failed, " + counts[2].toLocaleString() + " skipped match" : "";
  }
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(runFilter, data.cards.length > 20000 ? 150 : 0);
  });
  document.getElementById("sort").addEventListener("change", function (e) {
    var v = e.target.value, s = C.seconds;
    images.sort(v === "slow" ? function (a, b) { return (b[s] || 0) - (a[s] || 0); } :
                v === "fast" ? function (a, b) { return (a[s] || 0) - (b[s] || 0); } : null);
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "/" && document.activeElement !== input) { e.preventDefault(); input.focus(); }
  });
  document.body.setAttribute("data-ready", "1");
})();
</script>
</body>
</html>
"""
