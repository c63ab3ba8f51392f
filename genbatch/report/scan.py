"""One streamed pass over an output folder's ledger, for the HTML report of any size.

``scan_folder(OUT)`` reads the ledger's current records (``ledger.iter_current_offsets``)
once and keeps, per record, only a few numbers: its byte offset in the ledger, the keys it
sorts by and its image's modification time (~40 bytes, against ~2.7 kB for the record),
plus the summary's running totals (counts, the most common models and devices, the
extra-column values a menu can offer, each run's timestamps). ``Scan.records(section)``
then reads the records back from the ledger in the report's order, one at a time, so the
report's memory does not grow with whole records however long the ledger.
"""

from __future__ import annotations

import os
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from genbatch.report.folder import Folder, as_int, extra_fields, file_mtime_ns, read_run, safe_relative
from genbatch.report.throughput import Run, as_float, timestamp
from genbatch.store.ledger import iter_current_offsets, ledger_path, read_record_at

SECTIONS = ("cards", "missing", "failed", "skipped")
FACT_NAMES = ("model", "backend", "device", "dtype")
MAX_DISTINCT = 1000  # values counted per fact (the summary names the four most common)
MAX_FACET_VALUES = 50  # an extra column with more values gets no menu
_LAST = 1 << 62  # sorts a record without an index after the others


@dataclass
class Order:
    """One section's records as sort keys and ledger offsets, in ledger order until sorted."""

    first: array = field(default_factory=lambda: array("q"))  # index, or skipped: manifest number
    second: array = field(default_factory=lambda: array("q"))  # k, or skipped: line
    offsets: array = field(default_factory=lambda: array("q"))
    mtimes: array = field(default_factory=lambda: array("q"))  # cards: the image's st_mtime_ns

    def __len__(self) -> int:
        return len(self.offsets)

    def sort(self) -> None:
        """Into job order (first, second, then ledger order), in place."""
        if len(self) < 2:
            return
        keys = [np.frombuffer(a, dtype=np.int64) for a in (self.first, self.second)]
        perm = np.lexsort((np.arange(len(self)), keys[1], keys[0]))
        for name in ("first", "second", "offsets", "mtimes"):
            column = getattr(self, name)
            if len(column):
                setattr(self, name, array("q", np.frombuffer(column, dtype=np.int64)[perm].tobytes()))


class Events(Sequence):
    """A run's (finished_at, done?) pairs in two flat arrays (a tuple per job would cost ~100 bytes)."""

    def __init__(self) -> None:
        self.times = array("d")
        self.done = array("b")

    def append(self, t: float, ok: bool) -> None:
        self.times.append(t)
        self.done.append(ok)

    def __len__(self) -> int:
        return len(self.times)

    @overload
    def __getitem__(self, i: int) -> tuple[float, bool]: ...
    @overload
    def __getitem__(self, i: slice) -> list[tuple[float, bool]]: ...
    def __getitem__(self, i: int | slice) -> tuple[float, bool] | list[tuple[float, bool]]:
        if isinstance(i, slice):
            return list(zip(self.times[i], map(bool, self.done[i])))
        return self.times[i], bool(self.done[i])

    def __iter__(self) -> Iterator[tuple[float, bool]]:
        return zip(self.times, map(bool, self.done))


@dataclass
class _RunTotals:
    start: float = float("inf")
    events: Events = field(default_factory=Events)


