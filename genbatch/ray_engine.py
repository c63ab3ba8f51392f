"""The Ray engine: the same batches, on model-holding workers across a Ray cluster.

One :class:`RayWorker` actor per GPU (or per CPU slot where there is none) loads each
model once, runs :func:`~genbatch.engine.generate_batch` on the batches it is given (a
batch that runs out of memory is halved on that worker's device, as the local engine
does), writes their images into ``--out`` itself (a folder every node mounts) with the
same atomic writes as the local engine, and sends back only small records
(:class:`~genbatch.writer.WrittenImage` or a reason). The driver feeds each worker at most
``WINDOW`` batches at a time, in plan order (with ``--batch-size auto``, units of up to
``AUTO_CAP`` jobs that each worker sizes itself), and alone reports results to the
:class:`~genbatch.sink.ResultSink`, so the ledger has one writer.

Retries are the driver's, not Ray's: actors are created with no restarts and no task
retries. A batch whose worker died goes back to the front of the queue for another
worker, and the dead worker is replaced; a batch lost twice is split into single jobs, so
a job that kills its worker fails alone, recorded as failed with its reason once it has
been lost more than ``max_retries`` times.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .backends import BackendOptions, LoadedModel, get_backend
from .batch_size import AUTO_CAP, BatchSizer
from .engine import EngineReport, EngineWork, batch_size_key, by_group, by_model, generate_batch
from .errors import GenbatchError, ModelError
from .model_lookup import ModelRef
from .plan import Job
from .safe_write import OutputUnwritableError, unwritable
from .sink import BatchFacts, ResultSink, image_metadata, job_record
from .writer import Encoding, WrittenImage, write_image

INSTALL_HINT = "--engine ray needs Ray, which is not installed: pip install 'genbatch[ray]' (or pip install ray)"
# Batches queued on a worker at once: one generating, one waiting (or being written), so a
# worker never idles between batches and a lost worker takes at most two batches with it.
WINDOW = 2
START_TRIES = 3  # a worker that fails to start this many times in a row is given up


# --- the worker ----------------------------------------------------------------------------


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
        self._writers = ThreadPoolExecutor(max_workers=max(1, writers), thread_name_prefix="genbatch-write")
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
        return job.key, written, None, size, seconds, False


# --- the driver ----------------------------------------------------------------------------


@dataclass
class _Unit:
    """Jobs sent to a worker together, and how many times they were lost with a worker."""

    jobs: list[Job]
    losses: int = 0


@dataclass
class _Slot:
    """One logical worker: its current actor (replaced when it dies) and what it has done."""

    number: int
    actor: Any
    ready_ref: Any = None  # until the actor answers ready()
    info: dict[str, Any] = field(default_factory=dict)
    inflight: int = 0
    images: int = 0
    failed: int = 0
    seconds: float = 0.0
    replaced: int = 0
    start_failures: int = 0  # in a row
    retired: bool = False  # it failed to start too often
    pids: list[int] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        return {
            "worker": self.number,
            "node": self.info.get("node"),
            "device": self.info.get("device"),
            "pids": self.pids,
            "images": self.images,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "replaced": self.replaced,
        }


class RayEngine:
    """Batches on Ray actors; the driver (this process) writes the ledger."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        gpus_per_worker: float | None = None,
        max_retries: int = 3,
    ):
        try:
            import ray
        except ImportError:
            raise GenbatchError(INSTALL_HINT) from None
        if workers is not None and workers < 1:
            raise GenbatchError(f"--ray-workers {workers}: expected 1 or more")
        if gpus_per_worker is not None and gpus_per_worker < 0:
            raise GenbatchError(f"--gpus-per-worker {gpus_per_worker}: expected 0 or more (0: CPU workers)")
        if max_retries < 0:
            raise GenbatchError(f"--max-retries {max_retries}: expected 0 or more")
        self.ray = ray
        self.address, self.workers, self.gpus_per_worker, self.max_retries = (
            address,
            workers,
            gpus_per_worker,
            max_retries,
        )

    # -- connecting --

    def _connect(self, say: Callable[[str], None]) -> bool:
        """Join the running Ray (this process's, ``--ray-address``, or ``RAY_ADDRESS``), or start
        a local instance. True if this call started or joined it (and must shut it down)."""
        ray = self.ray
        if ray.is_initialized():
            return False
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        began = time.monotonic()
        try:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = self.address or os.environ.get("RAY_ADDRESS") or "a local instance"
            raise GenbatchError(f"--ray-address {where}: cannot start or reach Ray: {err}") from None
        finally:
            if threading.current_thread() is threading.main_thread():
                for sig, handler in handlers.items():  # ray.init sets its own; the run's must stay
                    signal.signal(sig, handler)
        resources = ray.cluster_resources()
        where = (
            "started a local Ray instance"
            if not (self.address or os.environ.get("RAY_ADDRESS"))
            else f"joined the Ray cluster at {self.address or os.environ['RAY_ADDRESS']}"
        )
        say(
            f"ray: {where} in {time.monotonic() - began:.1f}s: {len(ray.nodes())} node(s), "
            f"{resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs"
        )
        return True

    def _placement(self, device: str, batches: int) -> tuple[int, float]:
        """How many workers, and the GPUs each holds."""
        resources = self.ray.cluster_resources()
        gpus = resources.get("GPU", 0.0)
        per_worker = self.gpus_per_worker
        if per_worker is None:
            per_worker = 1.0 if gpus and device != "cpu" else 0.0
        if per_worker > 0 and not gpus:
            raise GenbatchError(
                f"--gpus-per-worker {per_worker:g}: the Ray cluster has no GPUs; "
                "use --gpus-per-worker 0 (CPU workers) or add GPU nodes"
            )
        if per_worker > 0 and device == "cpu":
            raise GenbatchError(
                f"--gpus-per-worker {per_worker:g} with --device cpu: pass --device cuda, or --gpus-per-worker 0"
            )
        count = self.workers or max(1, int(gpus // per_worker) if per_worker else int(resources.get("CPU", 1)))
        return max(1, min(count, batches)), per_worker

    @staticmethod
    def _cpu_threads(work: EngineWork) -> int | None:
        """A CPU worker computes with as many threads as the local engine would here (Ray gives
        it one): oneDNN's sums depend on the thread count, by one level on a few pixels, and
        images must be identical to the local engine's. The cost: CPU workers share cores."""
        if work.options.device != "cpu" or work.backend != "torch":
            return None
        import torch

        return torch.get_num_threads()

    # -- running --

    def run(
        self, work: EngineWork, sink: ResultSink, stop_requested: Callable[[], bool], say: Callable[[str], None]
    ) -> EngineReport:
        report = EngineReport()
        if not work.batches:
            return report
        joined = self._connect(say)
        try:
            return self._run(work, sink, stop_requested, say, report)
        finally:
            if joined:
                self.ray.shutdown()

    def _run(
        self,
        work: EngineWork,
        sink: ResultSink,
        stop_requested: Callable[[], bool],
        say: Callable[[str], None],
        report: EngineReport,
    ) -> EngineReport:
        ray = self.ray
        requested = work.sizer.requested
        if requested is None:  # auto: each worker finds its own size within units of up to AUTO_CAP
            units = [g[i : i + AUTO_CAP] for g in by_group(work.batches) for i in range(0, len(g), AUTO_CAP)]
        else:
            units = work.batches
        count, per_worker = self._placement(work.options.device, len(units))
        actor_class = ray.remote(RayWorker).options(
            num_cpus=1, num_gpus=per_worker, max_restarts=0, max_task_retries=0, max_concurrency=WINDOW
        )
        out = str(Path(work.out).resolve())
        writers = max(1, min(work.writers, 2))
        cpu_threads = self._cpu_threads(work)

        def start(slot_number: int) -> Any:
            return actor_class.remote(
                work.backend,
                work.options,
                out,
                work.encoding,
                run_id=sink.run_id,
                manifest=sink.manifest,
                dtype=sink.dtype,
                writers=writers,
                cpu_threads=cpu_threads,
                batch_size=requested,
            )

        slots = [_Slot(i + 1, start(i + 1)) for i in range(count)]
        for slot in slots:
            slot.ready_ref = slot.actor.ready.remote()
        say(
            f"ray: {len(units)} batches on {count} workers "
            f"({f'{per_worker:g} GPU' if per_worker else '1 CPU'} each, {work.options.device}/{work.options.dtype})"
        )

        queue = deque(_Unit(jobs) for jobs in units)
        running: dict[Any, tuple[_Slot, Any, _Unit]] = {}  # object ref -> slot, actor, unit
        recorded: set[str] = set()
        several_models = len(list(by_model(work.batches))) > 1
        stopping = False
        try:
            while True:
                stopping = stopping or stop_requested() or sink.fatal is not None
                if not stopping:
                    self._dispatch(slots, queue, running)
                if not running and (stopping or not queue):
                    break
                waiting = list(running) + [s.ready_ref for s in slots if s.ready_ref is not None]
                finished, _ = ray.wait(waiting, num_returns=1, timeout=0.25)
                for ref in finished:
                    if ref in running:
                        slot, actor, unit = running.pop(ref)
                        if slot.actor is actor:
                            slot.inflight -= 1
                        self._finished(
                            ref,
                            slot,
                            actor,
                            unit,
                            work,
                            sink,
                            queue,
                            report,
                            recorded,
                            several_models,
                            say,
                            lambda s: self._replace(s, start, say),
                        )
                    else:
                        slot = next(s for s in slots if s.ready_ref == ref)
                        try:
                            slot.info = ray.get(ref)
                            slot.ready_ref, slot.start_failures = None, 0
                            slot.pids.append(slot.info["pid"])
                            say(
                                f"ray: worker {slot.number} ready: pid {slot.info['pid']} on {slot.info['node']}, "
                                f"{slot.info['device']}"
                            )
                        except ray.exceptions.RayError as err:
                            slot.start_failures += 1
                            if slot.start_failures < START_TRIES:
                                say(f"ray: worker {slot.number} did not start: {_reason(err)}; starting another")
                                self._replace(slot, start, say)
                                continue
                            say(f"ray: worker {slot.number} did not start {START_TRIES} times: {_reason(err)}")
                            slot.ready_ref, slot.retired = None, True
                            if all(s.retired for s in slots):
                                raise GenbatchError(f"no Ray worker could start: {_reason(err)}")
        finally:
            for slot in slots:
                ray.kill(slot.actor, no_restart=True)
            sink.checkpoint()
        report.workers = [slot.stats() for slot in slots]
        return report

    @staticmethod
    def _dispatch(slots: list[_Slot], queue: deque, running: dict[Any, tuple[_Slot, Any, _Unit]]) -> None:
        """Top up the ready workers' windows, one batch each in turn; a worker takes a second
        only while there are more batches left than workers still starting."""
        ready = [s for s in slots if s.ready_ref is None and not s.retired]
        starting = sum(s.ready_ref is not None for s in slots)
        for depth in range(WINDOW):
            for slot in ready:
                if not queue or (depth and len(queue) <= starting):
                    return
                if slot.inflight <= depth:
                    unit = queue.popleft()
                    running[slot.actor.run_batch.remote(unit.jobs)] = (slot, slot.actor, unit)
                    slot.inflight += 1

    def _replace(self, slot: _Slot, start: Callable[[int], Any], say: Callable[[str], None]) -> None:
        self.ray.kill(slot.actor, no_restart=True)
        slot.actor = start(slot.number)
        slot.ready_ref = slot.actor.ready.remote()
        slot.inflight = 0
        slot.replaced += 1

    def _finished(
        self,
        ref: Any,
        slot: _Slot,
        actor: Any,
        unit: _Unit,
        work: EngineWork,
        sink: ResultSink,
        queue: deque,
        report: EngineReport,
        recorded: set[str],
        several_models: bool,
        say: Callable[[str], None],
        replace_slot: Callable[[_Slot], None],
    ) -> None:
        ray = self.ray
        try:
            result = ray.get(ref)
        except ray.exceptions.RayError as err:
            reason = _reason(err)
            if slot.actor is actor:  # the first of its batches to come back lost: replace the worker
                say(
                    f"ray: worker {slot.number} (pid {slot.info.get('pid', '?')}) was lost: {reason}; "
                    "its batches go to other workers"
                )
                replace_slot(slot)
            self._lost(unit, reason, work.options.device, sink, queue, recorded)
            return
        by_key = {job.key: job for job in unit.jobs}
        if "model_error" in result:
            if not several_models:
                raise ModelError(result["model_error"])
            say(f"error: {result['model_error']}")
            for job in unit.jobs:
                self._record(
                    job,
                    BatchFacts(len(unit.jobs), 0.0, work.options.device),
                    None,
                    f"the model did not load: {result['model_error']}",
                    sink,
                    recorded,
                )
            return
        report.generation_seconds += result["seconds"]
        report.facts.update(result["facts"])
        slot.seconds += result["seconds"] + result["write_seconds"]
        sink.checkpoint(at_most_every=1.0)  # what is recorded so far survives a crash
        for key, written, error, size, seconds, fatal in result["outcomes"]:
            if fatal:  # the output folder takes no more writes: the run stops, this job stays to do
                sink.stop(OutputUnwritableError(error))
                continue
            batch = BatchFacts(size, seconds, result["device"], result["facts"])
            if self._record(by_key[key], batch, written, error, sink, recorded):
                if written is not None:
                    slot.images += 1
                else:
                    slot.failed += 1

    def _lost(self, unit: _Unit, reason: str, device: str, sink: ResultSink, queue: deque, recorded: set[str]) -> None:
        unit.losses += 1
        if unit.losses > self.max_retries:
            for job in unit.jobs:
                self._record(
                    job,
                    BatchFacts(len(unit.jobs), 0.0, device),
                    None,
                    f"lost with its Ray worker {unit.losses} times (--max-retries {self.max_retries}): {reason}",
                    sink,
                    recorded,
                )
            return
        if unit.losses >= 2 and len(unit.jobs) > 1:  # lost twice: find the job that kills workers
            queue.extendleft(reversed([_Unit([job], unit.losses) for job in unit.jobs]))
        else:
            queue.appendleft(unit)

    @staticmethod
    def _record(
        job: Job,
        batch: BatchFacts,
        written: WrittenImage | None,
        error: str | None,
        sink: ResultSink,
        recorded: set[str],
    ) -> bool:
        """One ledger line per job, whatever comes back twice."""
        if job.key in recorded:
            return False
        recorded.add(job.key)
        if written is not None:
            sink.done(job, batch, written)
        else:
            sink.failed(job, batch, error or "no image")
        return True


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]
