"""The report's paged data: ``OUT/.genbatch-report/<section>-NNNNNN.js``.

report.html carries the summary and the first chunk of each list (cards, missing, failed,
skipped) inline; every further chunk of ``CHUNK_ROWS`` rows is a small script beside it,
``genbatchChunk(report, section, number, rows)``, that the page loads with a ``<script>``
element when it needs it (a later page, a filter or a sort over every record), so the
report opens at once from ``file://`` (no server needed) at a million images.

Each chunk is written atomically inside OUT (``safe_write``); the rows are JSON with
``<``, ``>``, ``&`` and ``'`` escaped and all text ASCII-escaped, so user text stays data
in a script. Chunk files that the report just written does not use (an earlier, longer
report's) are removed afterwards, as are the temp files of a report killed mid-way.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jinja2.utils import htmlsafe_json_dumps

from genbatch.safe_write import contained, remove, write_atomic

PAGES_DIR = ".genbatch-report"
CHUNK_ROWS = 1000  # rows per chunk; a multiple of the page's 200 cards
_CHUNK_RE = re.compile(r"^(cards|missing|failed|skipped)-\d{6,}\.js$")


class PageWriter:
    """Writes a report's chunk files, then removes the ones it did not write."""

    def __init__(self, out: Path, report_id: str):
        self.out = Path(out)
        self.report_id = report_id
        self.written: set[str] = set()
        self._folder: Path | None = None

    def section(self, name: str, rows: Iterable[list]) -> tuple[list[list], int]:
        """Write ``rows`` past the first chunk to chunk files; return the first chunk (for
        the page itself) and the number of chunks (at least 1)."""
        first: list[list] = []
        chunk: list[list] = []
        total = 0
        for row in rows:
            total += 1
            if total <= CHUNK_ROWS:
                first.append(row)
                continue
            chunk.append(row)
            if len(chunk) == CHUNK_ROWS:
                self._write(name, 1 + (total - 1) // CHUNK_ROWS, chunk)
                chunk = []
        if chunk:
            self._write(name, 1 + (total - 1) // CHUNK_ROWS, chunk)
        return first, max(1, math.ceil(total / CHUNK_ROWS))

    def _write(self, name: str, number: int, rows: list[list]) -> None:
        if self._folder is None:
            self._folder = contained(self.out, PAGES_DIR)  # a symlink leading out of OUT is refused
            self._folder.mkdir(exist_ok=True)
        file = chunk_name(name, number)
        payload = ",".join(
            htmlsafe_json_dumps(v, dumps=dumps_finite, separators=(",", ":"))
            for v in (self.report_id, name, number, rows)
        )
        write_atomic(self._folder / file, f"genbatchChunk({payload});\n".encode("ascii"), root=self.out)
        self.written.add(file)

    def remove_stale(self, *, older_than_ns: int) -> None:
        """Delete chunk files this report did not write, and temp files of a killed report;
        only those older than ``older_than_ns`` (another report may be writing now)."""
        folder = self.out / PAGES_DIR
        if not (folder.is_dir() or folder.is_symlink()):
            return
        folder = contained(self.out, PAGES_DIR)
        with os.scandir(folder) as entries:
            for entry in entries:
                ours = _CHUNK_RE.match(entry.name) is not None
                temp = entry.name.startswith(".") and ".js.tmp-" in entry.name
                if (ours and entry.name not in self.written) or temp:
                    with contextlib.suppress(OSError):
                        if entry.stat(follow_symlinks=False).st_mtime_ns < older_than_ns:
                            remove(folder, entry.path)


def chunk_name(section: str, number: int) -> str:
    return f"{section}-{number:06d}.js"


def dumps_finite(value: object, **kwargs: Any) -> str:
    """``json.dumps`` where NaN or infinity (which ``JSON.parse`` refuses) shows as empty."""
    import json

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
