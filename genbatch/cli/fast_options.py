"""The torch fast-path options of ``genbatch run`` and the ``genbatch bench`` command: options
parsed here, the work done by genbatch.backends.fast_paths, genbatch.backends.prompt_embeds and
genbatch.bench.compare; which models, devices and packages take each speed option is checked by
genbatch.pipelines.speed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genbatch.backends.fast_paths import COMPILE_MODES
from genbatch.backends.torch_options import TorchOptions
from genbatch.errors import GenbatchError
from genbatch.pipelines.speed import CACHES

ReuseEmbeddings = Annotated[
    bool,
    typer.Option(
        "--reuse-embeddings/--no-reuse-embeddings",
        help="torch: encode each distinct prompt once and reuse its embedding across batches.",
    ),
]
Attention = Annotated[
    str,
    typer.Option(
        "--attention",
        help="torch: sdpa (PyTorch's scaled_dot_product_attention, the default), or a diffusers attention "
        "backend (flash, _native_cudnn, sage...) on transformer models.",
    ),
]
ChannelsLast = Annotated[
    str,
    typer.Option(
        "--channels-last", help="torch: channels-last UNet and VAE: auto (off; slower on an H200), on or off."
    ),
]
Compile = Annotated[
    str,
    typer.Option(
        "--compile",
        help="torch: off, or torch.compile the denoiser with fixed batch shapes: "
        + ", ".join(COMPILE_MODES)
        + " (reduce-overhead and max-autotune capture CUDA graphs; regional compiles the repeated blocks only, "
        "a fraction of the compile time). The first batch of each shape warms up untimed.",
    ),
]
Cache = Annotated[
    str,
    typer.Option(
        "--cache",
        help="torch: a step cache for rows without a cache column, through diffusers' cache hooks: "
        + ", ".join(CACHES)
        + ", or none (exact). Changes pixels: in each image's record and job key. Transformer models that "
        "take one (Flux.1, Qwen-Image, CogView4...; refused with the list elsewhere); magcache: Flux.1 only.",
    ),
]
CacheThreshold = Annotated[
    float | None,
    typer.Option(
        "--cache-threshold",
        help="torch: the threshold of --cache first-block (default 0.05) or magcache (0.06), 0 to 1: "
        "higher skips more of the work, further from the exact image.",
    ),
]
Quantize = Annotated[
    str,
    typer.Option(
        "--quantize",
        help="torch: quantize the denoiser's weights as the model loads: int8 (torchao, CPU or GPU), fp8 "
        "(torchao, CUDA compute capability 8.9+), int4 (torchao, CUDA, --dtype bf16), nf4 (bitsandbytes, "
        "CUDA), or none (exact). Changes pixels: in each image's record and job key; one value per run.",
    ),
]


Speed = Annotated[
    str,
    typer.Option(
        "--speed",
        help="torch: exact (the default), or fast: what --cache, --cache-threshold, --quantize and --compile do not "
        "set, set for speed where the models and the device take it: a first-block step cache (threshold 0.12; "
        "else TaylorSeer), fp8 weights on a GPU with fp8 kernels, regional compilation on CUDA. Changes pixels; "
        "measure it on your prompts with genbatch compare (docs/speed.md).",
    ),
]


def bench(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="A diffusers folder or built-in name, or sd15, sdxl, flux-schnell, flux-dev: the released "
            "architecture with random weights, built on the device.",
        ),
    ] = "tiny-random",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for bench.json and bench.png.")] = Path("bench-out"),
    backend: Annotated[list[str], typer.Option("--backend", help="A backend to measure (repeat for several).")] = [],
    batch_size: Annotated[list[int], typer.Option("--batch-size", "-b", min=1, help="Batch sizes (repeat).")] = [],
    size: Annotated[list[int], typer.Option("--size", min=8, help="Square image sizes (repeat).")] = [],
    images: Annotated[int, typer.Option("--images", "-n", min=1, help="Images per measurement.")] = 64,
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="Steps (default: the model's).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help="auto, fp32, fp16 or bf16.")] = "auto",
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Alternating repeats; medians are kept.")] = 3,
    warm_up: Annotated[
        bool,
        typer.Option(
            "--warm-up/--no-warm-up",
            help="First run one batch of the plain loop, not counted, so that the first measured process "
            "does not pay alone for reading the libraries from disk and starting the GPU.",
        ),
    ] = True,
    reuse_embeddings: ReuseEmbeddings = True,
    attention: Attention = "sdpa",
    channels_last: ChannelsLast = "auto",
    compile_: Compile = "off",
    cache: Cache = "none",
    cache_threshold: CacheThreshold = None,
    quantize: Quantize = "none",
    speed: Speed = "exact",
    vs: Annotated[
        list[str],
        typer.Option(
            "--vs",
            help="What genbatch is measured against (repeat for both): plain (the default), the plain loop with "
            "the same speed options applied by hand as a diffusers user does (enable_cache, torchao's quantize_, "
            "compile_repeated_blocks...), so any gain over it is genbatch's own; exact, the plain loop without "
            "them, so the gain is the options'; or none (genbatch alone).",
        ),
    ] = [],
    keep_images: Annotated[
        bool,
        typer.Option(
            "--keep-images",
            help="Keep each side's images of the last repeat in OUT/images/BACKEND-SIZE-bBATCH/SIDE "
            "(genbatch's side is a run folder, which genbatch compare takes).",
        ),
    ] = False,
) -> None:
    """Measure genbatch against the plain diffusers loop, in the same run.

    For each backend x size x batch size: images/s, s/image, time to the first image, peak
    RSS and GPU memory of `genbatch run` and of the loop a user writes by hand (load the
    pipeline, call it on each batch, save each PNG), each a process of its own, alternating,
    after one untimed warm-up process. With speed options (--cache, --quantize, --compile,
    --speed fast...), --vs plain gives the plain loop the same options by hand and --vs exact
    measures it without them; they are refused before any process starts where genbatch run
    would refuse them.
    Prints a table of genbatch/plain ratios; writes OUT/bench.json and OUT/bench.png.

    \b
    Examples:
      genbatch bench --model tiny-random --device cpu --batch-size 4 --batch-size 8
      genbatch bench --model sd15 --device cuda --dtype fp16 -b 8 -b 16 --images 256
      genbatch bench --model flux-dev --device cuda --dtype bf16 -b 1 --images 4 --speed fast --vs plain --vs exact
    """
    from genbatch.bench.compare import BenchOptions, run_bench
    from genbatch.cli.run_options import check_numbers
    from genbatch.manifest.read import parse_value

    check_numbers(cache_threshold=cache_threshold)
    chosen = {}
    for option, name, value in (("--cache", "cache", cache), ("--quantize", "quantize", quantize)):
        try:
            chosen[name] = parse_value(name, value)
        except ValueError as err:
            raise GenbatchError(f"{option}: {err}") from None

    options = BenchOptions(
        model=model,
        out=out,
        backends=backend or ["torch"],
        batch_sizes=batch_size or [1, 4, 8],
        sizes=size or None,
        images=images,
        steps=steps,
        device=device,
        dtype=dtype,
        repeats=repeats,
        warm_up=warm_up,
        torch_options=TorchOptions(
            reuse_embeddings=reuse_embeddings,
            attention=attention,
            channels_last=channels_last,
            compile=None if compile_ == "off" else compile_,
        ).as_dict(),
        cache=None if chosen["cache"] == "none" else chosen["cache"],
        cache_threshold=cache_threshold,
        quantize=None if chosen["quantize"] == "none" else chosen["quantize"],
        speed=speed,
        vs=vs or ["plain"],
        keep_images=keep_images,
    )
    run_bench(options, say=lambda line: typer.echo(line, err=line.startswith("bench:")))
    typer.echo(f"wrote {out / 'bench.json'} and {out / 'bench.png'}")
