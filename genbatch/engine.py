"""Engines run the pending batches of a plan on a backend and report every job to a sink.

The runner plans; an engine decides where batches run. :class:`LocalEngine` runs them in
this process: it loads each model once, generates batch by batch, and hands the pixels to a
pool of writer threads, which write each image into ``--out`` and then report it to the
:class:`~genbatch.sink.ResultSink` (the one writer of the ledger). An engine that runs on
other processes or machines does the same with workers that write their own images and
send back small :class:`~genbatch.writer.WrittenImage` records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .backends import BackendOptions, GeneratedImage, LoadedModel, get_backend
from .batch_size import BatchSizer, is_out_of_memory, size_key
from .errors import ModelError
from .model_lookup import ModelRef
from .plan import Job
from .safe_write import unwritable
from .sink import BatchFacts, ResultSink, image_metadata
from .writer import Encoding, ImageWriter, WrittenImage


@dataclass(frozen=True)
class EngineWork:
    """Everything an engine needs to run a plan's pending batches."""

    out: Path
    batches: list[list[Job]]
    backend: str
    options: BackendOptions
    encoding: Encoding
    writers: int  # image encoding threads
    sizer: BatchSizer  # how many jobs each pipeline call takes


@dataclass
class EngineReport:
    generation_seconds: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)  # what the loaded models said of themselves
    workers: list[dict[str, Any]] = field(default_factory=list)  # per worker: device, images, seconds (Ray)


class Engine(Protocol):
    name: str

    def run(
        self, work: EngineWork, sink: ResultSink, stop_requested: Callable[[], bool], say: Callable[[str], None]
    ) -> EngineReport:
        """Run ``work.batches`` until done or ``stop_requested()``; report every job that ran
        to ``sink``. Raises :class:`ModelError` when the run's only model cannot load."""


def generate_batch(
    loaded: LoadedModel, batch: list[Job], sizer: BatchSizer, key: str
) -> list[tuple[GeneratedImage, int, float]]:
    """Each job's image, with the size of the batch it ran in and its seconds per image.

    A batch that runs out of memory is halved and run again (the size that fit is remembered);
    a batch that fails otherwise is retried one job at a time, so one bad job fails alone,
    with its reason."""
    began = time.monotonic()
    try:
        images = loaded.generate(batch)
    except Exception as err:
        # Only the facts leave this block: the exception's traceback holds the failed call's
        # frames, and with them its tensors on the accelerator, until the block ends.
        out_of_memory, error = is_out_of_memory(err), f"{type(err).__name__}: {err}"
    else:
        seconds = time.monotonic() - began
        sizer.ran(key, len(batch), seconds)
        return [(image, len(batch), seconds / len(batch)) for image in images]
    return _after_failure(loaded, batch, sizer, key, out_of_memory, error)


def _after_failure(
    loaded: LoadedModel, batch: list[Job], sizer: BatchSizer, key: str, out_of_memory: bool, error: str
) -> list[tuple[GeneratedImage, int, float]]:
    """A failed batch's jobs: halved and run again after running out of memory, one at a
    time after any other error; a single job fails with its reason."""
    release = getattr(loaded, "release_memory", None)
    if release is not None:
        release()  # the failed call's memory is free now, and goes back to the device
    if len(batch) == 1:
        first = batch[0]
        reason = f"out of memory: one image of {first.width}x{first.height} does not fit ({error})"
        return [(GeneratedImage(first, None, reason if out_of_memory else error), 1, 0.0)]
    if not out_of_memory:
        return [r for job in batch for r in generate_batch(loaded, [job], sizer, key)]
    sizer.out_of_memory(key, len(batch))
    results, start = [], 0
    while start < len(batch):  # in the sizes now known to fit, which may shrink again
        chunk = batch[start : start + sizer.next_size(key)]
        start += len(chunk)
        results += generate_batch(loaded, chunk, sizer, key)
    return results


def batch_size_key(job: Job, options: BackendOptions) -> str:
    return size_key(job.model.fingerprint, job.width, job.height, options.device, options.dtype)


def by_group(batches: list[list[Job]]) -> Iterator[list[Job]]:
    """The jobs of consecutive planned batches that share a group (the engine sizes its own
    batches from them)."""
    current: list[Job] = []
    for batch in batches:
        if current and batch[0].group != current[0].group:
            yield current
            current = []
        current.extend(batch)
    if current:
        yield current


def _model_id(model: ModelRef) -> str:
    return model.fingerprint + str(model.path)


