"""Small pictures of an output folder's images, for the HTML report and the contact sheets.

``thumbnail(path, size)`` is the one way an image is scaled down: read at reduced size
where the format allows it (JPEG draft mode), converted to RGB or RGBA, fitted into
``size`` × ``size``. The report keeps its thumbnails as WebP files in
``OUT/.genbatch-thumbs/``: a run's image writers make each one from the pixels they have
just written (``write_report_thumbnail``); ``ReportThumbnails`` makes, a chunk of cards at
a time, those missing or older than their image. The contact sheets paste them straight
into a grid. The input images of rows with images have theirs there too, named by their
sha256 (genbatch.report.input_thumbnails).

That folder is a real folder (never a symlink) holding only what genbatch keeps there.
Each thumbnail names itself in its XMP (``genbatch:thumbnail="KEY.webp"``), and cleanup
deletes only such files, so nothing genbatch did not write there (a run's image, a file a
person put there, a symlink) is ever deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import stat
from array import array
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from genbatch.bucket import open_bucket
from genbatch.report.folder import file_mtime_ns
from genbatch.safe_write import UnsafePathError, folder_descriptor, write_atomic

THUMBS_DIR = ".genbatch-thumbs"
THUMB_SIZE = 256
MAX_THUMB_BYTES = 1 << 20  # a larger file is not a thumbnail genbatch wrote

INPUT_PREFIX = "input-"  # a row's input image's thumbnail: input-<its sha256[:20]>.webp

_KEY_RE = re.compile(r"^[0-9A-Za-z]{8,64}$")
_THUMB_FILE_RE = re.compile(r"^(?:input-)?[0-9A-Za-z]{8,64}\.webp$")
_TEMP_FILE_RE = re.compile(r"^\.?(?:input-)?[0-9A-Za-z]{8,64}\.webp\.tmp-[0-9A-Za-z_-]+$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def thumbnail(path: Path | IO[bytes], size: int) -> Image.Image | None:
    """The image at ``path`` (or in a file object) scaled to fit ``size`` × ``size`` (RGB, or RGBA
    when it has transparency), or None when it cannot be read."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))
            if im.mode not in ("RGB", "RGBA"):
                im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
            im.thumbnail((size, size))
            im.load()  # a picture already small enough is not read by thumbnail()
            return im
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def worker_count() -> int:
    """Threads for decoding and encoding pictures (Pillow releases the GIL while it works)."""
    return min(8, (os.cpu_count() or 2) + 1)


