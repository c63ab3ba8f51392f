"""The main job: manifest -> plan -> batches on a backend -> images + ledger -> reports.

``run_manifest`` is what ``genbatch run`` calls; everything it does is reachable from Python.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock, Timeout

from .backends import get_backend
from .errors import (EXIT_FAILED_JOBS, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, GenbatchError, LockedError,
                     ManifestError, ModelError)
from .ledger import Ledger, done_records, iter_records
from .manifest import MAX_IMAGES_PER_ROW, Manifest, read_manifest
from .models import ModelRef, resolve_model
from .plan import Defaults, Job, Plan, Target, assign_file_names, expand_jobs, make_batches, select
from .progress import Progress
from .report import command_line, versions, write_json, write_tables
from .writer import ImageWriter, remove_stale_temp_files, sha256_bytes

LOCK_NAME = ".genbatch.lock"


@dataclass
class RunOptions:
    manifest: str
    out: Path
    format: str | None = None
    column_map: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, str] = field(default_factory=dict)
    defaults: Defaults = field(default_factory=Defaults)
    model: str | None = None
    backend: str = "torch"
    device: str = "auto"
    dtype: str = "auto"
    scheduler: str | None = None
    providers: list[str] | None = None
    batch_size: int = 8
    name_template: str = "{index:06d}-{slug}-{seed}.{ext}"
    image_format: str = "png"
    quality: int = 95
    compress_level: int = 6
    workers: int | None = None
    limit: int | None = None
    shard: tuple[int, int] | None = None
    dry_run: bool = False
    force: bool = False
    skip_invalid: bool = False
    wait: bool = False
    quiet: bool = False
    html_report: bool = True
    max_images_per_row: int = MAX_IMAGES_PER_ROW


@dataclass
class RunResult:
    exit_code: int
    summary: dict[str, Any]
    plan: Plan | None = None
    pending: list[Job] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Stop:
    """SIGINT/SIGTERM once: finish the batch in flight, flush, exit 130/143. Twice: stop now."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def exit_code(self) -> int | None:
        if self.signal is None:
            return None
        return EXIT_SIGTERM if self.signal == signal.SIGTERM else EXIT_SIGINT


def load_manifest(options: RunOptions) -> Manifest:
    manifest = read_manifest(options.manifest, format=options.format, column_map=options.column_map,
                             overrides=options.overrides, max_images_per_row=options.max_images_per_row)
    if manifest.fatal_problems or (manifest.problems and not options.skip_invalid):
        raise ManifestError(manifest.problems)
    return manifest


def resolve_models(manifest: Manifest, default: str | None) -> dict[str | None, ModelRef]:
    models: dict[str | None, ModelRef] = {}
    if any(row.model is None for row in manifest.rows) or not manifest.rows:
        models[None] = resolve_model(default)
    for row in manifest.rows:
        if row.model is not None and row.model not in models:
            try:
                models[row.model] = resolve_model(row.model)
            except ModelError as err:
                column = manifest.columns.get("model", "model")
                raise ModelError(f"{manifest.path}:{row.line}:{column}: {err}") from None
    return models


def make_plan(options: RunOptions, manifest: Manifest) -> tuple[Plan, str, str]:
    """Jobs for this run (shard and limit applied) plus the resolved device and dtype."""
    backend = get_backend(options.backend)
    device, dtype = backend.resolve(options.device, options.dtype)
    models = resolve_models(manifest, options.model)
    jobs = expand_jobs(manifest.rows, models, options.defaults, Target(options.backend, dtype, options.scheduler))
    assign_file_names(jobs, options.name_template, options.image_format)
    selected = select(jobs, options.shard, options.limit)
    used = {id(j.model): j.model for j in selected}
    return Plan(selected, len(jobs), list(used.values())), device, dtype


