"""Rows with images: the files a row starts from (``image``, ``mask_image``, ``control_image``),
read and checked when the manifest is read, before any model loads.

A path is relative to the manifest's folder (standard input's: the working folder) and may not
leave it: no ``..`` out of it, no symlink that leads out of it. An absolute path or a URL
(``s3://...``, read as a manifest is) is read as given: the user named that file. Each file is
read whole once, hashed (its sha256 is what the job key holds, so a changed file is a new job
and a renamed identical one is not) and decoded fully with Pillow's decompression-bomb limit,
so a missing, unreadable, truncated or non-image file is a problem of its row
(``FILE:LINE:COLUMN``), as is a mask whose size is not its image's. The generator reads the file
again (:func:`opened`) and refuses one whose bytes changed since.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from genbatch.bucket import is_url, read_object
from genbatch.errors import GenbatchError, Problem
from genbatch.manifest.fields import INPUT_FIELDS

MAX_INPUT_BYTES = 256 * 2**20  # an input file larger than this is refused (a 16384x16384 PNG is ~200 MB at most)


@dataclass(frozen=True)
class InputImage:
    """An input file as a job holds it: the path as the row gave it, where it was read, its
    sha256 and its size in pixels."""

    path: str
    location: str
    sha256: str
    width: int
    height: int

    def record(self) -> dict[str, Any]:
        """How the ledger, the image's metadata and the report record it."""
        return {"path": self.path, "sha256": self.sha256, "width": self.width, "height": self.height}


class InputProblem(ValueError):
    """Why an input file cannot be used (the message says what would be accepted)."""


def location_of(given: str, manifest: str, folder: str | None = None) -> str:
    """Where the file a row names is: ``given`` relative to the manifest's folder (which it may
    not leave), or as given when it is absolute or a URL. ``folder``: the folder relative paths
    are read from when the rows are not a file's (``--input-dir``)."""
    if is_url(given) or os.path.isabs(given):
        return given
    if folder is None and is_url(manifest):
        normal = posixpath.normpath(given)
        if normal.startswith("../") or normal == "..":
            raise InputProblem(f"{given} leaves the manifest's folder; give a URL or an absolute path instead")
        return f"{manifest.rpartition('/')[0]}/{normal}"
    if folder is not None:
        base = Path(os.path.abspath(folder))
    else:
        base = Path(os.getcwd() if manifest == "-" else os.path.dirname(os.path.abspath(manifest)))
    normal = os.path.normpath(given)
    if normal == os.pardir or normal.startswith(os.pardir + os.sep):
        raise InputProblem(
            f"{given} leaves the manifest's folder {base}; give an absolute path to read a file elsewhere"
        )
    full = base / normal
    real, real_base = os.path.realpath(full), os.path.realpath(base)
    if real != real_base and not real.startswith(real_base.rstrip(os.sep) + os.sep):
        where = f"the manifest's folder {base}" if folder is None else f"--input-dir {base}"
        raise InputProblem(
            f"{given} is a symlink to {real}, outside {where}; give an absolute path "
            f"{'' if folder is None else 'in a manifest '}to read a file elsewhere"
        )
    return str(full)


