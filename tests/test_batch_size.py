"""Batches that do not fit are halved, the size that fit is remembered, and --batch-size auto
finds the largest batch that is still faster per image. A stand-in backend plays the GPU:
it runs out of memory above a batch size and takes time that falls per image with size (on the
engine's clock, which only the stand-in moves: a busy machine cannot change what auto sees)."""

from __future__ import annotations

import json
import time
import weakref

import numpy as np
import pytest
from helpers import genbatch, images, ledger, pixels

from genbatch.backends import base
from genbatch.engine import base as engine_base
from genbatch.engine.batch_size import is_out_of_memory

CALLS: list[int] = []  # the size of every generate() call, in order
LIMIT = {"fits": 3}
FAILED_CALLS: list[weakref.ref] = []  # what each failed call held, as long as something keeps it
HELD_AT_CALL: list[int] = []  # how much of it was still held at each call


class EngineClock:
    """The clock the engine times each batch with (``time.monotonic`` in genbatch.engine.base);
    it moves only when the stand-in model works, by the time the model says a batch takes.
    Real sleeps were timed with the machine's load in them: a batch of 4 delayed 30 ms by a
    busy CPU looked slower per image than one of 2, and auto stopped at 2."""

    now = 1000.0

    def __getattr__(self, name):
        return getattr(time, name)

    def monotonic(self) -> float:
        return self.now


CLOCK = EngineClock()


class Activations:
    """Stands for the tensors a failed call leaves in its frames."""


class OutOfMemoryError(RuntimeError):
    """As torch.cuda.OutOfMemoryError is named."""


class FakeGpuModel:
    backend, device, dtype = "fakegpu", "fake-gpu", "fp16"

    def describe(self):
        return {}

    def generate(self, jobs):
        CALLS.append(len(jobs))
        HELD_AT_CALL.append(sum(ref() is not None for ref in FAILED_CALLS))
        if len(jobs) > LIMIT["fits"]:
            activations = Activations()
            FAILED_CALLS.append(weakref.ref(activations))
            raise OutOfMemoryError(f"CUDA out of memory. Tried to allocate {len(jobs)} GiB")
        CLOCK.now += 0.03 + 0.001 * len(jobs)  # per image: falls steeply with the batch size
        results = []
        for job in jobs:  # pixels from the seed alone, as the seed contract makes them
            value = np.random.default_rng(job.seed % 2**32).integers(0, 256, (job.height, job.width, 3), np.uint8)
            results.append(base.GeneratedImage(job, value))
        return results

    def close(self):
        pass


class FakeGpuBackend:
    name = "fakegpu"

    def resolve(self, device, dtype):
        return "fake-gpu", "fp16"

    def load(self, model, options):
        return FakeGpuModel()


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path):
    monkeypatch.setitem(base._REGISTERED, "fakegpu", f"{__name__}:FakeGpuBackend")
    monkeypatch.setattr(engine_base, "time", CLOCK)
    monkeypatch.setenv("GENBATCH_HOME", str(tmp_path / "home"))  # its own remembered sizes
    CALLS.clear()
    FAILED_CALLS.clear()
    HELD_AT_CALL.clear()
    LIMIT["fits"] = 3
    manifest = tmp_path / "p.txt"
    manifest.write_text("".join(f"prompt {i}\n" for i in range(10)))
    return manifest


def run(manifest, out, *args):
    result = genbatch(
        "run", manifest, "--out", out, "--backend", "fakegpu", "--model", "shapes", "--quiet", "--json", *args
    )
    return result, json.loads(result.stdout)


def test_a_batch_that_does_not_fit_is_halved_and_the_fit_remembered(fake_gpu, tmp_path):
    result, summary = run(fake_gpu, tmp_path / "a", "--batch-size", "8")
    assert result.exit_code == 0 and summary["counts"]["done"] == 10
    # 8 does not fit, nor 4; 2 does, and the rest of the run goes at 2.
    assert CALLS == [8, 4, 2, 2, 2, 2, 2]
    # Each retry starts with the failed calls' memory free: nothing (no traceback) keeps it.
    assert len(FAILED_CALLS) == 2 and HELD_AT_CALL == [0] * len(CALLS)
    assert sorted({r["batch_size"] for r in ledger(tmp_path / "a")}) == [2]
    assert list(summary["batch_sizes"]["used"].values()) == [2]

    # Same pixels as one at a time.
    _, alone = run(fake_gpu, tmp_path / "b", "--batch-size", "1")
    a = {r["seed"]: pixels(tmp_path / "a" / r["file"]) for r in ledger(tmp_path / "a")}
    b = {r["seed"]: pixels(tmp_path / "b" / r["file"]) for r in ledger(tmp_path / "b")}
    assert a.keys() == b.keys() and all(np.array_equal(a[s], b[s]) for s in a)

    # The next run starts at the size that fit: no out-of-memory call at all.
    CALLS.clear()
    result, _ = run(fake_gpu, tmp_path / "c", "--batch-size", "8")
    assert result.exit_code == 0 and CALLS == [2, 2, 2, 2, 2]


def test_a_job_is_lost_only_when_one_image_alone_does_not_fit(fake_gpu, tmp_path):
    LIMIT["fits"] = 0
    result, summary = run(fake_gpu, tmp_path / "out", "--batch-size", "2", "--limit", "2")
    assert result.exit_code == 1 and summary["counts"]["failed"] == 2
    assert all("out of memory: one image of" in f["error"] for f in summary["failures"])
    assert images(tmp_path / "out") == []


def test_auto_grows_the_batch_while_it_is_faster_and_remembers_the_answer(fake_gpu, tmp_path):
    LIMIT["fits"] = 4
    manifest = fake_gpu
    manifest.write_text("".join(f"prompt {i}\n" for i in range(20)))
    result, summary = run(manifest, tmp_path / "a")  # auto is the default on a GPU
    assert result.exit_code == 0 and summary["counts"]["done"] == 20 and summary["batch_size"] == "auto"
    # 1, 2, 4 run; 8 does not fit; the rest at 4.
    assert CALLS == [1, 2, 4, 8, 4, 4, 4, 1]
    state = json.loads((tmp_path / "home" / "batch-sizes.json").read_text())
    assert list(state.values()) == [{"auto": 4, "fits": 4}]
    CALLS.clear()
    run(manifest, tmp_path / "b", "--batch-size", "auto")
    assert CALLS == [4, 4, 4, 4, 4]


@pytest.mark.parametrize(
    "error, memory",
    [
        (OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"), True),
        (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"), True),
        (RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB)"), True),
        (
            RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer"),
            True,
        ),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x768 and 1024x320)"), False),
        (ValueError("the image is all black"), False),
    ],
)
def test_which_errors_halve_the_batch(error, memory):
    assert is_out_of_memory(error) is memory
