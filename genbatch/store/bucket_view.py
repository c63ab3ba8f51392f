"""A local folder standing for a prefix in object storage, for the commands that read an output
(``report``, ``grid``, ``eval``, ``merge``) and for the reports at the end of a run into one.

The view holds the prefix's ledger as one file (genbatch.store.segments), genbatch's own small
files (``run.json``, the report's thumbnails where asked) and, where asked, the images the
ledger names, each fetched once; the readers of a local folder then run on it unchanged. What a
command writes into the view (report.html, the tables, grids, eval.json, thumbnails) is then
put back into the prefix, one PUT a file, never the images and never the ledger (which only a
run's driver, or ``merge``, writes, as segments). The view lives in a temporary folder that is
removed when the command ends: its disk is the size of what was fetched.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from genbatch.bucket import Bucket, open_bucket, output_location
from genbatch.errors import GenbatchError
from genbatch.store.ledger import LEDGER_NAME, SHOWN_AS, current, done_index_of, iter_records
from genbatch.store.output_lock import LOCK_NAME
from genbatch.store.segments import copy_ledger, segment_names

OWN_SMALL_FILES = ("run.json",)
THUMBS = ".genbatch-thumbs"
EVAL_CACHE = ".genbatch-eval"


def safe_name(name: object) -> str | None:
    """``name`` when it is a relative, ``/``-separated name that stays under the prefix (a ledger
    line may be edited by hand), else None."""
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        return None
    normal = posixpath.normpath(name)
    if normal != name or normal.startswith(("/", "../")) or normal == ".." or normal == ".":
        return None
    return name


class BucketView:
    """``with BucketView(bucket, images=True) as view:`` — ``view.folder`` is the local folder."""

    def __init__(
        self,
        bucket: Bucket,
        *,
        images: bool = False,
        stand_ins: bool = False,
        thumbs: bool | str = False,
        folders: Iterable[str] = (),
        ledger: Path | None = None,
    ):
        """``thumbs``: fetch the report's thumbnails; "stand-in": an empty file for each, newer than
        its image's stand-in, for a report that only links to them (no contact sheet). ``ledger``:
        a local copy of the prefix's ``genbatch.jsonl`` (a run's, just compacted), used where the
        prefix holds that file alone, of its size, rather than reading it back."""
        self.bucket = bucket
        self.images, self.stand_ins, self.thumbs, self.folders = images, stand_ins, thumbs, tuple(folders)
        self.folder = Path()
        self.sizes: dict[str, int] = {}
        self.given_ledger = ledger
        self.ledger_parts: list[str] = []  # the objects the view's genbatch.jsonl was made of
        self._temp: tempfile.TemporaryDirectory[str] | None = None
        self._before: dict[str, tuple[int, int]] = {}

    def __enter__(self) -> BucketView:
        self._temp = tempfile.TemporaryDirectory(prefix="genbatch-view-")
        self.folder = Path(self._temp.name)
        self.sizes = self.bucket.sizes()
        segments = segment_names(self.sizes)
        given = self.given_ledger
        if (
            given is not None
            and not segments
            and given.exists()
            and self.sizes.get(LEDGER_NAME) == given.stat().st_size
        ):
            shutil.copyfile(given, self.folder / LEDGER_NAME)
            SHOWN_AS[os.fspath(self.folder / LEDGER_NAME)] = self.bucket.where(LEDGER_NAME)
            self.ledger_parts = [LEDGER_NAME]
        elif LEDGER_NAME in self.sizes or segments:
            self.ledger_parts = copy_ledger(self.bucket, self.folder, self.sizes)
        wanted = [n for n in OWN_SMALL_FILES if n in self.sizes]
        thumbs = [n for n in self.sizes if n.startswith(THUMBS + "/") and safe_name(n)]
        if self.thumbs == "stand-in":  # the report links to them and reads none: no request each
            for name in thumbs:
                (self.folder / name).parent.mkdir(parents=True, exist_ok=True)
                (self.folder / name).touch()
        elif self.thumbs:
            wanted += thumbs
        for top in self.folders:
            wanted += [n for n in self.sizes if n.startswith(top + "/")]
        if self.images:
            wanted += self.image_names()
        elif self.stand_ins:
            self._stand_in(self.image_names())
        self.fetch(wanted)
        self._before = self._snapshot()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._temp is not None:
            self._temp.cleanup()

    def image_names(self) -> list[str]:
        """The files of the current done records that are in the prefix."""
        if not (self.folder / LEDGER_NAME).exists():
            return []
        kept = current(iter_records(self.folder), lambda r: (r.get("status"), r.get("file")))
        return [f for status, f in kept if status == "done" and safe_name(f) and f in self.sizes]

    def _stand_in(self, names: list[str]) -> None:
        """An empty file, dated 1970, for each image not fetched: the report sees the image is in
        the prefix (and its thumbnail newer), links to it and reads no pixels of it."""
        for name in names:
            path = self.folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            os.utime(path, ns=(0, 0))

    def fetch(self, names: Iterable[str]) -> None:
        """Copy these objects into the view (concurrently, as the store's client does)."""
        names = sorted({n for n in names if safe_name(n) and n in self.sizes})
        if not names:
            return
        for name in names:
            (self.folder / name).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.bucket.fs.get([self.bucket.key(n) for n in names], [str(self.folder / n) for n in names])
        except OSError as err:
            raise GenbatchError(f"{self.bucket.url}: cannot read its objects: {err}") from None

    def done_index(self) -> dict[str, dict[str, Any]]:
        """The resume scan of the prefix: its done records whose object is there with the recorded size."""
        sizes = self.sizes
        return done_index_of(
            self.folder / LEDGER_NAME, lambda file, size: file in sizes and (size is None or sizes[file] == size)
        )

    def _snapshot(self) -> dict[str, tuple[int, int]]:
        found = {}
        for folder, _, files in os.walk(self.folder):
            for name in files:
                path = Path(folder, name)
                found[path.relative_to(self.folder).as_posix()] = _stat(path)
        return found

    def publish(self, *, ledger: bool = False) -> list[str]:
        """Put every file written or changed in the view since it was made into the prefix, one PUT
        each, and the ledger lines added to the view's ``genbatch.jsonl`` (``ledger``: merge's) as
        one segment, compacted. Returns the names put."""
        now = self._snapshot()
        changed = [n for n, facts in now.items() if self._before.get(n) != facts and n != LEDGER_NAME]
        changed = [n for n in changed if ".tmp-" not in n.rpartition("/")[2] and n != LOCK_NAME]
        for name in sorted(changed):
            self.bucket.put(name, (self.folder / name).read_bytes())
        if ledger and now.get(LEDGER_NAME) != self._before.get(LEDGER_NAME):
            self._publish_ledger()
        self._before = now
        return sorted(changed)

    def _publish_ledger(self) -> None:
        """The view's ledger, rewritten whole (merge's), as the prefix's ``genbatch.jsonl``; the
        segments it was read from are then deleted, oldest first."""
        self.bucket.put(LEDGER_NAME, (self.folder / LEDGER_NAME).read_bytes())
        for name in segment_names(self.sizes):
            self.bucket.delete(name)

    def shown(self, path: Path | str) -> str:
        """A path in the view as the object's URL, for what a command prints."""
        try:
            return self.bucket.where(Path(path).relative_to(self.folder).as_posix())
        except ValueError:
            return str(path)


def _stat(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_size, info.st_mtime_ns


@contextmanager
def readable(
    out: str | Path,
    *,
    images: bool = False,
    stand_ins: bool = False,
    thumbs: bool = False,
    folders: Iterable[str] = (),
    publish: bool = True,
) -> Iterator[tuple[Path, BucketView | None]]:
    """``out`` as a local folder for a command that reads an output (and may write reports into
    it): a local folder as it is; a URL through a :class:`BucketView`, whose new files are put back
    into the prefix when the block ends without an error (``publish``)."""
    where = output_location(out)
    if isinstance(where, Path):
        yield where, None
        return
    with BucketView(open_bucket(where), images=images, stand_ins=stand_ins, thumbs=thumbs, folders=folders) as view:
        yield view.folder, view
        if publish:
            view.publish()


@contextmanager
def mergeable(sources: list[str], into: str) -> Iterator[tuple[list[Path], Path, BucketView | None]]:
    """The folders of ``genbatch merge SOURCES --into INTO`` as local folders: a prefix among them
    is held with its lock object (no run may write into it meanwhile) and read through a view
    with its images; what the merge writes into a prefix's view (images, the ledger, reports) is
    put into the prefix when the block ends without an error."""
    from contextlib import ExitStack

    from genbatch.store.bucket_lock import BucketLock

    with ExitStack() as stack:
        views: dict[str, BucketView] = {}
        for url in dict.fromkeys(str(x) for x in [*sources, into]):
            where = output_location(url)
            if isinstance(where, str) and where not in views:
                bucket = open_bucket(where)
                stack.enter_context(BucketLock(bucket, wait=False))
                views[where] = stack.enter_context(BucketView(bucket, images=True))

        def local(value: str) -> Path:
            where = output_location(value)
            return views[where].folder if isinstance(where, str) else where

        target = views.get(str(output_location(into)))
        yield [local(s) for s in sources], local(into), target
        if target is not None:
            target.publish(ledger=True)
