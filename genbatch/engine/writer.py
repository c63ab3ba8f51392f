"""Encode images and write them atomically into the output folder, in a pool beside the generator.

Encoding (PNG at level 6 is ~80 ms for 512x512) must never run on the thread that feeds
the accelerator, so it runs here, in threads: Pillow releases the GIL while compressing.
A file appears under its final name only complete (:mod:`genbatch.safe_write`), and only
then is the job reported written, so its ledger line follows its file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genbatch.bucket import open_bucket
from genbatch.manifest.a1111 import parameters_text
from genbatch.report.input_thumbnails import InputThumbnailWriter
from genbatch.report.thumbnails import write_report_thumbnail
from genbatch.safe_write import OutputUnwritableError, unwritable, write_atomic
from genbatch.store.image_formats import encode


@dataclass(frozen=True)
class Encoding:
    """How images are encoded: format (png, webp, jpg) and its settings, and whether the
    report's thumbnail of each is made from its pixels as it is written."""

    fmt: str = "png"
    quality: int = 95
    compress_level: int = 6
    thumbnails: bool = False


@dataclass(frozen=True)
class WrittenImage:
    """What the ledger needs to know of a written image: it is small, so a remote worker can
    send it back to the one process that writes the ledger."""

    file: str
    bytes: int
    sha256: str


def write_image(
    out: Path | str, relpath: str, pixels: np.ndarray, meta: dict[str, Any], encoding: Encoding
) -> WrittenImage:
    """Encode ``pixels`` with ``meta`` embedded and write them to ``out/relpath`` atomically
    (``out`` a str: the URL of a prefix in object storage, one PUT)."""
    data = encode(
        pixels,
        encoding.fmt,
        meta,
        parameters_text(meta),
        quality=encoding.quality,
        compress_level=encoding.compress_level,
    )
    if isinstance(out, str):
        open_bucket(out).put(relpath, data)
    else:
        write_atomic(Path(out) / relpath, data, root=out)
    return WrittenImage(relpath, len(data), sha256_bytes(data))


@dataclass(frozen=True)
class WriteFailure:
    """Why an image was not written: ``message`` for its ledger line; ``fatal`` when the output
    folder takes no more writes (a full or read-only disk), which stops the run."""

    message: str
    fatal: OutputUnwritableError | None = None


def write_classified(
    out: Path | str, relpath: str, pixels: np.ndarray, meta: dict[str, Any], encoding: Encoding
) -> WrittenImage | WriteFailure:
    """:func:`write_image`, its error classified: a bad name fails one image, a full disk the run.
    The local engine's writer threads and each Ray worker write through here."""
    try:
        return write_image(out, relpath, pixels, meta, encoding)
    except Exception as err:
        fatal = unwritable(err, out)
        return WriteFailure(str(fatal) if fatal else f"writing the image failed: {type(err).__name__}: {err}", fatal)


# Pixels waiting to be encoded, at most: two batches of 16 images of 1024x1024 (48 MiB
# each) are handed over without waiting, so the generator starts its next batch at once; a
# generator that outruns the encoders for long waits instead of filling the memory, and an
# interrupted run has little left to write (~5 s of PNG encoding on 2 cores).
MAX_PENDING_BYTES = 128 * 2**20


class ImageWriter:
    """A pool with a bound in bytes: ``submit`` blocks while ``max_pending_bytes`` of pixels
    wait (one image is always taken). ``on_written(item, written)`` or ``on_error(item,
    failure)`` (a :class:`WriteFailure`) is called from the pool for every image."""

    def __init__(
        self,
        out: Path | str,
        encoding: Encoding,
        *,
        workers: int,
        on_written: Callable[[Any, WrittenImage], None],
        on_error: Callable[[Any, WriteFailure], None],
        max_pending_bytes: int = MAX_PENDING_BYTES,
    ):
        self.out, self.encoding = out, encoding
        self.on_written, self.on_error = on_written, on_error
        self._pool = writer_pool(workers)
        self._inputs = InputThumbnailWriter(out)  # the report's thumbnails of the rows' input images
        self._room = threading.Condition()
        self._pending, self._max_pending = 0, max_pending_bytes
        self._error: BaseException | None = None  # from on_written/on_error: raised by close()

    @property
    def pending_bytes(self) -> int:
        return self._pending

    def submit(
        self, item: Any, pixels: np.ndarray, relpath: str, meta: dict[str, Any], key: str, inputs: Sequence[Any] = ()
    ) -> None:
        """Write ``pixels`` to ``out/relpath`` (``key``: the job's, which names its thumbnail;
        ``inputs``: the files the job started from, whose thumbnails the report shows beside it)."""
        size = pixels.nbytes
        with self._room:
            self._room.wait_for(lambda: self._pending == 0 or self._pending + size <= self._max_pending)
            self._pending += size
        future = self._pool.submit(self._write, item, pixels, relpath, meta, key, inputs)
        future.add_done_callback(lambda done: self._finished(done, size))

    def wait_idle(self) -> None:
        """Wait until every image submitted so far is written (the pool stays open)."""
        with self._room:
            self._room.wait_for(lambda: self._pending == 0)

    def _finished(self, future: Future, size: int) -> None:
        with self._room:
            if future.exception() is not None and self._error is None:
                self._error = future.exception()
            self._pending -= size
            self._room.notify_all()

    def _write(
        self, item: Any, pixels: np.ndarray, relpath: str, meta: dict[str, Any], key: str, inputs: Sequence[Any]
    ) -> None:
        written = write_classified(self.out, relpath, pixels, meta, self.encoding)
        if isinstance(written, WriteFailure):
            self.on_error(item, written)
            return
        self.on_written(item, written)
        if self.encoding.thumbnails:  # after the ledger line: a thumbnail never delays a record
            write_report_thumbnail(self.out, key, relpath, pixels)
            self._inputs.write(inputs)  # each input file's once

    def close(self) -> None:
        """Wait for every submitted image to be written (and its ledger line appended)."""
        self._pool.shutdown(wait=True)
        if self._error is not None:
            raise self._error


def writer_pool(workers: int) -> ThreadPoolExecutor:
    """Threads that encode and write images, at the lowest CPU priority (:func:`behind_the_model`)."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="genbatch-write", initializer=behind_the_model)


def behind_the_model() -> None:
    """Give the calling thread the lowest CPU priority (on Linux a thread has its own nice
    value), so that where the cores are few the thread that drives the model always runs
    first and the writers take what is left. Measured on 2 cores with torch on both, the
    model's calls were 15-20 % slower with the writers at the same priority; where cores are
    free (a GPU machine), nothing changes. On the CPU the engine also has the model and the
    writers take turns (:func:`genbatch.engine.local._generate`)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