@dataclass
class Scan:
    """What the report needs of a folder, without its records."""

    out: Path
    run: dict
    orders: dict[str, Order] = field(default_factory=lambda: {name: Order() for name in SECTIONS})
    facts: dict[str, Counter] = field(default_factory=lambda: {name: Counter() for name in FACT_NAMES})
    facets: dict[str, set[str] | None] = field(default_factory=dict)  # None: too many values for a menu
    manifests: dict[str, int] = field(default_factory=dict)
    ledger_lines: int = 0
    _runs: dict[str, _RunTotals] = field(default_factory=dict)

    def count(self, section: str) -> int:
        return len(self.orders[section])

    def folder(self) -> Folder:
        """A record-less :class:`Folder` holding run.json, for ``throughput.wall_and_rate``."""
        return Folder(records=[], run=self.run)

    def runs(self) -> list[Run]:
        """Finished jobs grouped by run id, oldest run first (as ``throughput.runs``)."""
        found = []
        for run_id, totals in self._runs.items():
            start = totals.start
            if run_id == str(self.run.get("run_id")):
                started = timestamp(self.run.get("started_at"))
                start = started if started is not None and started <= start else start
            found.append(Run(run_id, start, max(totals.events.times), totals.events))
        found.sort(key=lambda r: r.start)
        return found

    def records(self, section: str) -> Iterator[tuple[dict[str, Any], int]]:
        """The section's records in report order, read back from the ledger one by one,
        each with its image's st_mtime_ns (cards; 0 otherwise)."""
        order = self.orders[section]
        mtimes = order.mtimes if len(order.mtimes) else None
        if not len(order):
            return
        with open(ledger_path(self.out), "rb") as handle:
            for i, offset in enumerate(order.offsets):
                yield read_record_at(handle, offset), (mtimes[i] if mtimes is not None else 0)


def scan_folder(out: Path) -> Scan:
    """Read ``out``'s ledger once (see the module's docstring) and sort each section."""
    out = Path(out)
    scan = Scan(out=out, run=read_run(out), ledger_lines=_count_lines(ledger_path(out)))
    root = os.fspath(out)
    for offset, record in iter_current_offsets(out):
        status = record.get("status")
        if status == "skipped":
            manifest = str(record.get("manifest") or "")
            number = scan.manifests.setdefault(manifest, len(scan.manifests))
            _add(scan.orders["skipped"], number, as_int(record.get("line"), 0), offset)
            continue
        if status == "done":
            path = safe_relative(record.get("file"))
            mtime = file_mtime_ns(os.path.join(root, path)) if path is not None else None
            section = "cards" if mtime is not None else "missing"
            if mtime is not None:
                scan.orders[section].mtimes.append(mtime)
                _facets(scan.facets, record)
        elif status == "failed":
            section = "failed"
        else:
            continue
        _add(scan.orders[section], as_int(record.get("index"), _LAST), as_int(record.get("k"), 0), offset)
        _tally(scan, record)
    # skipped rows go by manifest name, then line
    ranks = {number: rank for rank, (_, number) in enumerate(sorted((m, n) for m, n in scan.manifests.items()))}
    skipped = scan.orders["skipped"]
    skipped.first = array("q", (ranks[n] for n in skipped.first))
    for order in scan.orders.values():
        order.sort()
    return scan


def _add(order: Order, first: int, second: int, offset: int) -> None:
    order.first.append(max(min(first, _LAST), -_LAST))
    order.second.append(max(min(second, _LAST), -_LAST))
    order.offsets.append(offset)


def _tally(scan: Scan, record: dict[str, Any]) -> None:
    """The summary's running totals: facts and each run's timestamps."""
    for name in FACT_NAMES:
        value = record.get(name)
        if value not in (None, ""):
            counts = scan.facts[name]
            text = str(value)
            if text in counts or len(counts) < MAX_DISTINCT:
                counts[text] += 1
    t = timestamp(record.get("finished_at"))
    if t is None:
        return
    took = (as_float(record.get("seconds")) or 0.0) * max(as_int(record.get("batch_size"), 1), 1)
    totals = scan._runs.setdefault(str(record.get("run_id") or "?"), _RunTotals())
    totals.start = min(totals.start, t - took)
    totals.events.append(t, record.get("status") == "done")


def _facets(facets: dict[str, set[str] | None], record: dict[str, Any]) -> None:
    """The values of each extra manifest column (DrawBench's Category...), for the page's menus."""
    for name, value in extra_fields(record).items():
        if value is None or value == "" or isinstance(value, (dict, list)):
            facets.setdefault(name, set())
            continue
        values = facets.setdefault(name, set())
        if values is None:
            continue
        values.add(_js_text(value))
        if len(values) > MAX_FACET_VALUES:
            facets[name] = None


def _js_text(value: object) -> str:
    """``String(value)`` as the page's script writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return 0
