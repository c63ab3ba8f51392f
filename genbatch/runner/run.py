"""The main job, as the numbered steps of a run: read the manifest, plan, take the output
folder, find what is left to do, run it on an engine, then write the summary and reports.

``run_manifest`` is what ``genbatch run`` calls; everything it does is reachable from Python.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from genbatch.backends import get_backend
from genbatch.bucket import Bucket, open_bucket, output_location
from genbatch.bulk import paused_gc
from genbatch.echo import shown_bare
from genbatch.engine import ENGINES
from genbatch.engine.base import EngineReport, EngineWork
from genbatch.engine.batch_size import BatchSizer
from genbatch.engine.sink import ResultSink, now
from genbatch.errors import EXIT_FAILED_JOBS, EXIT_OK, EXIT_SIGINT, GenbatchError, ManifestError
from genbatch.manifest.image_folder import read_rows
from genbatch.manifest.read import Manifest
from genbatch.pipelines.speed import run_problem
from genbatch.pipelines.torch_runtime import quiet_import_noise
from genbatch.plan.axes import apply_axes
from genbatch.plan.axes import describe as describe_axes
from genbatch.plan.names import keep_done_files
from genbatch.plan.planner import Job, Plan, count_batches, make_plan, ordered_groups
from genbatch.progress import Progress
from genbatch.report.summaries import METADATA_NAME, command_line, versions, write_json, write_metadata, write_tables
from genbatch.report.summaries import prepare as prepare_reports  # imports of the end-of-run reports, started early
from genbatch.report.thumbnails import THUMBS_DIR, thumbs_folder
from genbatch.runner.options import RunOptions
from genbatch.runner.stop_signals import StopSignals
from genbatch.runner.summary import Counts, RunSummary
from genbatch.safe_write import UnsafePathError, contained, remove_stale_temp_files, unwritable
from genbatch.store.bucket_lock import BucketLock
from genbatch.store.bucket_view import BucketView, safe_name
from genbatch.store.ledger import LEDGER_NAME, CurrentRecords, Ledger, LedgerWriter
from genbatch.store.output_lock import LOCK_NAME, OutputFolderLock
from genbatch.store.resume_scan import DoneIndex, done_index_soon
from genbatch.store.segments import SegmentLedger


@dataclass
class RunResult:
    exit_code: int
    summary: RunSummary
    plan: Plan | None = None
    pending: list[Job] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # said after the run's summary (a lock left behind)


def load_manifest(options: RunOptions) -> Manifest:
    """The rows of the manifest, or of the folder of images (``--input-dir``), checked."""
    given = options.input
    manifest = read_rows(
        given.manifest,
        input_dir=given.input_dir,
        mask_dir=given.mask_dir,
        prompt=given.prompt,
        format=given.format,
        column_map=given.column_map,
        overrides=given.overrides,
        max_images_per_row=given.max_images_per_row,
    )
    if manifest.fatal_problems or (manifest.problems and not options.input.skip_invalid):
        raise ManifestError(manifest.problems)
    manifest.rows = apply_axes(manifest.rows, options.input.axes, max_combinations=options.input.max_images_per_row)
    return manifest


def plan_run(manifest: Manifest, options: RunOptions) -> Plan:
    """The plan of ``manifest``, for the device and dtype the backend resolves."""
    device, dtype = get_backend(options.plan.backend).resolve(options.engine.device, options.engine.dtype)
    plan = make_plan(manifest, options.plan, device, dtype, allow_pickle=options.torch.allow_pickle)
    if options.plan.backend == "torch":  # the speed options its models, device and packages take, before any load
        why = run_problem(
            plan.models,
            device,
            dtype,
            quantize=options.plan.defaults.quantize,
            compile=options.torch.compile,
            attention=options.torch.attention,
        )
        if why:
            raise GenbatchError(why)
    return plan


def run_manifest(options: RunOptions) -> RunResult:
    """Run (or with ``dry_run`` only plan) a manifest into ``options.output.out``. Raises
    :class:`GenbatchError` for bad input, before anything is written."""
    quiet_import_noise()  # before planning imports diffusers
    where = output_location(options.output.out)
    if isinstance(where, str):
        return _run_into_bucket(options, open_bucket(where))
    out = where
    if options.dry_run:
        # 1. Read and check the manifest  2. Plan (no cyclic GC while millions of rows and jobs are made),
        # while the resume scan of a large ledger runs beside them (genbatch.store.resume_scan)
        with done_index_soon(out) as scan, paused_gc():
            options, manifest, plan = read_and_plan(options)
            return _dry_run(options, manifest, plan, scan)
    # 3. Take the output folder first: a second run on it says so at once, before any heavy import
    with OutputFolderLock(out, wait=options.output.wait), done_index_soon(out) as scan:
        with paused_gc():
            options, manifest, plan = read_and_plan(options)
        return _run_locked(options, manifest, plan, scan)


def read_and_plan(options: RunOptions) -> tuple[RunOptions, Manifest, Plan]:
    """Steps 1 and 2: the manifest read and checked, the options ``--speed fast`` completes, the plan."""
    manifest = load_manifest(options)
    options, left_off = with_speed(options, manifest)
    plan = plan_run(manifest, options)
    plan.warnings.extend(left_off)
    return options, manifest, plan


def _run_into_bucket(options: RunOptions, bucket: Bucket) -> RunResult:
    """:func:`run_manifest` into a prefix in object storage: the prefix is taken with a lock object,
    its ledger read through a local view (genbatch.store.bucket_view), the images put by the
    engine's writers and the ledger written as segments (genbatch.store.segments)."""
    if options.dry_run:
        with BucketView(bucket) as view, paused_gc():
            options, manifest, plan = read_and_plan(options)
            return _dry_run(options, manifest, plan, view.done_index)
    with BucketLock(bucket, wait=options.output.wait) as lock, BucketView(bucket) as view:
        with paused_gc():
            options, manifest, plan = read_and_plan(options)
        result = _run_locked(options, manifest, plan, view.done_index, BucketRun(view, lock))
    if lock.left:
        result.notes.append(lock.left)
    return result


