"""The options of the ``genbatch`` commands, each declared once as an ``Annotated`` type that
a command's signature names (``model: Model = None``). The default stays in the signature;
the flag names, limits and help text live here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genbatch.manifest.read import FORMATS

# Options more than one command takes.
RunFolder = Annotated[
    str, typer.Argument(help="An output folder of genbatch run, or its prefix in object storage (s3://…).")
]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
Column = Annotated[list[str], typer.Option(help="Read a field from another column: --column seed=evaluation_seed.")]
PromptColumn = Annotated[str | None, typer.Option(help="The column that holds the prompt.")]
Set = Annotated[list[str], typer.Option("--set", help="Force a value on every row: --set width=512.")]
MaxImagesPerRow = Annotated[
    int, typer.Option("--max-images-per-row", min=1, help="Refuse rows that ask for more images than this.")
]

# genbatch run
Manifest = Annotated[
    str | None,
    typer.Argument(
        metavar="MANIFEST",
        help="Manifest file (.csv .tsv .jsonl .ndjson .txt .parquet), or - for stdin; or none with --input-dir.",
        show_default=False,
    ),
]
Out = Annotated[
    str,
    typer.Option(
        "--out",
        "-o",
        help="Output folder: images, ledger, reports; or a prefix in object storage (s3://bucket/prefix, gs://, az://).",
    ),
]
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Built-in name, diffusers folder, ONNX export, or hub id in the local cache. Default: the embedded model.",
    ),
]
Backend = Annotated[str, typer.Option(help="torch (diffusers) or onnx (ONNX Runtime).")]
Dtype = Annotated[str, typer.Option(help="auto, fp32, fp16 or bf16 (auto: fp16 on GPU, fp32 on CPU).")]
Config = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="For a single-file --model (model.safetensors): its pipeline's diffusers folder or hub id in the local cache.",
    ),
]
Vae = Annotated[
    str | None,
    typer.Option(
        "--vae",
        help="Replace the model's VAE: a diffusers VAE folder, hub id in the local cache, or .safetensors file.",
    ),
]
Scheduler = Annotated[
    str | None,
    typer.Option(
        help='An A1111 sampler name ("DPM++ 2M Karras", "Euler a"...) or a diffusers scheduler class name, e.g. EulerDiscreteScheduler.',
    ),
]
ClipSkip = Annotated[
    int | None,
    typer.Option(
        "--clip-skip",
        min=1,
        max=12,
        help="A1111's clip skip for rows without one: 1 = the text encoder's last layer, 2 = the one before.",
    ),
]
# Rows with images (docs/rows-with-images.md)
InputDir = Annotated[
    str | None,
    typer.Option(
        "--input-dir",
        metavar="DIR",
        help="Instead of a MANIFEST: one row per image file in DIR (PNG, JPEG, WebP, BMP, TIFF by extension), "
        "sorted by name, each with --prompt; hidden files are skipped and subfolders are not read. "
        "Image-to-image, or inpainting with --mask-dir.",
    ),
]
MaskDir = Annotated[
    str | None,
    typer.Option(
        "--mask-dir",
        metavar="DIR",
        help="With --input-dir: each image's mask is the file in DIR with the same name stem and any image "
        "extension (photo.jpg takes photo.png); an image without one is an error.",
    ),
]
Prompt = Annotated[str | None, typer.Option("--prompt", help="With --input-dir: the prompt of every image.")]
Strength = Annotated[
    float | None,
    typer.Option(
        "--strength",
        help="For rows with an image and no strength: how much of it is redrawn, 0 (kept) to 1 (all) "
        "(default: the pipeline's own, e.g. 0.8 for SD image-to-image, 1 for SD inpainting, 0.6 for Flux).",
    ),
]
Resize = Annotated[
    str | None,
    typer.Option(
        "--resize",
        help="For rows with an input image and no resize: how it meets a width x height of another size: fit "
        "(scaled to fit inside, the rest padded black), fill (scaled to cover, the middle cropped) or none "
        "(such a size is refused). Without a width and height the input's size is the output's.",
    ),
]
ControlNet = Annotated[
    str | None,
    typer.Option(
        "--controlnet",
        help="For rows with a control_image and no controlnet: a diffusers ControlNet folder, or a hub id in "
        "the local cache.",
    ),
]
ControlScale = Annotated[
    float | None,
    typer.Option(
        "--control-scale",
        help="For rows with a control_image and no control_scale: the ControlNet's conditioning scale, 0 to 10 "
        "(default: the pipeline's, 1).",
    ),
]
IpAdapter = Annotated[
    str | None,
    typer.Option(
        "--ip-adapter",
        help="For rows with an ip_adapter_image and no ip_adapter: an IP-Adapter's weight file "
        "(ip-adapter_sd15.safetensors, with the image encoder in image_encoder/ beside it), or a hub id and "
        "the file's path in it, in the local cache (h94/IP-Adapter/models/ip-adapter_sd15.safetensors). "
        "SD and SDXL models take one.",
    ),
]
IpAdapterScale = Annotated[
    float | None,
    typer.Option(
        "--ip-adapter-scale",
        help="For rows with an ip_adapter_image and no ip_adapter_scale: how strongly the image conditions "
        "the output, 0 to 10 (default: 1).",
    ),
]
Providers = Annotated[
    str | None, typer.Option(help="ONNX Runtime execution providers, comma-separated (default: best available).")
]
BatchSize = Annotated[
    str | None,
    typer.Option(
        "--batch-size",
        "-b",
        help="Images per batch, or auto (the largest that fits and is fastest per image; remembered). Default: auto on a GPU, 8 on a CPU.",
    ),
]
Steps = Annotated[int | None, typer.Option(min=1, help="Steps for rows without a steps column.")]
Guidance = Annotated[float | None, typer.Option(min=0.0, help="Guidance scale for rows without one.")]
Width = Annotated[int | None, typer.Option(min=8, help="Width for rows without one (multiple of 8).")]
Height = Annotated[int | None, typer.Option(min=8, help="Height for rows without one (multiple of 8).")]
Negative = Annotated[
    str | None, typer.Option(help="Negative prompt for rows without one (default: none, the model's own default).")
]
NumImages = Annotated[
    int, typer.Option("--num-images", "-n", min=1, help="Images per row for rows without num_images.")
]
Seed = Annotated[int, typer.Option(min=0, help="Base seed from which rows without a seed derive theirs.")]
Lora = Annotated[
    list[str],
    typer.Option(
        help="A LoRA for rows without a lora column: a .safetensors file, a folder or a cached hub id, with an optional weight: --lora style.safetensors:0.8 (repeat for several).",
    ),
]
PromptWeighting = Annotated[
    str,
    typer.Option(
        help="a1111: read (word:1.3), (word) and [word] in prompts as weights (needs compel); off: prompts as written.",
    ),
]
Vary = Annotated[
    list[str],
    typer.Option(
        help="Run every row for each value of a field: --vary steps=20,30 --vary lora=a:0.5,a:1.0 (the product of all --vary).",
    ),
]
Formats = Annotated[
    list[str],
    typer.Option("--format", "-f", help="Image format png|webp|jpg, and/or manifest format csv|tsv|jsonl|txt|parquet."),
]
Quality = Annotated[int, typer.Option(min=1, max=100, help="WebP/JPEG quality.")]
CompressLevel = Annotated[int, typer.Option(min=0, max=9, help="PNG compression level (0 fastest, 9 smallest).")]
NameTemplate = Annotated[
    str,
    typer.Option(
        help="Output file name; fields: index, row, line, k, bucket (index // 1000), id, slug, prompt, seed, steps, guidance, width, height, model, key, ext, and any manifest column.",
    ),
]
Workers = Annotated[int | None, typer.Option(min=1, help="Image encoding threads (default: up to 4).")]
Limit = Annotated[int | None, typer.Option(min=0, help="Run at most N jobs of the plan.")]
Shard = Annotated[str | None, typer.Option(help="Run shard I of N (1-based), e.g. --shard 2/4.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the plan; load no model, write nothing.")]
Force = Annotated[bool, typer.Option(help="Regenerate images that are already done.")]
Verify = Annotated[
    bool,
    typer.Option("--verify", help="Hash the images already done; regenerate those that no longer match the ledger."),
]
SkipInvalid = Annotated[
    bool, typer.Option("--skip-invalid", help="Run the valid rows; list invalid ones in the report.")
]
Wait = Annotated[bool, typer.Option(help="If another run holds --out, wait for it instead of exiting.")]
Engine = Annotated[
    str, typer.Option(help="local (this process) or ray (workers on a Ray cluster; pip install 'genbatch[ray]').")
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Ray cluster to join: auto, host:6379 or ray://host:10001 (default: RAY_ADDRESS, else start a local instance).",
    ),
]
RayWorkers = Annotated[
    int | None,
    typer.Option(
        "--ray-workers",
        min=1,
        help="Ray workers (default: one per GPU of the cluster, or per CPU where there is none, growing as "
        "nodes join while batches wait).",
    ),
]
GpusPerWorker = Annotated[
    float | None,
    typer.Option(
        "--gpus-per-worker",
        min=0.0,
        help="GPUs each Ray worker holds; 0 for CPU workers, 0.5 for two per GPU (default: 1 if the cluster has GPUs).",
    ),
]
MaxRetries = Annotated[
    int | None,
    typer.Option(
        "--max-retries",
        min=0,
        help="Times a batch lost with its Ray worker is retried before its jobs are recorded as failed (default 3).",
    ),
]
WorkerWait = Annotated[
    float | None,
    typer.Option(
        "--worker-wait",
        min=0.0,
        max=86400.0,
        help="Seconds the run waits with no Ray worker ready (none can be placed, its node is gone, the cluster "
        "does not answer) before it stops with exit 1; a rerun resumes (default 300).",
    ),
]
RunJson = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]
Offload = Annotated[
    str, typer.Option(help="torch: none, model or sequential (diffusers' CPU offload, for models larger than the GPU).")
]
VaeTiling = Annotated[bool, typer.Option("--vae-tiling", help="torch: decode large images tile by tile (less memory).")]
VaeSlicing = Annotated[
    bool, typer.Option("--vae-slicing", help="torch: decode a batch one image at a time (less memory).")
]
AllowPickle = Annotated[
    bool,
    typer.Option(
        "--allow-pickle",
        help="Also load pickled weights: .bin LoRAs, and model folders without .safetensors files. A pickle can run code when it is loaded; use this only for files you trust (default: safetensors only).",
    ),
]

# genbatch validate
ManifestToCheck = Annotated[
    str | None,
    typer.Argument(
        metavar="MANIFEST", help="Manifest file, or - for stdin; or none with --input-dir.", show_default=False
    ),
]
ManifestFormat = Annotated[str | None, typer.Option("--format", "-f", help=f"Manifest format: {', '.join(FORMATS)}.")]
RowsModel = Annotated[
    str | None,
    typer.Option("--model", "-m", help="The model of rows without a model column (default: the embedded model)."),
]
ProblemsJson = Annotated[bool, typer.Option("--json", help="Print problems as JSON on stdout.")]

# genbatch models
ModelFolders = Annotated[list[Path] | None, typer.Argument(help="Model folders to check as well.")]
ListJson = Annotated[bool, typer.Option("--json", help="Print as JSON.")]
ListFamilies = Annotated[
    bool,
    typer.Option(
        "--families",
        help="List the families instead: their pipelines, defaults, what a row's guidance_scale and "
        "negative_prompt mean, and the fields only they take.",
    ),
]

# genbatch export
ExportTo = Annotated[str, typer.Option("--to", help="Export format: onnx.")]
ExportModel = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Built-in name, diffusers folder, or hub id in the local cache. Default: the embedded model.",
    ),
]
ExportOut = Annotated[Path | None, typer.Option("--out", "-o", help="Output folder. Default: exports/<model>-onnx.")]
Opset = Annotated[int, typer.Option(min=14, help="ONNX opset.")]
Fp16 = Annotated[bool, typer.Option("--fp16", help="Store weights in fp16 (for GPUs; inputs and outputs stay fp32).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out folder.")]
ExportVerify = Annotated[
    bool, typer.Option("--verify/--no-verify", help="Compare each component and whole images against torch.")
]
ExternalData = Annotated[
    bool,
    typer.Option("--external-data", help="Keep weights in model.onnx_data files even under 2 GB (always over)."),
]
ResultJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]

# genbatch report
ContactSheet = Annotated[bool, typer.Option("--contact-sheet", help="Also write contact-sheet-NNN.png grids.")]
SheetCols = Annotated[int, typer.Option(min=1, help="Contact sheet columns.")]
SheetRows = Annotated[int, typer.Option(min=1, help="Contact sheet rows.")]
Tables = Annotated[bool, typer.Option(help="Also rewrite report.csv, report.parquet and metadata.jsonl.")]

# genbatch merge
RunFolders = Annotated[
    list[str], typer.Argument(help="Output folders of genbatch run (e.g. one per --shard), or prefixes (s3://…).")
]
Into = Annotated[
    str, typer.Option("--into", help="The folder (or prefix, s3://…) to merge them into (may be one of them).")
]
Html = Annotated[bool, typer.Option("--html/--no-html", help="Rebuild report.html (and its thumbnails).")]

# genbatch grid
GridRows = Annotated[
    str,
    typer.Option(
        "--rows",
        help="The axis down the side: prompt, seed, model, lora, steps, guidance, sampler, width, height, image, "
        "strength, or a manifest column.",
    ),
]
GridCols = Annotated[str, typer.Option("--cols", help="The axis across the top (the same choices).")]
GridPages = Annotated[str | None, typer.Option("--pages", help="A third axis: one grid per value.")]
GridInputs = Annotated[
    bool,
    typer.Option(
        "--inputs",
        help="Put each row's input images (the image, mask and control image its images were made from) in "
        "columns of their own first; a row must have one of each (e.g. --rows image).",
    ),
]
CellSize = Annotated[
    int | None,
    typer.Option("--cell-size", min=16, help="Fit each image into N x N pixels (default: the images' own size)."),
]

# genbatch verify
FindingsJson = Annotated[bool, typer.Option("--json", help="Print the findings as JSON on stdout.")]

# genbatch eval
Metrics = Annotated[
    str | None,
    typer.Option(
        "--metrics",
        help="Comma-separated: fid, is, clip, diversity, shapes. Default: shapes,diversity for a run of the shapes model, else clip,diversity.",
    ),
]
Reference = Annotated[
    str | None,
    typer.Option("--reference", help="FID reference: a folder of real images, or a .npz with mu and sigma."),
]
By = Annotated[
    list[str],
    typer.Option(
        "--by",
        help="Group by a ledger field (model, steps, guidance_scale, ...) or a manifest column; repeat for several.",
    ),
]
ClipModel = Annotated[
    str | None,
    typer.Option(
        "--clip-model", help="CLIP folder, or hub id in the local cache. Default: openai/clip-vit-large-patch14."
    ),
]
InceptionWeights = Annotated[
    Path | None,
    typer.Option(
        "--inception-weights",
        help="torch-fidelity's weights-inception-2015-12-05-6726825d.pth. Default: the torch hub cache.",
    ),
]
EvalBatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per batch.")]
EvalJson = Annotated[bool, typer.Option("--json", help="Print eval.json on stdout.")]

# genbatch compare
RefFolder = Annotated[Path, typer.Argument(help="The reference output folder: the jobs made the exact way.")]
FastFolder = Annotated[
    Path, typer.Argument(help="The output folder to measure: the same jobs made the fast way (gets compare.json).")
]
MinPsnr = Annotated[
    float | None, typer.Option("--min-psnr", min=0, help="Exit 1 unless every pair's PSNR reaches this many dB.")
]
MinSsim = Annotated[
    float | None, typer.Option("--min-ssim", min=-1, max=1, help="Exit 1 unless every pair's SSIM reaches this.")
]
CompareJson = Annotated[bool, typer.Option("--json", help="Print compare.json on stdout.")]
CompareHtml = Annotated[bool, typer.Option("--html/--no-html", help="Add the comparison to FAST_OUT/report.html.")]