class ReportThumbnails:
    """The report's thumbnails, a chunk of cards at a time (memory stays flat however many
    images): ``shown(cards)`` gives each card's thumbnail path relative to OUT, or None when
    the card must show the image itself. With ``make``, missing or stale thumbnails are
    written first (in threads); without, only fresh existing ones are used. The names it
    gave are remembered as 8-byte hashes, for :meth:`remove_stale`."""

    def __init__(self, out: Path, *, make: bool):
        self.out, self.make = Path(out), make
        self.folder = thumbs_folder(self.out) if make else self.out / THUMBS_DIR
        self._look = make or _real_folder(self.folder)
        self._root = os.fspath(self.folder)
        self._pool: ThreadPoolExecutor | None = None
        self._kept = array("q")

    def __enter__(self) -> ReportThumbnails:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def shown(self, cards: list[tuple[dict, int]]) -> list[str | None]:
        """Per (card, its image's st_mtime_ns): the thumbnail to show, or None."""
        shown: list[str | None] = []
        todo: list[tuple[int, Path, Path]] = []
        for position, (card, image_mtime) in enumerate(cards):
            name = thumb_name(card)
            self._kept.append(hash(name))
            thumb_mtime = file_mtime_ns(os.path.join(self._root, name)) if self._look else None
            fresh = thumb_mtime is not None and thumb_mtime >= image_mtime
            shown.append(f"{THUMBS_DIR}/{name}" if fresh else None)
            if self.make and not fresh:
                todo.append((position, self.out / card["file"], self.folder / name))
        if todo:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=worker_count())
            made = self._pool.map(lambda job: write_thumbnail(job[1], job[2], self.out), todo)
            for (position, _, thumb), ok in zip(todo, made):
                if ok:
                    shown[position] = f"{THUMBS_DIR}/{thumb.name}"
        return shown

    def keep(self, name: str) -> bool:
        """Keep the thumbnail ``name`` (an input image's, genbatch.report.input_thumbnails) from
        :meth:`remove_stale`; whether it is there."""
        self._kept.append(hash(name))
        return self._look and file_mtime_ns(os.path.join(self._root, name)) is not None

    def remove_stale(self, *, older_than_ns: int) -> None:
        """Delete the thumbnails of records that are no longer current (a rerun with other
        parameters gives the images new keys), so the folder does not grow with every rerun,
        and the temp files of a report that was killed while making thumbnails.

        Only what genbatch wrote goes: regular files (never a symlink) with a thumbnail's name
        that name themselves in their XMP, in the real folder genbatch made, opened without
        following a symlink. Only files older than ``older_than_ns`` go: a report written at
        the same time from a longer ledger may just have made a thumbnail this one does not know."""
        kept = np.sort(np.frombuffer(self._kept, dtype=np.int64))
        thumbs_folder(self.out, contents=False)
        with folder_descriptor(self.out, THUMBS_DIR, links=False) as folder:
            with os.scandir(folder) as entries:
                for entry in entries:
                    name = entry.name
                    thumb = _THUMB_FILE_RE.match(name) is not None
                    if thumb and _member(kept, hash(name)) or not (thumb or _TEMP_FILE_RE.match(name)):
                        continue
                    with contextlib.suppress(OSError):
                        st = entry.stat(follow_symlinks=False)
                        if not stat.S_ISREG(st.st_mode) or st.st_mtime_ns >= older_than_ns:
                            continue
                        if thumb and not written_by_genbatch(folder, name):
                            continue
                        os.unlink(name, dir_fd=folder)


def _member(sorted_values: np.ndarray, value: int) -> bool:
    at = int(np.searchsorted(sorted_values, value))
    return at < len(sorted_values) and int(sorted_values[at]) == value


def thumbs_folder(out: Path, *, contents: bool = True) -> Path:
    """``OUT/.genbatch-thumbs``, made if missing. It must be a real folder (a symlink there,
    wherever it leads, is refused: :class:`UnsafePathError`) and, with ``contents``, hold
    nothing but what genbatch keeps there (``KEY.webp`` files and their temp files): a folder
    of someone else's files is refused too. (A run's image writers check only the folder.)"""
    root = Path(out).resolve()
    folder = root / THUMBS_DIR
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder)
        st = os.lstat(folder)
    if stat.S_ISLNK(st.st_mode):
        target = os.path.realpath(folder)
        where = "inside" if target == str(root) or target.startswith(str(root) + os.sep) else "outside"
        raise UnsafePathError(
            f"{folder} is a symlink (to {target}, {where} the output folder {root}); genbatch keeps its "
            "thumbnails only in a real folder it made there: remove the link"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(
            f"{folder} is not a folder; genbatch keeps its thumbnails in a real folder of that name it makes "
            "itself: move the file away"
        )
    if contents:
        with os.scandir(folder) as entries:
            strangers = sorted(e.name for e in entries if not _thumbnail_entry(e))
        if strangers:
            more = f" and {len(strangers) - 1} more" if len(strangers) > 1 else ""
            raise UnsafePathError(
                f"{folder} is not a folder genbatch made: it holds {strangers[0]!r}{more}, and genbatch keeps "
                "only its thumbnails there (KEY.webp files): move those files (or the folder) away"
            )
    return folder


def _thumbnail_entry(entry: os.DirEntry[str]) -> bool:
    """What genbatch keeps in its thumbnails folder: a thumbnail or its temp file, by name
    (only one naming itself in its XMP is ever deleted, see :func:`written_by_genbatch`)."""
    return bool(_THUMB_FILE_RE.match(entry.name) or _TEMP_FILE_RE.match(entry.name))


def _real_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _xmp(name: str) -> bytes:
    """The XMP a thumbnail carries: its own file name, so cleanup can tell it is genbatch's."""
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description xmlns:genbatch="https://genbatch.invalid/ns/1/" genbatch:thumbnail="{name}"/>'
        "</rdf:RDF></x:xmpmeta>"
    ).encode("ascii")


