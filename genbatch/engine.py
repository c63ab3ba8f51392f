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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from .backends import BackendOptions, GeneratedImage, LoadedModel, get_backend
from .errors import ModelError
from .models import ModelRef
from .plan import Job
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


@dataclass
class EngineReport:
    generation_seconds: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)  # what the loaded models said of themselves
    workers: list[dict[str, Any]] = field(default_factory=list)  # per worker: device, images, seconds (Ray)


class Engine(Protocol):
    name: str

    def run(self, work: EngineWork, sink: ResultSink, stop_requested: Callable[[], bool],
            say: Callable[[str], None]) -> EngineReport:
        """Run ``work.batches`` until done or ``stop_requested()``; report every job that ran
        to ``sink``. Raises :class:`ModelError` when the run's only model cannot load."""


def generate_or_retry_alone(loaded: LoadedModel, batch: list[Job]) -> list[GeneratedImage]:
    """A batch's images; if the batch fails as a whole, each job is retried alone, so one bad
    job (or an out-of-memory batch) fails alone, with its reason."""
    try:
        return loaded.generate(batch)
    except Exception as err:
        if len(batch) == 1:
            return [GeneratedImage(batch[0], None, f"{type(err).__name__}: {err}")]
        release = getattr(loaded, "release_memory", None)
        if release is not None:
            release()
        return [image for job in batch for image in generate_or_retry_alone(loaded, [job])]


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

    def run(self, work: EngineWork, sink: ResultSink, stop_requested: Callable[[], bool],
            say: Callable[[str], None]) -> EngineReport:
        report = EngineReport()
        backend = get_backend(work.backend)
        groups = list(by_model(work.batches))
        device = work.options.device

        def written(item: tuple[Job, BatchFacts], image: WrittenImage) -> None:
            sink.done(item[0], item[1], image)

        def not_written(item: tuple[Job, BatchFacts], error: str) -> None:
            sink.failed(item[0], item[1], error)

        writer = ImageWriter(work.out, work.encoding, workers=work.writers, on_written=written, on_error=not_written)
        try:
            for model, batches in groups:
                if stop_requested():
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
                    for batch in batches:
                        if stop_requested():
                            break
                        began = time.monotonic()
                        results = generate_or_retry_alone(loaded, batch)
                        seconds = time.monotonic() - began
                        report.generation_seconds += seconds
                        batch_facts = BatchFacts(len(batch), seconds / len(batch), device, facts)
                        for result in results:
                            item = (result.job, batch_facts)
                            if result.pixels is None:
                                sink.failed(result.job, batch_facts, result.error or "no image")
                            else:
                                meta = image_metadata(sink.record(result.job, batch_facts))
                                writer.submit(item, result.pixels, result.job.file, meta)
                finally:
                    loaded.close()
        finally:
            writer.close()
        return report


def _ray_engine(**settings: Any) -> Engine:
    from .ray_engine import RayEngine  # imports Ray only when asked for

    return RayEngine(**settings)


# Each takes the run's ``RunOptions.engine_options`` as keyword arguments.
ENGINES: dict[str, Callable[..., Engine]] = {"local": LocalEngine, "ray": _ray_engine}
