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

The pool follows the cluster: with no ``--ray-workers``, a node that joins mid-run (an autoscaler's,
a preempted one replaced) gets workers for the room it adds while there are batches for them; a
worker whose node is gone is replaced at once, and Ray places the new one as soon as a node has
room for it (``--ray-workers N``: N workers, whatever joins).

A local instance the driver starts itself listens on 127.0.0.1 only, and an address on 127.0.0.1
is joined as given (``_loopback_as_given``): Ray would otherwise advertise this machine's network
address for both.

The driver never waits silently. While no worker is ready (none can be placed, its node is gone,
it is still starting) or the cluster does not answer, it says every ``SAY_EVERY`` seconds what it
waits for, from a look at the cluster taken on a thread of its own (a GCS that is gone makes Ray's
calls hang), and after ``--worker-wait`` seconds it stops the run: what finished is in the ledger
and flushed, the exit code is 1, and the same command resumes it.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genbatch.engine.base import EngineReport, EngineWork, by_model, model_did_not_load, split_groups
from genbatch.engine.batch_size import AUTO_CAP
from genbatch.engine.ray_options import WORKER_WAIT
from genbatch.engine.ray_worker import RayWorker
from genbatch.engine.sink import BatchFacts, ResultSink
from genbatch.engine.writer import WrittenImage
from genbatch.errors import EXIT_FAILED_JOBS, GenbatchError
from genbatch.jobs import Job

INSTALL_HINT = "--engine ray needs Ray, which is not installed: pip install 'genbatch[ray]' (or pip install ray)"
# Batches queued on a worker at once: one generating, one waiting (or being written), so a
# worker never idles between batches and a lost worker takes at most two batches with it.
WINDOW = 2
START_TRIES = 3  # a worker that fails to start this many times in a row is given up
LOOK_EVERY = 5.0  # seconds between looks at the cluster (its nodes, free resources, workers starting)
SAY_EVERY = 15.0  # while nothing can run: a line saying what the run waits for, this often
SAY_AFTER = 5.0  # ... the first one after this long (a worker's normal start says nothing)
KILL_TIMEOUT = 2.0  # ray.kill only where the cluster answers a look within this many seconds


def _ray_gcs_timeout() -> float:
    """Ray ends a driver whose GCS has not answered for ``gcs_rpc_server_reconnect_timeout_s``
    (60 s unless set): a silent cluster stops the run cleanly well before that (``GCS_SILENCE``)."""
    try:
        return float(os.environ.get("RAY_gcs_rpc_server_reconnect_timeout_s") or 60)
    except ValueError:
        return 60.0


RAY_GCS_TIMEOUT = _ray_gcs_timeout()
GCS_SILENCE = 0.5 * RAY_GCS_TIMEOUT


class WorkersUnavailable(GenbatchError):
    """No Ray worker was ready, or the cluster did not answer, for ``--worker-wait`` seconds: the
    run stops with what finished recorded, and a rerun resumes it."""

    exit_code = EXIT_FAILED_JOBS


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
    look: _Look
    need: dict[str, float]  # what one worker takes: {"CPU": 1, "GPU": ...}
    total: int  # the jobs of the run
    running: dict[Any, tuple[_Slot, Any, _Unit]] = field(default_factory=dict)  # object ref -> slot, actor, unit
    recorded: set[str] = field(default_factory=set)  # the keys of jobs with a ledger line
    no_worker_since: float | None = None  # since when no worker has been ready
    said_at: float = 0.0  # when the last line about waiting was said
    grow: bool = False  # no --ray-workers: more workers when the cluster has room for more
    looked: int = 0  # the look the pool was last sized against


