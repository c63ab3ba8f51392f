"""How ``genbatch run`` turns its command-line values into the library's option groups
(genbatch.runner.options): the parsing and checks that belong to the command line. Each bad
value is refused with a one-line message naming its option."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from genbatch.engine import RayOptions
from genbatch.errors import GenbatchError
from genbatch.manifest.fields import BY_NAME
from genbatch.manifest.read import FORMATS, parse_assignments, parse_value
from genbatch.pipelines.samplers import parse_scheduler
from genbatch.plan.planner import Defaults
from genbatch.store.image_formats import BY_EXTENSION as IMAGE_FORMATS

T = TypeVar("T")


def check_numbers(**given: int | float | None) -> None:
    """The numbers of rows without their own (``option name=value``: ``steps``, ``guidance_scale``,
    ``width``...) by their fields' rules and ranges (genbatch.manifest.fields), each named by its option."""
    for name, value in given.items():
        if value is not None:
            option = BY_NAME[name].option or f"--{name.replace('_', '-')}"
            _parsed(option, lambda: parse_value(name, value))


def check_num_images(num_images: int, max_images_per_row: int) -> None:
    if num_images > max_images_per_row:
        raise GenbatchError(
            f"--num-images {num_images} is over the limit of {max_images_per_row} images per row; "
            "pass --max-images-per-row N to allow more"
        )


def ray_options(
    engine: str,
    address: str | None,
    workers: int | None,
    gpus_per_worker: float | None,
    max_retries: int | None,
    worker_wait: float | None = None,
) -> RayOptions | None:
    """The Ray options of ``--engine ray`` (None for the local engine, which takes none of them)."""
    given = {
        "--ray-address": address,
        "--ray-workers": workers,
        "--gpus-per-worker": gpus_per_worker,
        "--max-retries": max_retries,
        "--worker-wait": worker_wait,
    }
    if engine.lower() != "ray":
        named = [name for name, value in given.items() if value is not None]
        if named:
            raise GenbatchError(f"{named[0]} is an option of --engine ray; add --engine ray, or leave it out")
        return None
    default = RayOptions()
    return RayOptions(
        address=address,
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        max_retries=default.max_retries if max_retries is None else max_retries,
        worker_wait=default.worker_wait if worker_wait is None else worker_wait,
    )


def providers_list(text: str | None) -> tuple[str, ...] | None:
    """``--providers A,B`` -> its execution providers, in order."""
    return tuple(p.strip() for p in text.split(",") if p.strip()) or None if text else None


def scheduler_name(scheduler: str | None) -> str | None:
    return None if scheduler is None else _parsed(None, lambda: parse_scheduler(scheduler, "--scheduler"))


def _parsed(option: str | None, parse: Callable[[], T]) -> T:
    """``parse()``, its ValueError as a GenbatchError naming ``option`` (None: the message names it)."""
    try:
        return parse()
    except ValueError as err:
        raise GenbatchError(f"{option}: {err}" if option else str(err)) from None


def run_defaults(
    *,
    steps: int | None,
    guidance_scale: float | None,
    width: int | None,
    height: int | None,
    negative_prompt: str | None,
    num_images: int,
    seed: int,
    clip_skip: int | None,
    lora: list[str],
    prompt_weighting: str,
    cache: str = "none",
    cache_threshold: float | None = None,
    quantize: str = "none",
    strength: float | None = None,
    resize: str | None = None,
    controlnet: str | None = None,
    control_scale: float | None = None,
    ip_adapter: str | None = None,
    ip_adapter_scale: float | None = None,
) -> Defaults:
    """The values of rows without their own: --steps, --guidance, --lora, --cache, --strength,
    --resize...; and --quantize, which has no column (one value per run)."""
    loras = _parsed("--lora", lambda: parse_value("lora", "; ".join(lora))) if lora else None
    weighting = _parsed("--prompt-weighting", lambda: parse_value("prompt_weighting", prompt_weighting))
    cache_name = _parsed("--cache", lambda: parse_value("cache", cache))
    quantized = _parsed("--quantize", lambda: parse_value("quantize", quantize))
    check_numbers(strength=strength, controlnet_conditioning_scale=control_scale, ip_adapter_scale=ip_adapter_scale)
    resize_mode = None if resize is None else _parsed("--resize", lambda: parse_value("resize", resize))
    named = None if controlnet is None else _parsed("--controlnet", lambda: parse_value("controlnet", controlnet))
    adapter = None if ip_adapter is None else _parsed("--ip-adapter", lambda: parse_value("ip_adapter", ip_adapter))
    return Defaults(
        steps=steps,
        guidance_scale=guidance_scale,
        width=width,
        height=height,
        negative_prompt=negative_prompt,
        num_images=num_images,
        seed=seed,
        clip_skip=clip_skip,
        lora=loras or None,
        prompt_weighting=None if weighting == "off" else weighting,
        cache=None if cache_name == "none" else cache_name,
        cache_threshold=cache_threshold,
        quantize=None if quantized == "none" else quantized,
        strength=strength,
        resize=resize_mode,
        controlnet=named,
        controlnet_conditioning_scale=control_scale,
        ip_adapter=adapter,
        ip_adapter_scale=ip_adapter_scale,
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
    """``--batch-size`` as typed: a whole number, ``auto``, or the text itself, which
    EngineOptions refuses (the one check of a batch size)."""
    if value is None or value.strip().lower() == "auto":
        return value and "auto"
    try:
        return int(value)
    except ValueError:
        return value


def column_map(columns: list[str], prompt_column: str | None) -> dict[str, str]:
    mapping = parse_assignments(columns, "--column")
    if prompt_column:
        mapping["prompt"] = prompt_column
    return mapping
