"""The image formats genbatch writes: extension, encoder and where the metadata goes.

Every image carries its own description: the AUTOMATIC1111-style ``parameters`` text that
other tools read back (made by genbatch.manifest.a1111), and the full JSON record.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from genbatch.errors import GenbatchError

_USER_COMMENT = 0x9286  # in the Exif IFD
_EXIF_IFD = 0x8769
_UNICODE = b"UNICODE\0"  # EXIF's character-code prefix; A1111 writes UTF-16 big-endian after it


def _save_png(
    image: Image.Image, buffer: io.BytesIO, meta: dict[str, Any], parameters: str, quality: int, compress_level: int
) -> None:
    info = PngInfo()
    info.add_text("parameters", parameters)
    info.add_itxt("genbatch", json.dumps(meta, ensure_ascii=False, default=str))
    image.save(buffer, "PNG", pnginfo=info, compress_level=compress_level)


def _exif_saver(pil_format: str) -> Callable[..., None]:
    def save(
        image: Image.Image, buffer: io.BytesIO, meta: dict[str, Any], parameters: str, quality: int, compress_level: int
    ) -> None:
        exif = Image.Exif()
        # ImageDescription is ASCII: the JSON record keeps every other character as a \u escape.
        exif[0x010E] = json.dumps(meta, ensure_ascii=True, default=str)
        exif[0x0131] = "genbatch"  # Software
        # UserComment: the A1111 parameters, where A1111 and the tools that read it look.
        exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = _UNICODE + parameters.encode("utf-16-be")
        image.save(buffer, pil_format, quality=quality, exif=exif.tobytes())

    return save


@dataclass(frozen=True)
class ImageFormat:
    name: str
    extensions: tuple[str, ...]  # the first is the one genbatch writes
    save: Callable[..., None]

    @property
    def ext(self) -> str:
        return self.extensions[0]


FORMATS: dict[str, ImageFormat] = {
    f.name: f
    for f in (
        ImageFormat("png", ("png",), _save_png),
        ImageFormat("webp", ("webp",), _exif_saver("WEBP")),
        ImageFormat("jpg", ("jpg", "jpeg"), _exif_saver("JPEG")),
    )
}
BY_EXTENSION: dict[str, ImageFormat] = {ext: f for f in FORMATS.values() for ext in f.extensions}
IMAGE_EXTENSIONS = frozenset(f".{ext}" for ext in BY_EXTENSION)
# genbatch's own contact sheets: images in OUT that are no job's (genbatch.report.contact_sheet)
CONTACT_SHEET_RE = re.compile(r"^contact-sheet-(\d{3,})\.png$")


def image_format(name: str) -> ImageFormat:
    """``png``, ``webp``, ``jpg`` or ``jpeg`` (any case) -> its format."""
    found = BY_EXTENSION.get(name.lower().lstrip("."))
    if found is None:
        raise GenbatchError(f"unknown image format {name!r}; expected {', '.join(FORMATS)}")
    return found


def encode(
    pixels: np.ndarray, fmt: str, meta: dict[str, Any], parameters: str, *, quality: int, compress_level: int
) -> bytes:
    """The image file's bytes, carrying ``meta`` (the JSON record) and ``parameters`` (the A1111 text,
    genbatch.manifest.a1111.parameters_text) where each format keeps them."""
    buffer = io.BytesIO()
    image_format(fmt).save(Image.fromarray(pixels, "RGB"), buffer, meta, parameters, quality, compress_level)
    return buffer.getvalue()