@dataclass
class BucketRun:
    """What a run into object storage holds: the prefix's local view and its lock."""

    view: BucketView
    lock: BucketLock


def with_speed(options: RunOptions, manifest: Manifest) -> tuple[RunOptions, list[str]]:
    """``options`` with what ``--speed fast`` turns on for the run's models and device where the
    options leave it unset (genbatch.pipelines.speed.fast_settings): the --cache, --cache-threshold,
    --quantize and --compile it picks, recorded as those options are; and what it leaves off,
    which the run says once, as a warning."""
    if options.speed != "fast" or options.plan.backend != "torch":
        return options, []
    from genbatch.pipelines.speed import fast_settings
    from genbatch.plan.planner import resolve_models

    device, dtype = get_backend("torch").resolve(options.engine.device, options.engine.dtype)
    models = resolve_models(manifest, options.plan.model, config=options.plan.config, vae=options.plan.vae)
    settings, left_off = fast_settings([m.path for m in models.values()], device, dtype)
    given = options.plan.defaults
    chosen = {k: v for k, v in settings.items() if k != "compile" and given.get(k) is None}
    if given.cache is not None:  # a cache of the user's keeps its own threshold
        chosen.pop("cache_threshold", None)
    defaults = replace(given, **chosen)
    torch = options.torch
    if "compile" in settings and torch.compile is None:
        torch = replace(torch, compile=settings["compile"])
    faster = replace(options, plan=replace(options.plan, defaults=defaults), torch=torch)
    return faster, [f"--speed fast: {why}" for why in left_off]


def _dry_run(options: RunOptions, manifest: Manifest, plan: Plan, scan: Callable[[], DoneIndex]) -> RunResult:
    out = output_location(options.output.out)
    there = isinstance(out, str) or out.exists()
    pending, renamed = _pending(out, options, plan, lambda message: None, scan if there else dict)
    summary = _summary(options, manifest, plan, pending, dry_run=True)
    warnings = manifest.warnings + plan.warnings + ([_renamed_note(renamed, dry_run=True)] if renamed else [])
    return RunResult(EXIT_OK, summary, plan, pending, warnings)


def model_defaults(model: Any) -> dict[str, Any]:
    """What a job of this model runs at where neither its row nor a run option says."""
    return {
        k: model.defaults[k]
        for k in ("steps", "guidance_scale", "width", "height", "max_sequence_length")
        if model.defaults.get(k) is not None
    }


def _pending(
    out: Path | str, options: RunOptions, plan: Plan, mismatched: Callable[[str], None], scan: Callable[[], DoneIndex]
) -> tuple[list[Job], list[tuple[str, str]]]:
    """The jobs left to do, with the files they will write (``scan``: the resume scan of ``out``),
    and (name, name given) of each pending job whose name is another job's done image: every
    done image on disk keeps its file, even one that ``--verify`` regenerates or whose job is no
    longer in the manifest (genbatch.plan.names.keep_done_files)."""
    index = scan()
    done = _done(out, options, mismatched, index)
    pending = [j for j in plan.jobs if options.output.force or j.key not in done]
    return pending, keep_done_files(pending, index)