class _Look:
    """The cluster as its GCS last described it: the alive nodes, the free resources, and where
    the workers still starting are. Asked every ``LOOK_EVERY`` seconds from a daemon thread,
    one look at a time, so that a GCS that is gone (Ray's calls then hang) cannot stall the
    driver's loop; ``silent_for`` says how long a look has gone unanswered, and ``answers``
    asks now and waits a little (before ``ray.kill``, which blocks while the GCS is gone)."""

    def __init__(self, ray: Any):
        self.ray = ray
        self.nodes: list[dict[str, Any]] | None = None  # None: no answer yet
        self.free: dict[str, float] = {}
        self.placed: dict[Any, str] = {}  # starting actor -> the node it was placed on
        self.states_known = False
        self.count = 0  # looks answered so far
        self._asked_at = -LOOK_EVERY
        self._unanswered_since: float | None = None
        self._busy = False
        self._starting: list[Any] = []
        self._lock = threading.Condition()

    def poll(self, now: float, starting: list[Any], *, due: float = LOOK_EVERY) -> None:
        """Start a look if one is due and none is under way."""
        with self._lock:
            self._starting = starting
            if self._busy or now - self._asked_at < due:
                return
            self._busy, self._asked_at = True, now
            if self._unanswered_since is None:
                self._unanswered_since = now
        threading.Thread(target=self._look, args=(starting,), name="genbatch-ray-look", daemon=True).start()

    def silent_for(self, now: float) -> float:
        with self._lock:
            return 0.0 if self._unanswered_since is None else now - self._unanswered_since

    def answers(self, timeout: float = KILL_TIMEOUT) -> bool:
        """Whether the cluster answers a look asked now within ``timeout`` seconds."""
        self.poll(time.monotonic(), self._starting, due=0.0)
        with self._lock:
            return self._lock.wait_for(lambda: self._unanswered_since is None, timeout)

    def _look(self, starting: list[Any]) -> None:
        try:
            nodes = [n for n in self.ray.nodes() if n.get("Alive")]
            free = dict(self.ray.available_resources())
        except Exception:  # the GCS refused or is gone: the silence goes on, the next look asks again
            with self._lock:
                self._busy = False
            return
        placed, known = self._placed(starting)
        with self._lock:
            self.nodes, self.free, self.placed, self.states_known = nodes, free, placed, known
            self._busy, self._unanswered_since = False, None
            self.count += 1
            self._lock.notify_all()

    def _placed(self, starting: list[Any]) -> tuple[dict[Any, str], bool]:
        """Which starting actors a node has taken (their process is starting): Ray's actor table,
        which only its private state module reads without the dashboard; where that is not
        there, unknown (False), and the wait is described from the free resources alone."""
        try:
            from ray._private import state

            placed = {}
            for actor in starting:
                info = state.actors(actor_id=actor._actor_id.hex())
                where = (info.get("Address") or {}).get("IPAddress")
                if info.get("State") in ("PENDING_CREATION", "ALIVE") and where:
                    placed[actor] = where
            return placed, True
        except Exception:
            return {}, False


