"""The ``genbatch`` command. It parses options, calls the library, and turns library errors
into one-line messages and documented exit codes; it does no work of its own."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from . import __version__
from .a1111 import READINGS
from .axes import parse_axes
from .echo import shown, shown_bare
from .errors import EXIT_SIGINT, EXIT_USAGE, GenbatchError, ManifestError
from .fields import text_value
from .image_formats import BY_EXTENSION as IMAGE_FORMATS
from .manifest import FORMATS, MAX_IMAGES_PER_ROW, parse_assignments, parse_value, read_manifest
from .plan import DEFAULT_NAME_TEMPLATE, Defaults, parse_shard
from .samplers import parse_scheduler

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Batch image generation from a manifest of prompts and seeds: reproducible, resumable, traceable.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Print a GenbatchError as ``error: ...`` and exit with its code, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except GenbatchError as err:
            _err(f"error: {err}")
            raise typer.Exit(err.exit_code) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        print(f"genbatch {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    _show_library_warnings()


def _show_library_warnings() -> None:
    """genbatch's own logged warnings (a skipped ledger line) as ``warning: ...`` on stderr."""
    logger = logging.getLogger("genbatch")
    if not any(isinstance(h, _WarningLine) for h in logger.handlers):
        logger.addHandler(_WarningLine())
        logger.propagate = False


class _WarningLine(logging.Handler):
    """Writes to whatever sys.stderr is at the time (a test runner swaps it per command)."""

    def emit(self, record: logging.LogRecord) -> None:
        _err(f"warning: {record.getMessage()}")


def _split_formats(values: list[str]) -> tuple[str | None, str]:
    """``--format`` takes a manifest format, an image format, or one of each."""
    manifest_format, image_format = None, "png"
    for value in values:
        lowered = value.lower()
        if lowered in FORMATS:
            manifest_format = lowered
        elif lowered in IMAGE_FORMATS:
            image_format = IMAGE_FORMATS[lowered].name
        else:
            raise GenbatchError(
                f"--format {value!r}: expected an image format (png, webp, jpg) or a manifest format "
                f"({', '.join(FORMATS)})"
            )
    return manifest_format, image_format


def _batch_size(value: str | None) -> int | str | None:
    if value is None:
        return None
    if value.strip().lower() == "auto":
        return "auto"
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise GenbatchError(f"--batch-size {value!r}: expected a whole number >= 1 or auto")
    return number


def _column_map(columns: list[str], prompt_column: str | None) -> dict[str, str]:
    mapping = parse_assignments(columns, "--column")
    if prompt_column:
        mapping["prompt"] = prompt_column
    return mapping