def _done(out: Path | str, options: RunOptions, mismatched: Callable[[str], None], done: DoneIndex) -> DoneIndex:
    """The done records of ``out`` (``done``: its resume scan); with ``--verify`` only those
    whose image still has its recorded sha256 (the others are passed to ``mismatched``)."""
    if options.output.verify and not options.output.force:
        from genbatch.store.verify import still_done

        done, changed = still_done(out, done)
        for file in changed:
            mismatched(file)
    return done


def _renamed_note(renamed: list[tuple[str, str]], *, dry_run: bool) -> str:
    """What a run (or a dry run) says once about the new images named apart from done ones."""
    count = len(renamed)
    if count == 1:
        said = "gets another name because its name belongs" if dry_run else "got another name because its name belongs"
        head = f"1 new image {said} to a done image"
    else:
        said = "get other names because their names belong" if dry_run else "got other names because their names belong"
        head = f"{count} new images {said} to done images"
    shown_names = ", ".join(f"{shown_bare(old)} -> {shown_bare(new)}" for old, new in renamed[:5])
    return f"{head}: {shown_names}" + (f" ... and {count - 5} more" if count > 5 else "")


def _summary(options: RunOptions, manifest: Manifest, plan: Plan, pending: list[Job], *, dry_run: bool) -> RunSummary:
    return RunSummary(
        out=str(options.output.out),
        dry_run=dry_run,
        manifest=manifest.path,
        counts=Counts(
            planned=len(plan.jobs),
            already_done=len(plan.jobs) - len(pending),
            to_generate=len(pending),
            batches=count_batches(pending, options.engine.fixed_batch_size(plan.device) or 8) if pending else 0,
            skipped=len(manifest.skipped),
            not_run=len(pending),
        ),
        models=[
            {
                "name": m.name,
                "path": str(m.path),
                "fingerprint": m.fingerprint,
                "source": m.source,
                "family": m.family,
                "defaults": model_defaults(m),
            }
            for m in plan.models
        ],
        backend=options.plan.backend,
        engine=options.engine.engine,
        device=plan.device,
        dtype=plan.dtype,
        batch_size=options.engine.fixed_batch_size(plan.device) or "auto",
        command=command_line(),
        settings={
            "speed": options.speed,
            "name_template": options.plan.name_template,
            "format": options.plan.image_format,
            "column_map": options.input.column_map,
            "set": options.input.overrides,
            "vary": describe_axes(options.input.axes),
            "limit": options.plan.limit,
            "shard": f"{options.plan.shard[0]}/{options.plan.shard[1]}" if options.plan.shard else None,
            "defaults": options.plan.defaults.__dict__,
            "scheduler": options.plan.scheduler,
            "force": options.output.force,
            "backend_options": options.backend_options(plan.device, plan.dtype).as_dict(),
            "engine_options": asdict(options.engine.ray) if options.engine.ray else {},
        },
        skipped=[{"line": s.line, "prompt": s.prompt, "reasons": s.reasons} for s in manifest.skipped],
    )


