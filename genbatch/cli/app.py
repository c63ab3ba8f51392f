"""The ``genbatch`` command. It parses options, calls the library, and turns library errors
into one-line messages and documented exit codes; it does no work of its own. The options are
declared in cli_options, ``run``'s are checked in cli_run_options, and what the commands print
is in cli_output."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from genbatch.cli import fast_options as fast
from genbatch.cli import options as opt
from genbatch.cli import run_options as ro
from genbatch.cli.output import (
    Validation,
    print_compare,
    print_eval,
    print_export,
    print_families,
    print_json,
    print_merge,
    print_models,
    print_plan,
    print_validation,
    print_verify,
    say,
    show_library_warnings,
    user_errors,
)
from genbatch.errors import EXIT_SIGINT, EXIT_USAGE, GenbatchError, ManifestError
from genbatch.manifest.read import MAX_IMAGES_PER_ROW, parse_assignments
from genbatch.pipelines.torch_runtime import quiet_import_noise
from genbatch.plan.planner import DEFAULT_NAME_TEMPLATE
from genbatch.store.ledger import require_ledger
from genbatch.version import __version__

if TYPE_CHECKING:
    from genbatch.runner.options import RunOptions

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Batch image generation from a manifest of prompts and seeds: reproducible, resumable, traceable.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"genbatch {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    show_library_warnings()
    quiet_import_noise()


@app.command()
@user_errors
def run(
    manifest: opt.Manifest = None,
    out: opt.Out = "genbatch-out",
    model: opt.Model = None,
    backend: opt.Backend = "torch",
    device: opt.Device = "auto",
    dtype: opt.Dtype = "auto",
    config: opt.Config = None,
    vae: opt.Vae = None,
    scheduler: opt.Scheduler = None,
    clip_skip: opt.ClipSkip = None,
    input_dir: opt.InputDir = None,
    mask_dir: opt.MaskDir = None,
    prompt: opt.Prompt = None,
    strength: opt.Strength = None,
    resize: opt.Resize = None,
    controlnet: opt.ControlNet = None,
    control_scale: opt.ControlScale = None,
    ip_adapter: opt.IpAdapter = None,
    ip_adapter_scale: opt.IpAdapterScale = None,
    providers: opt.Providers = None,
    batch_size: opt.BatchSize = None,
    steps: opt.Steps = None,
    guidance: opt.Guidance = None,
    width: opt.Width = None,
    height: opt.Height = None,
    negative: opt.Negative = None,
    num_images: opt.NumImages = 1,
    max_images_per_row: opt.MaxImagesPerRow = MAX_IMAGES_PER_ROW,
    seed: opt.Seed = 0,
    lora: opt.Lora = [],
    prompt_weighting: opt.PromptWeighting = "off",
    vary: opt.Vary = [],
    column: opt.Column = [],
    prompt_column: opt.PromptColumn = None,
    set_: opt.Set = [],
    format_: opt.Formats = [],
    quality: opt.Quality = 95,
    compress_level: opt.CompressLevel = 6,
    name_template: opt.NameTemplate = DEFAULT_NAME_TEMPLATE,
    workers: opt.Workers = None,
    limit: opt.Limit = None,
    shard: opt.Shard = None,
    dry_run: opt.DryRun = False,
    force: opt.Force = False,
    verify: opt.Verify = False,
    skip_invalid: opt.SkipInvalid = False,
    wait: opt.Wait = False,
    engine: opt.Engine = "local",
    ray_address: opt.RayAddress = None,
    ray_workers: opt.RayWorkers = None,
    gpus_per_worker: opt.GpusPerWorker = None,
    max_retries: opt.MaxRetries = None,
    worker_wait: opt.WorkerWait = None,
    quiet: opt.Quiet = False,
    json_: opt.RunJson = False,
    offload: opt.Offload = "none",
    vae_tiling: opt.VaeTiling = False,
    vae_slicing: opt.VaeSlicing = False,
    reuse_embeddings: fast.ReuseEmbeddings = True,
    attention: fast.Attention = "sdpa",
    channels_last: fast.ChannelsLast = "auto",
    compile_: fast.Compile = "off",
    cache: fast.Cache = "none",
    cache_threshold: fast.CacheThreshold = None,
    quantize: fast.Quantize = "none",
    speed: fast.Speed = "exact",
    allow_pickle: opt.AllowPickle = False,
) -> None:
    """Generate an image for every row (x num_images) of MANIFEST into --out.

    A row with an image column starts from that image (image-to-image; with a mask, inpainting;
    with a control image, ControlNet); --input-dir makes such a row of each image in a folder.
    Reruns generate only what is missing. Exit codes: 0 all done, 1 some jobs failed,
    2 bad input, 130/143 interrupted.

    \b
    Examples:
      genbatch run prompts.csv --out images
      genbatch run edits.csv --out edits --strength 0.6 --width 768 --height 512 --resize fill
      genbatch run --input-dir photos --prompt "an oil painting" --out painted --strength 0.5
      genbatch run parti.tsv --out parti --steps 30 --batch-size 16 --shard 1/4
      genbatch run coco.jsonl --out coco --set width=512 --set height=512 --name-template "{file_name}"
      genbatch run prompts.csv --out /shared/images --engine ray --ray-address auto
    """
    from genbatch.runner.summary import RunSummary

    try:
        options = _run_options(**locals())
        from genbatch.runner.run import run_manifest

        result = run_manifest(options)
    except GenbatchError as err:
        if json_:  # a script reading --json gets an object on failure too
            summary = RunSummary.from_error(err, str(out), manifest if manifest is not None else input_dir)
            print_json(summary.to_dict(), ensure_ascii=False, default=str)
        raise
    if dry_run:
        print_plan(result, json_)
        return
    if not quiet:
        say(result.summary.format())
    for note in result.notes:
        say(f"warning: {note}")
    if result.summary.error:
        say(f"error: {result.summary.error['message']}")
    if json_:
        print_json(result.summary.to_dict(), ensure_ascii=False, default=str)
    raise typer.Exit(result.exit_code)


app.command("bench")(user_errors(fast.bench))


def _run_options(**given: Any) -> RunOptions:
    """``genbatch run``'s values as the library's option groups, each checked as it is made."""
    from genbatch.backends.torch_options import TorchOptions
    from genbatch.plan.axes import parse_axes
    from genbatch.plan.planner import PlanOptions, parse_shard
    from genbatch.runner.options import EngineOptions, InputOptions, OutputOptions, RunOptions

    ro.check_numbers(
        steps=given["steps"],
        guidance_scale=given["guidance"],
        width=given["width"],
        height=given["height"],
        num_images=given["num_images"],
        seed=given["seed"],
        clip_skip=given["clip_skip"],
        cache_threshold=given["cache_threshold"],
        strength=given["strength"],
        controlnet_conditioning_scale=given["control_scale"],
        ip_adapter_scale=given["ip_adapter_scale"],
    )
    ro.check_num_images(given["num_images"], given["max_images_per_row"])
    manifest_format, image_format = ro.split_formats(given["format_"])
    overrides = parse_assignments(given["set_"], "--set")
    engine = given["engine"].lower()
    return RunOptions(
        input=InputOptions(
            manifest=given["manifest"],
            format=manifest_format,
            column_map=ro.column_map(given["column"], given["prompt_column"]),
            overrides=overrides,
            axes=parse_axes(given["vary"], overrides, max_combinations=given["max_images_per_row"]),
            skip_invalid=given["skip_invalid"],
            max_images_per_row=given["max_images_per_row"],
            input_dir=given["input_dir"],
            mask_dir=given["mask_dir"],
            prompt=given["prompt"],
        ),
        output=OutputOptions(
            out=given["out"],
            quality=given["quality"],
            compress_level=given["compress_level"],
            workers=given["workers"],
            force=given["force"],
            verify=given["verify"],
            wait=given["wait"],
        ),
        plan=PlanOptions(
            model=given["model"],
            config=given["config"],
            vae=given["vae"],
            backend=given["backend"],
            scheduler=ro.scheduler_name(given["scheduler"]),
            defaults=ro.run_defaults(
                steps=given["steps"],
                guidance_scale=given["guidance"],
                width=given["width"],
                height=given["height"],
                negative_prompt=given["negative"],
                num_images=given["num_images"],
                seed=given["seed"],
                clip_skip=given["clip_skip"],
                lora=given["lora"],
                prompt_weighting=given["prompt_weighting"],
                cache=given["cache"],
                cache_threshold=given["cache_threshold"],
                quantize=given["quantize"],
                strength=given["strength"],
                resize=given["resize"],
                controlnet=given["controlnet"],
                control_scale=given["control_scale"],
                ip_adapter=given["ip_adapter"],
                ip_adapter_scale=given["ip_adapter_scale"],
            ),
            name_template=given["name_template"],
            image_format=image_format,
            limit=given["limit"],
            shard=parse_shard(given["shard"]),
        ),
        engine=EngineOptions(
            engine=engine,
            device=given["device"],
            dtype=given["dtype"],
            batch_size=ro.batch_size(given["batch_size"]),
            providers=ro.providers_list(given["providers"]),
            ray=ro.ray_options(
                engine,
                given["ray_address"],
                given["ray_workers"],
                given["gpus_per_worker"],
                given["max_retries"],
                given["worker_wait"],
            ),
        ),
        torch=TorchOptions(
            offload=given["offload"],
            vae_tiling=given["vae_tiling"],
            vae_slicing=given["vae_slicing"],
            reuse_embeddings=given["reuse_embeddings"],
            attention=given["attention"],
            channels_last=given["channels_last"],
            compile=None if given["compile_"] == "off" else given["compile_"],
            allow_pickle=given["allow_pickle"],
        ),
        dry_run=given["dry_run"],
        speed=given["speed"],
        quiet=given["quiet"],
    )


@app.command()
@user_errors
def validate(
    manifest: opt.ManifestToCheck = None,
    format_: opt.ManifestFormat = None,
    column: opt.Column = [],
    prompt_column: opt.PromptColumn = None,
    set_: opt.Set = [],
    model: opt.RowsModel = None,
    input_dir: opt.InputDir = None,
    mask_dir: opt.MaskDir = None,
    prompt: opt.Prompt = None,
    json_: opt.ProblemsJson = False,
    max_images_per_row: opt.MaxImagesPerRow = MAX_IMAGES_PER_ROW,
    allow_pickle: opt.AllowPickle = False,
) -> None:
    """Check a manifest (or the rows --input-dir makes of a folder of images) and report every
    problem as FILE:LINE:COLUMN: message, including input images that cannot be read, models
    that cannot run on the torch backend and values their family does not take.
    Loads no model.

    Exit code 0 if the manifest is valid, 2 if not.

    \b
    Examples:
      genbatch validate prompts.csv
      genbatch validate --input-dir photos --mask-dir masks --prompt "a red door"
    """
    from genbatch.manifest.image_folder import check_source, read_rows

    column_map = ro.column_map(column, prompt_column)
    check_source(manifest, input_dir, mask_dir, prompt, format_, column_map)
    try:
        manifest_ = read_rows(
            manifest,
            input_dir=input_dir,
            mask_dir=mask_dir,
            prompt=prompt,
            format=format_,
            column_map=column_map,
            overrides=parse_assignments(set_, "--set"),
            max_images_per_row=max_images_per_row,
        )
    except ManifestError as err:
        found = Validation(str(manifest if manifest is not None else input_dir), format_, err.problems)
    else:
        problems, notes = manifest_.problems, list[str]()
        if not manifest_.fatal_problems:
            from genbatch.plan.family_checks import manifest_checks

            more, notes = manifest_checks(manifest_, model, allow_pickle=allow_pickle)
            problems = [*problems, *more]
        found = Validation(
            manifest_.path, manifest_.format, problems, manifest_.rows, manifest_.columns, manifest_.warnings + notes
        )
    print_validation(found, json_)
    raise typer.Exit(EXIT_USAGE if found.problems else 0)


@app.command()
@user_errors
def models(folders: opt.ModelFolders = None, json_: opt.ListJson = False, families: opt.ListFamilies = False) -> None:
    """List the models genbatch can use here without a download: built-ins, the local
    Hugging Face cache and any FOLDERS, with their family and whether they run on the torch
    and onnx backends (and why not). With --families, the families genbatch runs.

    \b
    Example:
      genbatch models --families
    """
    if families:
        from genbatch.pipelines.families import family_rows

        if json_:
            print_json(family_rows())
        else:
            print_families(family_rows())
        return
    from genbatch.pipelines.model_list import list_models

    found = list_models(folders or [])
    if json_:
        print_json(found)
        return
    print_models(found)


@app.command()
@user_errors
def export(
    to: opt.ExportTo,
    model: opt.ExportModel = None,
    out: opt.ExportOut = None,
    opset: opt.Opset = 17,
    fp16: opt.Fp16 = False,
    overwrite: opt.Overwrite = False,
    verify: opt.ExportVerify = True,
    external_data: opt.ExternalData = False,
    json_: opt.ResultJson = False,
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
    from genbatch.export.onnx import export_onnx

    result = export_onnx(
        model, out, opset=opset, fp16=fp16, overwrite=overwrite, verify=verify, force_external_data=external_data
    )
    print_export(result, json_)


@app.command()
@user_errors
def report(
    out: opt.RunFolder,
    contact_sheet: opt.ContactSheet = False,
    cols: opt.SheetCols = 8,
    rows: opt.SheetRows = 8,
    tables: opt.Tables = True,
) -> None:
    """Rebuild OUT/report.html (and report.csv/.parquet) from the ledger alone.

    \b
    Examples:
      genbatch report images/
      genbatch report images/ --contact-sheet
    """
    from genbatch.report.contact_sheet import write_contact_sheets
    from genbatch.report.html import write_html_report
    from genbatch.report.summaries import write_metadata, write_tables
    from genbatch.store.bucket_view import readable

    with readable(out, thumbs=True, stand_ins=not contact_sheet, images=contact_sheet) as (folder, view):
        require_ledger(folder, out)
        if tables:
            write_tables(folder)
            write_metadata(folder)
        written = [write_html_report(folder)]
        if contact_sheet:
            written += write_contact_sheets(folder, cols=cols, rows=rows)
    for path in written:
        print(view.shown(path) if view else path)


@app.command()
@user_errors
def merge(outs: opt.RunFolders, into: opt.Into, html: opt.Html = True, json_: opt.ResultJson = False) -> None:
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
    from genbatch.report.input_thumbnails import copy_input_thumbnails
    from genbatch.report.summaries import write_metadata, write_tables
    from genbatch.store.bucket_view import mergeable
    from genbatch.store.merge import merge_outputs

    with mergeable(outs, into) as (sources, target, view):
        result = merge_outputs(sources, target)
        copy_input_thumbnails(sources, result.into)  # the report shows the rows' inputs
        write_tables(result.into)
        write_metadata(result.into)
        if html:
            from genbatch.report.html import write_html_report

            write_html_report(result.into)
    if view:
        result.into = view.bucket.url  # type: ignore[assignment]
    print_merge(result, len(outs), json_)


@app.command()
@user_errors
def grid(
    out: opt.RunFolder,
    rows: opt.GridRows,
    cols: opt.GridCols,
    pages: opt.GridPages = None,
    cell_size: opt.CellSize = None,
    inputs: opt.GridInputs = False,
) -> None:
    """Lay OUT's images out by two parameters, with labelled rows and columns (A1111's X/Y/Z
    plot), into OUT/.genbatch-grids/NAME.png, with its layout in NAME.json; report.html lists them.
    With --inputs, each row's input images come first.

    \b
    Examples:
      genbatch run prompts.csv --out cmp --vary steps=20,30 --vary lora=none,style.safetensors:0.8
      genbatch grid cmp --rows prompt --cols lora --pages steps
      genbatch run edits.csv --out edits --vary strength=0.4,0.6,0.8
      genbatch grid edits --rows image --cols strength --inputs
    """
    from genbatch.report.grid import write_grids
    from genbatch.store.bucket_view import readable

    with readable(out, images=True, thumbs=True, folders=[".genbatch-grids"]) as (folder, view):
        require_ledger(folder, out)
        written = write_grids(folder, rows, cols, pages, cell_size=cell_size, inputs=inputs)
        if (folder / "report.html").exists() or (view and "report.html" in view.sizes):
            from genbatch.report.html import write_html_report

            write_html_report(folder)
    for path in written:
        print(view.shown(path) if view else path)


@app.command()
@user_errors
def verify(out: opt.RunFolder, json_: opt.FindingsJson = False) -> None:
    """Check every image against the sha256 its ledger line recorded, and list missing,
    changed and unrecorded image files. Reads the folder only.

    Exit codes: 0 every image matches, 1 something is missing, changed or unrecorded,
    2 OUT has no ledger.

    \b
    Example:
      genbatch verify images/
    """
    from genbatch.store.verify import verify_folder

    result = verify_folder(out)
    print_verify(result, out, json_)
    raise typer.Exit(0 if result.ok else 1)


@app.command("eval")
@user_errors
def eval_(
    out: opt.RunFolder,
    metrics: opt.Metrics = None,
    reference: opt.Reference = None,
    by: opt.By = ["model"],
    clip_model: opt.ClipModel = None,
    inception_weights: opt.InceptionWeights = None,
    device: opt.Device = "auto",
    batch_size: opt.EvalBatchSize = 32,
    quiet: opt.Quiet = False,
    json_: opt.EvalJson = False,
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
    from genbatch.evaluate import EvalOptions, evaluate_run, parse_metrics
    from genbatch.report.html import write_html_report

    def progress(done: int, total: int) -> None:
        say(f"evaluated {done}/{total} new images")

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
    from genbatch.store.bucket_view import readable

    with readable(out, images=True, thumbs=True, folders=[".genbatch-eval"]) as (folder, _):
        try:
            result = evaluate_run(folder, options)
        except KeyboardInterrupt:
            say("interrupted: what was computed is cached, and a rerun goes on from there")
            raise typer.Exit(EXIT_SIGINT) from None
        write_html_report(folder)  # with the evaluation section
    print_eval(result, json_, quiet)


@app.command()
@user_errors
def compare(
    ref_out: opt.RefFolder,
    fast_out: opt.FastFolder,
    min_psnr: opt.MinPsnr = None,
    min_ssim: opt.MinSsim = None,
    html: opt.CompareHtml = True,
    quiet: opt.Quiet = False,
    json_: opt.CompareJson = False,
) -> None:
    """Compare the images of two runs of the same jobs, made two ways (exact, and with a speed
    option): PSNR, SSIM and the largest and mean pixel difference of each pair, into
    FAST_OUT/compare.json and a section of FAST_OUT/report.html. Images pair when they are the
    same job but for the speed options, backend, device and dtype; the others are listed as
    unpaired, with the reason. Where both folders have an eval.json (genbatch eval), the deltas
    of their metrics (CLIP score, FID...) are shown too.

    Exit codes: 0 compared (and within --min-psnr and --min-ssim), 1 a pair below them,
    2 bad input (a folder that is not the output of a run).

    \b
    Example:
      genbatch run heldout.csv --out exact
      genbatch run heldout.csv --out fast --dtype bf16
      genbatch compare exact fast --min-psnr 30 --min-ssim 0.95
    """
    from genbatch.evaluate.compare import CompareOptions, compare_runs

    def progress(done: int, total: int) -> None:
        say(f"compared {done}/{total} pairs")

    options = CompareOptions(min_psnr=min_psnr, min_ssim=min_ssim, progress=None if quiet else progress)
    result = compare_runs(ref_out, fast_out, options)
    if html:
        from genbatch.report.html import write_html_report

        write_html_report(fast_out)  # with the comparison section
    print_compare(result, json_, quiet)
    raise typer.Exit(0 if result.passed else 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