def read_input(location: str) -> bytes:
    if is_url(location):
        try:
            return read_object(location)
        except GenbatchError as err:
            raise InputProblem(str(err)) from None
    try:
        size = os.stat(location).st_size
        if size > MAX_INPUT_BYTES:
            raise InputProblem(
                f"{location} is {size / 2**20:.0f} MiB; an input image may be {MAX_INPUT_BYTES >> 20} MiB at most"
            )
        with open(location, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise InputProblem(f"no such file: {location}") from None
    except IsADirectoryError:
        raise InputProblem(f"{location} is a folder, not an image file") from None
    except OSError as err:
        raise InputProblem(f"cannot read {location}: {err.strerror}") from None


def decoded(data: bytes, location: str) -> Image.Image:
    """The image in ``data``, decoded whole (a truncated file fails here), within Pillow's
    decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``: a larger image is refused, not warned of)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputProblem(
                f"{location} has more pixels than an input may have ({Image.MAX_IMAGE_PIXELS:,}): "
                "a decompression bomb, or an image to scale down first"
            ) from None
        except Image.UnidentifiedImageError:
            raise InputProblem(f"{location} is not an image Pillow can read (PNG, JPEG, WebP, ...)") from None
        except (OSError, ValueError, SyntaxError) as err:
            raise InputProblem(f"{location} cannot be decoded (truncated or damaged?): {err}") from None
    return image


class InputReader:
    """Reads and checks the input files of a manifest, each file once however many rows name it."""

    def __init__(self, manifest: str, folder: str | None = None):
        self.manifest, self.folder = manifest, folder
        self._seen: dict[str, InputImage | InputProblem] = {}
        self._located: dict[str, str | InputProblem] = {}  # a path as rows give it: where it is

    def read(self, given: str) -> InputImage:
        location = self._located.get(given)
        if location is None:  # once a path, not once a row (resolving it is a syscall per part)
            try:
                location = location_of(given, self.manifest, self.folder)
            except InputProblem as err:
                location = err
            self._located[given] = location
        if isinstance(location, InputProblem):
            raise location
        found = self._seen.get(location)
        if found is None:
            try:
                data = read_input(location)
                with decoded(data, location) as image:
                    width, height = image.size
                found = InputImage(given, location, hashlib.sha256(data).hexdigest(), width, height)
            except InputProblem as err:
                found = err
            self._seen[location] = found
        if isinstance(found, InputProblem):
            raise found
        return found if found.path == given else InputImage(given, *_facts(found))


def _facts(found: InputImage) -> tuple[str, str, int, int]:
    return found.location, found.sha256, found.width, found.height


def check_inputs(
    rows: list[Any],
    name: str,
    path: str,
    mapping: dict[str, str],
    problems: list[Problem],
    folder: str | None = None,
) -> list[Any]:
    """Replace each row's input paths with the files read (:class:`InputImage`); the rows whose
    inputs cannot be used are returned, each with its problems added to ``problems``. Relative
    paths are read from the folder of the manifest at ``path``, or from ``folder`` when given."""
    wanted = [field for field in INPUT_FIELDS if any(row.values.get(field) is not None for row in rows)]
    if not wanted:
        return []
    reader = InputReader(path, folder)
    bad = []
    for row in rows:
        found: list[Problem] = []
        for field in wanted:
            given = row.values.get(field)
            if isinstance(given, str):
                try:
                    row.values[field] = reader.read(given)
                except InputProblem as err:
                    found.append(Problem(name, row.line, mapping.get(field, field), str(err)))
        image, mask = row.values.get("image"), row.values.get("mask_image")
        where = mapping.get("mask_image", "mask_image")
        if isinstance(mask, InputImage) and image is None:
            found.append(Problem(name, row.line, where, "a mask needs an image to inpaint"))
        elif isinstance(mask, InputImage) and isinstance(image, InputImage) and _size(mask) != _size(image):
            found.append(
                Problem(
                    name,
                    row.line,
                    where,
                    f"the mask is {_size(mask)} but its image is {_size(image)}; a mask must be its image's size",
                )
            )
        if found:
            problems.extend(found)
            bad.append(row)
    return bad


def _size(image: InputImage) -> str:
    return f"{image.width}x{image.height}"


def opened(value: InputImage, width: int | None, height: int | None, resize: str | None, mode: str) -> Image.Image:
    """The input as the pipeline gets it: read again (and refused when its bytes changed since the
    run was planned), in ``mode`` ("RGB"; "L" for a mask), fitted to ``width`` x ``height`` as
    ``resize`` says (:func:`fitted`)."""
    try:
        data = read_input(value.location)
    except InputProblem as err:
        raise GenbatchError(f"{value.path}: {err}") from None
    if hashlib.sha256(data).hexdigest() != value.sha256:
        raise GenbatchError(
            f"{value.path} changed since the run was planned (its sha256 is not the one in the job's key); "
            "run again to plan it anew"
        )
    with decoded(data, value.location) as image:
        return fitted(image.convert(mode), width, height, resize)


def fitted(image: Image.Image, width: int | None, height: int | None, resize: str | None) -> Image.Image:
    """``image`` at ``width`` x ``height``: ``fit`` scales it to fit inside and pads the rest (black),
    ``fill`` scales it to cover and crops the middle; ``none`` (or no size) leaves it as it is,
    for the pipeline to size as plain diffusers does."""
    if width is None or height is None or resize in (None, "none") or image.size == (width, height):
        return image
    if resize == "fit":
        return ImageOps.pad(image, (width, height), method=Image.Resampling.LANCZOS, color=0)
    return ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS)