def by_model(batches: list[list[Job]]) -> Iterator[tuple[ModelRef, list[list[Job]]]]:
    """Consecutive batches of the same model (the planner puts each model's batches together)."""
    current: list[list[Job]] = []
    for batch in batches:
        if current and _model_id(batch[0].model) != _model_id(current[0][0].model):
            yield current[0][0].model, current
            current = []
        current.append(batch)
    if current:
        yield current[0][0].model, current


class LocalEngine:
    """Batches in this process, one model loaded at a time, images written by a thread pool."""

    name = "local"

    def run(
        self, work: EngineWork, sink: ResultSink, stop_requested: Callable[[], bool], say: Callable[[str], None]
    ) -> EngineReport:
        report = EngineReport()
        backend = get_backend(work.backend)
        groups = list(by_model(work.batches))
        device = work.options.device

        def stopping() -> bool:
            return stop_requested() or sink.fatal is not None

        writer = _image_writer(work, sink)
        try:
            for model, batches in groups:
                if stopping():
                    break
                say(f"loading {model.name} ({model.path}) on {work.backend}/{device}/{work.options.dtype}")
                try:
                    loaded = backend.load(model, options=work.options)
                except ModelError as err:
                    if len(groups) == 1:
                        raise
                    # a run of several models goes on without this one; its jobs fail with the reason
                    say(f"error: {err}")
                    for batch in batches:
                        for job in batch:
                            sink.failed(job, BatchFacts(len(batch), 0.0, device), f"the model did not load: {err}")
                    continue
                facts = loaded.describe()
                report.facts.update(facts)
                try:
                    _generate(loaded, facts, batches, work, sink, writer, report, stopping)
                finally:
                    loaded.close()
        finally:
            writer.close()
            sink.checkpoint()
        return report


def _image_writer(work: EngineWork, sink: ResultSink) -> ImageWriter:
    """The thread pool that writes the images, reporting each to ``sink`` once on disk."""

    def written(item: tuple[Job, BatchFacts, dict[str, Any]], image: WrittenImage) -> None:
        sink.done(*item[:2], image, record=item[2])

    def not_written(item: tuple[Job, BatchFacts, dict[str, Any]], error: Exception) -> None:
        fatal = unwritable(error, work.out)
        if fatal is not None:
            sink.stop(fatal)
        else:
            sink.failed(item[0], item[1], f"writing the image failed: {type(error).__name__}: {error}")

    return ImageWriter(work.out, work.encoding, workers=work.writers, on_written=written, on_error=not_written)


def _generate(
    loaded: LoadedModel,
    facts: dict[str, Any],
    batches: list[list[Job]],
    work: EngineWork,
    sink: ResultSink,
    writer: ImageWriter,
    report: EngineReport,
    stopping: Callable[[], bool],
) -> None:
    """One model's batches, in plan order, each sized by the run's sizer; images go to the
    writer, failures to the sink."""
    device = work.options.device
    for jobs in by_group(batches):
        key = batch_size_key(jobs[0], work.options)
        start = 0
        while start < len(jobs) and not stopping():
            batch = jobs[start : start + work.sizer.next_size(key)]
            start += len(batch)
            began = time.monotonic()
            for result, size, seconds in generate_batch(loaded, batch, work.sizer, key):
                batch_facts = BatchFacts(size, seconds, device, facts)
                if result.pixels is None:
                    sink.failed(result.job, batch_facts, result.error or "no image")
                else:
                    record = sink.record(result.job, batch_facts)
                    item = (result.job, batch_facts, record)
                    writer.submit(item, result.pixels, result.job.file, image_metadata(record), result.job.key)
            report.generation_seconds += time.monotonic() - began
            if device == "cpu":
                # The model and the writers take turns: torch's threads wait for each other at
                # every operation, so one of them pre-empted by a writer stalls them all (the
                # model ran ~20 % slower on 2 cores beside its writers); the writers then have
                # every core for the batch. An accelerator's model runs beside them.
                writer.wait_idle()
            sink.checkpoint_soon()  # what is recorded so far survives a crash, made off this thread


def _ray_engine(**settings: Any) -> Engine:
    from .ray_engine import RayEngine  # imports Ray only when asked for

    return RayEngine(**settings)


# Each takes the run's ``RunOptions.engine_options`` as keyword arguments.
ENGINES: dict[str, Callable[..., Engine]] = {"local": LocalEngine, "ray": _ray_engine}
