"""Every file genbatch writes goes through here: atomically, and never outside its folder.

A file appears under its final name only complete (a temp file beside it, then
``os.replace``), so a crash or a kill leaves the old file or the new one, never half of one.
Under ``--out`` each write, rename, append, truncation and deletion is first checked to stay
inside it: a symlink planted in the folder (for a file, a sub-folder, the ledger, the
thumbnails folder) that points elsewhere is refused with a message, never followed and
never silently replaced. Appends and truncations open with ``O_NOFOLLOW``.

Nothing about the folders is remembered between writes: :func:`write_atomic` opens the
folder chain from ``--out`` one component at a time without following a symlink
(``O_NOFOLLOW | O_DIRECTORY``), creates the temp file and renames it through that folder's
descriptor, so a folder swapped for a symlink mid-run gets no more writes, however deep it is.

(Hand-written because no maintained library does containment: ``atomicwrites`` is archived
and follows symlinked folders; ``filelock`` only locks.)
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import shutil
import stat
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


def unwritable(err: BaseException, out: Path | str) -> OutputUnwritableError | None:
    """The run-stopping form of a write error, or None for an error of one image only (``out``
    a str: an object store's URL, where access denied stops the run too)."""
    if isinstance(out, str) and isinstance(err, PermissionError):
        return OutputUnwritableError(
            f"cannot write to {out}: access denied ({err}); the images written so far are kept and recorded: "
            "give these credentials write access to the prefix and run the same command again to finish"
        )
    if isinstance(out, str) and isinstance(err, OSError):  # the store is gone or unreachable (after s3fs's retries)
        return OutputUnwritableError(
            f"cannot write to {out}: {type(err).__name__}: {err}; the images written so far are kept and recorded: "
            "run the same command again to finish when the store takes writes again"
        )
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


def _resolved(folder: Path) -> Path:
    """``folder`` with every symlink followed, as it is now (never remembered: a folder can be
    swapped for a symlink at any time)."""
    return folder.resolve()


def _describe_escape(root: Path, folder: Path) -> str:
    probe = root
    for part in folder.relative_to(root).parts if _inside(folder, root) else folder.parts:
        probe = probe / part
        if probe.is_symlink():
            return f"{probe} is a symlink to {probe.resolve()}, outside it"
    return "it is outside the output folder"


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_MAX_HOPS = 40  # symlinked folders that lead inside the root, followed per write at most


def make_folder(root: Path, relfolder: Path | str) -> Path:
    """Create a folder under ``root`` (and its parents), refusing symlinks that lead out."""
    top = _root_path(root)
    parts = _parts_below(top, os.path.abspath(os.path.join(top, relfolder, "x")), top)[:-1]
    fd, walked = _open_folder(top, parts, create=True, links=True, target=os.path.join(top, *parts))
    os.close(fd)
    return Path(top, *walked)


def write_atomic(
    path: Path, data: bytes | Callable[[Path], None], *, root: Path | None = None, links: bool = True
) -> Path:
    """Write ``data`` (bytes, or a function that writes a given temp path) to ``path`` atomically.

    With ``root``, ``path`` must stay inside it and missing folders are created inside it: the
    folders are opened from ``root`` one at a time without following a symlink, and the temp
    file is created and renamed through the last one's descriptor, so no folder swapped for a
    symlink is ever written through. A symlinked folder that leads inside ``root`` is followed
    (``links=False``: refused too); one that leads out of it is refused (:class:`UnsafePathError`).
    Durability after a machine crash comes from :func:`sync_filesystem`, once per batch, not
    from an fsync per file."""
    if root is not None:
        return _write_inside(root, path, data, links)
    path = Path(path).absolute()  # relative to the working folder, as the caller gave it
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


def _write_inside(root: Path, path: Path | str, data: bytes | Callable[[Path], None], links: bool) -> Path:
    top = _root_path(root)
    full = os.path.abspath(path)  # relative to the working folder, as the caller gave it
    *folders, name = _parts_below(top, full, os.fspath(root))
    fd, walked = _open_folder(top, folders, create=True, links=links, target=full)
    try:
        _check_name(fd, name, top, os.path.join(top, *walked, name))
        temp = f".{name}{TEMP_MARKER}{uuid.uuid4().hex[:8]}"
        try:
            if callable(data):
                data(_temp_path(fd, top, walked, temp))
            else:
                _write_new(temp, data, dir_fd=fd)
            os.replace(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=fd)
            raise
    finally:
        os.close(fd)
    return Path(top, *walked, name)


@contextmanager
def folder_descriptor(root: Path, relfolder: Path | str, *, links: bool = True) -> Iterator[int]:
    """A descriptor of the existing folder ``root/relfolder``, opened as :func:`write_atomic`
    opens one (no symlink followed; ``links``: one leading inside ``root`` is), for reading,
    writing and deleting in it with ``dir_fd``; closed on exit."""
    top = _root_path(root)
    parts = _parts_below(top, os.path.abspath(os.path.join(top, relfolder, "x")), top)[:-1]
    fd, _ = _open_folder(top, parts, create=False, links=links, target=os.path.join(top, *parts))
    try:
        yield fd
    finally:
        os.close(fd)


def _root_path(root: Path | str) -> str:
    """The root folder with every symlink followed: the one place a symlink is followed (the
    root is the user's own choice, ``--out`` may well be a link)."""
    given = os.path.abspath(root)
    found = _ROOTS.get(given)
    if found is None:
        found = os.path.realpath(given)
        if len(_ROOTS) < 1024:
            _ROOTS[given] = found
    return found


# The root folders as given -> as resolved. Only the roots: the folders below them are opened
# anew for every write, without following a symlink, so a swap is seen at the next write.
_ROOTS: dict[str, str] = {}


def _parts_below(top: str, full: str, given_root: str) -> list[str]:
    """The path components of ``full`` below the resolved root ``top`` (``full`` may be spelled
    under the root as given, or under the resolved one); outside both, it must resolve inside."""
    for base in (os.path.abspath(given_root), top):
        if full.startswith(base.rstrip(os.sep) + os.sep):
            rest = full[len(base.rstrip(os.sep)) + 1 :]
            parts = [p for p in rest.split(os.sep) if p not in ("", ".")]
            if parts and ".." not in parts:
                return parts
    parent = os.path.realpath(os.path.dirname(full))
    if parent != top and not parent.startswith(top.rstrip(os.sep) + os.sep):
        raise UnsafePathError(
            f"{full}: {_describe_escape(Path(top), Path(os.path.dirname(full)))}; genbatch never writes "
            f"outside its output folder {top}"
        )
    return [p for p in parent[len(top) :].split(os.sep) if p] + [os.path.basename(full)]


def _open_folder(top: str, parts: list[str], *, create: bool, links: bool, target: str) -> tuple[int, list[str]]:
    """A descriptor of the folder ``top/parts``, opened one component at a time from ``top``
    without following a symlink (missing ones created with ``create``), and the components it
    took. A symlinked component leading inside ``top`` is followed with ``links`` (by opening
    its resolved path the same way); otherwise it is refused with a message naming ``target``."""
    fd = _open_top(top, target)
    walked: list[str] = []
    todo = list(parts)
    tries = 0
    try:
        while todo:
            name = todo[0]
            try:
                child = os.open(name, _FOLDER_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                tries += 1
                if not create or tries > _MAX_HOPS:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, dir_fd=fd)
                continue  # and open what is there now, again without following a link
            except OSError as err:
                if err.errno not in (errno.ENOTDIR, errno.ELOOP) or not _is_link(name, fd):
                    raise
                tries += 1
                link = os.path.join(top, *walked, name)
                resolved = os.path.realpath(link)
                inside = resolved == top or resolved.startswith(top.rstrip(os.sep) + os.sep)
                if not inside:
                    raise UnsafePathError(
                        f"{target}: {link} is a symlink to {resolved}, outside the output folder {top}; genbatch "
                        "writes only into folders inside it: put the folder back (or remove the link)"
                    ) from None
                if not links or tries > _MAX_HOPS:
                    raise UnsafePathError(
                        f"{target}: {link} is a symlink (to {resolved}); genbatch writes here only into a real "
                        "folder: put the folder back (or remove the link)"
                    ) from None
                todo = [p for p in resolved[len(top) :].split(os.sep) if p] + todo[1:]
                os.close(fd)
                fd, walked = _open_top(top, target), []
                continue
            os.close(fd)
            fd = child
            walked.append(name)
            del todo[0]
    except BaseException:
        os.close(fd)
        raise
    return fd, walked


def _open_top(top: str, target: str) -> int:
    try:
        return os.open(top, _FOLDER_FLAGS)
    except OSError as err:
        if err.errno in (errno.ENOTDIR, errno.ELOOP) and os.path.islink(top):
            raise UnsafePathError(
                f"{target}: the output folder {top} was replaced by a symlink (to {os.path.realpath(top)}); "
                "genbatch writes only into the folder it started with: put it back"
            ) from None
        raise


def _is_link(name: str, fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _check_name(fd: int, name: str, top: str, full: str) -> None:
    """A symlink at the file's own name is replaced, never written through; one that leads out
    of the output folder is refused, as the file would seem to be written there."""
    if not _is_link(name, fd):
        return
    resolved = os.path.realpath(full)
    if resolved != top and not resolved.startswith(top.rstrip(os.sep) + os.sep):
        raise UnsafePathError(
            f"{full} is a symlink to {resolved}, outside the output folder {top}; "
            "genbatch never writes through it: remove the link"
        )


def _temp_path(fd: int, top: str, walked: list[str], temp: str) -> Path:
    """A path of the temp file ``temp`` in the folder open as ``fd`` for a function that writes
    a path: on Linux through the descriptor itself (``/proc/self/fd/N/...``), so it lands in that
    folder whatever was swapped since; elsewhere the folder's path, checked to be that folder."""
    if _fd_paths():
        return Path(f"/proc/self/fd/{fd}/{temp}")
    folder = os.path.join(top, *walked)
    now, opened = os.stat(folder, follow_symlinks=False), os.fstat(fd)
    if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
        raise UnsafePathError(f"{folder} was replaced while genbatch wrote into it; put the folder back")
    return Path(folder, temp)


@functools.cache
def _fd_paths() -> bool:
    """Whether ``/proc/self/fd/N`` leads into the folder open as N (Linux)."""
    try:
        fd = os.open(os.path.sep, _FOLDER_FLAGS)
    except OSError:
        return False
    try:
        here, there = os.fstat(fd), os.stat(f"/proc/self/fd/{fd}")
        return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
    except OSError:
        return False
    finally:
        os.close(fd)


def _write_new(path: Path | str, data: bytes, dir_fd: int | None = None) -> None:
    """Create ``path`` (never through a symlink) holding ``data``: plain ``os.write`` calls, as
    a run writes thousands of small files and a buffered file object per file costs more."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
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
