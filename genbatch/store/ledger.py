"""The ledger: ``<out>/genbatch.jsonl``, one JSON line per finished (or failed, or skipped) job.

A "done" line is appended and flushed only after its image is on disk under its final
name, so the ledger never claims an image that is not there; an image is done when its
line is here and its file exists with the recorded size. A kill can tear only the last
line, which :func:`repair` drops. Later lines win over earlier ones for the same key.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

import numpy as np

from genbatch.bulk import paused_gc
from genbatch.errors import GenbatchError
from genbatch.safe_write import open_no_follow, sync_filesystem
from genbatch.store.ledger_checks import REPORTED, record_problem, warn_once

LEDGER_NAME = "genbatch.jsonl"
# The shape of ledger records and run.json. Version 1 (no "schema" field) is read the same way.
SCHEMA_VERSION = 2
T = TypeVar("T")
# A local copy of a ledger -> the name its messages give it (a prefix's, in object storage).
SHOWN_AS: dict[str, str] = {}


def ledger_path(out: Path) -> Path:
    return Path(out) / LEDGER_NAME


def require_ledger(out: Path, shown: object = None) -> None:
    """Fail with a message when ``out`` has no ledger (``shown``: how the user named it)."""
    if not ledger_path(out).is_file():
        raise GenbatchError(f"{shown or out}: no genbatch.jsonl here; is this the --out folder of a genbatch run?")


def repair(out: Path) -> bool:
    """Cut a torn last line (no trailing newline) left by a killed run. True if cut."""
    path = ledger_path(out)
    if not path.is_symlink() and (not path.exists() or path.stat().st_size == 0):
        return False
    with open_no_follow(out, LEDGER_NAME, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return False
        # find the last newline reading backwards, so a large ledger is never read whole
        end = handle.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - (1 << 16))
            handle.seek(start)
            newline = handle.read(end - start).rfind(b"\n")
            if newline >= 0:
                handle.truncate(start + newline + 1)
                return True
            end = start
        handle.truncate(0)
    return True


def iter_records(out: Path, warn: Callable[[str], None] | None = None) -> Iterator[dict[str, Any]]:
    """Every usable record in file order, read line by line (the ledger is never held whole).

    A torn last line (no newline: a killed run's) is passed over silently; :func:`repair`
    removes it. Any other line that is not a JSON object with fields of the expected types
    is skipped and reported through ``warn`` (default: the ``genbatch.store.ledger`` logger) as
    ``PATH:LINE: skipped: why``: the first ten one by one, then how many more."""
    for _, record in _records_with_offsets(ledger_path(out), warn):
        yield record


# Up to this size the current records are read once into memory and shared by the reports
# (faster); past it each report streams them again (flat memory). Records in memory take about
# eight times their JSON text, so 16 MiB of ledger (~15,000 images) holds ~130 MB at most.
IN_MEMORY_BYTES = 16 << 20


class CurrentRecords:
    """The ledger's current records, for reading more than once: held in memory for a ledger
    of up to :data:`IN_MEMORY_BYTES`, streamed again by each reader past that."""

    def __init__(self, out: Path):
        self.out = Path(out)
        path = ledger_path(out)
        small = not path.exists() or path.stat().st_size <= IN_MEMORY_BYTES
        self._held = list(iter_current_records(out)) if small else None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._held) if self._held is not None else iter_current_records(self.out)


def iter_current_records(out: Path) -> Iterator[dict[str, Any]]:
    """:func:`current_records` of the ledger, streamed: the first pass keeps only each key's
    byte offset (not its record), the second reads the kept lines back in order, so memory
    grows by ~150 bytes per job, not by a whole record (~2.7 kB)."""
    for _, record in iter_current_offsets(out):
        yield record


def read_record_at(handle: IO[bytes], offset: int) -> dict[str, Any]:
    """The record on the ledger line that starts at byte ``offset`` of an open ledger (one
    :func:`iter_current_offsets` gave), so a reader can keep offsets instead of records."""
    handle.seek(offset)
    return json.loads(handle.readline().decode("utf-8", "replace"))  # as the first pass read it


def iter_current_offsets(out: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(byte offset of its line, record) of each of :func:`iter_current_records`.

    The first pass keeps 40 bytes a line: 16-byte digests of its job key and of a done
    record's file, and its offset (a dict of the keys and files themselves took ~275)."""
    path = ledger_path(out)
    if not path.exists():
        return
    keys, files, offsets = bytearray(), bytearray(), array("q")
    for offset, record in _records_with_offsets(path):
        keys += _digest(_identity(record))
        file = record.get("file")
        files += _digest(file) if record.get("status") == "done" and isinstance(file, str) else _NO_FILE
        offsets.append(offset)
    if not offsets:
        return
    lines = array("q", _current_lines(np.frombuffer(keys, dtype="V16"), np.frombuffer(files, dtype="V16")).tobytes())
    del keys, files
    with open(path, "rb") as handle:
        for line in lines:
            yield offsets[line], read_record_at(handle, offsets[line])


_NO_FILE = bytes(16)


def _digest(value: object) -> bytes:
    return hashlib.blake2b(repr(value).encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _current_lines(keys: np.ndarray, files: np.ndarray) -> np.ndarray:
    """Which lines are current (the rule of :func:`current`), by key and file digests: each
    key's last line, in order of the key's first line, less the done lines whose file a
    later done line of another key wrote."""
    n = len(keys)
    _, first = np.unique(keys, return_index=True)
    _, from_end = np.unique(keys[::-1], return_index=True)
    latest = (n - 1 - from_end)[np.argsort(first, kind="stable")]
    _, file_of = np.unique(files, return_inverse=True)
    _, file_from_end = np.unique(files[::-1], return_index=True)
    writer = keys[n - 1 - file_from_end]  # per distinct file: the key of its last done line
    own = writer[file_of.reshape(-1)[latest]] == keys[latest]
    return latest[(files[latest] == np.void(_NO_FILE)) | own]


def _records_with_offsets(
    path: Path, warn: Callable[[str], None] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(byte offset, record) of every usable line: the one reader behind iter_records."""
    if not path.exists():
        return
    report = warn or warn_once
    shown = SHOWN_AS.get(os.fspath(path), path)
    bad = offset = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            start, offset = offset, offset + len(raw)
            if not raw.endswith(b"\n"):
                break  # torn last line
            line = raw.decode("utf-8", "replace")
            if not line.strip():
                continue
            why: str | None
            try:
                record = json.loads(line)
            except (ValueError, RecursionError) as err:
                why = f"not JSON ({err.msg})" if isinstance(err, json.JSONDecodeError) else "not usable JSON"
            else:
                why = record_problem(record, b"\\ud" in raw or b"\\uD" in raw)
                if why is None:
                    yield start, record
                    continue
            bad += 1
            if bad <= REPORTED:
                report(f"{shown}:{number}: skipped: {why}")
    if bad > REPORTED:
        report(f"{shown}: skipped {bad - REPORTED} more bad lines ({bad} in all)")


def _identity(record: dict[str, Any]) -> object:
    key = record.get("key")
    return key if key is not None else ("row", record.get("manifest"), record.get("line"), record.get("row"))


def current(records: Iterable[dict[str, Any]], keep: Callable[[dict[str, Any]], T]) -> list[T]:
    """``keep(record)`` of each current record: the latest record per job key, in order of the
    key's first appearance (a record without a key, which genbatch does not write, goes by its
    manifest line), less the done records whose image file a later done record of another key
    wrote over: a rerun into the same folder with another model or other parameters gives a row
    the same file name under a new job key, and the file on disk is then the new job's alone.

    This is the rule every reader of the ledger applies (:func:`_current_lines` is its
    vectorised form, for ledgers too large to hold a dict entry per line)."""
    latest: dict[object, tuple[Any, T]] = {}
    owner: dict[str, object] = {}
    for record in records:
        key = _identity(record)
        file = record.get("file") if record.get("status") == "done" else None
        latest[key] = (file, keep(record))
        if file:
            owner[file] = key
    return [kept for key, (file, kept) in latest.items() if not file or owner[file] == key]


def current_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The current records (:func:`current`) of ``records``, whole."""
    return current(records, _whole)


def read_ledger(out: Path) -> list[dict[str, Any]]:
    """The ledger's current records, whole."""
    return current_records(iter_records(out))


def _whole(record: dict[str, Any]) -> dict[str, Any]:
    return record


def _on_disk(folder: str, file: str, size: Any) -> bool:
    """Whether ``file`` is in ``folder`` with the recorded ``size`` (None: any size)."""
    try:
        found = os.stat(os.path.join(folder, file)).st_size
    except OSError:
        return False
    return size in (None, found)


def done_records(out: Path) -> dict[str, dict[str, Any]]:
    """Keys whose image is on disk as recorded, with their whole records: these need no work on a rerun."""
    folder = str(out)
    return {
        r["key"]: r
        for r in read_ledger(out)
        if r.get("status") == "done" and r.get("file") and _on_disk(folder, r["file"], r.get("bytes"))
    }


def _resume_facts(record: dict[str, Any]) -> tuple[Any, ...]:
    return _identity(record), record.get("status"), record.get("file"), record.get("bytes"), record.get("sha256")


def done_index(out: Path) -> dict[str, dict[str, Any]]:
    """:func:`done_records` in one streaming pass that keeps, per job, only what a resume
    needs (``key``, ``file``, ``bytes``, ``sha256``), never whole records: the resume scan of
    a large folder holds a few hundred bytes per image."""
    folder = str(out)
    return done_index_of(ledger_path(out), lambda file, size: _on_disk(folder, file, size))


def done_index_of(ledger: Path, present: Callable[[str, Any], bool]) -> dict[str, dict[str, Any]]:
    """:func:`done_index` of the ledger file ``ledger``, ``present(file, size)`` saying whether
    a done record's image is where it was written with the recorded size (None: any size)."""
    with paused_gc():
        facts = current((r for _, r in _records_with_offsets(ledger)), _resume_facts)
    return {
        str(key): {"key": key, "file": file, "bytes": size, "sha256": sha256}
        for key, status, file, size, sha256 in facts
        if status == "done" and file and present(file, size)
    }


class LedgerWriter(Protocol):
    """What a run records its jobs through: :class:`Ledger` in a local folder, or
    genbatch.store.segments.SegmentLedger in object storage."""

    @property
    def out(self) -> Path | str: ...

    @property
    def path(self) -> Path | str: ...

    @property
    def repaired(self) -> bool: ...

    @property
    def checkpoint_every(self) -> float: ...  # seconds between checkpoints, at least

    def append(self, record: dict[str, Any]) -> None: ...

    def flush(self) -> None: ...

    def sync(self) -> None: ...

    def close(self) -> None: ...


class Ledger:
    """Appends records; safe to call from the writer threads. The file is opened on the
    first record, so a run that records nothing (its model failed to load) leaves none."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = ledger_path(out)
        if self.path.is_dir():
            raise GenbatchError(
                f"{self.path} is a folder; genbatch keeps its ledger in a file of that name: move the folder away"
            )
        self.repaired = repair(self.out)
        self.checkpoint_every = 1.0
        self._lock = threading.Lock()
        self._handle: IO[bytes] | None = None

    def append(self, record: dict[str, Any]) -> None:
        line = encode_record(record)
        with self._lock:
            if self._handle is None:
                self._handle = open_no_follow(self.out, LEDGER_NAME, "ab")
            self._handle.write(line)
            self._handle.flush()

    def flush(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.flush()

    def sync(self) -> None:
        """Make the lines appended so far survive a machine crash: one flush of the folder's
        file system (the images written so far and their renames with them)."""
        self.flush()
        sync_filesystem(self.out)

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()


def encode_record(record: dict[str, Any]) -> bytes:
    """A record as its ledger line."""
    return (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode()