class RayEngine:
    """Batches on Ray actors; the driver (this process) writes the ledger."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        gpus_per_worker: float | None = None,
        max_retries: int = 3,
        worker_wait: float = WORKER_WAIT,
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
        self.worker_wait = worker_wait

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
            with _loopback_as_given():
                ray.init(
                    address=self.address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
                )
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = self.address or os.environ.get("RAY_ADDRESS") or "a local instance"
            raise GenbatchError(f"--ray-address {where}: cannot start or reach Ray: {err}") from None
        finally:
            if threading.current_thread() is threading.main_thread():
                for sig, handler in handlers.items():  # ray.init sets its own; the run's must stay
                    signal.signal(sig, handler)
        resources = ray.cluster_resources()
        where = (
            f"started a local Ray instance at {ray.get_runtime_context().gcs_address}"
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
        count = self.workers or max(1, _room(resources, per_worker))
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
        queue = deque(_Unit(jobs) for jobs in units)
        need = {"CPU": 1.0, **({"GPU": per_worker} if per_worker else {})}
        total = sum(len(unit.jobs) for unit in queue)
        run = _Run(work, sink, report, say, start, slots, queue, several_models, _Look(self.ray), need, total)
        run.grow = self.workers is None
        try:
            self._loop(run, stop_requested)
        finally:
            self._kill(run, [slot.actor for slot in slots])
            sink.checkpoint()
        report.workers = [slot.stats() for slot in slots]
        return report

    def _starter(self, work: EngineWork, sink: ResultSink, per_worker: float) -> Callable[[int], Any]:
        """What starts the actor of a slot (the first time, and each time it is replaced)."""
        actor_class = self.ray.remote(RayWorker).options(
            num_cpus=1, num_gpus=per_worker, max_restarts=0, max_task_retries=0, max_concurrency=WINDOW
        )
        out = work.out if isinstance(work.out, str) else str(Path(work.out).resolve())
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
            # stopping, the batches of a worker already lost are not waited for: they stay to do
            live = any(slot.actor is actor for slot, actor, _ in run.running.values())
            if not (run.running or run.queue) or (stopping and not live):
                return
            if self._gave_up(run, time.monotonic()):
                return
            if not stopping:
                self._grow(run)
            waiting = list(run.running) + [s.ready_ref for s in run.slots if s.ready_ref is not None]
            if not waiting:
                time.sleep(0.25)
                continue
            finished, _ = self.ray.wait(waiting, num_returns=1, timeout=0.25)
            for ref in finished:
                if ref in run.running:
                    slot, actor, unit = run.running.pop(ref)
                    if slot.actor is actor:
                        slot.inflight -= 1
                    self._finished(run, ref, slot, actor, unit)
                else:
                    self._started(run, next(s for s in run.slots if s.ready_ref == ref))

    def _gave_up(self, run: _Run, now: float) -> bool:
        """While no worker is ready, or the cluster does not answer: say what the run waits for,
        and past ``--worker-wait`` (or the silence Ray itself tolerates, if shorter) stop it with
        what finished recorded and flushed. True when the run must end now."""
        starting = [s for s in run.slots if s.ready_ref is not None]
        ready = sum(s.ready_ref is None and not s.retired for s in run.slots)
        run.look.poll(now, [s.actor for s in starting])
        run.no_worker_since = None if ready else run.no_worker_since or now
        waits = []  # (seconds waited, the limit, what for, why)
        silent = run.look.silent_for(now)
        if silent >= min(SAY_AFTER, self.worker_wait):
            limit = min(self.worker_wait, GCS_SILENCE)
            waits.append((silent, limit, "the Ray cluster", "its GCS does not answer"))
        if run.no_worker_since is not None:
            workers = len(run.slots) - sum(s.retired for s in run.slots)
            why = f"{self._why_no_worker(run, starting)}; 0 of {workers} workers ready"
            waits.append((now - run.no_worker_since, self.worker_wait, "a worker", why))
        if not waits:
            run.said_at = 0.0
            return False
        waited, limit, what, why = max(waits, key=lambda w: w[0] / w[1])  # the nearest its limit
        of = f"--worker-wait {self.worker_wait:g} s"
        if limit < self.worker_wait:
            of = f"{limit:g} s, as Ray ends a driver whose GCS is silent for {RAY_GCS_TIMEOUT:g} s"
        if waited >= limit:
            run.sink.checkpoint()  # what is recorded is flushed now: a stopped sink flushes no more
            left = run.total - len(run.recorded)
            run.sink.stop(
                WorkersUnavailable(
                    f"--engine ray gave up waiting for {what} after {waited:.0f} s ({of}): {why}; "
                    f"{len(run.recorded)} jobs are in the ledger, {left} not made: "
                    "run the same command again to resume"
                )
            )
            return True
        if waited >= min(SAY_AFTER, limit / 2) and now - run.said_at >= SAY_EVERY:
            run.say(f"ray: waiting for {what}: {why} ({waited:.0f} s of {of})")
            run.said_at = now
        return False

    @staticmethod
    def _grow(run: _Run) -> None:
        """With no ``--ray-workers``, one worker per GPU (or CPU) of the cluster as it is now: when
        the last look finds room for more workers than the run has (nodes joined), more are
        started, as long as there are batches waiting for them."""
        look = run.look
        if not run.grow or look.nodes is None or look.count == run.looked:
            return
        run.looked = look.count
        per_worker = run.need.get("GPU", 0.0)
        room = _room({k: sum(n.get("Resources", {}).get(k, 0) for n in look.nodes) for k in ("CPU", "GPU")}, per_worker)
        active = [s for s in run.slots if not s.retired]
        starting = sum(s.ready_ref is not None for s in active)
        more = min(room - len(active), len(run.queue) - starting)
        if more <= 0:
            return
        for _ in range(more):
            slot = _Slot(len(run.slots) + 1, run.start(len(run.slots) + 1))
            slot.ready_ref = slot.actor.ready.remote()
            run.slots.append(slot)
        run.say(
            f"ray: the cluster has room for {room} workers ({_nodes_text(look.nodes)}): "
            f"{more} more starting, {len(active) + more} in all"
        )

    @staticmethod
    def _why_no_worker(run: _Run, starting: list[_Slot]) -> str:
        """What keeps the workers from being ready, as the last look at the cluster saw it."""
        look, need = run.look, run.need
        wanted = "/".join(f"{amount:g} {name}" for name, amount in need.items())
        if look.nodes is None:
            return "the Ray cluster has not answered"
        if not look.nodes:
            return "no Ray node is alive"
        offers = [n for n in look.nodes if all(n.get("Resources", {}).get(k, 0) >= v for k, v in need.items())]
        if not offers:
            return f"no node offers {wanted} (alive: {_nodes_text(look.nodes)})"
        placed = [look.placed[s.actor] for s in starting if s.actor in look.placed]
        if placed:
            return f"{len(placed)} starting on {', '.join(sorted(set(placed)))}"
        if not look.states_known and all(look.free.get(k, 0) >= v for k, v in need.items()):
            return f"{len(starting)} starting"
        offer = "1 alive node offers it" if len(offers) == 1 else f"{len(offers)} alive nodes offer it"
        return f"no node has {wanted} free ({offer})"

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

    def _kill(self, run: _Run, actors: list[Any]) -> None:
        """Stop actors, where the cluster answers: while its GCS is gone ``ray.kill`` blocks until
        Ray gives up on it and ends this process, and the actors are gone with the cluster or end
        with this driver."""
        if run.look.answers():
            for actor in actors:
                self.ray.kill(actor, no_restart=True)

    def _replace(self, run: _Run, slot: _Slot) -> None:
        self._kill(run, [slot.actor])
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
        run.sink.checkpoint(at_most_every=run.sink.ledger.checkpoint_every)  # what is recorded so far survives a crash
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


def _room(resources: dict[str, float], per_worker: float) -> int:
    """How many workers these resources hold: one per ``per_worker`` GPUs, or per CPU for CPU workers."""
    if per_worker:
        return int(resources.get("GPU", 0) // per_worker)
    return int(resources.get("CPU", 0))


@contextmanager
def _loopback_as_given() -> Iterator[None]:
    """While Ray starts or joins: 127.0.0.1 stays 127.0.0.1. Ray replaces it with this machine's
    network address (for ``--ray-address 127.0.0.1:PORT`` and for a local instance's own address),
    so a local instance would listen on the network and a cluster kept on 127.0.0.1 could not be
    joined. Its switch for machines that are no cluster nodes, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``,
    turns that off; Ray reads it when imported, so its value is set where Ray keeps it as well.
    Any other address is used as before, and a driver joining a cluster takes its node's address
    from the raylet it connects to."""
    variable = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    before = os.environ.get(variable)
    os.environ[variable] = "0"
    try:
        constants: Any = importlib.import_module("ray._private.ray_constants")
    except ImportError:  # another layout: the variable alone, as read by a Ray imported later
        constants = None
    kept = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    if kept is not None:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if kept is not None:
            constants.ENABLE_RAY_CLUSTER = kept
        if before is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = before


def _nodes_text(nodes: list[dict[str, Any]]) -> str:
    """Alive nodes as "2 nodes, 16 CPU, 0 GPU" for a message."""
    total = {k: sum(n.get("Resources", {}).get(k, 0) for n in nodes) for k in ("CPU", "GPU")}
    return f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}, {total['CPU']:g} CPU, {total['GPU']:g} GPU"


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]
