"""The image writers beside the generator: a batch is handed over without waiting, memory
stays bounded, each image's report thumbnail is made from its pixels as it is written, and
the flush that makes a run crash-safe never holds up the model."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest
from helpers import FAST, genbatch, images, ledger
from PIL import Image

from genbatch.backends import base
from genbatch.backends.base import GeneratedImage
from genbatch.engine import writer
from genbatch.engine.writer import Encoding, ImageWriter, WrittenImage, sha256_bytes
from genbatch.plan.planner import PlanOptions
from genbatch.report import thumbnails
from genbatch.report.thumbnails import THUMB_SIZE, THUMBS_DIR, thumb_name, thumbnail_of
from genbatch.runner.options import InputOptions, OutputOptions, RunOptions
from genbatch.runner.run import run_manifest
from genbatch.safe_write import write_atomic
from genbatch.store import ledger as ledger_module

PIXELS = np.zeros((64, 64, 3), np.uint8)


@pytest.fixture
def held_encoder(monkeypatch):
    """Image writing that waits until the test lets it go (then writes the raw pixels)."""
    release = threading.Event()

    def held(out, relpath, pixels, meta, encoding):
        release.wait(10)
        data = pixels.tobytes()
        write_atomic(out / relpath, data, root=out)
        return WrittenImage(relpath, len(data), sha256_bytes(data))

    monkeypatch.setattr(writer, "write_image", held)
    yield release
    release.set()


def _writer(tmp_path, written: list, **kwargs) -> ImageWriter:
    return ImageWriter(
        tmp_path, Encoding(), workers=1, on_written=lambda item, w: written.append(item), on_error=print, **kwargs
    )


def test_a_whole_batch_is_taken_while_the_encoder_is_busy(tmp_path, held_encoder):
    written: list = []
    pool = _writer(tmp_path, written)
    began = time.monotonic()
    for i in range(32):  # far more than the encoding threads: the generator goes on at once
        pool.submit(i, PIXELS, f"{i}.png", {}, key=f"k{i}")
    assert time.monotonic() - began < 1.0 and pool.pending_bytes == 32 * PIXELS.nbytes
    held_encoder.set()
    pool.close()
    assert sorted(written) == list(range(32)) and pool.pending_bytes == 0
    assert len(list(tmp_path.glob("*.png"))) == 32


def test_a_generator_that_outruns_the_encoders_waits_for_room(tmp_path, held_encoder):
    written: list = []
    pool = _writer(tmp_path, written, max_pending_bytes=2 * PIXELS.nbytes)
    pool.submit(0, PIXELS, "0.png", {}, key="k0")
    pool.submit(1, PIXELS, "1.png", {}, key="k1")
    third = threading.Thread(target=pool.submit, args=(2, PIXELS, "2.png", {}), kwargs={"key": "k2"})
    third.start()
    third.join(0.3)
    assert third.is_alive()  # no room: the third image waits
    held_encoder.set()
    third.join(5)
    assert not third.is_alive()
    pool.close()
    assert sorted(written) == [0, 1, 2]


def test_one_image_larger_than_the_bound_is_still_written(tmp_path, held_encoder):
    held_encoder.set()
    written: list = []
    pool = _writer(tmp_path, written, max_pending_bytes=10)
    pool.submit("big", PIXELS, "big.png", {}, key="k")
    pool.close()
    assert written == ["big"]


def test_a_run_makes_each_report_thumbnail_from_the_pixels_it_writes(tmp_path, monkeypatch):
    read_back: list = []
    real = thumbnails.thumbnail
    monkeypatch.setattr(thumbnails, "thumbnail", lambda path, size: read_back.append(path) or real(path, size))
    manifest = tmp_path / "prompts.txt"
    manifest.write_text("a red circle\na blue square\na green star\n", encoding="utf-8")
    out = tmp_path / "out"
    assert genbatch("run", manifest, "--out", out, *FAST).exit_code == 0
    assert read_back == []  # the end-of-run report found every thumbnail fresh: no image decoded
    for record in ledger(out):
        thumb = out / THUMBS_DIR / thumb_name(record)
        assert thumb.stat().st_mtime_ns >= (out / record["file"]).stat().st_mtime_ns
        with Image.open(thumb) as picture:
            assert picture.format == "WEBP" and picture.size == (64, 64)
    assert len(list((out / THUMBS_DIR).glob("*.webp"))) == len(images(out)) == 3
    assert f"{THUMBS_DIR}/{thumb_name(ledger(out)[0])}" in (out / "report.html").read_text(encoding="utf-8")


def test_a_run_without_the_html_report_makes_no_thumbnails(tmp_path):
    manifest = tmp_path / "prompts.txt"
    manifest.write_text("a red circle\n", encoding="utf-8")
    out = tmp_path / "out"
    options = RunOptions(
        InputOptions(str(manifest), overrides={"steps": "2"}),
        OutputOptions(out, html_report=False),
        PlanOptions(model="tiny-random"),
        quiet=True,
    )
    assert run_manifest(options).exit_code == 0
    assert len(images(out)) == 1 and not (out / THUMBS_DIR).exists()


def test_the_thumbnail_of_pixels_is_the_one_the_report_makes_of_the_file(tmp_path):
    pixels = np.random.default_rng(3).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "image.png")
    from_file = thumbnails.thumbnail(tmp_path / "image.png", THUMB_SIZE)
    assert from_file is not None and from_file.size == (256, 154)
    np.testing.assert_array_equal(np.asarray(thumbnail_of(pixels)), np.asarray(from_file))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's")
def test_the_writers_run_behind_the_thread_that_drives_the_model(tmp_path, held_encoder):
    held_encoder.set()
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    priorities: list = []
    pool = ImageWriter(
        tmp_path,
        Encoding(),
        workers=2,
        on_written=lambda item, w: priorities.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())),
        on_error=print,
    )
    for i in range(4):
        pool.submit(i, PIXELS, f"{i}.png", {}, key=f"k{i}")
    pool.close()
    assert priorities == [19] * 4
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own  # this thread is untouched


class SlowModel:
    """A stand-in model that takes 0.15 s a batch and notes which thread calls it, and when."""

    backend, device, dtype = "slow", "cpu", "fp32"
    calls: list[tuple[int, float, float]] = []  # (thread, began, ended)

    def describe(self):
        return {}

    def generate(self, jobs):
        began = time.monotonic()
        time.sleep(0.15)
        SlowModel.calls.append((threading.get_ident(), began, time.monotonic()))
        return [GeneratedImage(job, PIXELS.copy()) for job in jobs]

    def close(self):
        pass


class SlowBackend:
    name = "slow"

    def resolve(self, device, dtype):
        return "cpu", "fp32"

    def load(self, model, options):
        return SlowModel()


def test_the_crash_safety_flush_never_holds_up_the_model(tmp_path, monkeypatch):
    """The flush that makes a run survive a machine crash runs beside the model: a disk that
    takes 0.5 s a flush delays no batch, and the run's last flush comes after its last line."""
    monkeypatch.setitem(base._REGISTERED, "slow", f"{__name__}:SlowBackend")
    SlowModel.calls = []
    out = tmp_path / "out"
    flushes: list[tuple[int, int]] = []  # (thread, ledger lines on disk then)

    def slow_disk(folder):
        lines = len((out / "genbatch.jsonl").read_text().splitlines())
        time.sleep(0.5)
        flushes.append((threading.get_ident(), lines))

    monkeypatch.setattr(ledger_module, "sync_filesystem", slow_disk)
    manifest = tmp_path / "p.txt"
    manifest.write_text("".join(f"prompt {i}\n" for i in range(12)))
    result = genbatch("run", manifest, "--out", out, "--backend", "slow", "--model", "shapes", "-b", "1", "--quiet")
    assert result.exit_code == 0, result.output
    (model_thread,) = {thread for thread, _, _ in SlowModel.calls}
    gaps = [b[1] - a[2] for a, b in zip(SlowModel.calls, SlowModel.calls[1:])]
    assert len(SlowModel.calls) == 12 and max(gaps) < 0.25  # never a 0.5 s wait between batches
    beside = [lines for thread, lines in flushes[:-1] if thread != model_thread]
    assert beside and len(beside) == len(flushes) - 1  # during the run: all on the flush thread
    assert flushes[-1][1] == 12 == len(ledger(out))  # the last: after every line


