"""Check an output folder against its ledger: ``genbatch verify OUT``.

Every image a current "done" record names (the latest record of its key, whose file no
later job wrote over) is hashed and compared with the sha256 the ledger recorded when the
image was written. Three kinds of finding:

- missing: the record's file is not there (or is not a regular file);
- changed: its size or sha256 differs from the record's (a flipped byte, a re-save);
- unrecorded: an image file under OUT that no current done record names.

genbatch's own files are not images of the run: hidden names (``.genbatch-thumbs/``, temp
files ``.NAME.tmp-XXXX``, the lock) and the contact sheets at the top of OUT are ignored, and so
is a sub-folder with a ledger of its own: another run's output (``make demo``'s ``edits/``).
The ledger is read as a stream and files are hashed in 1 MiB chunks. ``genbatch run
--verify`` uses :func:`still_done` to regenerate the images that no longer match.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genbatch.bucket import Bucket, open_bucket, output_location
from genbatch.errors import GenbatchError
from genbatch.store.ledger import LEDGER_NAME, current, iter_records, ledger_path
from genbatch.store.segments import SEGMENTS_DIR, segment_names

CHUNK = 1 << 20


@dataclass
class Verification:
    out: Path | str
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


def verify_folder(out: Path | str, warn: Callable[[str], None] | None = None) -> Verification:
    """Compare every current done file of ``out`` with its ledger record; find unrecorded images.
    ``out`` may be the URL of a prefix in object storage (:func:`verify_prefix`)."""
    where = output_location(out)
    if isinstance(where, str):
        return verify_prefix(open_bucket(where), warn)
    out = where
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


def verify_prefix(bucket: Bucket, warn: Callable[[str], None] | None = None) -> Verification:
    """:func:`verify_folder` of a prefix in object storage: one listing for what is there and
    its sizes, then every done object read and hashed (a few at a time, as they are requests)."""
    from genbatch.store.bucket_view import safe_name
    from genbatch.store.image_formats import CONTACT_SHEET_RE, IMAGE_EXTENSIONS
    from genbatch.store.segments import copy_ledger

    sizes = bucket.sizes()
    if LEDGER_NAME not in sizes and not segment_names(sizes):
        raise GenbatchError(f"{bucket.url}: no genbatch.jsonl here; is this the --out of a genbatch run?")
    with tempfile.TemporaryDirectory(prefix="genbatch-verify-") as folder:
        copy_ledger(bucket, Path(folder), sizes)
        expected = expected_files(Path(folder), warn)
    result = Verification(bucket.url)
    present = sorted(name for name in expected if name in sizes and safe_name(name))
    result.missing = sorted(name for name in expected if name not in present)
    result.checked = len(expected)
    wrong_size = {n for n in present if expected[n][1] is not None and sizes[n] != expected[n][1]}
    to_hash = [n for n in present if n not in wrong_size and expected[n][0] is not None]
    with ThreadPoolExecutor(max_workers=16) as pool:
        hashes = dict(zip(to_hash, pool.map(lambda n: _hash_object(bucket, n), to_hash)))
    result.changed = sorted(wrong_size | {n for n, sha in hashes.items() if sha != expected[n][0]})

    def image(name: str) -> bool:
        parts = name.split("/")
        if any(p.startswith(".") for p in parts) or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
            return False
        return not (len(parts) == 1 and CONTACT_SHEET_RE.match(name))

    # another run's output under this prefix (a ledger of its own) holds none of its images
    runs = {n[: -len(LEDGER_NAME)] for n in sizes if n.endswith("/" + LEDGER_NAME)}
    runs |= {n.split(f"{SEGMENTS_DIR}/")[0] for n in sizes if f"/{SEGMENTS_DIR}/" in n}
    result.unrecorded = sorted(n for n in sizes if image(n) and n not in expected and not n.startswith(tuple(runs)))
    return result


def _hash_object(bucket: Bucket, name: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with bucket.fs.open(bucket.key(name), "rb", block_size=CHUNK) as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def still_done(out: Path | str, done: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``run --verify``: of the done records (ledger.done_records: on disk at the recorded
    size), those whose file still has its recorded sha256, and the files that do not (their
    jobs run again)."""
    kept: dict[str, dict[str, Any]] = {}
    mismatched: list[str] = []
    where = output_location(out)
    if isinstance(where, str):
        bucket = open_bucket(where)
        digest: Callable[[str], str | None] = lambda file: _hash_object(bucket, file)  # noqa: E731
    else:
        digest = lambda file: _hash(Path(where) / file)  # noqa: E731
    for key, record in done.items():
        sha = record.get("sha256")
        if sha is None or digest(record["file"]) == sha:
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
        # another run's output folder inside this one (a ledger of its own) holds none of its images
        dirs[:] = [d for d in dirs if not d.startswith(".") and not _is_run(os.path.join(folder, d))]
        relative = Path(folder).relative_to(out)
        for name in files:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            if relative == Path(".") and CONTACT_SHEET_RE.match(name):
                continue
            yield (relative / name).as_posix()


def _is_run(folder: str) -> bool:
    """Whether ``folder`` is the output folder of a run: it has a ledger (or ledger segments)."""
    return os.path.isfile(os.path.join(folder, LEDGER_NAME)) or os.path.isdir(os.path.join(folder, SEGMENTS_DIR))
