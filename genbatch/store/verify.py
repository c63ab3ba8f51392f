"""Check an output folder against its ledger: ``genbatch verify OUT``.

Every image a current "done" record names (the latest record of its key, whose file no
later job wrote over) is hashed and compared with the sha256 the ledger recorded when the
image was written. Three kinds of finding:

- missing: the record's file is not there (or is not a regular file);
- changed: its size or sha256 differs from the record's (a flipped byte, a re-save);
- unrecorded: an image file under OUT that no current done record names.

genbatch's own files are not images of the run: hidden names (``.genbatch-thumbs/``, temp
files ``.NAME.tmp-XXXX``, the lock) and the contact sheets at the top of OUT are ignored.
The ledger is read as a stream and files are hashed in 1 MiB chunks. ``genbatch run
--verify`` uses :func:`still_done` to regenerate the images that no longer match.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genbatch.errors import GenbatchError
from genbatch.store.ledger import current, iter_records, ledger_path

CHUNK = 1 << 20


@dataclass
class Verification:
    out: Path
    checked: int = 0  # done files compared with the ledger
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed or self.unrecorded)

    def as_dict(self) -> dict[str, object]:
        return {
            "out": str(self.out),
            "ok": self.ok,
            "checked": self.checked,
            "missing": self.missing,
            "changed": self.changed,
            "unrecorded": self.unrecorded,
        }


def expected_files(out: Path, warn: Callable[[str], None] | None = None) -> dict[str, tuple[str | None, int | None]]:
    """file -> (sha256, bytes) of the current done records (genbatch.store.ledger.current),
    keeping only those values per key."""
    kept = current(iter_records(out, warn), lambda r: (r.get("status"), r.get("file"), r.get("sha256"), r.get("bytes")))
    return {file: (sha256, size) for status, file, sha256, size in kept if status == "done" and file}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_folder(out: Path, warn: Callable[[str], None] | None = None) -> Verification:
    """Compare every current done file of ``out`` with its ledger record; find unrecorded images."""
    out = Path(out)
    if not ledger_path(out).is_file():
        raise GenbatchError(f"{out}: no genbatch.jsonl here; is this the --out folder of a genbatch run?")
    expected = expected_files(out, warn)
    result = Verification(out)
    for name in sorted(expected):
        sha, size = expected[name]
        result.checked += 1
        path = out / name
        try:
            info = path.lstat()
        except (OSError, ValueError):  # ValueError: a NUL in a hand-edited name
            result.missing.append(name)
            continue
        if not stat.S_ISREG(info.st_mode):
            result.missing.append(name)
        elif (size is not None and info.st_size != size) or (sha is not None and _hash(path) != sha):
            result.changed.append(name)
    result.unrecorded = sorted(name for name in _images(out) if name not in expected)
    return result


def still_done(out: Path, done: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``run --verify``: of the done records (ledger.done_records: on disk at the recorded
    size), those whose file still has its recorded sha256, and the files that do not (their
    jobs run again)."""
    kept: dict[str, dict[str, Any]] = {}
    mismatched: list[str] = []
    for key, record in done.items():
        sha = record.get("sha256")
        if sha is None or _hash(Path(out) / record["file"]) == sha:
            kept[key] = record
        else:
            mismatched.append(record["file"])
    return kept, sorted(mismatched)


def _hash(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def _images(out: Path) -> Iterator[str]:
    """Image files under ``out`` (relative, ``/``-separated), genbatch's own files left out;
    symlinked folders are not followed."""
    from genbatch.store.image_formats import CONTACT_SHEET_RE, IMAGE_EXTENSIONS

    for folder, dirs, files in os.walk(out):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        relative = Path(folder).relative_to(out)
        for name in files:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            if relative == Path(".") and CONTACT_SHEET_RE.match(name):
                continue
            yield (relative / name).as_posix()
