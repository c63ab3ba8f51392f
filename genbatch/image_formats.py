"""The image formats genbatch writes: extension, encoder and where the metadata goes.

Every image carries its own description: the AUTOMATIC1111-style ``parameters`` text that
other tools read back, and the full JSON record.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .a1111 import quote
from .errors import GenbatchError
from .fields import a1111_prompt, a1111_settings


def a1111_parameters(meta: dict[str, Any]) -> str:
    """The ``parameters`` text AUTOMATIC1111-style tools read back: the prompt, the negative
    prompt, then one line of ``Label: value`` settings in A1111's order, each value quoted as
    A1111 quotes it (genbatch.a1111.quote). ``Model hash`` is A1111's (the first 10 hex digits
    of a checkpoint file's sha256) where the model is one file, else genbatch's fingerprint."""
    lines = [a1111_prompt(meta)]
    if meta.get("negative_prompt"):
        lines.append(f"Negative prompt: {meta['negative_prompt']}")
    settings = a1111_settings(meta)
    at = sum(1 for order, *_ in settings if order <= _MODEL_ORDER)
    model = [
        (_MODEL_ORDER, "Model hash", (meta.get("model_hash") or meta["model_fingerprint"])[:10]),
        (_MODEL_ORDER, "Model", meta["model"]),
    ]
    if meta.get("vae"):
        model.append((_MODEL_ORDER, "VAE", meta["vae"]))
    ordered = settings[:at] + model + settings[at:] + [(99, "Backend", meta["backend"])]
    lines.append(", ".join(f"{label}: {quote(text)}" for _, label, text in ordered))
    return "\n".join(lines)


_MODEL_ORDER = 5  # A1111 writes the model after Size
_USER_COMMENT = 0x9286  # in the Exif IFD
_EXIF_IFD = 0x8769
_UNICODE = b"UNICODE\0"  # EXIF's character-code prefix; A1111 writes UTF-16 big-endian after it


def _save_png(image: Image.Image, buffer: io.BytesIO, meta: dict[str, Any], quality: int, compress_level: int) -> None:
    info = PngInfo()
    info.add_text("parameters", a1111_parameters(meta))
    info.add_itxt("genbatch", json.dumps(meta, ensure_ascii=False, default=str))
    image.save(buffer, "PNG", pnginfo=info, compress_level=compress_level)


def _exif_saver(pil_format: str) -> Callable[..., None]:
    def save(image: Image.Image, buffer: io.BytesIO, meta: dict[str, Any], quality: int, compress_level: int) -> None:
        exif = Image.Exif()
        # ImageDescription is ASCII: the JSON record keeps every other character as a \u escape.
        exif[0x010E] = json.dumps(meta, ensure_ascii=True, default=str)
        exif[0x0131] = "genbatch"  # Software
        # UserComment: the A1111 parameters, where A1111 and the tools that read it look.
        exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = _UNICODE + a1111_parameters(meta).encode("utf-16-be")
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
