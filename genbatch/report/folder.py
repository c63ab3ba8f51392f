"""An output folder as its ledger tells it: the model the HTML report and the contact sheets share.

``load_folder(OUT)`` reads ``OUT/genbatch.jsonl`` (the latest record per job key) and
``OUT/run.json`` when it is there, and sorts the records into images on disk, images
recorded as done but gone from disk, failed jobs and skipped manifest rows.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from genbatch.store.ledger import current_records, iter_records

RUN_NAME = "run.json"


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
    folder = Folder(records=current_records(records), run=read_run(out), n_records=len(records))
    root = os.fspath(out)
    for record in folder.records:
        status = record.get("status")
        if status == "done":
            path = safe_relative(record.get("file"))
            mtime = file_mtime_ns(os.path.join(root, path)) if path is not None else None
            if mtime is not None and path is not None:
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
    folder.skipped.sort(key=lambda r: (str(r.get("manifest") or ""), as_int(r.get("line"), 0)))
    return folder


def read_run(out: Path) -> dict:
    """``OUT/run.json`` as a dict, or ``{}`` when it is absent or unreadable."""
    try:
        run = json.loads((Path(out) / RUN_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return run if isinstance(run, dict) else {}


def file_mtime_ns(path: str) -> int | None:
    """Modification time of a regular file, or None when there is none."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_mtime_ns if stat.S_ISREG(st.st_mode) else None


def safe_relative(file: object) -> str | None:
    """The ledger's ``file`` if it is a plain relative path inside OUT, else None."""
    if not isinstance(file, str) or not file:
        return None
    parts = file.replace("\\", "/").split("/")
    if file.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        return None
    return file


def as_int(value: object, default: int) -> int:
    """``value`` if it is an int (not a bool), else ``default``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _job_order(record: dict) -> tuple:
    return (as_int(record.get("index"), 1 << 62), as_int(record.get("k"), 0), str(record.get("key")))


def _field_aliases() -> frozenset[str]:
    from genbatch.manifest.fields import ALIASES

    return frozenset(alias for aliases in ALIASES.values() for alias in aliases)


_ALIASES: frozenset[str] | None = None


def extra_fields(record: dict) -> dict[str, object]:
    """A record's manifest columns that are not generation fields (DrawBench's ``Category``,
    a ``style`` column...): the report shows, filters and tabulates them. A column is a
    generation field when its name, read as manifests read column names, is a field's alias."""
    global _ALIASES
    if _ALIASES is None:
        _ALIASES = _field_aliases()
    fields = record.get("fields")
    if not isinstance(fields, dict):
        return {}
    return {
        str(name): value
        for name, value in fields.items()
        if str(name).strip().lower().replace(" ", "_").replace("-", "_") not in _ALIASES
    }
