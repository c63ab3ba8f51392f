"""``genbatch merge``: the output folders of several hosts (``--shard I/N`` runs) into one.

Each source's images are hard-linked into the target folder when both are on one
filesystem, else copied; either way a file appears under its final name only complete
(:mod:`genbatch.safe_write`), and nothing is written outside the target. The ledgers merge
into one: one line per job key (an image that is done anywhere wins over a failure
elsewhere), every ``file`` a path inside the target. The sources are left as they were.

Every input is checked before anything is written, so a refused merge leaves the target as
it was: two different jobs under one file name, a symlink where an image should be (a hard
link to it would be a link too, dangling in the target), and, where one job's image is in
several sources (it ran on two hosts), a copy whose bytes do not match the sha256 its ledger
records (the matching copy is merged; none matching is refused). Ledger lines that break
the ledger's rules (``ledger_checks``) are reported and passed over: their jobs are still to do.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import stat
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from genbatch.errors import GenbatchError
from genbatch.safe_write import UnsafePathError, contained, write_atomic
from genbatch.store.ledger import ledger_path, read_ledger

# errors of os.link that mean "copy instead": another filesystem, or one without hard links
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES}
_log = logging.getLogger("genbatch.store.merge")


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
    # 1. Check every input; nothing is written until all of them pass.
    copies: dict[str, list[_Entry]] = {}  # key -> its done entries whose image is there, in folder order
    others: dict[str, _Entry] = {}  # key -> its last record that is not done (of two failures, the later)
    for folder in folders:
        for record in read_ledger(folder):
            key = record["key"]
            if record.get("status") != "done":
                others[key] = _Entry(record, folder)
            elif _present(folder, record):  # else its image is gone: the job is still to do
                _relative_file(folder, record)
                copies.setdefault(key, []).append(_Entry(record, folder))
    chosen: dict[str, _Entry] = {}
    owner: dict[str, _Entry] = {}  # file name -> the done entry that owns it
    for key in dict.fromkeys([*copies, *others]):
        if key not in copies:
            chosen[key] = others[key]
            continue
        entry = chosen[key] = _pick(key, copies[key], into)  # a done image wins over a failure
        file = _relative_file(entry.source, entry.record)
        other = owner.get(file)
        if other is not None and other.record["key"] != key:
            raise GenbatchError(
                f"{other.source / file} (job {other.record['key']}) and {entry.source / file} (job {key}) are "
                "different images under one file name; merge overwrites nothing: rerun one of them with "
                "another --name-template, or merge them into different folders"
            )
        owner[file] = entry
    _check_target(into, owner)
    records = [dict(e.record, **({"merged_from": str(e.source)} if e.source != into else {})) for e in chosen.values()]
    records.sort(key=_order)
    ledger = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records).encode()
    # 2. Write: the images, then the ledger that names them.
    for file, entry in owner.items():
        if entry.source == into or _same_file(into / file, entry.record):
            result.in_place += 1
        elif _place(entry.source / file, into, file):
            result.linked += 1
        else:
            result.copied += 1
    write_atomic(ledger_path(into), ledger, root=into)
    result.images = sum(r.get("status") == "done" for r in records)
    result.failed = sum(r.get("status") == "failed" for r in records)
    result.skipped = sum(r.get("status") == "skipped" for r in records)
    return result


def _order(record: dict[str, Any]) -> tuple[bool, int, int, str]:
    """Skipped rows first, then by index and line (a missing one first, never a TypeError)."""
    index, line = record.get("index"), record.get("line")
    return (
        record.get("status") != "skipped",
        index if isinstance(index, int) else -1,
        line if isinstance(line, int) else 0,
        record["key"],
    )


def _pick(key: str, entries: list[_Entry], into: Path) -> _Entry:
    """Of a job's copies of its image, the one to merge: the target's own (it stays, merge
    overwrites nothing), the only one, or else the first whose bytes match the sha256 its
    ledger records (those that do not are named in a warning). None matching is refused."""
    files = {_identity(e) for e in entries}
    if entries[0].source == into or len(files) == 1:  # one file, however many ledgers name it
        return entries[0]
    bad: list[Path] = []
    for entry in entries:
        path = entry.source / entry.record["file"]
        expected = entry.record.get("sha256")
        if expected is None or _sha256(path) == expected:
            for damaged in bad:
                _log.warning(
                    f"{damaged}: its bytes do not match the sha256 in its folder's genbatch.jsonl (job {key}); "
                    f"merged the copy that does, {path}"
                )
            return entry
        bad.append(path)
    raise GenbatchError(
        f"job {key}: no copy of its image matches the sha256 its ledger records ({', '.join(map(str, bad))} are "
        "all damaged); merge takes only an image that matches: delete the damaged files (the job is then still "
        "to do) and merge again"
    )


def _identity(entry: _Entry) -> tuple[int, int]:
    st = os.stat(entry.source / entry.record["file"])
    return st.st_dev, st.st_ino


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
    """Whether the record's image is in ``folder`` with its recorded size; a symlink there is
    refused: merge never links a link."""
    if not record.get("file"):
        return False
    path = folder / record["file"]
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise GenbatchError(_link_refused(path))
    return stat.S_ISREG(st.st_mode) and record.get("bytes") in (None, st.st_size)


def _link_refused(path: Path) -> str:
    return (
        f"{path} is a symlink (to {os.readlink(path)}); merge takes only real image files, never a link: "
        "put the image itself there (or remove the link, and its job is still to do)"
    )


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

    def link(temp: Path) -> None:
        os.link(source, temp)
        _not_a_link(temp, source)

    def copy(temp: Path) -> None:
        shutil.copyfile(source, temp, follow_symlinks=False)
        _not_a_link(temp, source)

    try:
        write_atomic(into / file, link, root=into)
        return True
    except OSError as err:
        if err.errno not in _NO_LINK:
            raise
    write_atomic(into / file, copy, root=into)
    return False


def _not_a_link(temp: Path, source: Path) -> None:
    """``source`` was checked to be a file, but may have been swapped for a symlink since."""
    if stat.S_ISLNK(os.lstat(temp).st_mode):
        raise GenbatchError(_link_refused(source))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
