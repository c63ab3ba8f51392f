"""Every file genbatch writes goes through here: atomically, and never outside its folder.

A file appears under its final name only complete (a temp file beside it, then
``os.replace``), so a crash or a kill leaves the old file or the new one, never half of one.
Under ``--out`` each write, rename, append, truncation and deletion is first checked to stay
inside it: a symlink planted in the folder (for a file, a sub-folder, the ledger, the
thumbnails folder) that points elsewhere is refused with a message, never followed and
never silently replaced. Appends and truncations open with ``O_NOFOLLOW``.

(Hand-written because no maintained library does containment: ``atomicwrites`` is archived
and follows symlinked folders; ``filelock`` only locks.)
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from genbatch.errors import GenbatchError

TEMP_MARKER = ".tmp-"


class UnsafePathError(GenbatchError):
    """A path under --out that would lead outside it."""


class OutputUnwritableError(GenbatchError):
    """The output folder cannot take more writes (disk full, quota, read-only): the run stops."""

    exit_code = 1


# Errors that no retry of one image can get past: the run stops cleanly instead.
FATAL_WRITE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
}


def unwritable(err: BaseException, out: Path) -> OutputUnwritableError | None:
    """The run-stopping form of a write error, or None for an error of one image only."""
    if isinstance(err, OSError) and err.errno in FATAL_WRITE_ERRNOS:
        return OutputUnwritableError(
            f"cannot write to {out}: {FATAL_WRITE_ERRNOS[err.errno]} ({err.strerror}); "
            "the images written so far are kept and recorded: free space (or make it "
            "writable) and run the same command again to finish"
        )
    return None


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or below it (both resolved)."""
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def contained(root: Path, path: Path | str) -> Path:
    """``path`` (absolute, or a name relative to ``root``) after checking that writing it stays inside
    ``root``: its folder, with every symlink followed, is ``root`` or below, and the path itself,
    if it is a symlink, points inside too. Raises :class:`UnsafePathError` otherwise."""
    root = _resolved(Path(root))
    full = Path(path) if Path(path).is_absolute() else root / path
    parent = _resolved(full.parent)
    if not _inside(parent, root):
        raise UnsafePathError(
            f"{full}: {_describe_escape(root, full.parent)}; genbatch never writes outside its output folder {root}"
        )
    target = parent / full.name
    if target.is_symlink():
        resolved = target.resolve()
        if not _inside(resolved, root):
            raise UnsafePathError(
                f"{target} is a symlink to {resolved}, outside the output folder {root}; "
                "genbatch never writes through it: remove the link"
            )
    return target


# A folder is resolved once per process (a run writes thousands of files into a few folders);
# only folders that exist are remembered, so one created later is resolved when it exists.
_RESOLVED: dict[Path, Path] = {}


def _resolved(folder: Path) -> Path:
    found = _RESOLVED.get(folder)
    if found is None:
        found = folder.resolve()
        if found.is_dir() and len(_RESOLVED) < 100_000:
            _RESOLVED[folder] = _RESOLVED[found] = found
    return found


def _describe_escape(root: Path, folder: Path) -> str:
    probe = root
    for part in folder.relative_to(root).parts if _inside(folder, root) else folder.parts:
        probe = probe / part
        if probe.is_symlink():
            return f"{probe} is a symlink to {probe.resolve()}, outside it"
    return "it is outside the output folder"


def make_folder(root: Path, relfolder: Path | str) -> Path:
    """Create a folder under ``root`` (and its parents), refusing symlinks that lead out."""
    folder = contained(root, Path(relfolder) / "x").parent
    folder.mkdir(parents=True, exist_ok=True)
    return contained(root, folder / "x").parent  # a link planted while creating is caught too


def write_atomic(path: Path, data: bytes | Callable[[Path], None], *, root: Path | None = None) -> Path:
    """Write ``data`` (bytes, or a function that writes a given temp path) to ``path`` atomically.

    With ``root``, ``path`` must stay inside it (see :func:`contained`) and missing folders are
    created inside it. Durability after a machine crash comes from :func:`sync_filesystem`,
    once per batch, not from an fsync per file."""
    path = Path(path).absolute()  # relative to the working folder, as the caller gave it
    if root is not None:
        path = contained(root, path)
        if path.parent not in _RESOLVED and not path.parent.is_dir():  # a known folder exists
            make_folder(root, path.parent.relative_to(_resolved(Path(root))))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}{TEMP_MARKER}{uuid.uuid4().hex[:8]}")
    try:
        if callable(data):
            data(temp)
        else:
            _write_new(temp, data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (never through a symlink) holding ``data``: plain ``os.write`` calls, as
    a run writes thousands of small files and a buffered file object per file costs more."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def open_no_follow(root: Path, path: Path | str, mode: str) -> IO[bytes]:
    """Open a file under ``root`` for appending (``"ab"``) or reading and writing (``"rb+"``)
    without following a symlink at its name."""
    path = contained(root, path)
    flags = {"ab": os.O_WRONLY | os.O_APPEND | os.O_CREAT, "rb+": os.O_RDWR}[mode]
    try:
        fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UnsafePathError(f"{path} is a symlink; genbatch does not write through it: remove the link") from None
        raise
    return os.fdopen(fd, mode)


def remove(root: Path, path: Path | str) -> None:
    """Delete a file under ``root`` (a symlink is removed itself, its target never touched).
    ``path`` is a file-system path (absolute, or relative to the working folder)."""
    full = Path(path).absolute()
    if not _inside(full.parent.resolve(), Path(root).resolve()):
        raise UnsafePathError(
            f"{full}: {_describe_escape(Path(root).resolve(), full.parent)}; genbatch never "
            "deletes outside its output folder"
        )
    full.unlink(missing_ok=True)


def sync_filesystem(folder: Path) -> None:
    """Make everything written so far on ``folder``'s file system durable, in one call.

    Linux's ``syncfs`` flushes one file system's dirty data, names and renames together, so a
    run pays one flush per batch instead of an fsync per image, its folder and the ledger
    (each of which costs ~4 ms here). Elsewhere ``os.sync`` does the same for all of them."""
    if _syncfs is None:
        os.sync()
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        if _syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
    finally:
        os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()


def walk_files(root: Path) -> Iterator[Path]:
    """Every file under ``root``, never descending into symlinked folders."""
    for folder, _, files in os.walk(root):
        for name in files:
            yield Path(folder) / name


def is_temp_file(name: str) -> bool:
    return name.startswith(".") and TEMP_MARKER in name


def remove_stale_temp_files(out: Path) -> int:
    """Temp files a killed run left behind (only safe while holding the out-dir lock)."""
    removed = 0
    for path in walk_files(_resolved(Path(out))):
        if is_temp_file(path.name) and not path.is_symlink():
            remove(out, path)
            removed += 1
    return removed


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """A temporary folder beside ``target`` to build a whole folder in (a model, an export);
    :func:`install_folder` then renames it into place. Whatever is left is removed on exit,
    so a failure or a kill mid-way never leaves a half-built folder under the final name."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}{TEMP_MARKER}", dir=target.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install_folder(staging: Path, target: Path) -> None:
    """Rename a staged folder to ``target``, replacing what was there."""
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
