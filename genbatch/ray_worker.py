"""The Ray engine's worker: an actor that holds one device, loads each model once, runs the
batches it is given (halving one that runs out of memory, as the local engine does), writes
their images into ``--out`` itself with the same atomic writes as the local engine, and
sends back only small records (:class:`~genbatch.writer.WrittenImage` or a reason)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .backends import BackendOptions, LoadedModel, get_backend
from .batch_size import BatchSizer
from .engine import batch_size_key, generate_batch
from .errors import ModelError
from .model_lookup import ModelRef
from .plan import Job
from .safe_write import unwritable
from .sink import BatchFacts, image_metadata, job_record
from .thumbnails import write_report_thumbnail
from .writer import Encoding, write_image, writer_pool


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
        self.backend, self.options, self.out, self.encoding = backend, options, Path(out), encoding
        self.run_id, self.manifest, self.dtype = run_id, manifest, dtype
        self._writers = writer_pool(max(1, writers))
        self._generate = threading.Lock()
        self._sizer = BatchSizer(batch_size)  # this device's own fits and auto sizes
        self._model: str | None = None
        self._loaded: LoadedModel | None = None
        self._facts: dict[str, Any] = {}

    def ready(self) -> dict[str, Any]:
        import ray

        return {"pid": os.getpid(), "node": ray.util.get_node_ip_address(), "device": self.options.device}

    def _load(self, model: ModelRef) -> LoadedModel:
        model_id = model.fingerprint + str(model.path)
        if self._model != model_id:
            if self._loaded is not None:
                self._loaded.close()
                self._loaded, self._model = None, None
            self._loaded = get_backend(self.backend).load(model, options=self.options)
            self._model, self._facts = model_id, self._loaded.describe()
        assert self._loaded is not None
        return self._loaded

    def run_batch(self, jobs: list[Job]) -> dict[str, Any]:
        """Generate and write ``jobs`` (one group); per job: key, WrittenImage or None, error,
        the size of the batch it ran in, its seconds, and whether the error stops the run."""
        with self._generate:
            try:
                loaded = self._load(jobs[0].model)
            except ModelError as err:
                return {"model_error": str(err)}
            began = time.monotonic()
            key = batch_size_key(jobs[0], self.options)
            results, start = [], 0
            while start < len(jobs):
                chunk = jobs[start : start + self._sizer.next_size(key)]
                start += len(chunk)
                results += generate_batch(loaded, chunk, self._sizer, key)
            seconds = time.monotonic() - began
            facts = dict(self._facts)
        began = time.monotonic()
        outcomes = list(self._writers.map(lambda r: self._write(r[0], r[1], r[2], facts), results))
        return {
            "seconds": seconds,
            "write_seconds": time.monotonic() - began,
            "device": self.options.device,
            "facts": facts,
            "outcomes": outcomes,
        }

    def _write(self, result: Any, size: int, seconds: float, facts: dict[str, Any]) -> tuple:
        job = result.job
        if result.pixels is None:
            return job.key, None, result.error or "no image", size, seconds, False
        batch = BatchFacts(size, seconds, self.options.device, facts)
        record = job_record(job, run_id=self.run_id, manifest=self.manifest, dtype=self.dtype, batch=batch)
        try:
            written = write_image(self.out, job.file, result.pixels, image_metadata(record), self.encoding)
        except Exception as err:  # a bad name fails one image; a full or read-only disk stops the run
            fatal = unwritable(err, self.out)
            if fatal is not None:
                return job.key, None, str(fatal), size, seconds, True
            return job.key, None, f"writing the image failed: {type(err).__name__}: {err}", size, seconds, False
        if self.encoding.thumbnails:
            write_report_thumbnail(self.out, job.key, job.file, result.pixels)
        return job.key, written, None, size, seconds, False
