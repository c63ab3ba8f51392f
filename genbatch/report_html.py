"""The HTML report of an output folder: ``OUT/report.html``.

Built from the ledger alone (``OUT/genbatch.jsonl``, plus ``OUT/run.json`` when it is
there), so it can be written at the end of any run, after an interrupt, or later by
``genbatch report OUT``.

The page is ``templates/report.html`` (with its ``report.css`` and ``report.js`` inlined),
rendered by Jinja2 with autoescape on. It is self-contained and works offline from
``file://``; images are shown through small WebP thumbnails in ``OUT/.genbatch-thumbs/``.
Card data goes in as one JSON blob (``|tojson``) that the page renders a page at a time,
so 100,000 images stay fast; the script puts user text in the DOM with ``textContent``.

``page_context`` builds everything the template reads; a new section of the page is one
more key there and one more ``{% if ... %}`` block in the template.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import math
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2

from .fields import text_value
from .folder import Folder, extra_fields, load_folder
from .grid import list_grids
from .safe_write import write_atomic
from .samplers import a1111_name
from .throughput import Run, chart, fmt_duration, runs, wall_and_rate
from .thumbnails import THUMB_SIZE, THUMBS_DIR, remove_stale_thumbnails, report_thumbnails

__all__ = ["MAX_CHARTS", "PAGE_SIZE", "REPORT_NAME", "THUMB_SIZE", "THUMBS_DIR", "page_context", "write_html_report"]

REPORT_NAME = "report.html"
PAGE_SIZE = 200
MAX_CHARTS = 3

# Column order of the rows in the JSON blob; the page looks columns up by these names.
CARD_COLS = (
    "src", "thumb", "prompt", "negative_prompt", "seed", "steps", "guidance_scale",
    "width", "height", "scheduler", "id", "model", "seconds", "index", "k", "lora", "extra",
)  # fmt: skip
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
        shown = report_thumbnails(out, folder, make=thumbs)
        if thumbs:
            remove_stale_thumbnails(out, folder, older_than_ns=started_ns)
        # 3. Summary, charts and the data blob, then the page.
        page = _environment().get_template("report.html").render(page_context(out, folder, shown))
    # 4. Write atomically: a temp file in OUT, then os.replace.
    path = out / REPORT_NAME
    write_atomic(path, page.encode("utf-8"), root=out)
    return path


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC passes while some 100,000 acyclic records are built (~15% faster)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("genbatch", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.policies["json.dumps_function"] = _dumps_finite
    env.policies["json.dumps_kwargs"] = {"separators": (",", ":")}
    return env


def page_context(out: Path, folder: Folder, shown: list[str | None]) -> dict[str, Any]:
    """What ``templates/report.html`` reads. ``shown``: per card, its thumbnail's path
    relative to ``out``, or None to show the image itself."""
    found = runs(folder)
    return {
        "title": f"genbatch report — {out.resolve().name}",
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "tiles": _tiles(folder, found),
        "facts": _facts(folder, found),
        "n_runs": len(found),
        "charts": [chart(run) for run in reversed(found[-MAX_CHARTS:])],
        "n_cards": len(folder.cards),
        "n_failed": len(folder.failed),
        "n_skipped": len(folder.skipped),
        "n_missing": len(folder.missing),
        "grids": list_grids(out),
        "evaluation": _evaluation(out),
        "data": {
            "page_size": PAGE_SIZE,
            "card_cols": CARD_COLS,
            "cards": [_card_row(card, thumb) for card, thumb in zip(folder.cards, shown)],
            "failed_cols": FAILED_COLS,
            "failed": [_failed_row(r) for r in folder.failed],
            "skipped_cols": SKIPPED_COLS,
            "skipped": [_row(r, SKIPPED_COLS) for r in folder.skipped],
            "missing_cols": MISSING_COLS,
            "missing": [_row(r, MISSING_COLS) for r in folder.missing],
        },
    }


def _evaluation(out: Path) -> dict[str, Any] | None:
    """``genbatch eval``'s figures (OUT/eval.json), shown when present."""
    from .evaluate.report import report_section

    try:
        return report_section(out)
    except (OSError, ValueError, KeyError, TypeError):  # a damaged eval.json must not cost the page
        return None


