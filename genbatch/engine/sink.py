"""The result sink: where every job's outcome goes, whichever engine ran it.

It turns outcomes into ledger records, counts, failures and progress. It is the one writer
of the ledger and is thread-safe: the local engine's writer threads call it, and so does a
driver receiving small records from remote workers. Records are built by
:func:`job_record`, which a worker also calls for the metadata it embeds in each image.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from genbatch.engine.writer import WrittenImage
from genbatch.errors import GenbatchError
from genbatch.jobs import Job
from genbatch.manifest.read import Manifest, SkippedRow
from genbatch.progress import Progress
from genbatch.safe_write import unwritable
from genbatch.store.ledger import SCHEMA_VERSION, LedgerWriter


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass(frozen=True)
class BatchFacts:
    """Where and how a batch ran: the ledger records it for each of its images."""

    batch_size: int
    seconds: float  # per image
    device: str
    facts: dict[str, Any] = field(default_factory=dict)  # the loaded model's describe()


def job_record(job: Job, *, run_id: str, manifest: str, dtype: str, batch: BatchFacts) -> dict[str, Any]:
    """A job's ledger record before its outcome (status, file, bytes, sha256, error) is known;
    less ``fields`` and ``run_id``, it is also the metadata embedded in the image."""
    return {
        "key": job.key,
        "index": job.index,
        "row": job.row.index,
        "line": job.row.line,
        "manifest": manifest,
        "k": job.k,
        "id": job.row.id,
        **job.params(),
        # the diffusers pipeline call that gives the image again: the torch backend's alone
        # (other backends, third-party ones included, never pay for importing diffusers here)
        "call": job.call if job.backend == "torch" else {},
        "model": job.model.name,
        "model_path": str(job.model.path),
        "model_fingerprint": job.model.fingerprint,
        **job.model.record(),
        "backend": job.backend,
        "device": batch.device,
        "dtype": dtype,
        "batch_size": batch.batch_size,
        "seconds": round(batch.seconds, 4),
        "fields": job.row.fields,
        "run_id": run_id,
        **({"providers": batch.facts["providers"]} if batch.facts.get("providers") else {}),
        "schema": SCHEMA_VERSION,
    }


def image_metadata(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("fields", "run_id", "schema")}


def skipped_key(manifest: str, line: int) -> str:
    return "skip-" + hashlib.sha256(f"{manifest}\x00{line}".encode()).hexdigest()[:15]


class CheckpointThread:
    """Runs ``checkpoint`` on a thread of its own each time it is asked, at most once every
    ``every`` seconds: a request made sooner waits for its turn and is never dropped; asking
    never blocks. ``close`` waits for a checkpoint in progress and drops a waiting request
    (the caller makes the last checkpoint itself)."""

    def __init__(self, checkpoint: Callable[[], None], every: float = 1.0):
        self._checkpoint, self._every = checkpoint, every
        self._changed = threading.Condition()
        self._wanted = self._closed = False
        self._thread = threading.Thread(target=self._serve, name="genbatch-checkpoint", daemon=True)
        self._thread.start()

    def ask(self) -> None:
        with self._changed:
            self._wanted = True
            self._changed.notify()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()
        self._thread.join()

    def _serve(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._wanted or self._closed)
                if self._closed:
                    return
                self._wanted = False
            self._checkpoint()
            with self._changed:  # the pace: the next one no sooner than `every` from now
                if self._changed.wait_for(lambda: self._closed, timeout=self._every):
                    return


class ResultSink:
    def __init__(self, ledger: LedgerWriter, progress: Progress, *, run_id: str, manifest: str, dtype: str):
        self.ledger, self.progress = ledger, progress
        self.run_id, self.manifest, self.dtype = run_id, manifest, dtype
        self.done_count = 0
        self.failed_count = 0
        self.failures: list[dict[str, Any]] = []
        # Set when the output folder takes no more writes (disk full, read-only): the engine
        # stops, nothing more is appended, the jobs not recorded are left for the next run.
        self.fatal: GenbatchError | None = None
        self._lock = threading.Lock()
        self._last_checkpoint = time.monotonic()
        self._sync_lock = threading.Lock()
        self._soon: CheckpointThread | None = None

    def checkpoint_soon(self) -> None:
        """Ask for a checkpoint without waiting for it: the engine asks after each batch, and a
        thread of the sink's own makes at most one a second, so the thread that feeds the model
        never waits for the disk (a flush took ~11 ms while the image writers were busy)."""
        if self._soon is None:
            self._soon = CheckpointThread(self._checkpoint_now, self.ledger.checkpoint_every)
        self._soon.ask()

    def checkpoint(self, *, at_most_every: float = 0.0) -> None:
        """Make what is recorded so far survive a machine crash, now, on this thread: one flush
        of the output folder's file system (images, their renames and the ledger together),
        skipped within ``at_most_every`` seconds of the last one (Ray's driver asks after each
        result). The engine's last call ends the thread of :meth:`checkpoint_soon` first."""
        if self._soon is not None:
            self._soon.close()
            self._soon = None
        if time.monotonic() - self._last_checkpoint >= at_most_every:
            self._checkpoint_now()

    def _checkpoint_now(self) -> None:
        with self._sync_lock:
            if self.fatal is not None or not self.done_count + self.failed_count:
                return
            self._last_checkpoint = time.monotonic()
            try:
                self.ledger.sync()
            except OSError as err:
                self.stop(unwritable(err, self.ledger.out) or GenbatchError(f"cannot sync {self.ledger.out}: {err}"))

    def stop(self, error: GenbatchError) -> None:
        with self._lock:
            if self.fatal is None:
                self.fatal = error

    def _append(self, record: dict[str, Any]) -> bool:
        if self.fatal is not None:
            return False
        try:
            self.ledger.append(record)
        except OSError as err:
            self.stop(unwritable(err, self.ledger.out) or GenbatchError(f"cannot append to {self.ledger.path}: {err}"))
            return False
        return True

    def record(self, job: Job, batch: BatchFacts) -> dict[str, Any]:
        return job_record(job, run_id=self.run_id, manifest=self.manifest, dtype=self.dtype, batch=batch)

    def done(self, job: Job, batch: BatchFacts, written: WrittenImage, record: dict[str, Any] | None = None) -> None:
        """Record a written image; ``record`` is the job's :meth:`record` when the caller built it
        already (for the image's metadata), and is completed in place."""
        record = self.record(job, batch) if record is None else record
        record.update(
            status="done", file=written.file, bytes=written.bytes, sha256=written.sha256, finished_at=now(), error=None
        )
        if not self._append(record):
            return
        with self._lock:
            self.done_count += 1
            self.progress.advance(True)

    def failed(self, job: Job, batch: BatchFacts, error: str) -> None:
        record = self.record(job, batch)
        record.update(status="failed", file=None, finished_at=now(), error=error)
        if not self._append(record):
            return
        with self._lock:
            self.failed_count += 1
            self.failures.append(
                {"key": job.key, "line": job.row.line, "prompt": job.prompt, "seed": job.seed, "error": error}
            )
            self.progress.advance(False)

    def skipped(self, manifest: Manifest, skipped: SkippedRow) -> None:
        self._append(
            {
                "status": "skipped",
                "key": skipped_key(manifest.path, skipped.line),
                "file": None,
                "line": skipped.line,
                "manifest": manifest.path,
                "prompt": skipped.prompt,
                "error": "; ".join(skipped.reasons),
                "fields": skipped.fields,
                "finished_at": now(),
                "run_id": self.run_id,
                "schema": SCHEMA_VERSION,
            }
        )
