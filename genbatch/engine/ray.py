"""The Ray engine: the same batches, on model-holding workers across a Ray cluster.

One :class:`~genbatch.engine.ray_worker.RayWorker` actor per GPU (or per CPU slot where there is
none) loads each model once, runs :func:`~genbatch.engine.base.generate_batch` on the batches it
is given (a batch that runs out of memory is halved on that worker's device, as the local
engine does), writes their images into ``--out`` itself (a folder every node mounts) with
the same atomic writes as the local engine, and sends back only small records
(:class:`~genbatch.engine.writer.WrittenImage` or a reason). The driver feeds each worker at most
``WINDOW`` batches at a time, in plan order (with ``--batch-size auto``, units of up to
``AUTO_CAP`` jobs that each worker sizes itself), and alone reports results to the
:class:`~genbatch.engine.sink.ResultSink`, so the ledger has one writer.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genbatch.engine.base import EngineReport, EngineWork, by_model, model_did_not_load, split_groups
from genbatch.engine.batch_size import AUTO_CAP
from genbatch.engine.ray_worker import RayWorker
from genbatch.engine.sink import BatchFacts, ResultSink
from genbatch.engine.writer import WrittenImage
from genbatch.errors import GenbatchError
from genbatch.jobs import Job

INSTALL_HINT = "--engine ray needs Ray, which is not installed: pip install 'genbatch[ray]' (or pip install ray)"
# Batches queued on a worker at once: one generating, one waiting (or being written), so a
# worker never idles between batches and a lost worker takes at most two batches with it.
WINDOW = 2
START_TRIES = 3  # a worker that fails to start this many times in a row is given up


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


@dataclass
class _Run:
    """One run on the driver: its workers, the units still to send and those sent."""

    work: EngineWork
    sink: ResultSink
    report: EngineReport
    say: Callable[[str], None]
    start: Callable[[int], Any]  # a new actor for slot N
    slots: list[_Slot]
    queue: deque[_Unit]
    several_models: bool
    running: dict[Any, tuple[_Slot, Any, _Unit]] = field(default_factory=dict)  # object ref -> slot, actor, unit
    recorded: set[str] = field(default_factory=set)  # the keys of jobs with a ledger line


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
        if not work.groups:
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
        # a fixed size: a unit is a batch; auto: each worker finds its own size within units of up to AUTO_CAP
        units = split_groups(work.groups, work.sizer.requested or AUTO_CAP)
        count, per_worker = self._placement(work.options.device, len(units))
        start = self._starter(work, sink, per_worker)
        slots = [_Slot(i + 1, start(i + 1)) for i in range(count)]
        for slot in slots:
            slot.ready_ref = slot.actor.ready.remote()
        say(
            f"ray: {len(units)} batches on {count} workers "
            f"({f'{per_worker:g} GPU' if per_worker else '1 CPU'} each, {work.options.device}/{work.options.dtype})"
        )
        several_models = len(list(by_model(work.groups))) > 1
        run = _Run(work, sink, report, say, start, slots, deque(_Unit(jobs) for jobs in units), several_models)
        try:
            self._loop(run, stop_requested)
        finally:
            for slot in slots:
                self.ray.kill(slot.actor, no_restart=True)
            sink.checkpoint()
        report.workers = [slot.stats() for slot in slots]
        return report

    def _starter(self, work: EngineWork, sink: ResultSink, per_worker: float) -> Callable[[int], Any]:
        """What starts the actor of a slot (the first time, and each time it is replaced)."""
        actor_class = self.ray.remote(RayWorker).options(
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
                batch_size=work.sizer.requested,
            )

        return start

    def _loop(self, run: _Run, stop_requested: Callable[[], bool]) -> None:
        """Send units to ready workers and take back what comes back, until the queue is done or
        the run stops (then what is running is waited for)."""
        stopping = False
        while True:
            stopping = stopping or stop_requested() or run.sink.fatal is not None
            if not stopping:
                self._dispatch(run.slots, run.queue, run.running)
            if not run.running and (stopping or not run.queue):
                return
            waiting = list(run.running) + [s.ready_ref for s in run.slots if s.ready_ref is not None]
            finished, _ = self.ray.wait(waiting, num_returns=1, timeout=0.25)
            for ref in finished:
                if ref in run.running:
                    slot, actor, unit = run.running.pop(ref)
                    if slot.actor is actor:
                        slot.inflight -= 1
                    self._finished(run, ref, slot, actor, unit)
                else:
                    self._started(run, next(s for s in run.slots if s.ready_ref == ref))

    def _started(self, run: _Run, slot: _Slot) -> None:
        """A worker answered ready(), or failed to start: then another is started, up to
        START_TRIES times in a row."""
        ray = self.ray
        try:
            slot.info = ray.get(slot.ready_ref)
            slot.ready_ref, slot.start_failures = None, 0
            slot.pids.append(slot.info["pid"])
            run.say(
                f"ray: worker {slot.number} ready: pid {slot.info['pid']} on {slot.info['node']}, {slot.info['device']}"
            )
        except ray.exceptions.RayError as err:
            slot.start_failures += 1
            if slot.start_failures < START_TRIES:
                run.say(f"ray: worker {slot.number} did not start: {_reason(err)}; starting another")
                self._replace(run, slot)
                return
            run.say(f"ray: worker {slot.number} did not start {START_TRIES} times: {_reason(err)}")
            slot.ready_ref, slot.retired = None, True
            if all(s.retired for s in run.slots):
                raise GenbatchError(f"no Ray worker could start: {_reason(err)}")

    @staticmethod
    def _dispatch(slots: list[_Slot], queue: deque[_Unit], running: dict[Any, tuple[_Slot, Any, _Unit]]) -> None:
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

    def _replace(self, run: _Run, slot: _Slot) -> None:
        self.ray.kill(slot.actor, no_restart=True)
        slot.actor = run.start(slot.number)
        slot.ready_ref = slot.actor.ready.remote()
        slot.inflight = 0
        slot.replaced += 1

    def _finished(self, run: _Run, ref: Any, slot: _Slot, actor: Any, unit: _Unit) -> None:
        """A unit came back: its images and failures go to the sink; a lost one is retried."""
        ray = self.ray
        try:
            result = ray.get(ref)
        except ray.exceptions.RayError as err:
            reason = _reason(err)
            if slot.actor is actor:  # the first of its batches to come back lost: replace the worker
                run.say(
                    f"ray: worker {slot.number} (pid {slot.info.get('pid', '?')}) was lost: {reason}; "
                    "its batches go to other workers"
                )
                self._replace(run, slot)
            self._lost(run, unit, reason)
            return
        if result.model_error is not None:

            def fail(job: Job, batch: BatchFacts, error: str) -> None:
                self._record(run, job, batch, None, error)

            device = run.work.options.device
            model_did_not_load(
                result.model_error, [unit.jobs], device, fail, only_model=not run.several_models, say=run.say
            )
            return
        run.report.generation_seconds += result.seconds
        run.report.facts.update(result.facts)
        slot.seconds += result.seconds + result.write_seconds
        run.sink.checkpoint(at_most_every=1.0)  # what is recorded so far survives a crash
        by_key = {job.key: job for job in unit.jobs}
        for image in result.images:
            failure = image.failure
            if failure is not None and failure.fatal is not None:
                run.sink.stop(failure.fatal)  # the output folder takes no more writes: this job stays to do
                continue
            written = image.written
            if self._record(run, by_key[image.key], image.batch, written, failure.message if failure else None):
                if written is not None:
                    slot.images += 1
                else:
                    slot.failed += 1

    def _lost(self, run: _Run, unit: _Unit, reason: str) -> None:
        unit.losses += 1
        if unit.losses > self.max_retries:
            batch = BatchFacts(len(unit.jobs), 0.0, run.work.options.device)
            why = f"lost with its Ray worker {unit.losses} times (--max-retries {self.max_retries}): {reason}"
            for job in unit.jobs:
                self._record(run, job, batch, None, why)
            return
        if unit.losses >= 2 and len(unit.jobs) > 1:  # lost twice: find the job that kills workers
            run.queue.extendleft(reversed([_Unit([job], unit.losses) for job in unit.jobs]))
        else:
            run.queue.appendleft(unit)

    @staticmethod
    def _record(run: _Run, job: Job, batch: BatchFacts, written: WrittenImage | None, error: str | None) -> bool:
        """One ledger line per job, whatever comes back twice."""
        if job.key in run.recorded:
            return False
        run.recorded.add(job.key)
        if written is not None:
            run.sink.done(job, batch, written)
        else:
            run.sink.failed(job, batch, error or "no image")
        return True


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]
