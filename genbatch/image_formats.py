"""The image formats genbatch writes: extension, encoder and where the metadata goes.

Every image carries its own description: the AUTOMATIC1111-style ``parameters`` text that
other tools read back, and the full JSON record.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .errors import GenbatchError
from .fields import a1111_prompt, a1111_settings


def a1111_parameters(meta: dict[str, Any]) -> str:
    """The ``parameters`` text AUTOMATIC1111-style tools read back from a PNG."""
    lines = [a1111_prompt(meta)]
    if meta.get("negative_prompt"):
        lines.append(f"Negative prompt: {meta['negative_prompt']}")
    settings = a1111_settings(meta) + [("Model hash", meta["model_fingerprint"][:10]), ("Model", meta["model"]),
                                       ("Backend", meta["backend"])]
    lines.append(", ".join(f"{label}: {text}" for label, text in settings))
    return "\n".join(lines)


def _save_png(image: Image.Image, buffer: io.BytesIO, meta: dict[str, Any], quality: int, compress_level: int) -> None:
    info = PngInfo()
    info.add_text("parameters", a1111_parameters(meta))
    info.add_itxt("genbatch", json.dumps(meta, ensure_ascii=False, default=str))
    image.save(buffer, "PNG", pnginfo=info, compress_level=compress_level)


def _exif_saver(pil_format: str) -> Callable[..., None]:
    def save(image: Image.Image, buffer: io.BytesIO, meta: dict[str, Any], quality: int, compress_level: int) -> None:
        exif = Image.Exif()
        exif[0x010E] = json.dumps(meta, ensure_ascii=False, default=str)  # ImageDescription
        exif[0x0131] = "genbatch"  # Software
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


def image_format(name: str) -> ImageFormat:
    """``png``, ``webp``, ``jpg`` or ``jpeg`` (any case) -> its format."""
    found = BY_EXTENSION.get(name.lower().lstrip("."))
    if found is None:
        raise GenbatchError(f"unknown image format {name!r}; expected {', '.join(FORMATS)}")
    return found


def encode(pixels: np.ndarray, fmt: str, meta: dict[str, Any], *, quality: int, compress_level: int) -> bytes:
    buffer = io.BytesIO()
    image_format(fmt).save(Image.fromarray(pixels, "RGB"), buffer, meta, quality, compress_level)
    return buffer.getvalue()