def _skipped_key(manifest: Manifest, line: int) -> str:
    return "skip-" + hashlib.sha256(f"{manifest.path}\x00{line}".encode()).hexdigest()[:15]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def run_manifest(options: RunOptions, *, log: Callable[[str], None] | None = None) -> RunResult:
    """Run (or with ``dry_run`` only plan) a manifest into ``options.out``. Raises
    :class:`GenbatchError` for bad input before anything is written."""
    manifest = load_manifest(options)
    plan, device, dtype = make_plan(options, manifest)
    out = Path(options.out)

    if options.dry_run:
        done = done_records(out) if out.exists() else {}
        pending = [j for j in plan.jobs if options.force or j.key not in done]
        summary = {
            "dry_run": True,
            "out": str(out),
            "planned": len(plan.jobs),
            "already_done": len(plan.jobs) - len(pending),
            "to_generate": len(pending),
            "batches": len(make_batches(pending, options.batch_size)) if pending else 0,
            "skipped_rows": len(manifest.skipped),
            "models": [{"name": m.name, "path": str(m.path), "fingerprint": m.fingerprint} for m in plan.models],
            "backend": options.backend,
            "device": device,
            "dtype": dtype,
        }
        return RunResult(EXIT_OK, summary, plan, pending, manifest.warnings)

    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GenbatchError(f"--out {out}: cannot create the folder: {err.strerror}") from None
    lock = FileLock(str(out / LOCK_NAME), timeout=-1 if options.wait else 0)
    try:
        lock.acquire()
    except Timeout:
        raise LockedError(
            f"another genbatch run is writing to {out} (it holds {out / LOCK_NAME}); "
            "wait for it to finish, or pass --wait to start when it does"
        ) from None
    try:
        return _run_locked(options, manifest, plan, device, dtype, log)
    finally:
        # a run that made the folder and wrote nothing (its model failed to load) leaves
        # no trace, as bad input leaves none
        untouched = created and [p.name for p in out.iterdir()] == [LOCK_NAME]
        if untouched:
            (out / LOCK_NAME).unlink()
        lock.release()
        if untouched:
            out.rmdir()


def _run_locked(options: RunOptions, manifest: Manifest, plan: Plan, device: str, dtype: str,
                log: Callable[[str], None] | None) -> RunResult:
    out = Path(options.out)
    run_id = uuid.uuid4().hex[:12]
    started_at, started = _now(), time.monotonic()
    remove_stale_temp_files(out)
    ledger = Ledger(out)
    done = done_records(out)
    pending = [j for j in plan.jobs if options.force or j.key not in done]
    already_done = len(plan.jobs) - len(pending)
    batches = make_batches(pending, options.batch_size)
    progress = Progress(len(pending), quiet=options.quiet)
    say = log or progress.log
    for warning in manifest.warnings:
        say(f"warning: {warning}")
    if ledger.repaired:
        say("note: the ledger's last line was torn by an interrupted run; it was removed")
    for skipped in manifest.skipped:
        ledger.append({
            "status": "skipped", "key": _skipped_key(manifest, skipped.line), "file": None, "line": skipped.line,
            "manifest": manifest.path, "prompt": skipped.prompt, "error": "; ".join(skipped.reasons),
            "fields": skipped.fields, "finished_at": _now(), "run_id": run_id,
        })
    if already_done:
        say(f"{already_done} of {len(plan.jobs)} images are already done in {out}; generating {len(pending)}")

    counts = {"done": 0, "failed": 0}
    failures: list[dict[str, Any]] = []
    lock = threading.Lock()
    facts: dict[str, Any] = {}

    def base_record(job: Job, batch_size: int, seconds: float) -> dict[str, Any]:
        return {
            "key": job.key, "index": job.index, "row": job.row.index, "line": job.row.line,
            "manifest": manifest.path, "k": job.k, "id": job.row.id, **job.params(),
            "model": job.model.name, "model_path": str(job.model.path), "model_fingerprint": job.model.fingerprint,
            "backend": job.backend, "device": device, "dtype": dtype, "batch_size": batch_size,
            "seconds": round(seconds, 4), "fields": job.row.fields, "run_id": run_id,
            **({"providers": facts["providers"]} if facts.get("providers") else {}),
        }

    def written(item: tuple[Job, dict[str, Any]], path: Path, data: bytes) -> None:
        job, record = item
        record.update(status="done", file=job.file, bytes=len(data), sha256=sha256_bytes(data),
                      finished_at=_now(), error=None)
        ledger.append(record)
        with lock:
            counts["done"] += 1
            progress.advance(True)

    def failed(item: tuple[Job, dict[str, Any]], error: str) -> None:
        job, record = item
        record.update(status="failed", file=None, finished_at=_now(), error=error)
        ledger.append(record)
        with lock:
            counts["failed"] += 1
            failures.append({"key": job.key, "line": job.row.line, "prompt": job.prompt, "seed": job.seed,
                             "error": error})
            progress.advance(False)

    writer = ImageWriter(out, fmt=options.image_format.lower().replace("jpeg", "jpg"), quality=options.quality,
                         compress_level=options.compress_level,
                         # Measured on a 16-core H100 box: past 4 threads the GIL-bound part
                         # (metadata, ledger) makes more threads slower, not faster.
                         workers=options.workers or max(1, min(4, os.cpu_count() or 1)),
                         on_written=written, on_error=failed)
    stop = _Stop()
    stop.install()
    backend = get_backend(options.backend)
    generation_seconds = 0.0
    interrupted_hard = False
    try:
        generator = None
        loaded: str | None = None
        for batch in batches:
            if stop.signal is not None:
                break
            model = batch[0].model
            if loaded != model.fingerprint + str(model.path):
                if generator is not None:
                    generator.close()
                say(f"loading {model.name} ({model.path}) on {options.backend}/{device}/{dtype}")
                generator = _load(backend, model, device, dtype, options)
                facts.update(generator.describe())
                loaded = model.fingerprint + str(model.path)
            began = time.monotonic()
            results = generator.generate(batch)
            seconds = time.monotonic() - began
            generation_seconds += seconds
            for result in results:
                item = (result.job, base_record(result.job, len(batch), seconds / len(batch)))
                if result.pixels is None:
                    failed(item, result.error or "no image")
                else:
                    meta = {k: v for k, v in item[1].items() if k not in ("fields", "run_id")}
                    writer.submit(item, result.pixels, result.job.file, meta)
        if generator is not None:
            generator.close()
    except KeyboardInterrupt:
        interrupted_hard = True
    finally:
        writer.close()
        ledger.close()
        stop.restore()
        progress.stop()

    wall = time.monotonic() - started
    interrupted = stop.signal is not None or interrupted_hard
    if interrupted:
        exit_code = stop.exit_code or EXIT_SIGINT
    else:
        exit_code = EXIT_FAILED_JOBS if counts["failed"] else EXIT_OK
    found_versions = versions()
    summary = {
        "genbatch_version": found_versions.get("genbatch"),
        "run_id": run_id,
        "started_at": started_at,
        "finished_at": _now(),
        "wall_seconds": round(wall, 3),
        "generation_seconds": round(generation_seconds, 3),
        "images_per_second": round(counts["done"] / wall, 3) if wall > 0 else None,
        "counts": {
            "planned": len(plan.jobs),
            "already_done": already_done,
            "done": counts["done"],
            "failed": counts["failed"],
            "skipped": len(manifest.skipped),
            "not_run": len(pending) - counts["done"] - counts["failed"],
        },
        "exit_code": exit_code,
        "interrupted": interrupted,
        "command": command_line(),
        "manifest": manifest.path,
        "out": str(out),
        "models": [{"name": m.name, "path": str(m.path), "fingerprint": m.fingerprint, "source": m.source}
                   for m in plan.models],
        "backend": options.backend,
        "device": device,
        "dtype": dtype,
        "providers": facts.get("providers"),
        "batch_size": options.batch_size,
        "settings": {
            "name_template": options.name_template, "format": options.image_format, "column_map": options.column_map,
            "set": options.overrides, "limit": options.limit,
            "shard": f"{options.shard[0]}/{options.shard[1]}" if options.shard else None,
            "defaults": options.defaults.__dict__, "scheduler": options.scheduler, "force": options.force,
        },
        "backend_facts": facts,
        "versions": found_versions,
        "failures": failures,
        "skipped": [{"line": s.line, "prompt": s.prompt, "reasons": s.reasons} for s in manifest.skipped],
    }
    write_json(out / "run.json", summary)
    records = list(iter_records(out))  # read once for the tables and the page
    write_tables(out, records)
    if options.html_report:
        _write_html(out, say, records)
    return RunResult(exit_code, summary, plan, pending, manifest.warnings)


