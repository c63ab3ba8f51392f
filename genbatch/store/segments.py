"""The ledger of an output prefix in object storage: immutable segments, compacted at the end.

An object cannot grow, so a run's driver writes the ledger lines recorded since its last
checkpoint as one new object, ``genbatch.ledger/NNNNNNNN-RUNID.jsonl`` (one atomic PUT), and
when the run ends it writes ``genbatch.jsonl`` again as the old one followed by every segment,
then deletes the segments, oldest first. The ledger is ``genbatch.jsonl`` followed by the
segments in number order, read by the same reader as a local folder's (genbatch.store.ledger),
so resume, verify and merge behave the same: a kill between the new ``genbatch.jsonl`` and the
last delete leaves segments that are read twice, and reading a line twice changes nothing
(the latest line of a key wins, and the leftovers are always the newest segments).

The run's driver reads the ledger once, as it starts (into a local file, streamed), and makes
the compacted ``genbatch.jsonl`` from that file and its own segments' lines; it reads the prefix's
ledger back only where segments it did not read or write are there.

Numbers, not clocks, order the segments: one driver at a time holds the prefix
(genbatch.store.bucket_lock) and numbers its segments after the highest it finds.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genbatch.bucket import Bucket
from genbatch.errors import GenbatchError
from genbatch.store.ledger import LEDGER_NAME, SHOWN_AS, encode_record

SEGMENTS_DIR = "genbatch.ledger"
_SEGMENT_RE = re.compile(r"^(\d{8,})-[0-9A-Za-z]+\.jsonl$")


def segment_names(sizes: dict[str, int]) -> list[str]:
    """The segments among the names of a listing (:meth:`Bucket.sizes`), oldest first."""
    numbered = []
    for name in sizes:
        folder, _, base = name.rpartition("/")
        found = _SEGMENT_RE.match(base) if folder == SEGMENTS_DIR else None
        if found:
            numbered.append((int(found.group(1)), name))
    return [name for _, name in sorted(numbered)]


def ledger_bytes(bucket: Bucket, sizes: dict[str, int] | None = None) -> bytes:
    """``genbatch.jsonl`` followed by every segment, oldest first. A segment that is gone when
    read (a run's end compacted it meanwhile) means the whole is read again."""
    for _ in range(5):
        listing = bucket.sizes() if sizes is None else sizes
        sizes = None
        parts = []
        try:
            if LEDGER_NAME in listing:
                parts.append(bucket.get(LEDGER_NAME))
            for name in segment_names(listing):
                parts.append(bucket.get(name))
        except FileNotFoundError:
            continue
        return b"".join(part if part.endswith(b"\n") or not part else part + b"\n" for part in parts)
    raise GenbatchError(f"{bucket.where(LEDGER_NAME)}: the ledger kept changing while it was read; try again")


def copy_ledger(bucket: Bucket, folder: Path, sizes: dict[str, int] | None = None) -> list[str]:
    """The prefix's ledger as one local file, ``folder/genbatch.jsonl``, for the readers of
    genbatch.store.ledger: ``genbatch.jsonl`` streamed into it (a million lines are a GiB, never
    held in memory), then each segment. Returns the names of the objects it was made of."""
    path = Path(folder) / LEDGER_NAME
    SHOWN_AS[os.fspath(path)] = bucket.where(LEDGER_NAME)  # its lines are those of genbatch.jsonl, then the segments'
    for _ in range(5):
        listing = bucket.sizes() if sizes is None else sizes
        sizes = None
        parts = ([LEDGER_NAME] if LEDGER_NAME in listing else []) + segment_names(listing)
        try:
            if LEDGER_NAME in listing:
                bucket.download(LEDGER_NAME, path)
            else:
                path.write_bytes(b"")
            with open(path, "ab") as out:
                _end_line(path, out)
                for name in parts[1:] if LEDGER_NAME in listing else parts:
                    append_lines(out, bucket.get(name))
        except FileNotFoundError:  # compacted meanwhile: read it all again
            continue
        return parts
    raise GenbatchError(f"{bucket.where(LEDGER_NAME)}: the ledger kept changing while it was read; try again")


def append_lines(out: Any, data: bytes) -> None:
    """Ledger lines onto an open file, ending in a newline (a torn last line stays its own line)."""
    out.write(data if data.endswith(b"\n") or not data else data + b"\n")


def _end_line(path: Path, out: Any) -> None:
    """A newline after a downloaded ``genbatch.jsonl`` whose last line has none."""
    if path.stat().st_size:
        with open(path, "rb") as read:
            read.seek(-1, os.SEEK_END)
            if read.read(1) != b"\n":
                out.write(b"\n")


class SegmentLedger:
    """The ledger writer of a run into a prefix (the local folder's is genbatch.store.ledger.Ledger):
    ``append`` keeps lines in memory, ``sync`` (each checkpoint) writes them as one segment,
    ``close`` writes the last one and compacts. Thread-safe."""

    repaired = False  # an object is never torn
    # A segment is a request and an object: one every few seconds at most (a kill loses the
    # lines of the last few seconds at most, whose images a rerun makes again, the same bytes).
    checkpoint_every = 5.0

    def __init__(
        self,
        bucket: Bucket,
        run_id: str,
        sizes: dict[str, int],
        holds: Callable[[], bool] = lambda: True,
        local: tuple[Path, list[str]] | None = None,
    ):
        """``local``: the prefix's ledger as read when the run began (a local file, and the names of
        the objects it was made of: genbatch.store.bucket_view), which the compaction extends with
        this run's lines and puts, rather than reading the prefix's ledger back."""
        self.bucket, self.run_id, self.holds, self.local = bucket, run_id, holds, local
        self.out = bucket.url
        self.path = bucket.where(LEDGER_NAME)
        existing = segment_names(sizes)
        self._next = int(_SEGMENT_RE.match(existing[-1].rpartition("/")[2]).group(1)) + 1 if existing else 1  # type: ignore[union-attr]
        self._lines: list[bytes] = []
        self._lock = threading.Lock()
        self._sync = threading.Lock()
        self.segments_written = 0
        self.own: list[str] = []  # the segments this run wrote
        self._spool = local[0].with_name(f".{run_id}.own.jsonl") if local else None  # their lines
        self.compacted: Path | None = None  # the prefix's genbatch.jsonl as compacted, where made here

    def append(self, record: dict[str, Any]) -> None:
        line = encode_record(record)
        with self._lock:
            self._lines.append(line)

    def flush(self) -> None:
        """Nothing to flush: lines reach the store at :meth:`sync`."""

    def sync(self) -> None:
        """Write the lines appended since the last call as one segment (none when there are none)."""
        with self._sync:
            with self._lock:
                lines, self._lines = self._lines, []
            if not lines:
                return
            try:
                self.put_lines(b"".join(lines))
            except BaseException:
                with self._lock:  # kept for the next try
                    self._lines[:0] = lines
                raise

    def put_lines(self, data: bytes) -> None:
        """Write ledger lines (whole, each ending in a newline) as the next segment."""
        if data:
            name = f"{SEGMENTS_DIR}/{self._next:08d}-{self.run_id}.jsonl"
            self.bucket.put(name, data)
            self._next += 1
            self.segments_written += 1
            self.own.append(name)
            if self._spool is not None:
                with open(self._spool, "ab") as spool:
                    spool.write(data)

    def close(self) -> None:
        """The last segment, then the compaction, by the driver that holds the prefix only
        (``holds``: one whose lock was taken over leaves it to the new holder): from the ledger as
        read at the start and this run's lines where the prefix holds just those segments (no
        read of the prefix's ledger), else :func:`compact`."""
        self.sync()
        if not self.holds():
            return
        names = segment_names(self.bucket.sizes(SEGMENTS_DIR))
        path, parts = self.local or (None, [])
        if path is None or not names or set(names) != {n for n in parts if n != LEDGER_NAME} | set(self.own):
            compact(self.bucket, names)  # segments this run did not read or write: the prefix's ledger read back
            return
        if not path.exists():  # nothing was there when the run began
            path.write_bytes(b"")
        with open(path, "ab") as out:
            _end_line(path, out)
            if self._spool is not None and self._spool.exists():
                with open(self._spool, "rb") as spool:
                    while chunk := spool.read(2**20):
                        out.write(chunk)
        self.bucket.upload(LEDGER_NAME, path)
        for name in names:
            self.bucket.delete(name)
        self.compacted = path


def compact(bucket: Bucket, names: list[str] | None = None) -> None:
    """``genbatch.jsonl`` rewritten as itself followed by every segment (``names``, oldest first,
    where the caller listed them), then the segments deleted oldest first (so any left by a kill
    are the newest, read again harmlessly)."""
    names = segment_names(bucket.sizes(SEGMENTS_DIR)) if names is None else names
    if not names:
        return
    listing = {name: 0 for name in names}
    if bucket.tag(LEDGER_NAME) is not None:
        listing[LEDGER_NAME] = 0
    bucket.put(LEDGER_NAME, ledger_bytes(bucket, listing))
    for name in names:
        bucket.delete(name)
