"""Small pictures of an output folder's images, for the HTML report and the contact sheets.

``thumbnail(path, size)`` is the one way an image is scaled down: read at reduced size
where the format allows it (JPEG draft mode), converted to RGB or RGBA, fitted into
``size`` × ``size``. The report keeps its thumbnails as WebP files in
``OUT/.genbatch-thumbs/``: a run's image writers make each one from the pixels they have
just written (``write_report_thumbnail``); ``ReportThumbnails`` makes, a chunk of cards at
a time, those missing or older than their image. The contact sheets paste them straight
into a grid.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from array import array
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from genbatch.report.folder import file_mtime_ns
from genbatch.store.safe_write import UnsafePathError, contained, remove, write_atomic

THUMBS_DIR = ".genbatch-thumbs"
THUMB_SIZE = 256

_KEY_RE = re.compile(r"^[0-9A-Za-z]{8,64}$")


def thumbnail(path: Path, size: int) -> Image.Image | None:
    """The image at ``path`` scaled to fit ``size`` × ``size`` (RGB, or RGBA when it has
    transparency), or None when it cannot be read."""
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
        self._look = make or self.folder.is_dir()
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
            made = self._pool.map(lambda job: write_thumbnail(job[1], job[2]), todo)
            for (position, _, thumb), ok in zip(todo, made):
                if ok:
                    shown[position] = f"{THUMBS_DIR}/{thumb.name}"
        return shown

    def remove_stale(self, *, older_than_ns: int) -> None:
        """Delete the thumbnails of records that are no longer current (a rerun with other
        parameters gives the images new keys), so the folder does not grow with every rerun,
        and the temp files of a report that was killed while making thumbnails.

        Only files older than ``older_than_ns`` go: a report written at the same time from a
        longer ledger may just have made a thumbnail this one does not know."""
        kept = np.sort(np.frombuffer(self._kept, dtype=np.int64))
        thumb_dir = thumbs_folder(self.out)
        with os.scandir(thumb_dir) as entries:
            for entry in entries:
                stale = entry.name.endswith(".webp") and not _member(kept, hash(entry.name))
                if stale or ".webp.tmp-" in entry.name:
                    with contextlib.suppress(OSError):
                        if entry.stat(follow_symlinks=False).st_mtime_ns < older_than_ns:
                            remove(thumb_dir, entry.path)


def _member(sorted_values: np.ndarray, value: int) -> bool:
    at = int(np.searchsorted(sorted_values, value))
    return at < len(sorted_values) and int(sorted_values[at]) == value


def thumbs_folder(out: Path) -> Path:
    """``OUT/.genbatch-thumbs``, created if missing; a symlink there leading out of ``out`` is
    refused (safe_write.UnsafePathError)."""
    folder = contained(out, THUMBS_DIR)
    folder.mkdir(exist_ok=True)
    return folder


def write_thumbnail(image: Path, thumb: Path) -> bool:
    """Write a WebP thumbnail of ``image`` (at most THUMB_SIZE px a side) atomically to
    ``thumb``; False when the image cannot be read or the thumbnail written."""
    picture = thumbnail(image, THUMB_SIZE)
    return picture is not None and _save(picture, thumb, root=thumb.parent)


def thumbnail_of(pixels: np.ndarray) -> Image.Image:
    """The thumbnail of RGB ``pixels``: the picture :func:`thumbnail` gives of their PNG file."""
    picture = Image.fromarray(pixels, "RGB")
    picture.thumbnail((THUMB_SIZE, THUMB_SIZE))
    return picture


def write_report_thumbnail(out: Path, key: str, file: str, pixels: np.ndarray) -> bool:
    """The report's thumbnail of an image just written, made from its pixels (no file read back),
    so the end-of-run report finds it fresh and makes none; False when it could not be written
    (the report then makes it from the file). The folder is made with the run's first one."""
    thumb = Path(out) / THUMBS_DIR / thumb_name({"key": key, "file": file})
    return _save(thumbnail_of(pixels), thumb, root=Path(out))


def _save(picture: Image.Image, thumb: Path, root: Path) -> bool:
    try:
        write_atomic(thumb, lambda tmp: picture.save(tmp, "WEBP", quality=80, method=4), root=root)
    except (OSError, ValueError, UnsafePathError):
        return False
    return True


def thumb_name(card: dict) -> str:
    """The thumbnail's file name: the job key, or a hash of the image's file name."""
    key = card.get("key")
    if not (isinstance(key, str) and _KEY_RE.match(key)):
        key = hashlib.sha1(card["file"].encode("utf-8")).hexdigest()[:20]
    return f"{key}.webp"