def _load(backend: Any, model: ModelRef, device: str, dtype: str, options: RunOptions) -> Any:
    kwargs: dict[str, Any] = {"device": device, "dtype": dtype, "scheduler": options.scheduler}
    if options.providers:
        kwargs["providers"] = options.providers
    return backend.load(model, **kwargs)


def _write_html(out: Path, say: Callable[[str], None], records: list[dict[str, Any]]) -> None:
    try:
        from .report_html import write_html_report
    except ImportError:
        return
    try:
        write_html_report(out, records=records)
    except Exception as err:  # the images and ledger are safe; a report problem must not fail the run
        say(f"warning: could not write report.html: {err}")


def format_summary(summary: dict[str, Any]) -> str:
    """The five-second read at the end of a run."""
    c = summary["counts"]
    lines = [
        f"{c['done']} generated, {c['already_done']} already done, {c['failed']} failed, "
        f"{c['skipped']} rows skipped"
        + (f", {c['not_run']} not run (interrupted)" if summary.get("interrupted") else ""),
        f"{summary['wall_seconds']:.1f}s wall, {summary['images_per_second'] or 0:.2f} images/s on "
        f"{summary['backend']}/{summary['device']}/{summary['dtype']}",
        f"images, genbatch.jsonl, run.json, report.csv/.parquet, report.html in {summary['out']}",
    ]
    for failure in summary["failures"][:10]:
        lines.append(f"  failed: line {failure['line']} seed {failure['seed']}: {failure['error']}")
    if len(summary["failures"]) > 10:
        lines.append(f"  ... and {len(summary['failures']) - 10} more failures (see run.json)")
    return "\n".join(lines)


__all__ = ["RunOptions", "RunResult", "run_manifest", "format_summary", "GenbatchError"]
