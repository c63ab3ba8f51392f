"""Encode images and write them atomically, in a pool beside the generator.

Encoding (PNG at level 6 is ~80 ms for 512x512) must never run on the thread that feeds
the accelerator, so it runs here, in threads: Pillow releases the GIL while compressing.
A file appears under its final name only complete (temp file + ``os.replace``), and its
ledger line is appended only after that.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

TEMP_MARKER = ".tmp-"


def a1111_parameters(meta: dict[str, Any]) -> str:
    """The ``parameters`` text AUTOMATIC1111-style tools read back from a PNG."""
    lines = [meta["prompt"]]
    if meta.get("negative_prompt"):
        lines.append(f"Negative prompt: {meta['negative_prompt']}")
    lines.append(
        f"Steps: {meta['steps']}, Sampler: {meta['scheduler']}, CFG scale: {meta['guidance_scale']:g}, "
        f"Seed: {meta['seed']}, Size: {meta['width']}x{meta['height']}, Model hash: {meta['model_fingerprint'][:10]}, "
        f"Model: {meta['model']}, Backend: {meta['backend']}"
    )
    return "\n".join(lines)


def encode(pixels: np.ndarray, fmt: str, meta: dict[str, Any], *, quality: int, compress_level: int) -> bytes:
    image = Image.fromarray(pixels, "RGB")
    buffer = io.BytesIO()
    description = json.dumps(meta, ensure_ascii=False, default=str)
    if fmt == "png":
        info = PngInfo()
        info.add_text("parameters", a1111_parameters(meta))
        info.add_itxt("genbatch", description)
        image.save(buffer, "PNG", pnginfo=info, compress_level=compress_level)
    else:
        exif = Image.Exif()
        exif[0x010E] = description  # ImageDescription
        exif[0x0131] = "genbatch"  # Software
        image.save(buffer, "WEBP" if fmt == "webp" else "JPEG", quality=quality, exif=exif.tobytes())
    return buffer.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}{TEMP_MARKER}{uuid.uuid4().hex[:8]}")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def remove_stale_temp_files(out: Path) -> int:
    """Temp files a killed run left behind (only safe while holding the out-dir lock)."""
    removed = 0
    for temp in Path(out).rglob(f".*{TEMP_MARKER}*"):
        if temp.is_file():
            temp.unlink(missing_ok=True)
            removed += 1
    return removed


class ImageWriter:
    """A bounded pool: ``submit`` blocks when ``max_pending`` images wait, so a fast
    generator cannot pile decoded images up in memory."""

    def __init__(self, out: Path, *, fmt: str, quality: int, compress_level: int, workers: int,
                 on_written: Callable[[Any, Path, bytes], None], on_error: Callable[[Any, str], None]):
        self.out, self.fmt, self.quality, self.compress_level = Path(out), fmt, quality, compress_level
        self.on_written, self.on_error = on_written, on_error
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="genbatch-write")
        self._slots = threading.BoundedSemaphore(workers * 4)
        self._futures: list[Future] = []

    def submit(self, item: Any, pixels: np.ndarray, relpath: str, meta: dict[str, Any]) -> None:
        self._slots.acquire()
        future = self._pool.submit(self._write, item, pixels, relpath, meta)
        future.add_done_callback(lambda _: self._slots.release())
        self._futures.append(future)

    def _write(self, item: Any, pixels: np.ndarray, relpath: str, meta: dict[str, Any]) -> None:
        try:
            data = encode(pixels, self.fmt, meta, quality=self.quality, compress_level=self.compress_level)
            path = self.out / relpath
            write_atomic(path, data)
        except Exception as err:  # a full disk or bad path fails this image, not the run
            self.on_error(item, f"writing the image failed: {type(err).__name__}: {err}")
            return
        self.on_written(item, path, data)

    def close(self) -> None:
        """Wait for every submitted image to be written (and its ledger line appended)."""
        self._pool.shutdown(wait=True)
        for future in self._futures:
            future.result()
        self._futures.clear()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