def _run_locked(
    options: RunOptions,
    manifest: Manifest,
    plan: Plan,
    scan: Callable[[], DoneIndex],
    bucket_run: BucketRun | None = None,
) -> RunResult:
    out = bucket_run.view.bucket.url if bucket_run else output_location(options.output.out)
    started_at, started = now(), time.monotonic()
    run_id = uuid.uuid4().hex[:12]
    engine = ENGINES[options.engine.engine](options.engine.ray)  # a missing engine package fails before any write
    # 4. What is left to do: the ledger says what is done, the disk (or the store's listing) confirms it
    ledger: LedgerWriter
    if bucket_run:
        lock = bucket_run.lock
        view = bucket_run.view
        ledger = SegmentLedger(
            view.bucket,
            run_id,
            view.sizes,
            holds=lambda: not lock.lost,
            local=(view.folder / LEDGER_NAME, view.ledger_parts),
        )
    else:
        remove_stale_temp_files(Path(out))
        ledger = Ledger(Path(out))
    mismatched: list[str] = []
    pending, renamed = _pending(out, options, plan, mismatched.append, scan)
    check_output_paths(out, pending)
    summary = _summary(options, manifest, plan, pending, dry_run=False)
    summary.run_id, summary.started_at = run_id, started_at
    progress = Progress(len(pending), quiet=options.quiet)
    sink = ResultSink(ledger, progress, run_id=summary.run_id, manifest=manifest.path, dtype=plan.dtype)
    # 5. Say what is known before generating: warnings, repairs, skipped rows, what is done
    _announce(manifest, plan, summary, ledger, sink, mismatched, progress.log)
    if renamed:
        progress.log(f"note: {_renamed_note(renamed, dry_run=False)}")
    # 6. Run the batches on the engine; the sink records every image as it lands
    sizer = BatchSizer(options.engine.fixed_batch_size(plan.device))
    work = _engine_work(out, options, plan, pending, sizer)
    stop = StopSignals()
    stop.install()
    stop_requested = stop.requested
    if bucket_run:  # another driver took the prefix over (this one was cut off for a lease): stop
        stop_requested = lambda: stop.requested() or lock.lost  # noqa: E731
    if plan.device != "cpu":  # on the CPU the cores are busy generating: the imports wait for the end
        prepare_reports(options.output.html_report)
    report, interrupted_hard = None, False
    try:
        report = engine.run(work, sink, stop_requested, progress.log)
    except KeyboardInterrupt:
        interrupted_hard = True
    finally:
        try:
            ledger.close()  # a bucket's: the last segment and the compaction
        except OSError as err:
            sink.stop(
                unwritable(err, ledger.out)
                or GenbatchError(f"cannot write the ledger of {ledger.out}: {err}; a rerun makes its last images again")
            )
        stop.restore()
        progress.stop()
    # 7. The summary (run.json) and the reports, rebuilt from the ledger
    summary.interrupted = stop.signal is not None or interrupted_hard
    _settle(summary, sink, report, stop.exit_code, len(pending), time.monotonic() - started)
    summary.batch_sizes = sizer.describe()
    if bucket_run and bucket_run.lock.lost and summary.error is None:
        lost = GenbatchError(
            f"another genbatch run took {out} over (this one's lock went unrenewed for "
            f"{bucket_run.lock.lease:.0f} s); this run stopped, with what it made recorded"
        )
        summary.exit_code, summary.error = 1, {"message": str(lost), "type": type(lost).__name__}
        return RunResult(summary.exit_code, summary, plan, pending, manifest.warnings + plan.warnings)
    if bucket_run:
        compacted = ledger.compacted if isinstance(ledger, SegmentLedger) else None
        _write_bucket_reports(bucket_run.view, options, summary, progress.log, compacted)
    else:
        _write_reports(Path(out), options, summary, progress.log)
    return RunResult(summary.exit_code, summary, plan, pending, manifest.warnings + plan.warnings)


def _announce(
    manifest: Manifest,
    plan: Plan,
    summary: RunSummary,
    ledger: LedgerWriter,
    sink: ResultSink,
    mismatched: list[str],
    say: Callable[[str], None],
) -> None:
    if mismatched:
        say(
            f"verify: {len(mismatched)} done images no longer match their ledger sha256 and are generated again: "
            + ", ".join(shown_bare(f) for f in mismatched[:5])
            + (" ..." if len(mismatched) > 5 else "")
        )
    for warning in manifest.warnings + plan.warnings:
        say(f"warning: {warning}")
    if ledger.repaired:
        say("note: the ledger's last line was torn by an interrupted run; it was removed")
    for skipped in manifest.skipped:
        sink.skipped(manifest, skipped)
    if summary.counts.already_done:
        say(
            f"{summary.counts.already_done} of {len(plan.jobs)} images are already done in {summary.out}; "
            f"generating {summary.counts.to_generate}"
        )


def _engine_work(out: Path | str, options: RunOptions, plan: Plan, pending: list[Job], sizer: BatchSizer) -> EngineWork:
    return EngineWork(
        out=out,
        groups=ordered_groups(pending),
        backend=options.plan.backend,
        options=options.backend_options(plan.device, plan.dtype),
        encoding=options.encoding(),
        # Measured on a 16-core H100 box: past 4 threads the GIL-bound part
        # (metadata, ledger) makes more threads slower, not faster.
        writers=options.output.workers or max(1, min(4, os.cpu_count() or 1)),
        sizer=sizer,
    )


