"""Thumbnails of the images rows start from (``image``, ``mask_image``, ``control_image``), for the
report's cards and ``genbatch grid --inputs``: ``OUT/.genbatch-thumbs/input-<sha256[:20]>.webp``, one
per distinct input file however many images were made from it, named by its contents as the job key
names it.

A run's image writers make each one from the input file when the first image made from it is
written (:class:`InputThumbnailWriter`; into a prefix in object storage, one PUT), so the report
reads no input file and works as well on a bucket's local view (genbatch.store.bucket_view). Where
one is missing (a run without the report; ``genbatch merge`` copies the sources' own), the report makes it
from the file the ledger line names when that file is still there with the recorded sha256 (found
as the run found it: relative to the manifest's folder, or the ``--input-dir``, as the ledger line
names them, from the working folder; a URL is not fetched); else the card shows the input's path.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from genbatch.bucket import is_url
from genbatch.manifest.fields import INPUT_FIELDS
from genbatch.manifest.inputs import MAX_INPUT_BYTES, InputImage, InputProblem, decoded, location_of, read_input
from genbatch.report.thumbnails import (
    INPUT_PREFIX,
    THUMB_SIZE,
    THUMBS_DIR,
    ReportThumbnails,
    genbatch_thumbnail,
    save_thumbnail,
    thumbnail,
    thumbs_folder,
)
from genbatch.safe_write import UnsafePathError, folder_descriptor, write_atomic

# How the report and the grids label each input.
LABELS = {"image": "input", "mask_image": "mask", "control_image": "control", "ip_adapter_image": "IP-Adapter"}
_HEX = frozenset("0123456789abcdef")
_NAME = re.compile(f"^{INPUT_PREFIX}[0-9a-f]{{20}}\\.webp$")


def input_thumb_name(sha256: object) -> str | None:
    """The thumbnail's file name of the input whose sha256 this is (None: not a sha256)."""
    if not isinstance(sha256, str) or len(sha256) != 64 or not _HEX.issuperset(sha256):
        return None
    return f"{INPUT_PREFIX}{sha256[:20]}.webp"


def recorded_inputs(record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(field, its record: path, sha256, width, height) of each input a ledger record names."""
    return [(name, value) for name in INPUT_FIELDS if isinstance(value := record.get(name), dict)]


def job_inputs(values: Any) -> list[InputImage]:
    """The input files of a job (its values), as the plan read them."""
    return [value for name in INPUT_FIELDS if isinstance(value := values.get(name), InputImage)]


def picture_of(data: bytes, sha256: str) -> Image.Image | None:
    """The thumbnail of an input file's bytes, or None when they are not the recorded ones or no image."""
    if hashlib.sha256(data).hexdigest() != sha256:
        return None
    return thumbnail(io.BytesIO(data), THUMB_SIZE)


class InputThumbnailWriter:
    """Makes the thumbnail of each input of the images a run writes, once per input file (thread-safe:
    the writer threads share one); one already in a local OUT is left as it is."""

    def __init__(self, out: Path | str):
        self.out = out
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def write(self, inputs: Iterable[InputImage]) -> None:
        for given in inputs:
            name = input_thumb_name(given.sha256)
            with self._lock:
                if name is None or name in self._seen:
                    continue
                self._seen.add(name)
            if isinstance(self.out, Path) and os.path.isfile(self.out / THUMBS_DIR / name):
                continue
            try:
                data = read_input(given.location)
            except InputProblem:  # gone since the plan read it: the report shows its path
                continue
            picture = picture_of(data, given.sha256)
            if picture is not None:
                save_thumbnail(picture, self.out, name)


class ReportInputs:
    """Each report card's inputs: ``[label, path, thumbnail or None, sha256]`` per input, its
    thumbnail kept from the report's cleanup; with ``make``, a missing one is made from its file
    where that is still there (see the module's note)."""

    def __init__(self, out: Path, thumbnails: ReportThumbnails, *, make: bool):
        self.out, self.thumbnails, self.make = Path(out), thumbnails, make
        self._shown: dict[str, str | None] = {}

    def of(self, record: dict[str, Any]) -> list[list[Any]] | None:
        found = []
        for name, given in recorded_inputs(record):
            thumb = input_thumb_name(given.get("sha256"))
            if thumb is not None and thumb not in self._shown:
                there = self.thumbnails.keep(thumb) or (self.make and self._make(record, given, thumb))
                self._shown[thumb] = f"{THUMBS_DIR}/{thumb}" if there else None
            found.append([LABELS[name], given.get("path"), self._shown.get(thumb or ""), given.get("sha256")])
        return found or None

    def _make(self, record: dict[str, Any], given: dict[str, Any], name: str) -> bool:
        location = recorded_location(record, given)
        if location is None:
            return False
        try:
            picture = picture_of(read_input(location), str(given.get("sha256")))
        except InputProblem:
            return False
        return picture is not None and save_thumbnail(picture, self.out, name)


def recorded_location(record: dict[str, Any], given: dict[str, Any]) -> str | None:
    """Where the input a ledger record names is, as its run found it, when it is a regular local
    file of at most MAX_INPUT_BYTES: its path relative to the manifest's folder (or the input
    folder), or as recorded when absolute. None for a URL, a path that leaves the folder, or no file."""
    path, manifest = given.get("path"), record.get("manifest")
    if not isinstance(path, str) or not isinstance(manifest, str) or is_url(path) or is_url(manifest):
        return None
    manifest = "-" if manifest == "<stdin>" else manifest
    try:
        location = location_of(path, manifest, manifest if os.path.isdir(manifest) else None)
        found = os.stat(location)
    except (InputProblem, OSError, ValueError):
        return None
    return location if stat.S_ISREG(found.st_mode) and found.st_size <= MAX_INPUT_BYTES else None


def input_picture(out: Path, record: dict[str, Any], given: dict[str, Any]) -> Image.Image | None:
    """An input image as ``genbatch grid --inputs`` shows it, in RGB: its file at full size where it
    is still there with its sha256 (:func:`recorded_location`), else its thumbnail in OUT, else None."""
    location = recorded_location(record, given)
    if location is not None:
        try:
            data = read_input(location)
            if hashlib.sha256(data).hexdigest() == given.get("sha256"):
                with decoded(data, location) as image:
                    return image.convert("RGB")
        except InputProblem:
            pass
    name = input_thumb_name(given.get("sha256"))
    picture = thumbnail(Path(out) / THUMBS_DIR / name, THUMB_SIZE) if name else None
    return picture.convert("RGB") if picture is not None else None


def copy_input_thumbnails(sources: Iterable[Path], into: Path) -> None:
    """Give ``into`` the input thumbnails of ``sources`` (local run folders) it has not
    (``genbatch merge``): only files genbatch wrote there (each names itself in its XMP), read
    without following a link, written as the report writes its own."""
    target = Path(into)
    for source in sources:
        if Path(source).resolve() == target.resolve() or not os.path.isdir(Path(source) / THUMBS_DIR):
            continue
        try:
            with folder_descriptor(Path(source), THUMBS_DIR, links=False) as folder:
                for name in sorted(os.listdir(folder)):
                    if not _NAME.match(name):
                        continue
                    if os.path.lexists(target / THUMBS_DIR / name):
                        continue
                    data = genbatch_thumbnail(folder, name)
                    if data is not None:
                        thumbs_folder(target, contents=False)
                        write_atomic(target / THUMBS_DIR / name, data, root=target, links=False)
        except (OSError, UnsafePathError):  # a thumbnail is a convenience: the report shows the path
            continue
