"""The HTML report of an output folder: ``OUT/report.html``.

Built from the ledger alone (``OUT/genbatch.jsonl``, plus ``OUT/run.json`` when it is
there), so it can be written at the end of any run, after an interrupt, or later by
``genbatch report OUT``.

The page is ``templates/report.html`` (with its ``report.css`` and ``report.js`` inlined),
rendered by Jinja2 with autoescape on. It works offline from ``file://``; images are shown
through small WebP thumbnails in ``OUT/.genbatch-thumbs/``, and so are the images a row
started from, beside its output (genbatch.report.input_thumbnails). The summary and the first
chunk of each list go in as one JSON blob (``|tojson``); the rest of the records are paged
data files in ``OUT/.genbatch-report/`` (``report_pages``) that the page loads as it needs
them, and its filter and sort read them all, a chunk at a time. The script puts user text
in the DOM with ``textContent``.

Memory stays flat in the number of records: the ledger is read once for sort keys and
totals (``report_scan``), then its records are read back one at a time in report order,
turned into rows and thumbnails a chunk at a time, and written.

``page_context`` builds everything the template reads; a new section of the page is one
more key there and one more ``{% if ... %}`` block in the template.
"""

from __future__ import annotations

import functools
import itertools
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2

from genbatch.bulk import paused_gc
from genbatch.manifest.fields import text_value
from genbatch.pipelines.samplers import a1111_name
from genbatch.report.folder import extra_fields
from genbatch.report.grid import list_grids
from genbatch.report.input_thumbnails import ReportInputs
from genbatch.report.pages import CHUNK_ROWS, PAGES_DIR, PageWriter, dumps_finite
from genbatch.report.scan import SECTIONS, Scan, scan_folder
from genbatch.report.throughput import Run, chart, fmt_duration, wall_and_rate
from genbatch.report.thumbnails import THUMB_SIZE, THUMBS_DIR, ReportThumbnails
from genbatch.safe_write import write_atomic

__all__ = [
    "CHUNK_ROWS",
    "MAX_CHARTS",
    "PAGES_DIR",
    "PAGE_SIZE",
    "REPORT_NAME",
    "THUMB_SIZE",
    "THUMBS_DIR",
    "page_context",
    "write_html_report",
]

REPORT_NAME = "report.html"
PAGE_SIZE = 200
MAX_CHARTS = 3
MAX_KEPT = 20_000  # rows a filter or sort over paged data keeps to show (it counts them all)

# Column order of the rows in the JSON blob; the page looks columns up by these names.
CARD_COLS = (
    "src", "thumb", "prompt", "negative_prompt", "seed", "steps", "guidance_scale",
    "width", "height", "scheduler", "id", "model", "seconds", "index", "k", "lora", "extra", "inputs", "settings",
)  # fmt: skip
# How a row used its input images, on its card: (field, what the card calls it).
INPUT_SETTINGS = (
    ("strength", "strength"),
    ("resize", "resize"),
    ("controlnet_conditioning_scale", "control scale"),
    ("ip_adapter_scale", "ip-adapter scale"),
)
FAILED_COLS = ("index", "line", "id", "prompt", "seed", "model", "error", "finished_at")
SKIPPED_COLS = ("line", "manifest", "id", "prompt", "error")
MISSING_COLS = ("index", "file", "prompt", "seed")


def write_html_report(out: Path, *, thumbs: bool = True) -> Path:
    """Write ``OUT/report.html`` (and its paged data) from the ledger in ``out``; return its path.

    With ``thumbs`` (the default) missing or stale thumbnails are made first; without,
    cards show an existing thumbnail or else the image itself (lazily loaded).
    """
    out = Path(out)
    started_ns = time.time_ns()
    report_id = uuid.uuid4().hex[:12]
    with paused_gc():
        # 1. Read the ledger once: sort keys, ledger offsets and the summary's totals.
        scan = scan_folder(out)
        # 2. The lists, a chunk at a time: records read back in order, thumbnails made
        #    (only when missing or older than the image), rows written as paged data.
        pages = PageWriter(out, report_id)
        with ReportThumbnails(out, make=thumbs) as thumbnails:
            inputs = ReportInputs(out, thumbnails, make=thumbs)  # rows' input images, beside their outputs
            lists = {name: pages.section(name, _rows(scan, name, thumbnails, inputs)) for name in SECTIONS}
            if thumbs:  # those of images no current record shows any more go
                thumbnails.remove_stale(older_than_ns=started_ns)
        # 3. Summary, charts and the first chunk of each list, then the page.
        page = _environment().get_template("report.html").render(page_context(out, scan, lists, report_id))
    # 4. Write atomically (a temp file in OUT, then os.replace), then drop unused data files.
    path = out / REPORT_NAME
    write_atomic(path, page.encode("utf-8"), root=out)
    pages.remove_stale(older_than_ns=started_ns)
    return path