def _settle(
    summary: RunSummary,
    sink: ResultSink,
    report: EngineReport | None,
    signal_exit_code: int | None,
    pending: int,
    wall: float,
) -> None:
    """Fill in what the run did: counts, exit code, timings, the engine's facts."""
    if summary.interrupted:
        summary.exit_code = signal_exit_code or EXIT_SIGINT
    else:
        summary.exit_code = EXIT_FAILED_JOBS if sink.failed_count else EXIT_OK
    summary.counts.done, summary.counts.failed = sink.done_count, sink.failed_count
    summary.counts.not_run = pending - sink.done_count - sink.failed_count
    summary.failures = sink.failures
    summary.finished_at, summary.wall_seconds = now(), round(wall, 3)
    summary.generation_seconds = round(report.generation_seconds, 3) if report else 0.0
    summary.images_per_second = round(sink.done_count / wall, 3) if wall > 0 else None
    summary.backend_facts = report.facts if report else {}
    summary.workers = report.workers if report else []
    summary.providers = summary.backend_facts.get("providers")
    summary.versions = versions()
    summary.genbatch_version = summary.versions.get("genbatch")
    if sink.fatal is not None:
        summary.exit_code = summary.exit_code if summary.interrupted else sink.fatal.exit_code
        summary.error = {"message": str(sink.fatal), "type": type(sink.fatal).__name__}


def _write_reports(out: Path, options: RunOptions, summary: RunSummary, say: Callable[[str], None]) -> None:
    """run.json, the tables, metadata.jsonl and report.html; a full disk here is a warning (the
    images and the ledger are safe) and the run's exit code says so."""
    written = summary.written = []  # what the closing line names
    try:
        write_json(out / "run.json", summary.to_dict(), root=out)
        written.append("run.json")
        current = CurrentRecords(out)  # read once for the tables and metadata.jsonl
        write_tables(out, records=current)
        write_metadata(out, records=current)
        written.append("report.csv/.parquet")
        if options.output.html_report:
            _write_html(out, say)
            written.append("report.html")
    except OSError as err:
        fatal = unwritable(err, out)
        if fatal is None:
            raise
        if summary.error is None:  # said once, by the closing error line
            summary.exit_code, summary.error = fatal.exit_code, {"message": str(fatal), "type": type(fatal).__name__}
        elif summary.error["message"] != str(fatal):
            say(f"warning: the reports were not written: {fatal}")


# The files genbatch keeps in --out besides the images.
OWN_FILES = (
    LOCK_NAME,
    "genbatch.jsonl",
    "run.json",
    "report.csv",
    "report.parquet",
    "report.html",
    METADATA_NAME,
    ".genbatch-thumbs",
    ".genbatch-grids",
    ".genbatch-report",
)


def check_output_paths(out: Path | str, jobs: list[Job]) -> None:
    """Before any image: every file this run may write stays inside ``out`` (a symlink planted
    for a file, a sub-folder, the ledger or the thumbnails that points elsewhere is refused; in
    object storage, a name that would leave the prefix)."""
    if isinstance(out, str):
        for job in jobs:
            if safe_name(job.file) is None:
                raise UnsafePathError(
                    f"{job.file}: a name that leaves the prefix {out}; genbatch never writes outside it"
                )
        return
    for name in OWN_FILES:
        contained(out, name)
    if os.path.lexists(Path(out) / THUMBS_DIR):  # made with the first image; one already there must be genbatch's
        thumbs_folder(out, contents=False)
    for folder in sorted({str(Path(job.file).parent) for job in jobs}):
        contained(out, Path(folder) / "x")


def _write_bucket_reports(
    view: BucketView,
    options: RunOptions,
    summary: RunSummary,
    say: Callable[[str], None],
    compacted: Path | None = None,
) -> None:
    """:func:`_write_reports` into the run's view of its prefix, then put into the prefix
    (``compacted``: the ledger this run compacted and put, a local file, not read back)."""
    bucket = view.bucket
    try:  # a view of the prefix as it is now, with this run's ledger lines (compacted)
        html = options.output.html_report
        with BucketView(bucket, thumbs="stand-in" if html else False, stand_ins=html, ledger=compacted) as now:
            _write_reports(now.folder, options, summary, say)
            now.publish()
    except OSError as err:
        fatal = unwritable(err, bucket.url)
        if fatal is None:
            raise
        if summary.error is None:  # else the run's own error (the store failed during the run) stands
            summary.exit_code, summary.error = fatal.exit_code, {"message": str(fatal), "type": type(fatal).__name__}


def _write_html(out: Path, say: Callable[[str], None]) -> None:
    from genbatch.report.html import write_html_report

    try:
        write_html_report(out)
    except OSError:
        raise
    except Exception as err:  # the images and ledger are safe; a report problem must not fail the run
        say(f"warning: could not write report.html: {err}")


__all__ = ["RunOptions", "RunResult", "RunSummary", "run_manifest", "GenbatchError"]
