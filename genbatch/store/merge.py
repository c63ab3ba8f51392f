"""``genbatch merge``: the output folders of several hosts (``--shard I/N`` runs) into one.

Each source's images are hard-linked into the target folder when both are on one
filesystem, else copied; either way a file appears under its final name only complete
(:mod:`genbatch.store.safe_write`), and nothing is written outside the target. The ledgers merge
into one: one line per job key (an image that is done anywhere wins over a failure
elsewhere), every ``file`` a path inside the target. Two different jobs under one file
name are refused before anything is written. The sources are left as they were.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from genbatch.errors import GenbatchError
from genbatch.store.ledger import ledger_path, read_ledger
from genbatch.store.safe_write import UnsafePathError, contained, write_atomic

# errors of os.link that mean "copy instead": another filesystem, or one without hard links
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES}


@dataclass
class MergeResult:
    into: Path
    sources: list[Path]
    images: int = 0  # done jobs in the merged ledger
    linked: int = 0
    copied: int = 0
    in_place: int = 0  # already in the target
    failed: int = 0
    skipped: int = 0


@dataclass
class _Entry:
    record: dict[str, Any]
    source: Path  # the folder its file is in


def merge_outputs(sources: list[Path], into: Path) -> MergeResult:
    """Merge ``sources`` (output folders of genbatch run) into ``into``; ``into`` may be one of
    them, or an earlier merge. Raises :class:`GenbatchError` before writing when they clash."""
    from genbatch.store.output_lock import OutputFolderLock

    if not sources:
        raise GenbatchError("merge: name at least one output folder to merge")
    into = Path(into)
    resolved = [Path(s).resolve() for s in sources]
    for source, full in zip(sources, resolved):
        if not ledger_path(full).is_file():
            raise GenbatchError(f"{source}: no genbatch.jsonl here; is this the --out folder of a genbatch run?")
    if len(set(resolved)) != len(resolved):
        raise GenbatchError("merge: a folder is named twice")
    with ExitStack() as locks:  # no run may write into a source or the target meanwhile
        for source in resolved:
            locks.enter_context(OutputFolderLock(source, wait=False))
        if into.resolve() not in resolved:
            locks.enter_context(OutputFolderLock(into, wait=False))
        return _merge(resolved, into.resolve())


def _merge(sources: list[Path], into: Path) -> MergeResult:
    result = MergeResult(into, sources)
    # the target's own ledger first: what is already there stays
    folders = [into] + [s for s in sources if s != into] if ledger_path(into).is_file() else list(sources)
    chosen: dict[str, _Entry] = {}
    owner: dict[str, _Entry] = {}  # file name -> the done entry that owns it
    for folder in folders:
        for record in read_ledger(folder):
            key = record["key"]
            done = record.get("status") == "done"
            if done and not _present(folder, record):
                continue  # its image is gone: the job is still to do
            previous = chosen.get(key)
            if previous is not None and previous.record.get("status") == "done":
                continue  # the first image of a job is kept; a later failure of it says nothing new
            entry = _Entry(record, folder)
            if done:
                file = _relative_file(folder, record)
                other = owner.get(file)
                if other is not None and other.record["key"] != key:
                    raise GenbatchError(
                        f"{other.source / file} (job {other.record['key']}) and {folder / file} (job {key}) are "
                        "different images under one file name; merge overwrites nothing: rerun one of them with "
                        "another --name-template, or merge them into different folders"
                    )
                owner[file] = entry
            chosen[key] = entry  # a done image wins over a failure; of two failures, the later
    _check_target(into, owner)
    for file, entry in owner.items():
        if entry.source == into or _same_file(into / file, entry.record):
            result.in_place += 1
        elif _place(entry.source / file, into, file):
            result.linked += 1
        else:
            result.copied += 1
    records = [dict(e.record, **({"merged_from": str(e.source)} if e.source != into else {})) for e in chosen.values()]
    records.sort(key=lambda r: (r.get("status") != "skipped", r.get("index", -1), r.get("line") or 0, r["key"]))
    write_atomic(
        ledger_path(into),
        "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records).encode(),
        root=into,
    )
    result.images = sum(r.get("status") == "done" for r in records)
    result.failed = sum(r.get("status") == "failed" for r in records)
    result.skipped = sum(r.get("status") == "skipped" for r in records)
    return result


def _relative_file(folder: Path, record: dict[str, Any]) -> str:
    """The record's file as a path inside ``folder`` (a hand-edited ``../x`` is refused)."""
    file = str(record["file"])
    path = PurePosixPath(file)
    if path.is_absolute() or ".." in path.parts:
        raise UnsafePathError(
            f"{folder / 'genbatch.jsonl'}: job {record['key']} names the file {file!r}, which is "
            "not inside its folder; merge only takes files inside each output folder"
        )
    contained(folder, file)  # nor through a symlink that leads out
    return path.as_posix()


def _present(folder: Path, record: dict[str, Any]) -> bool:
    if not record.get("file"):
        return False
    try:
        size = (folder / record["file"]).stat().st_size
    except OSError:
        return False
    return record.get("bytes") in (None, size)


def _same_file(path: Path, record: dict[str, Any]) -> bool:
    if not path.is_file() or path.stat().st_size != record.get("bytes", -1):
        return False
    return record.get("sha256") in (None, _sha256(path))


def _check_target(into: Path, owner: dict[str, _Entry]) -> None:
    """A file already in the target that is not the image merged under its name is refused."""
    for file, entry in owner.items():
        if entry.source == into:
            continue
        target = contained(into, file)
        if target.exists() and not _same_file(target, entry.record):
            raise GenbatchError(
                f"{target} exists and is not the image of job {entry.record['key']} from "
                f"{entry.source}; merge overwrites nothing: move it away, or merge into another "
                "folder"
            )


def _place(source: Path, into: Path, file: str) -> bool:
    """Hard-link ``source`` into ``into/file`` (True), or copy it where a link cannot be made."""
    try:
        write_atomic(into / file, lambda temp: os.link(source, temp), root=into)
        return True
    except OSError as err:
        if err.errno not in _NO_LINK:
            raise

    def copy(temp: Path) -> None:
        shutil.copyfile(source, temp)

    write_atomic(into / file, copy, root=into)
    return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