def written_by_genbatch(folder: int, name: str) -> bool:
    """Whether ``name`` in the folder open as ``folder`` is a thumbnail genbatch wrote: a
    regular file (not followed if a symlink), small, naming itself in its XMP."""
    return genbatch_thumbnail(folder, name) is not None


def genbatch_thumbnail(folder: int, name: str) -> bytes | None:
    """The bytes of ``name`` in the folder open as ``folder`` when it is a thumbnail genbatch wrote
    (:func:`written_by_genbatch`), else None."""
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC, dir_fd=folder)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_THUMB_BYTES:
            return None
        data = b""
        while chunk := os.read(fd, MAX_THUMB_BYTES + 1 - len(data)):
            data += chunk
            if len(data) > MAX_THUMB_BYTES:
                return None
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if f'genbatch:thumbnail="{name}"'.encode() in data else None


def write_thumbnail(image: Path, thumb: Path, out: Path) -> bool:
    """Write a WebP thumbnail of ``image`` (at most THUMB_SIZE px a side) atomically to
    ``thumb`` in ``out``'s thumbnails folder; False when the image cannot be read or the
    thumbnail written."""
    picture = thumbnail(image, THUMB_SIZE)
    return picture is not None and _save(picture, out, thumb.name)


def thumbnail_of(pixels: np.ndarray) -> Image.Image:
    """The thumbnail of RGB ``pixels``: the picture :func:`thumbnail` gives of their PNG file."""
    picture = Image.fromarray(pixels, "RGB")
    picture.thumbnail((THUMB_SIZE, THUMB_SIZE))
    return picture


def write_report_thumbnail(out: Path | str, key: str, file: str, pixels: np.ndarray) -> bool:
    """The report's thumbnail of an image just written, made from its pixels (no file read back),
    so the end-of-run report finds it fresh and makes none; False when it could not be written
    (the report then makes it from the file). The folder is made with the run's first one."""
    return save_thumbnail(thumbnail_of(pixels), out, thumb_name({"key": key, "file": file}))


def save_thumbnail(picture: Image.Image, out: Path | str, name: str) -> bool:
    """Write ``picture`` as the thumbnail ``name`` of ``out`` (a str: the URL of a prefix in object
    storage, one PUT); False when it could not be written."""
    if isinstance(out, str):
        data = io.BytesIO()
        _save_webp(picture, data, name)
        try:
            open_bucket(out).put(f"{THUMBS_DIR}/{name}", data.getvalue())
        except OSError:
            return False
        return True
    return _save(picture, Path(out), name)


def _save(picture: Image.Image, out: Path, name: str) -> bool:
    """Write ``picture`` as ``OUT/.genbatch-thumbs/name``, into the folder genbatch made only."""
    try:
        thumbs_folder(out, contents=False)
        write_atomic(
            Path(out) / THUMBS_DIR / name,
            lambda tmp: _save_webp(picture, tmp, name),
            root=out,
            links=False,
        )
    except (OSError, ValueError, UnsafePathError):
        return False
    return True


def _save_webp(picture: Image.Image, target: Path | io.BytesIO, name: str) -> None:
    picture.save(target, "WEBP", quality=80, method=4, xmp=_xmp(name))


def thumb_name(card: dict) -> str:
    """The thumbnail's file name: the job key, or a hash of the image's file name."""
    key = card.get("key")
    if not (isinstance(key, str) and _KEY_RE.match(key)):
        key = hashlib.sha1(card["file"].encode("utf-8")).hexdigest()[:20]
    return f"{key}.webp"