def prepare_template() -> None:
    """Load and compile the page's template now (it is cached for the report)."""
    _environment().get_template("report.html")


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("genbatch.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.policies["json.dumps_function"] = dumps_finite
    env.policies["json.dumps_kwargs"] = {"separators": (",", ":")}
    return env


def page_context(out: Path, scan: Scan, lists: dict[str, tuple[list[list], int]], report_id: str) -> dict[str, Any]:
    """What ``templates/report.html`` reads. ``lists``: per section, its first chunk of rows
    and its number of chunks (the others are in ``PAGES_DIR``)."""
    found = scan.runs()
    return {
        "title": f"genbatch report — {out.resolve().name}",
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "tiles": _tiles(scan, found),
        "facts": _facts(scan, found),
        "n_runs": len(found),
        "charts": [chart(run) for run in reversed(found[-MAX_CHARTS:])],
        "n_cards": scan.count("cards"),
        "n_failed": scan.count("failed"),
        "n_skipped": scan.count("skipped"),
        "n_missing": scan.count("missing"),
        "paged": any(chunks > 1 for _, chunks in lists.values()),
        "grids": list_grids(out),
        "evaluation": _evaluation(out),
        "comparison": _comparison(out),
        "data": {
            "report": report_id,
            "pages_dir": PAGES_DIR,
            "page_size": PAGE_SIZE,
            "chunk_size": CHUNK_ROWS,
            "max_kept": MAX_KEPT,
            "card_cols": CARD_COLS,
            "failed_cols": FAILED_COLS,
            "skipped_cols": SKIPPED_COLS,
            "missing_cols": MISSING_COLS,
            **{name: rows for name, (rows, _) in lists.items()},
            "totals": {name: scan.count(name) for name in SECTIONS},
            "chunks": {name: chunks for name, (_, chunks) in lists.items()},
            "facets": {name: sorted(values) for name, values in scan.facets.items() if values},
        },
    }


def _rows(scan: Scan, section: str, thumbnails: ReportThumbnails, inputs: ReportInputs) -> Iterator[list]:
    """The section's rows in report order; cards with their thumbnails (and their inputs'), a
    chunk at a time."""
    records = scan.records(section)
    if section != "cards":
        make = {"missing": lambda r: _row(r, MISSING_COLS), "failed": _failed_row}.get(
            section, lambda r: _row(r, SKIPPED_COLS)
        )
        return (make(record) for record, _ in records)
    return (
        _card_row(card, thumb, inputs.of(card))
        for chunk in _batched(records, CHUNK_ROWS)
        for (card, _), thumb in zip(chunk, thumbnails.shown(chunk))
    )


def _batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, n)):
        yield batch


def _evaluation(out: Path) -> dict[str, Any] | None:
    """``genbatch eval``'s figures (OUT/eval.json), shown when present."""
    from genbatch.report.eval_section import report_section

    try:
        return report_section(out)
    except (OSError, ValueError, KeyError, TypeError):  # a damaged eval.json must not cost the page
        return None


def _comparison(out: Path) -> dict[str, Any] | None:
    """``genbatch compare``'s figures (OUT/compare.json, OUT the fast run), shown when present."""
    from genbatch.report.compare_section import report_section

    try:
        return report_section(out)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # a damaged compare.json must not cost the page
        return None


# --- Summary -----------------------------------------------------------------------------


def _tiles(scan: Scan, found: list[Run]) -> list[tuple[str, str, str]]:
    """(label, value, note) of the big numbers at the top."""
    wall, rate, source = wall_and_rate(scan.folder(), found)
    tiles = [
        ("Images", f"{scan.count('cards'):,}", "done, on disk"),
        ("Failed", f"{scan.count('failed'):,}", ""),
        ("Skipped", f"{scan.count('skipped'):,}", "invalid manifest rows"),
        ("Wall time", fmt_duration(wall) if wall is not None else "—", source),
        ("Images/s", f"{rate:.2f}" if rate is not None else "—", source),
    ]
    if scan.count("missing"):
        tiles.insert(3, ("Missing", f"{scan.count('missing'):,}", "done, file not on disk"))
    return tiles


def _facts(scan: Scan, found: list[Run]) -> list[tuple[str, str]]:
    """(term, text) of the run's description under the tiles."""
    run = scan.run
    models = [m["name"] for m in run.get("models") or [] if isinstance(m, dict) and m.get("name")]
    facts = [
        ("Model", _values(scan.facts["model"]) or ", ".join(map(str, models)) or "—"),
        ("Backend", _values(scan.facts["backend"]) or str(run.get("backend") or "—")),
        ("Device", _values(scan.facts["device"]) or str(run.get("device") or "—")),
        ("dtype", _values(scan.facts["dtype"]) or str(run.get("dtype") or "—")),
        ("Versions", _versions_text(run.get("versions"))),
        ("Runs in ledger", f"{len(found)} ({scan.ledger_lines:,} ledger lines)"),
    ]
    if run:
        facts.append(("Last run", _last_run_text(run)))
        if run.get("command"):
            command = run["command"]
            facts.append(("Command", " ".join(map(str, command)) if isinstance(command, list) else str(command)))
    return facts


def _values(counts: Counter, limit: int = 4) -> str:
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


def _card_row(card: dict, thumb: str | None, inputs: list[list[Any]] | None = None) -> list:
    row = _row(card, CARD_COLS)
    row[0] = _url(card["file"])  # the image, opened by a click
    row[1] = _url(thumb) if thumb is not None else row[0]  # the picture on the card
    # [label, path, thumbnail or None (the path shown instead), sha256] of each input image
    row[CARD_COLS.index("inputs")] = [[*i[:2], _url(i[2]) if i[2] else None, i[3]] for i in inputs] if inputs else None
    row[CARD_COLS.index("lora")] = text_value("lora", card["lora"]) if card.get("lora") else None
    row[CARD_COLS.index("settings")] = [
        [label, card[name]] for name, label in INPUT_SETTINGS if card.get(name) is not None
    ] or None  # strength, control scale...
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