# --- Summary -----------------------------------------------------------------------------


def _tiles(folder: Folder, found: list[Run]) -> list[tuple[str, str, str]]:
    """(label, value, note) of the big numbers at the top."""
    wall, rate, source = wall_and_rate(folder, found)
    tiles = [
        ("Images", f"{len(folder.cards):,}", "done, on disk"),
        ("Failed", f"{len(folder.failed):,}", ""),
        ("Skipped", f"{len(folder.skipped):,}", "invalid manifest rows"),
        ("Wall time", fmt_duration(wall) if wall is not None else "—", source),
        ("Images/s", f"{rate:.2f}" if rate is not None else "—", source),
    ]
    if folder.missing:
        tiles.insert(3, ("Missing", f"{len(folder.missing):,}", "done, file not on disk"))
    return tiles


def _facts(folder: Folder, found: list[Run]) -> list[tuple[str, str]]:
    """(term, text) of the run's description under the tiles."""
    run = folder.run
    records = folder.cards + folder.missing + folder.failed
    models = [m["name"] for m in run.get("models") or [] if isinstance(m, dict) and m.get("name")]
    facts = [
        ("Model", _values(records, "model") or ", ".join(map(str, models)) or "—"),
        ("Backend", _values(records, "backend") or str(run.get("backend") or "—")),
        ("Device", _values(records, "device") or str(run.get("device") or "—")),
        ("dtype", _values(records, "dtype") or str(run.get("dtype") or "—")),
        ("Versions", _versions_text(run.get("versions"))),
        ("Runs in ledger", f"{len(found)} ({folder.n_records:,} ledger records)"),
    ]
    if run:
        facts.append(("Last run", _last_run_text(run)))
        if run.get("command"):
            command = run["command"]
            facts.append(("Command", " ".join(map(str, command)) if isinstance(command, list) else str(command)))
    return facts


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


# --- The data blob -----------------------------------------------------------------------


def _card_row(card: dict, thumb: str | None) -> list:
    row = _row(card, CARD_COLS)
    row[0] = _url(card["file"])  # the image, opened by a click
    row[1] = _url(thumb) if thumb is not None else row[0]  # the picture on the card
    row[CARD_COLS.index("lora")] = text_value("lora", card["lora"]) if card.get("lora") else None
    row[CARD_COLS.index("extra")] = [
        [name, value] for name, value in extra_fields(card).items()
    ] or None  # DrawBench's Category...
    if isinstance(card.get("scheduler"), str):  # "DPM++ 2M Karras" rather than a class and its options
        row[CARD_COLS.index("scheduler")] = a1111_name(card["scheduler"], card.get("scheduler_options"))
    return row


def _failed_row(record: dict) -> list:
    row = _row(record, FAILED_COLS)
    at = FAILED_COLS.index("finished_at")
    if isinstance(row[at], str):  # 2026-11-22T20:01:02.123456+00:00 -> 2026-11-22 20:01:02
        row[at] = row[at][:19].replace("T", " ")
    return row


def _row(record: dict, cols: tuple[str, ...]) -> list:
    return list(map(record.get, cols))


def _url(relative: str) -> str:
    return urllib.parse.quote(relative.replace("\\", "/"), safe="/")


def _dumps_finite(value: object, **kwargs: Any) -> str:
    """``json.dumps`` for ``|tojson``; NaN or infinity somewhere in the ledger shows as empty
    (``JSON.parse`` refuses them). ``tojson`` then escapes <, >, & and ' for the page."""
    try:
        return json.dumps(value, allow_nan=False, **kwargs)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False, **kwargs)


def _finite(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