@app.command()
@user_errors
def run(
    manifest: str = typer.Argument(..., help="Manifest file (.csv .tsv .jsonl .ndjson .txt .parquet), or - for stdin."),
    out: Path = typer.Option(Path("genbatch-out"), "--out", "-o", help="Output folder: images, ledger, reports."),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Built-in name, diffusers folder, ONNX export, or hub id in the local cache. Default: the embedded model.",
    ),
    backend: str = typer.Option("torch", help="torch (diffusers) or onnx (ONNX Runtime)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    dtype: str = typer.Option("auto", help="auto, fp32, fp16 or bf16 (auto: fp16 on GPU, fp32 on CPU)."),
    config: str | None = typer.Option(
        None,
        "--config",
        help="For a single-file --model (model.safetensors): its pipeline's diffusers folder or hub id in the local cache.",
    ),
    vae: str | None = typer.Option(
        None,
        "--vae",
        help="Replace the model's VAE: a diffusers VAE folder, hub id in the local cache, or .safetensors file.",
    ),
    scheduler: str | None = typer.Option(
        None,
        help='An A1111 sampler name ("DPM++ 2M Karras", "Euler a"...) or a diffusers scheduler class name, e.g. EulerDiscreteScheduler.',
    ),
    clip_skip: int | None = typer.Option(
        None,
        "--clip-skip",
        min=1,
        max=12,
        help="A1111's clip skip for rows without one: 1 = the text encoder's last layer, 2 = the one before.",
    ),
    providers: str | None = typer.Option(
        None, help="ONNX Runtime execution providers, comma-separated (default: best available)."
    ),
    batch_size: str | None = typer.Option(
        None,
        "--batch-size",
        "-b",
        help="Images per batch, or auto (the largest that fits and is fastest per image; remembered). Default: auto on a GPU, 8 on a CPU.",
    ),
    steps: int | None = typer.Option(None, min=1, help="Steps for rows without a steps column."),
    guidance: float | None = typer.Option(None, min=0.0, help="Guidance scale for rows without one."),
    width: int | None = typer.Option(None, min=8, help="Width for rows without one (multiple of 8)."),
    height: int | None = typer.Option(None, min=8, help="Height for rows without one (multiple of 8)."),
    negative: str | None = typer.Option(
        None, help="Negative prompt for rows without one (default: none, the model's own default)."
    ),
    num_images: int = typer.Option(1, "--num-images", "-n", min=1, help="Images per row for rows without num_images."),
    max_images_per_row: int = typer.Option(
        MAX_IMAGES_PER_ROW, "--max-images-per-row", min=1, help="Refuse rows that ask for more images than this."
    ),
    seed: int = typer.Option(0, min=0, help="Base seed from which rows without a seed derive theirs."),
    lora: list[str] = typer.Option(
        [],
        help="A LoRA for rows without a lora column: a .safetensors file, a folder or a cached hub id, with an optional weight: --lora style.safetensors:0.8 (repeat for several).",
    ),
    prompt_weighting: str = typer.Option(
        "off",
        help="a1111: read (word:1.3), (word) and [word] in prompts as weights (needs compel); off: prompts as written.",
    ),
    vary: list[str] = typer.Option(
        [],
        help="Run every row for each value of a field: --vary steps=20,30 --vary lora=a:0.5,a:1.0 (the product of all --vary).",
    ),
    column: list[str] = typer.Option([], help="Read a field from another column: --column seed=evaluation_seed."),
    prompt_column: str | None = typer.Option(None, help="The column that holds the prompt."),
    set_: list[str] = typer.Option([], "--set", help="Force a value on every row: --set width=512."),
    format_: list[str] = typer.Option(
        [], "--format", "-f", help="Image format png|webp|jpg, and/or manifest format csv|tsv|jsonl|txt|parquet."
    ),
    quality: int = typer.Option(95, min=1, max=100, help="WebP/JPEG quality."),
    compress_level: int = typer.Option(6, min=0, max=9, help="PNG compression level (0 fastest, 9 smallest)."),
    name_template: str = typer.Option(
        DEFAULT_NAME_TEMPLATE,
        help="Output file name; fields: index, row, line, k, bucket (index // 1000), id, slug, prompt, seed, steps, guidance, width, height, model, key, ext, and any manifest column.",
    ),
    workers: int | None = typer.Option(None, min=1, help="Image encoding threads (default: up to 4)."),
    limit: int | None = typer.Option(None, min=0, help="Run at most N jobs of the plan."),
    shard: str | None = typer.Option(None, help="Run shard I of N (1-based), e.g. --shard 2/4."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; load no model, write nothing."),
    force: bool = typer.Option(False, help="Regenerate images that are already done."),
    verify: bool = typer.Option(
        False, "--verify", help="Hash the images already done; regenerate those that no longer match the ledger."
    ),
    skip_invalid: bool = typer.Option(
        False, "--skip-invalid", help="Run the valid rows; list invalid ones in the report."
    ),
    wait: bool = typer.Option(False, help="If another run holds --out, wait for it instead of exiting."),
    engine: str = typer.Option(
        "local", help="local (this process) or ray (workers on a Ray cluster; pip install 'genbatch[ray]')."
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        help="Ray cluster to join: auto, host:6379 or ray://host:10001 (default: RAY_ADDRESS, else start a local instance).",
    ),
    ray_workers: int | None = typer.Option(
        None, "--ray-workers", min=1, help="Ray workers (default: one per GPU, or per CPU where there is none)."
    ),
    gpus_per_worker: float | None = typer.Option(
        None,
        "--gpus-per-worker",
        min=0.0,
        help="GPUs each Ray worker holds; 0 for CPU workers, 0.5 for two per GPU (default: 1 if the cluster has GPUs).",
    ),
    max_retries: int | None = typer.Option(
        None,
        "--max-retries",
        min=0,
        help="Times a batch lost with its Ray worker is retried before its jobs are recorded as failed (default 3).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    json_: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    offload: str = typer.Option(
        "none", help="torch: none, model or sequential (diffusers' CPU offload, for models larger than the GPU)."
    ),
    vae_tiling: bool = typer.Option(
        False, "--vae-tiling", help="torch: decode large images tile by tile (less memory)."
    ),
    vae_slicing: bool = typer.Option(
        False, "--vae-slicing", help="torch: decode a batch one image at a time (less memory)."
    ),
) -> None:
    """Generate an image for every row (x num_images) of MANIFEST into --out.

    Reruns generate only what is missing. Exit codes: 0 all done, 1 some jobs failed,
    2 bad input, 130/143 interrupted.

    \b
    Examples:
      genbatch run prompts.csv --out images
      genbatch run parti.tsv --out parti --steps 30 --batch-size 16 --shard 1/4
      genbatch run coco.jsonl --out coco --set width=512 --set height=512 --name-template "{file_name}"
      genbatch run prompts.csv --out /shared/images --engine ray --ray-address auto
    """
    from .summary import RunSummary

    try:
        options = _run_options(**locals())
        from .runner import run_manifest

        result = run_manifest(options)
    except GenbatchError as err:
        if json_:  # a script reading --json gets an object on failure too
            print(
                json.dumps(
                    RunSummary.from_error(err, str(out), manifest).to_dict(), indent=2, ensure_ascii=False, default=str
                )
            )
        raise
    if dry_run:
        _print_plan(result, json_)
        return
    if not quiet:
        _err(result.summary.format())
    if result.summary.error:
        _err(f"error: {result.summary.error['message']}")
    if json_:
        print(json.dumps(result.summary.to_dict(), indent=2, ensure_ascii=False, default=str))
    raise typer.Exit(result.exit_code)


def _run_options(
    manifest: str,
    out: Path,
    model: str | None,
    config: str | None,
    vae: str | None,
    clip_skip: int | None,
    backend: str,
    device: str,
    dtype: str,
    scheduler: str | None,
    providers: str | None,
    batch_size: str | None,
    steps: int | None,
    guidance: float | None,
    width: int | None,
    height: int | None,
    negative: str | None,
    num_images: int,
    seed: int,
    lora: list[str],
    prompt_weighting: str,
    vary: list[str],
    column: list[str],
    prompt_column: str | None,
    set_: list[str],
    format_: list[str],
    quality: int,
    compress_level: int,
    name_template: str,
    workers: int | None,
    limit: int | None,
    shard: str | None,
    dry_run: bool,
    force: bool,
    skip_invalid: bool,
    wait: bool,
    quiet: bool,
    engine: str,
    ray_address: str | None,
    ray_workers: int | None,
    gpus_per_worker: float | None,
    max_retries: int | None,
    max_images_per_row: int,
    verify: bool,
    offload: str = "none",
    vae_tiling: bool = False,
    vae_slicing: bool = False,
    **_: Any,
) -> Any:
    """``genbatch run``'s options, checked, as the library's RunOptions."""
    from .runner import RunOptions

    for name, value in (("width", width), ("height", height), ("guidance_scale", guidance)):
        if value is not None:
            try:
                parse_value(name, value)
            except ValueError as err:
                raise GenbatchError(f"--{name.split('_')[0]}: {err}") from None
    if scheduler is not None:
        try:
            scheduler = parse_scheduler(scheduler, "--scheduler")
        except ValueError as err:
            raise GenbatchError(str(err)) from None
    if offload not in ("none", "model", "sequential"):
        raise GenbatchError(f"--offload {offload!r}: expected none, model or sequential")
    if num_images > max_images_per_row:
        raise GenbatchError(
            f"--num-images {num_images} is over the limit of {max_images_per_row} images per row; "
            "pass --max-images-per-row N to allow more"
        )
    manifest_format, image_format = _split_formats(format_)
    try:
        loras = parse_value("lora", "; ".join(lora)) if lora else None
    except ValueError as err:
        raise GenbatchError(f"--lora: {err}") from None
    try:
        weighting = parse_value("prompt_weighting", prompt_weighting)
    except ValueError as err:
        raise GenbatchError(f"--prompt-weighting: {err}") from None
    overrides = parse_assignments(set_, "--set")
    return RunOptions(
        offload=offload,
        vae_tiling=vae_tiling,
        vae_slicing=vae_slicing,
        engine=engine.lower(),
        engine_options=_engine_options(engine.lower(), ray_address, ray_workers, gpus_per_worker, max_retries),
        manifest=manifest,
        out=out,
        format=manifest_format,
        column_map=_column_map(column, prompt_column),
        overrides=overrides,
        axes=parse_axes(vary, overrides),
        defaults=Defaults(
            steps=steps,
            guidance_scale=guidance,
            width=width,
            height=height,
            negative_prompt=negative,
            num_images=num_images,
            seed=seed,
            clip_skip=clip_skip,
            lora=loras or None,
            prompt_weighting=None if weighting == "off" else weighting,
        ),
        model=model,
        config=config,
        vae=vae,
        backend=backend,
        device=device,
        dtype=dtype,
        scheduler=scheduler,
        providers=[p.strip() for p in providers.split(",") if p.strip()] if providers else None,
        batch_size=_batch_size(batch_size),
        name_template=name_template,
        image_format=image_format,
        quality=quality,
        compress_level=compress_level,
        workers=workers,
        limit=limit,
        shard=parse_shard(shard),
        dry_run=dry_run,
        force=force,
        skip_invalid=skip_invalid,
        wait=wait,
        quiet=quiet,
        max_images_per_row=max_images_per_row,
        verify=verify,
    )


def _engine_options(
    engine: str,
    ray_address: str | None,
    ray_workers: int | None,
    gpus_per_worker: float | None,
    max_retries: int | None,
) -> dict[str, Any]:
    ray = {
        "--ray-address": ray_address,
        "--ray-workers": ray_workers,
        "--gpus-per-worker": gpus_per_worker,
        "--max-retries": max_retries,
    }
    if engine == "local":
        given = [name for name, value in ray.items() if value is not None]
        if given:
            raise GenbatchError(f"{given[0]} is an option of --engine ray; add --engine ray, or leave it out")
        return {}
    if engine != "ray":
        raise GenbatchError(f"--engine {engine!r}: expected local or ray")
    return {
        "address": ray_address,
        "workers": ray_workers,
        "gpus_per_worker": gpus_per_worker,
        **({"max_retries": max_retries} if max_retries is not None else {}),
    }


def _print_plan(result: Any, as_json: bool) -> None:
    summary = result.summary
    if as_json:
        jobs = [{"index": j.index, "key": j.key, "file": j.file, **j.params()} for j in result.pending]
        print(json.dumps(dict(summary.to_dict(), jobs=jobs), indent=2, ensure_ascii=False, default=str))
        return
    for warning in result.warnings:
        _err(f"warning: {warning}")
    c = summary.counts
    models = ", ".join(
        f"{m['name']} ({m['fingerprint']}; {m['family']}: "
        + " ".join(f"{k}={v}" for k, v in m["defaults"].items())
        + ")"
        for m in summary.models
    )
    print(
        f"plan: {c.planned} images, {c.already_done} already done, {c.to_generate} to generate in {c.batches} batches"
    )
    print(f"model: {models}; {summary.backend}/{summary.device}/{summary.dtype}; out: {summary.out}")
    if c.skipped:
        print(f"{c.skipped} invalid rows will be skipped")
    for job in result.pending[:20]:
        own = f" timesteps={','.join(map(str, job.timesteps))}" if job.timesteps else ""
        own += f" lora={text_value('lora', job.lora)}" if job.lora else ""
        print(
            f"  {job.file}  seed={job.seed} steps={job.steps}{own} guidance={job.guidance_scale:g} "
            f"{job.width}x{job.height}  {shown(job.prompt, 60)}"
        )
    if len(result.pending) > 20:
        print(f"  ... and {len(result.pending) - 20} more")


@app.command()
@user_errors
def validate(
    manifest: str = typer.Argument(..., help="Manifest file, or - for stdin."),
    format_: str | None = typer.Option(None, "--format", "-f", help=f"Manifest format: {', '.join(FORMATS)}."),
    column: list[str] = typer.Option([], help="Read a field from another column: --column seed=evaluation_seed."),
    prompt_column: str | None = typer.Option(None, help="The column that holds the prompt."),
    set_: list[str] = typer.Option([], "--set", help="Force a value on every row: --set width=512."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="The model of rows without a model column (default: the embedded model)."
    ),
    json_: bool = typer.Option(False, "--json", help="Print problems as JSON on stdout."),
    max_images_per_row: int = typer.Option(
        MAX_IMAGES_PER_ROW, "--max-images-per-row", min=1, help="Refuse rows that ask for more images than this."
    ),
) -> None:
    """Check a manifest and report every problem as FILE:LINE:COLUMN: message, including
    models that cannot run on the torch backend and values their family does not take.
    Loads no model.

    Exit code 0 if the manifest is valid, 2 if not.

    \b
    Example:
      genbatch validate prompts.csv
    """
    try:
        manifest_ = read_manifest(
            manifest,
            format=format_,
            column_map=_column_map(column, prompt_column),
            overrides=parse_assignments(set_, "--set"),
            max_images_per_row=max_images_per_row,
        )
    except ManifestError as err:
        problems, warnings, rows, name, fmt, columns = err.problems, [], [], manifest, format_, {}
    else:
        problems, warnings, rows = manifest_.problems, manifest_.warnings, manifest_.rows
        name, fmt, columns = manifest_.path, manifest_.format, manifest_.columns
        if not manifest_.fatal_problems:
            from .families import manifest_problems

            problems = [*problems, *manifest_problems(manifest_, model)]
    images = sum(r.num_images or 1 for r in rows)
    if json_:
        print(
            json.dumps(
                {
                    "file": name,
                    "format": fmt,
                    "valid": not problems,
                    "rows": len(rows),
                    "images": images,
                    "columns": columns,
                    "warnings": warnings,
                    "problems": [
                        {"file": p.file, "line": p.line, "column": p.column, "message": p.message} for p in problems
                    ],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for warning in warnings:
            _err(f"warning: {warning}")
        for problem in problems:
            print(problem)
        reading = f" (read as {READINGS[fmt]})" if fmt in READINGS else ""
        if problems:
            _err(f"{name}: {len(problems)} problem{'s' if len(problems) != 1 else ''}, {len(rows)} valid rows{reading}")
        else:
            _err(
                f"{name}: {len(rows)} rows, {images} images, valid{reading} ({fmt}; columns: "
                + ", ".join(f"{k}<-{shown(v)}" for k, v in columns.items())
                + ")"
            )
    raise typer.Exit(EXIT_USAGE if problems else 0)


@app.command()
@user_errors
def models(
    folders: list[Path] | None = typer.Argument(None, help="Model folders to check as well."),
    json_: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """List the models genbatch can use here without a download: built-ins, the local
    Hugging Face cache and any FOLDERS, with their family and whether they run on the torch
    and onnx backends (and why not)."""
    from .models import list_models

    found = list_models(folders or [])
    if json_:
        print(json.dumps(found, indent=2))
        return
    for entry in found:
        mark = "*" if entry["default"] else " "
        state = "" if entry["present"] else " (built on first use)"
        print(f"{mark} {entry['name']:<24} {entry['source']:<10} {entry['path']}{state}")
        print(f"  {'':<24} {entry['description']}")
        runs = ", ".join(f"{b}: " + ("yes" if entry[b] is True else entry[b]) for b in ("torch", "onnx"))
        print(f"  {'':<24} family {entry['family']} ({entry['pipeline'] or '?'}); {runs}")
        if entry.get("notes"):
            print(f"  {'':<24} {entry['notes']}")


@app.command()
@user_errors
def export(
    to: str = typer.Option(..., "--to", help="Export format: onnx."),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Built-in name, diffusers folder, or hub id in the local cache. Default: the embedded model.",
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder. Default: exports/<model>-onnx."),
    opset: int = typer.Option(17, min=14, help="ONNX opset."),
    fp16: bool = typer.Option(False, "--fp16", help="Store weights in fp16 (for GPUs; inputs and outputs stay fp32)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    verify: bool = typer.Option(
        True, "--verify/--no-verify", help="Compare each component and whole images against torch."
    ),
    external_data: bool = typer.Option(
        False, "--external-data", help="Keep weights in model.onnx_data files even under 2 GB (always over)."
    ),
    json_: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Export a model for ONNX Runtime, then check it against torch: each component on
    fixed inputs and the same seeds end to end. Run the export with --backend onnx.

    Exit codes: 0 exported and verified, 1 verification over tolerance (figures printed),
    2 bad input (unknown model, unsupported pipeline, non-empty --out).

    \b
    Examples:
      genbatch export --to onnx
      genbatch export --to onnx --model ./my-sd15 --out exports/my-sd15-fp16 --fp16
      genbatch run prompts.csv --backend onnx --model exports/my-sd15-onnx
    """
    if to.lower() != "onnx":
        raise GenbatchError(f"--to {to!r}: the export format is onnx")
    from .export import export_onnx, format_parity

    result = export_onnx(
        model, out, opset=opset, fp16=fp16, overwrite=overwrite, verify=verify, force_external_data=external_data
    )
    if json_:
        print(
            json.dumps(
                {
                    "out": str(result.out),
                    "model": result.model,
                    "fingerprint": result.fingerprint,
                    "source_fingerprint": result.source_fingerprint,
                    "opset": result.opset,
                    "fp16": result.fp16,
                    "seconds": result.seconds,
                    "components": result.components,
                    "parity": result.parity,
                },
                indent=2,
                default=str,
            )
        )
        return
    _err(
        f"exported {result.model} to {result.out} in {result.seconds:.1f} s "
        f"(opset {result.opset}, {'fp16' if result.fp16 else 'fp32'}, fingerprint {result.fingerprint})"
    )
    _err(format_parity(result.parity))
    _err(f"run it: genbatch run PROMPTS --backend onnx --model {result.out}")


@app.command()
@user_errors
def report(
    out: Path = typer.Argument(..., help="An output folder of genbatch run."),
    contact_sheet: bool = typer.Option(False, "--contact-sheet", help="Also write contact-sheet-NNN.png grids."),
    cols: int = typer.Option(8, min=1, help="Contact sheet columns."),
    rows: int = typer.Option(8, min=1, help="Contact sheet rows."),
    tables: bool = typer.Option(True, help="Also rewrite report.csv, report.parquet and metadata.jsonl."),
) -> None:
    """Rebuild OUT/report.html (and report.csv/.parquet) from the ledger alone.

    \b
    Examples:
      genbatch report images/
      genbatch report images/ --contact-sheet
    """
    from .contact_sheet import write_contact_sheets
    from .ledger import ledger_path
    from .report import write_metadata, write_tables
    from .report_html import write_html_report

    if not ledger_path(out).exists():
        raise GenbatchError(f"{out}: no genbatch.jsonl here; is this the --out folder of a genbatch run?")
    if tables:
        write_tables(out)
        write_metadata(out)
    print(write_html_report(out))
    if contact_sheet:
        for sheet in write_contact_sheets(out, cols=cols, rows=rows):
            print(sheet)


@app.command()
@user_errors
def merge(
    outs: list[Path] = typer.Argument(..., help="Output folders of genbatch run (e.g. one per --shard)."),
    into: Path = typer.Option(..., "--into", help="The folder to merge them into (may be one of them)."),
    html: bool = typer.Option(True, "--html/--no-html", help="Rebuild report.html (and its thumbnails)."),
    json_: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Merge output folders into one: images hard-linked (or copied, across filesystems),
    ledgers merged with one line per job, reports (and metadata.jsonl) rebuilt. The folders are
    left as they were.

    Two different images under one file name are refused (exit 2) before anything is written.

    \b
    Example:
      genbatch run prompts.csv --out shard1 --shard 1/2   # on host 1
      genbatch run prompts.csv --out shard2 --shard 2/2   # on host 2
      genbatch merge shard1 shard2 --into images
    """
    from dataclasses import asdict

    from .merge import merge_outputs
    from .report import write_metadata, write_tables

    result = merge_outputs(outs, into)
    write_tables(result.into)
    write_metadata(result.into)
    if html:
        from .report_html import write_html_report

        write_html_report(result.into)
    if json_:
        print(json.dumps(asdict(result), indent=2, default=str))
        return
    _err(
        f"merged {len(outs)} folders into {result.into}: {result.images} images ({result.linked} hard-linked, "
        f"{result.copied} copied, {result.in_place} already there), {result.failed} failed, "
        f"{result.skipped} rows skipped"
    )


@app.command()
@user_errors
def grid(
    out: Path = typer.Argument(..., help="An output folder of genbatch run."),
    rows: str = typer.Option(
        ...,
        "--rows",
        help="The axis down the side: prompt, seed, model, lora, steps, guidance, sampler, width, height, or a manifest column.",
    ),
    cols: str = typer.Option(..., "--cols", help="The axis across the top (the same choices)."),
    pages: str | None = typer.Option(None, "--pages", help="A third axis: one grid per value."),
    cell_size: int | None = typer.Option(
        None, "--cell-size", min=16, help="Fit each image into N x N pixels (default: the images' own size)."
    ),
) -> None:
    """Lay OUT's images out by two parameters, with labelled rows and columns (A1111's X/Y/Z
    plot), into OUT/.genbatch-grids/NAME.png, with its layout in NAME.json; report.html lists them.

    \b
    Examples:
      genbatch run prompts.csv --out cmp --vary steps=20,30 --vary lora=none,style.safetensors:0.8
      genbatch grid cmp --rows prompt --cols lora --pages steps
    """
    from .grid import write_grids
    from .ledger import ledger_path

    if not ledger_path(out).exists():
        raise GenbatchError(f"{out}: no genbatch.jsonl here; is this the --out folder of a genbatch run?")
    for path in write_grids(out, rows, cols, pages, cell_size=cell_size):
        print(path)
    if (out / "report.html").exists():
        from .report_html import write_html_report

        write_html_report(out)


@app.command()
@user_errors
def verify(
    out: Path = typer.Argument(..., help="An output folder of genbatch run."),
    json_: bool = typer.Option(False, "--json", help="Print the findings as JSON on stdout."),
) -> None:
    """Check every image against the sha256 its ledger line recorded, and list missing,
    changed and unrecorded image files. Reads the folder only.

    Exit codes: 0 every image matches, 1 something is missing, changed or unrecorded,
    2 OUT has no ledger.

    \b
    Example:
      genbatch verify images/
    """
    from .verify import verify_folder

    result = verify_folder(out)
    if json_:
        print(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        for kind in ("missing", "changed", "unrecorded"):
            for name in getattr(result, kind):
                print(f"{kind}: {shown_bare(name, 4096)}")
        counts = f"{len(result.missing)} missing, {len(result.changed)} changed"
        _err(
            f"{shown_bare(out, 4096)}: {result.checked} images checked: {counts}, "
            f"{len(result.unrecorded)} unrecorded" + (" (all match the ledger)" if result.ok else "")
        )
    raise typer.Exit(0 if result.ok else 1)


@app.command("eval")
@user_errors
def eval_(
    out: Path = typer.Argument(..., help="An output folder of genbatch run."),
    metrics: str | None = typer.Option(
        None,
        "--metrics",
        help="Comma-separated: fid, is, clip, diversity, shapes. Default: shapes,diversity for a run of the shapes model, else clip,diversity.",
    ),
    reference: str | None = typer.Option(
        None, "--reference", help="FID reference: a folder of real images, or a .npz with mu and sigma."
    ),
    by: list[str] = typer.Option(
        ["model"],
        "--by",
        help="Group by a ledger field (model, steps, guidance_scale, ...) or a manifest column; repeat for several.",
    ),
    clip_model: str | None = typer.Option(
        None, "--clip-model", help="CLIP folder, or hub id in the local cache. Default: openai/clip-vit-large-patch14."
    ),
    inception_weights: Path | None = typer.Option(
        None,
        "--inception-weights",
        help="torch-fidelity's weights-inception-2015-12-05-6726825d.pth. Default: the torch hub cache.",
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1, help="Images per batch."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    json_: bool = typer.Option(False, "--json", help="Print eval.json on stdout."),
) -> None:
    """Score the done images of OUT per group and write OUT/eval.json. Features are cached
    per image, so a rerun computes only new images. Nothing is downloaded: weights come from
    local files or the local Hugging Face / torch hub caches.

    Exit codes: 0 evaluated, 2 bad input (no run, unknown metric, missing weights or reference).

    \b
    Examples:
      genbatch eval demo-out --metrics shapes,diversity
      genbatch eval parti --metrics clip --by model --by steps
      genbatch eval coco --metrics fid,is,clip --reference coco-val2014/ --device cuda
    """
    from .evaluate import EvalOptions, evaluate_run, format_table, parse_metrics

    def progress(done: int, total: int) -> None:
        _err(f"evaluated {done}/{total} new images")

    options = EvalOptions(
        metrics=parse_metrics(metrics) if metrics is not None else None,
        reference=reference,
        by=tuple(by) or ("model",),
        clip_model=clip_model,
        inception_weights=inception_weights,
        device=device,
        batch_size=batch_size,
        progress=None if quiet else progress,
    )
    try:
        result = evaluate_run(out, options)
    except KeyboardInterrupt:
        _err("interrupted: what was computed is cached, and a rerun goes on from there")
        raise typer.Exit(EXIT_SIGINT) from None
    from .report_html import write_html_report

    write_html_report(out)  # with the evaluation section
    if json_:
        print(json.dumps(result.report, indent=2, ensure_ascii=False))
    else:
        print(format_table(result.report))
    if not quiet:
        for note in result.report["notes"]:
            _err(f"note: {note}")
        computed = ", ".join(f"{n} {c}" for n, c in result.computed.items())
        _err(f"wrote {result.path} ({len(result.report['images'])} images; computed now: {computed})")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
