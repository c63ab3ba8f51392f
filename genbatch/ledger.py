"""The ledger: ``<out>/genbatch.jsonl``, one JSON line per finished (or failed, or skipped) job.

A "done" line is appended and flushed only after its image is on disk under its final
name, so the ledger never claims an image that is not there; an image is done when its
line is here and its file exists with the recorded size. A kill can tear only the last
line, which :func:`repair` drops. Later lines win over earlier ones for the same key.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import IO, Any, Iterator

from .errors import GenbatchError
from .safe_write import open_no_follow

LEDGER_NAME = "genbatch.jsonl"
# The shape of ledger records and run.json. Version 1 (no "schema" field) is read the same way.
SCHEMA_VERSION = 2


def ledger_path(out: Path) -> Path:
    return Path(out) / LEDGER_NAME


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


def iter_records(out: Path) -> Iterator[dict[str, Any]]:
    """Every readable record in file order; a torn or hand-damaged line is passed over."""
    path = ledger_path(out)
    if not path.exists():
        return
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break  # torn last line
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "key" in record:
                yield record


def iter_current_records(out: Path) -> Iterator[dict[str, Any]]:
    """:func:`current_records` of the ledger, streamed: the first pass keeps only each key's
    byte offset (not its record), the second reads the kept lines back in order, so memory
    grows by ~150 bytes per job, not by a whole record (~2.7 kB)."""
    path = ledger_path(out)
    if not path.exists():
        return
    latest: dict[object, int] = {}
    owner: dict[str, object] = {}
    for offset, record in _records_with_offsets(path):
        key = _identity(record)
        latest[key] = offset
        if record.get("status") == "done" and isinstance(record.get("file"), str):
            owner[record["file"]] = key
    with open(path, "rb") as handle:
        for key, offset in latest.items():
            handle.seek(offset)
            record = json.loads(handle.readline())
            file = record.get("file")
            if record.get("status") != "done" or not isinstance(file, str) or owner.get(file) == key:
                yield record


def _records_with_offsets(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    offset = 0
    with open(path, "rb") as handle:
        for raw in handle:
            start, offset = offset, offset + len(raw)
            if not raw.endswith(b"\n"):
                break  # torn last line
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and "key" in record:
                yield start, record


def _identity(record: dict[str, Any]) -> object:
    key = record.get("key")
    return key if key is not None else ("row", record.get("manifest"), record.get("line"), record.get("row"))


def read_ledger(out: Path) -> list[dict[str, Any]]:
    """The ledger's current records (current_records)."""
    return current_records(list(iter_records(out)))


def current_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest record per job key, in order of first appearance (a record without a
    key, which genbatch does not write, goes by its manifest line), less the done records
    whose image file a later done record of another key wrote over: a rerun into the same
    folder with another model or other parameters gives a row the same file name under a
    new job key, and the file on disk is then the new job's alone."""
    latest: dict[object, dict[str, Any]] = {}
    owner: dict[str, object] = {}
    for record in records:
        key = record.get("key")
        if key is None:
            key = ("row", record.get("manifest"), record.get("line"), record.get("row"))
        latest[key] = record
        if record.get("status") == "done" and record.get("file"):
            owner[record["file"]] = key
    return [r for key, r in latest.items()
            if r.get("status") != "done" or not r.get("file") or owner[r["file"]] == key]


def done_records(out: Path) -> dict[str, dict[str, Any]]:
    """Keys whose image is on disk as recorded: these need no work on a rerun."""
    out = Path(out)
    done: dict[str, dict[str, Any]] = {}
    for record in read_ledger(out):
        if record.get("status") != "done" or not record.get("file"):
            continue
        file = out / record["file"]
        try:
            size = file.stat().st_size
        except OSError:
            continue
        if record.get("bytes") in (None, size):
            done[record["key"]] = record
    return done


class Ledger:
    """Appends records; safe to call from the writer threads. The file is opened on the
    first record, so a run that records nothing (its model failed to load) leaves none."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = ledger_path(out)
        if self.path.is_dir():
            raise GenbatchError(f"{self.path} is a folder; genbatch keeps its ledger in a file of that name: "
                                "move the folder away")
        self.repaired = repair(self.out)
        self._lock = threading.Lock()
        self._handle: IO[bytes] | None = None

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode()
        with self._lock:
            if self._handle is None:
                self._handle = open_no_follow(self.out, LEDGER_NAME, "ab")
            self._handle.write(line)
            self._handle.flush()

    def flush(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.flush()

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
