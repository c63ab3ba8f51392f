"""Engines run the pending batches of a plan on a backend and report every job to a sink.

The runner plans; an engine decides where batches run. :class:`LocalEngine` runs them in
this process: it loads each model once, generates batch by batch, and hands the pixels to a
pool of writer threads, which write each image into ``--out`` and then report it to the
:class:`~genbatch.engine.sink.ResultSink` (the one writer of the ledger). An engine that runs on
other processes or machines does the same with workers that write their own images and
send back small :class:`~genbatch.engine.writer.WrittenImage` records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from genbatch.backends import LoadedModel, get_backend
from genbatch.engine.base import (
    EngineReport,
    EngineWork,
    batch_size_key,
    by_model,
    generate_batch,
    model_did_not_load,
    sized_batches,
)
from genbatch.engine.sink import BatchFacts, ResultSink, image_metadata
from genbatch.engine.writer import ImageWriter, WriteFailure, WrittenImage
from genbatch.errors import ModelError
from genbatch.jobs import Job
from genbatch.report.input_thumbnails import job_inputs


class LocalEngine:
    """Batches in this process, one model loaded at a time, images written by a thread pool."""

    name = "local"

    def run(
        self, work: EngineWork, sink: ResultSink, stop_requested: Callable[[], bool], say: Callable[[str], None]
    ) -> EngineReport:
        report = EngineReport()
        backend = get_backend(work.backend)
        groups = list(by_model(work.groups))
        device = work.options.device

        def stopping() -> bool:
            return stop_requested() or sink.fatal is not None

        writer = _image_writer(work, sink)
        try:
            for model, model_groups in groups:
                if stopping():
                    break
                say(f"loading {model.name} ({model.path}) on {work.backend}/{device}/{work.options.dtype}")
                try:
                    loaded = backend.load(model, options=work.options)
                except ModelError as err:
                    model_did_not_load(
                        str(err), model_groups, device, sink.failed, only_model=len(groups) == 1, say=say
                    )
                    continue
                facts = loaded.describe()
                report.facts.update(facts)
                try:
                    _generate(loaded, facts, model_groups, work, sink, writer, report, stopping)
                    report.facts.update(loaded.describe())  # again: what generating changed (a GPU's memory peak)
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

    def not_written(item: tuple[Job, BatchFacts, dict[str, Any]], failure: WriteFailure) -> None:
        if failure.fatal is not None:
            sink.stop(failure.fatal)
        else:
            sink.failed(item[0], item[1], failure.message)

    return ImageWriter(work.out, work.encoding, workers=work.writers, on_written=written, on_error=not_written)


def _generate(
    loaded: LoadedModel,
    facts: dict[str, Any],
    groups: list[list[Job]],
    work: EngineWork,
    sink: ResultSink,
    writer: ImageWriter,
    report: EngineReport,
    stopping: Callable[[], bool],
) -> None:
    """One model's groups, in plan order, in batches sized by the run's sizer; images go to the
    writer, failures to the sink."""
    device = work.options.device
    for jobs in groups:
        key = batch_size_key(jobs[0], work.options)
        for batch in sized_batches(jobs, work.sizer, key, stopping):
            began = time.monotonic()
            for result, size, seconds in generate_batch(loaded, batch, work.sizer, key):
                batch_facts = BatchFacts(size, seconds, device, facts)
                if result.pixels is None:
                    sink.failed(result.job, batch_facts, result.error or "no image")
                else:
                    job = result.job
                    record = sink.record(job, batch_facts)
                    meta, inputs = image_metadata(record), job_inputs(job.values)
                    writer.submit((job, batch_facts, record), result.pixels, job.file, meta, job.key, inputs)
            report.generation_seconds += time.monotonic() - began
            if device == "cpu":
                # The model and the writers take turns: torch's threads wait for each other at
                # every operation, so one of them pre-empted by a writer stalls them all (the
                # model ran ~20 % slower on 2 cores beside its writers); the writers then have
                # every core for the batch. An accelerator's model runs beside them.
                writer.wait_idle()
            sink.checkpoint_soon()  # what is recorded so far survives a crash, made off this thread