@pytest.mark.parametrize("device, beside", [("cpu", False), ("cuda", True)])
def test_on_the_cpu_the_model_and_the_writers_take_turns(device, beside, tmp_path, monkeypatch):
    """On the CPU the model has every core while it runs, and the writers write between batches;
    beside an accelerator they write while the next batch generates."""
    monkeypatch.setitem(base._REGISTERED, "slow", f"{__name__}:SlowBackend")
    monkeypatch.setattr(SlowBackend, "resolve", lambda self, d, t: (device, "fp32"))
    SlowModel.calls = []
    writes: list[tuple[float, float]] = []
    real = writer.write_image

    def slow_write(*args):
        began = time.monotonic()
        time.sleep(0.05)
        written = real(*args)
        writes.append((began, time.monotonic()))
        return written

    monkeypatch.setattr(writer, "write_image", slow_write)
    manifest = tmp_path / "p.txt"
    manifest.write_text("".join(f"prompt {i}\n" for i in range(12)))
    out = tmp_path / "out"
    result = genbatch("run", manifest, "--out", out, "--backend", "slow", "--model", "shapes", "-b", "4", "--quiet")
    assert result.exit_code == 0, result.output
    assert len(writes) == 12 and len(images(out)) == 12
    overlapping = [w for w in writes if any(w[0] < ended and began < w[1] for _, began, ended in SlowModel.calls)]
    assert bool(overlapping) is beside
