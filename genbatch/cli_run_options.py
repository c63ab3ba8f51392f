"""``genbatch run``'s command-line values, checked and turned into the library's RunOptions.
Each bad value is refused with a one-line message naming its option."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .axes import parse_axes
from .cli_fast import torch_options
from .errors import GenbatchError
from .image_formats import BY_EXTENSION as IMAGE_FORMATS
from .manifest import FORMATS, parse_assignments, parse_value
from .plan import Defaults, parse_shard
from .samplers import parse_scheduler

if TYPE_CHECKING:
    from .runner import RunOptions

T = TypeVar("T")


@dataclass(frozen=True)
class RunArgs:
    """The values of ``genbatch run``'s arguments and options, as the command received them."""

    manifest: str
    out: Path
    model: str | None
    backend: str
    device: str
    dtype: str
    config: str | None
    vae: str | None
    scheduler: str | None
    clip_skip: int | None
    providers: str | None
    batch_size: str | None
    steps: int | None
    guidance: float | None
    width: int | None
    height: int | None
    negative: str | None
    num_images: int
    max_images_per_row: int
    seed: int
    lora: list[str]
    prompt_weighting: str
    vary: list[str]
    column: list[str]
    prompt_column: str | None
    set_: list[str]
    format_: list[str]
    quality: int
    compress_level: int
    name_template: str
    workers: int | None
    limit: int | None
    shard: str | None
    dry_run: bool
    force: bool
    verify: bool
    skip_invalid: bool
    wait: bool
    engine: str
    ray_address: str | None
    ray_workers: int | None
    gpus_per_worker: float | None
    max_retries: int | None
    quiet: bool
    json_: bool
    offload: str
    vae_tiling: bool
    vae_slicing: bool
    reuse_embeddings: bool = True
    attention: str = "sdpa"
    channels_last: str = "auto"
    compile_: str = "off"


def run_options(args: RunArgs) -> RunOptions:
    """``genbatch run``'s options, checked, as the library's RunOptions."""
    from .runner import RunOptions

    _check_values(args)
    scheduler = _scheduler(args.scheduler)
    _check_limits(args)
    manifest_format, image_format = split_formats(args.format_)
    defaults = _defaults(args)
    overrides = parse_assignments(args.set_, "--set")
    engine = args.engine.lower()
    return RunOptions(
        offload=args.offload,
        vae_tiling=args.vae_tiling,
        vae_slicing=args.vae_slicing,
        torch_options=torch_options(args.reuse_embeddings, args.attention, args.channels_last, args.compile_),
        engine=engine,
        engine_options=engine_options(
            engine, args.ray_address, args.ray_workers, args.gpus_per_worker, args.max_retries
        ),
        manifest=args.manifest,
        out=args.out,
        format=manifest_format,
        column_map=column_map(args.column, args.prompt_column),
        overrides=overrides,
        axes=parse_axes(args.vary, overrides),
        defaults=defaults,
        model=args.model,
        config=args.config,
        vae=args.vae,
        backend=args.backend,
        device=args.device,
        dtype=args.dtype,
        scheduler=scheduler,
        providers=[p.strip() for p in args.providers.split(",") if p.strip()] if args.providers else None,
        batch_size=batch_size(args.batch_size),
        name_template=args.name_template,
        image_format=image_format,
        quality=args.quality,
        compress_level=args.compress_level,
        workers=args.workers,
        limit=args.limit,
        shard=parse_shard(args.shard),
        dry_run=args.dry_run,
        force=args.force,
        skip_invalid=args.skip_invalid,
        wait=args.wait,
        quiet=args.quiet,
        max_images_per_row=args.max_images_per_row,
        verify=args.verify,
    )


def _parsed(option: str | None, parse: Callable[[], T]) -> T:
    """``parse()``, its ValueError as a GenbatchError naming ``option`` (None: the message names it)."""
    try:
        return parse()
    except ValueError as err:
        raise GenbatchError(f"{option}: {err}" if option else str(err)) from None


def _check_values(args: RunArgs) -> None:
    for name, value in (("width", args.width), ("height", args.height), ("guidance_scale", args.guidance)):
        if value is not None:
            _parsed(f"--{name.split('_')[0]}", lambda: parse_value(name, value))


def _scheduler(scheduler: str | None) -> str | None:
    return None if scheduler is None else _parsed(None, lambda: parse_scheduler(scheduler, "--scheduler"))


def _check_limits(args: RunArgs) -> None:
    if args.offload not in ("none", "model", "sequential"):
        raise GenbatchError(f"--offload {args.offload!r}: expected none, model or sequential")
    if args.num_images > args.max_images_per_row:
        raise GenbatchError(
            f"--num-images {args.num_images} is over the limit of {args.max_images_per_row} images per row; "
            "pass --max-images-per-row N to allow more"
        )


def _defaults(args: RunArgs) -> Defaults:
    """The values of rows without their own: --steps, --guidance, --lora..."""
    loras = _parsed("--lora", lambda: parse_value("lora", "; ".join(args.lora))) if args.lora else None
    weighting = _parsed("--prompt-weighting", lambda: parse_value("prompt_weighting", args.prompt_weighting))
    return Defaults(
        steps=args.steps,
        guidance_scale=args.guidance,
        width=args.width,
        height=args.height,
        negative_prompt=args.negative,
        num_images=args.num_images,
        seed=args.seed,
        clip_skip=args.clip_skip,
        lora=loras or None,
        prompt_weighting=None if weighting == "off" else weighting,
    )


def split_formats(values: list[str]) -> tuple[str | None, str]:
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


def batch_size(value: str | None) -> int | str | None:
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


def column_map(columns: list[str], prompt_column: str | None) -> dict[str, str]:
    mapping = parse_assignments(columns, "--column")
    if prompt_column:
        mapping["prompt"] = prompt_column
    return mapping


def engine_options(
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
