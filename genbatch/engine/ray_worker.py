"""The Ray engine's worker: an actor that holds one device, loads each model once, runs the
batches it is given (halving one that runs out of memory, as the local engine does), writes
their images into ``--out`` itself with the same atomic writes as the local engine, and
sends back only small records (:class:`~genbatch.engine.writer.WrittenImage` or a reason)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from genbatch.backends import BackendOptions, LoadedModel, get_backend
from genbatch.bucket import is_url
from genbatch.engine.base import batch_size_key, generate_batch, sized_batches
from genbatch.engine.batch_size import BatchSizer
from genbatch.engine.sink import BatchFacts, image_metadata, job_record
from genbatch.engine.writer import Encoding, WriteFailure, WrittenImage, write_classified, writer_pool
from genbatch.errors import ModelError
from genbatch.jobs import Job
from genbatch.pipelines.model_lookup import ModelRef
from genbatch.report.input_thumbnails import InputThumbnailWriter, job_inputs
from genbatch.report.thumbnails import write_report_thumbnail


class RayWorker:
    """Runs batches on one device. Two calls may run at once (``max_concurrency=2``): one
    generates while the other writes its images; generation itself is one at a time."""

    def __init__(
        self,
        backend: str,
        options: BackendOptions,
        out: str,
        encoding: Encoding,
        *,
        run_id: str,
        manifest: str,
        dtype: str,
        writers: int,
        cpu_threads: int | None,
        batch_size: int | None,
    ):
        import ray

        if options.device.startswith("cuda") and ray.get_gpu_ids():
            options = replace(options, device="cuda")  # Ray shows this worker its own GPUs only
        if options.device == "cpu" and cpu_threads and backend == "torch":
            import torch

            torch.set_num_threads(cpu_threads)
        self.backend, self.options, self.encoding = backend, options, encoding
        self.out: Path | str = out if is_url(out) else Path(out)
        self.run_id, self.manifest, self.dtype = run_id, manifest, dtype
        self._writers = writer_pool(max(1, writers))
        self._inputs = InputThumbnailWriter(self.out)  # the report's thumbnails of the rows' input images
        self._generate = threading.Lock()
        self._sizer = BatchSizer(batch_size)  # this device's own fits and auto sizes
        self._model: str | None = None
        self._loaded: LoadedModel | None = None
        self._facts: dict[str, Any] = {}

    def ready(self) -> dict[str, Any]:
        import ray

        return {"pid": os.getpid(), "node": ray.util.get_node_ip_address(), "device": self.options.device}

    def _load(self, model: ModelRef) -> LoadedModel:
        model_id = model.id
        if self._model != model_id:
            if self._loaded is not None:
                self._loaded.close()
                self._loaded, self._model = None, None
            self._loaded = get_backend(self.backend).load(model, options=self.options)
            self._model, self._facts = model_id, self._loaded.describe()
        assert self._loaded is not None
        return self._loaded

    def run_batch(self, jobs: list[Job]) -> UnitOutcome:
        """Generate and write ``jobs`` (one group): what became of each, and the unit's timings."""
        with self._generate:
            try:
                loaded = self._load(jobs[0].model)
            except ModelError as err:
                return UnitOutcome(model_error=str(err))
            began = time.monotonic()
            key = batch_size_key(jobs[0], self.options)
            results = [
                r
                for chunk in sized_batches(jobs, self._sizer, key)
                for r in generate_batch(loaded, chunk, self._sizer, key)
            ]
            seconds = time.monotonic() - began
            facts = dict(self._facts)
        began = time.monotonic()
        images = list(self._writers.map(lambda r: self._write(r[0], r[1], r[2], facts), results))
        return UnitOutcome(seconds, time.monotonic() - began, self.options.device, facts, images)

    def _write(self, result: Any, size: int, seconds: float, facts: dict[str, Any]) -> ImageOutcome:
        job = result.job
        batch = BatchFacts(size, seconds, self.options.device, facts)
        if result.pixels is None:
            return ImageOutcome(job.key, batch, None, WriteFailure(result.error or "no image"))
        record = job_record(job, run_id=self.run_id, manifest=self.manifest, dtype=self.dtype, batch=batch)
        written = write_classified(self.out, job.file, result.pixels, image_metadata(record), self.encoding)
        if isinstance(written, WriteFailure):
            return ImageOutcome(job.key, batch, None, written)
        if self.encoding.thumbnails:
            write_report_thumbnail(self.out, job.key, job.file, result.pixels)
            self._inputs.write(job_inputs(job.values))
        return ImageOutcome(job.key, batch, written)


@dataclass(frozen=True)
class ImageOutcome:
    """One job's image as a worker sends it back: written, or the failure (a fatal one stops the run)."""

    key: str
    batch: BatchFacts
    written: WrittenImage | None
    failure: WriteFailure | None = None


@dataclass(frozen=True)
class UnitOutcome:
    """What a worker sends back for a unit of jobs: each image's outcome and the unit's timings,
    or ``model_error`` when the model did not load."""

    seconds: float = 0.0
    write_seconds: float = 0.0
    device: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    images: list[ImageOutcome] = field(default_factory=list)
    model_error: str | None = None
