"""One small adapter per diffusers text-to-image family.

A model's family is read from its pipeline class (``_class_name`` in ``model_index.json``)
before anything is loaded. The family says what a pipeline call takes (a negative prompt,
guidance or not, ``max_sequence_length``, resolution binning off so sizes are exact), what the
family runs at when neither the manifest nor the model folder says (steps, guidance, size),
and how to call the pipeline for a batch so that each image is the one plain diffusers gives
for ``generator=torch.Generator("cpu").manual_seed(seed)``: the pipeline gets one CPU
generator per image and draws each image's noise itself (Flux packs its latents into tokens;
every family prepares its own).

First-class families are tested with tiny pipelines (:mod:`genbatch.pipelines.tiny_models`); other
pipelines that ``AutoPipelineForText2Image`` maps and that need nothing but a prompt take the
generic path; pipelines that need more (a control image, a prior, a second stage) are refused
before any job runs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genbatch.errors import ModelError
from genbatch.pipelines.families.base import Family
from genbatch.pipelines.image_inputs import (
    input_arguments,
    input_kind,
    pipeline_class_for,
    size_multiple,
)
from genbatch.pipelines.model_files import read_json, read_timesteps

SD = Family(
    "sd",
    "SD 1.x/2.x",
    ("StableDiffusionPipeline",),
    ("unet", "vae", "text_encoder", "tokenizer", "scheduler"),
    steps=30,
    guidance_scale=7.5,
    size=512,
    timesteps=True,
    onnx=True,
)
SDXL = Family(
    "sdxl",
    "SDXL",
    ("StableDiffusionXLPipeline",),
    ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"),
    steps=30,
    guidance_scale=5.0,
    size=1024,
    timesteps=True,
    onnx=True,
    notes="no negative prompt: a zeroed unconditional embedding (force_zeros_for_empty_prompt)",
    zeroed_empty_negative=True,
    negative_meaning="what to steer away from; none is a zeroed embedding (other pixels than an empty prompt)",
)
SD3 = Family(
    "sd3",
    "SD3/3.5",
    ("StableDiffusion3Pipeline",),
    ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"),
    steps=28,
    guidance_scale=7.0,
    size=1024,
    max_sequence_length=True,
    longest_sequence=512,
)
FLUX = Family(
    "flux",
    "Flux.1",
    ("FluxPipeline",),
    ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"),
    steps=28,
    guidance_scale=3.5,
    size=1024,
    negative_prompt=False,
    max_sequence_length=True,
    longest_sequence=512,
    notes="guidance-distilled (dev: 28 steps, guidance 3.5; schnell: 4 steps, no guidance); no negative prompt",
    guidance="distilled",
    guidance_meaning="embedded guidance of a guidance-distilled model (dev); schnell ignores it",
    negative_meaning="refused: the model takes none",
    sample_size=128,
    ignores="families:no_guidance_embeds",
    model_defaults="families:schnell_defaults",
)
PIXART = Family(
    "pixart",
    "PixArt-α/Σ",
    ("PixArtSigmaPipeline", "PixArtAlphaPipeline"),
    ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    steps=20,
    guidance_scale=4.5,
    size=1024,
    max_sequence_length=True,
    timesteps=True,
    fixed={"use_resolution_binning": False, "clean_caption": False},
    notes="resolution binning and caption cleaning off: sizes and prompts exactly as asked",
)
SANA = Family(
    "sana",
    "Sana",
    ("SanaPipeline",),
    ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    steps=20,
    guidance_scale=4.5,
    size=1024,
    max_sequence_length=True,
    timesteps=True,
    fixed={"use_resolution_binning": False},
    notes="resolution binning off: sizes exactly as asked",
)
GENERIC = Family(
    "generic",
    "other text-to-image pipelines",
    (),
    ("scheduler",),
    steps=30,
    guidance_scale=5.0,
    size=1024,
    notes="prompt, negative prompt when the pipeline takes one, size, steps, guidance",
    guidance_meaning="passed as guidance_scale where the pipeline takes it",
    negative_meaning="passed where the pipeline takes one; none is the empty prompt",
)

from genbatch.pipelines.families.today import TODAY  # noqa: E402  (they build on the families above)

FAMILIES: tuple[Family, ...] = (SD, SDXL, SD3, FLUX, PIXART, SANA, *TODAY)
BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}


def no_guidance_embeds(path: Path) -> frozenset[str]:
    """``guidance_scale`` where the denoiser embeds no guidance (Flux.1-schnell), else nothing."""
    config = read_json(Path(path) / "transformer" / "config.json")
    return frozenset() if config.get("guidance_embeds", True) else frozenset({"guidance_scale"})


def schnell_defaults(path: Path) -> dict[str, Any]:
    """Flux.1-schnell (no guidance embedding) runs at 4 steps and no guidance."""
    return {"steps": 4, "guidance_scale": 0.0} if no_guidance_embeds(path) else {}


def ignored_fields(family: Family, path: Path) -> frozenset[str]:
    """The generation fields a model ignores (read once per process, family and folder)."""
    return _ignored(family.name, _resolved(str(path)))


@functools.lru_cache(maxsize=256)
def _resolved(given: str) -> str:
    """A model folder's path resolved, once per process and path as given (the per-row lookups
    of planning would otherwise resolve it, a syscall per part, once a row)."""
    return str(Path(given).resolve())


@functools.lru_cache(maxsize=64)
def _ignored(family: str, path: str) -> frozenset[str]:
    return BY_NAME.get(family, GENERIC).ignored(Path(path))


# Pipelines AutoPipelineForText2Image maps that need more than a prompt to make an image.
_NEEDS_MORE = {
    "QwenImage21Pipeline": "Qwen-Image 2.1 takes its steps from the sample_sigmas in its model_index.json "
    "(a ledger's steps would not be the model's) and needs torchvision for its Qwen3-VL processor",
    "IFPipeline": "DeepFloyd IF makes 64x64 images that need its super-resolution stages",
    "KandinskyCombinedPipeline": "Kandinsky runs a prior pipeline before the decoder",
    "KandinskyV22CombinedPipeline": "Kandinsky 2.2 runs a prior pipeline before the decoder",
    "WuerstchenCombinedPipeline": "Würstchen runs a prior pipeline before the decoder",
    "StableCascadeCombinedPipeline": "Stable Cascade runs a prior pipeline before the decoder",
}


def _missing_packages(class_name: str) -> list[str]:
    """The packages a diffusers pipeline class needs that are not installed: diffusers puts a
    placeholder in its place, which names them (``_backends``), when one is missing."""
    import importlib.util

    import diffusers

    needs = getattr(getattr(diffusers, class_name, None), "_backends", None) or []
    return [name for name in needs if importlib.util.find_spec(name) is None]


def _auto_text2image() -> set[str]:
    from diffusers.pipelines.auto_pipeline import AUTO_TEXT2IMAGE_PIPELINES_MAPPING

    return {cls.__name__ for cls in AUTO_TEXT2IMAGE_PIPELINES_MAPPING.values()}


def model_index(path: Path) -> dict[str, Any]:
    """A model folder's model_index.json (read once per process and folder: planning asks for
    every row's family and pipeline). Do not change the dict."""
    return _read_index(_resolved(str(path)))


@functools.lru_cache(maxsize=64)
def _read_index(path: str) -> dict[str, Any]:
    return read_json(Path(path) / "model_index.json")


def pipeline_class(path: Path) -> str:
    return str(model_index(path).get("_class_name") or "")


def family_of(class_name: str) -> Family:
    """The family that runs ``class_name`` on the torch backend, or a ModelError saying why none does."""
    missing = _missing_packages(class_name)
    if missing:
        many = len(missing) > 1
        raise ModelError(
            f"{class_name} needs the Python package{'s' if many else ''} {', '.join(missing)}, which "
            f"{'are' if many else 'is'} not installed here: pip install {' '.join(missing)}"
        )
    for family in FAMILIES:
        if class_name in family.pipelines:
            return family
    if class_name in _NEEDS_MORE:
        raise ModelError(f"{class_name}: {_NEEDS_MORE[class_name]}, which genbatch does not run")
    if _needs_image(class_name):
        raise ModelError(
            f"{class_name} needs an input image as well as a prompt; genbatch runs text-to-image pipelines only"
        )
    if class_name and class_name in _auto_text2image():
        return GENERIC
    if not class_name:
        raise ModelError("model_index.json names no pipeline (_class_name); genbatch runs diffusers pipeline folders")
    import diffusers

    if getattr(diffusers, class_name, None) is None:
        raise ModelError(
            f"{class_name} is not a pipeline class of the installed diffusers ({diffusers.__version__}); "
            "a newer diffusers may have it (pip install -U diffusers)"
        )
    raise ModelError(
        f"{class_name} is not a text-to-image pipeline (diffusers' AutoPipelineForText2Image does not map it); "
        "genbatch models --families lists the pipelines genbatch runs"
    )


def _needs_image(class_name: str) -> bool:
    """Whether a pipeline needs an input image: an image-to-image, inpainting, control or edit
    pipeline by its name, or one outside the text-to-image mapping whose call takes an image."""
    if any(word in class_name for word in ("ControlNet", "Control", "Kontext", "Img2Img", "Inpaint", "Edit")):
        return True
    takes = pipeline_parameters(class_name)
    return class_name not in _auto_text2image() and bool(takes & {"image", "mask_image", "control_image"})


# What genbatch export writes; these run on --backend onnx only.
ONNX_EXPORTS = {"OnnxStableDiffusionPipeline": SD, "OnnxStableDiffusionXLPipeline": SDXL}


def detect(path: Path) -> Family:
    """A model folder's family on the torch backend, from its model_index.json, with the
    components it must have; a ModelError saying why it cannot run otherwise."""
    index = model_index(path)
    cls = str(index.get("_class_name") or "")
    if cls in ONNX_EXPORTS or (Path(path) / "unet" / "model.onnx").exists():
        raise ModelError(f"{path} is an ONNX export; run it with --backend onnx")
    family = family_of(cls)
    _check_component_packages(cls, index)
    missing = [c for c in family.components if not (index.get(c) or [None])[0]]
    if missing:
        raise ModelError(
            f"{path}: {index.get('_class_name')} has no {', '.join(missing)} "
            "(model_index.json names none), which it needs to make an image"
        )
    return family


def _check_component_packages(class_name: str, index: dict[str, Any]) -> None:
    """A ModelError naming the package a component's class needs and lacks here (FLUX.2-dev's
    PixtralProcessor needs torchvision): transformers and diffusers put a placeholder, which
    names them (``_backends``), in the place of such a class."""
    import importlib.util

    for component, entry in index.items():
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] in ("transformers", "diffusers")):
            continue
        library, name = entry
        try:
            cls = getattr(importlib.import_module(library), str(name), None)
        except Exception:  # a library that cannot import: the load says so
            continue
        needs = getattr(cls, "_backends", None) or []
        missing = [n for n in needs if isinstance(n, str) and importlib.util.find_spec(n) is None]
        if missing:
            raise ModelError(
                f"{class_name}'s {component} ({name}) needs the Python package {', '.join(missing)}, which is not "
                f"installed here: {install_hint(missing)}"
            )
        if library == "transformers" and _has_video_part(cls) and not torchvision_installed():
            raise ModelError(
                f"{class_name}'s {component} ({name}) needs torchvision, which is not installed here (transformers "
                f"makes a processor with a video part only with torchvision, even to read images): "
                f"{install_hint(['torchvision'])}"
            )


def install_hint(packages: list[str]) -> str:
    """How to install ``packages``: torchvision's wheel must be the one built for the torch installed."""
    hint = f"pip install {' '.join(packages)}"
    return f"{hint} (the build matching your torch)" if "torchvision" in packages else hint


def torchvision_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchvision") is not None


def _has_video_part(cls: Any) -> bool:
    """Whether a transformers processor class has a video processor among its parts (Qwen2VLProcessor,
    Qwen-Image-Edit's): transformers 5 makes one only with torchvision, and cannot make the
    processor without it."""
    parts = getattr(cls, "get_attributes", None)
    try:
        names = parts() if callable(parts) else getattr(cls, "attributes", [])
    except Exception:  # not a processor class
        return False
    return isinstance(names, (list, tuple)) and "video_processor" in names


def folder_family(path: Path) -> Family | None:
    """The family of a model folder or of its ONNX export; None where genbatch knows none."""
    cls = pipeline_class(path)
    if cls in ONNX_EXPORTS:
        return ONNX_EXPORTS[cls]
    try:
        return family_of(cls)
    except ModelError:
        return None


def runs_on(path: Path) -> dict[str, Any]:
    """Family and backends of a model folder, for ``genbatch models``: ``torch`` and ``onnx``
    are True or the reason they are not."""
    family = folder_family(path)
    try:
        detect(path)
        torch: bool | str = True
    except ModelError as err:
        torch = str(err)
    exported = pipeline_class(path) in ONNX_EXPORTS
    if exported:
        onnx: bool | str = True
    elif family is not None and family.onnx:
        onnx = "after genbatch export --to onnx"
    else:
        named = family.title if family is not None and family is not GENERIC else pipeline_class(path) or "it"
        onnx = f"no: genbatch export does not export {named}"
    return {
        "family": family.name if family else "?",
        "pipeline": pipeline_class(path),
        "torch": torch,
        "onnx": onnx,
        "notes": family.notes if family else "",
    }


def _vae_factor(path: Path) -> int:
    vae = read_json(path / "vae" / "config.json") or read_json(path / "vae_decoder" / "config.json")
    if "temperal_downsample" in vae:  # a video-style VAE (Qwen-Image's): 2 per entry, as its pipeline computes
        return int(2 ** len(vae["temperal_downsample"]))
    blocks = vae.get("encoder_block_out_channels") or vae.get("block_out_channels") or [0, 0, 0, 0]
    return 2 ** (len(blocks) - 1)


def folder_defaults(path: Path) -> dict[str, Any]:
    """Steps, guidance and size for a model folder whose genbatch.json does not say: its
    family's (SD's for a folder of no known family, as genbatch always assumed)."""
    return family_defaults(Path(path), folder_family(path) or SD)


def family_defaults(path: Path, family: Family) -> dict[str, Any]:
    """Steps, guidance and size of a family's model, from its configs where they say."""
    defaults: dict[str, Any] = {"steps": family.steps, "guidance_scale": family.guidance_scale}
    denoiser = read_json(path / "unet" / "config.json") or read_json(path / "transformer" / "config.json")
    sample = denoiser.get("sample_size")
    sample = sample[0] if isinstance(sample, (list, tuple)) else sample
    if family.sample_size:
        sample = family.sample_size  # the pipeline's default_sample_size; its denoiser says none
    own = family.hook("model_defaults")  # a step-distilled variant (Flux.1-schnell, a distilled Flux.2-klein)
    if own is not None:
        defaults.update(own(path))
    if family is SD and not sample:
        sample = 64  # an SD UNet config without sample_size
    size = int(sample) * _vae_factor(path) if sample else family.size
    defaults.update(width=size, height=size)
    return defaults


def recorded_call(job: Any) -> dict[str, Any]:
    """A job's pipeline call as the ledger records it (:func:`job_call`); ``{}`` for a model
    of no family genbatch runs on torch (an ONNX export)."""
    family = folder_family(job.model.path)
    base = pipeline_class(job.model.path)
    if family is None or base in ONNX_EXPORTS:
        return {}
    return job_call(family, pipeline_parameters(job_pipeline_class(job.model.path, job.values) or base), job)


def job_pipeline_class(path: Path, values: Any) -> str | None:
    """The diffusers pipeline class a job of the model at ``path`` runs on: the model's own, or
    the image-to-image, inpainting or ControlNet one its inputs ask for (None where genbatch runs
    none: genbatch.pipelines.image_inputs.pipeline_class_for)."""
    return pipeline_class_for(pipeline_class(path), input_kind(values), values.get("control_image") is not None)


@functools.cache
def input_size_multiple(path: Path) -> int:
    """The multiple an input image's size is rounded down to when it gives a job's size
    (genbatch.pipelines.image_inputs.size_multiple of the model's VAE and denoiser; a
    Qwen-Image VAE's downsampling from its ``temperal_downsample``, as its pipelines compute it)."""
    return size_multiple(_vae_factor(Path(path)), (Path(path) / "transformer").is_dir())


def job_negative(path: Path, negative_prompt: str | None) -> str | None:
    """A job's negative prompt: none stays none where that gives other pixels than ``""``
    (SDXL), else it is ``""``, which keeps the job keys genbatch has always given."""
    if negative_prompt is None and not empty_negative_matters(path, folder_family(path) or SD):
        return ""
    return negative_prompt


def empty_negative_matters(path: Path, family: Family) -> bool:
    """Whether no negative prompt gives other pixels than ``""`` (SDXL's zeroed embedding)."""
    if family.zeroed_empty_negative is not None:  # a zeroed embedding for no negative prompt, where configured
        return bool(model_index(path).get("force_zeros_for_empty_prompt", family.zeroed_empty_negative))
    return family.none_negative_differs


@functools.cache
def pipeline_parameters(class_name: str) -> frozenset[str]:
    """The names a diffusers pipeline's ``__call__`` takes, read from its class (nothing loaded)."""
    import diffusers

    cls = getattr(diffusers, class_name, None)
    return frozenset(inspect.signature(cls.__call__).parameters) if cls is not None else frozenset()


def job_call(family: Family, takes: frozenset[str] | set[str], job: Any) -> dict[str, Any]:
    """What the pipeline is called with for one job, the generator aside: recorded in the
    ledger (``call``), so ``pipe(**record["call"], generator=torch.Generator("cpu").manual_seed(seed))``
    in plain diffusers gives the image again."""
    ignored = ignored_fields(family, job.model.path)
    call: dict[str, Any] = {"prompt": job.prompt}
    negative = getattr(job, "negative_prompt", None)
    if (
        negative is not None
        and family.negative_prompt
        and "negative_prompt" in takes
        and "negative_prompt" not in ignored
    ):
        call["negative_prompt"] = negative
    call["num_inference_steps"] = job.steps
    call.update({k: v for k, v in (("height", job.height), ("width", job.width)) if k in takes})  # img2img: none
    if "guidance_scale" in takes and "guidance_scale" not in ignored:
        call["guidance_scale"] = job.guidance_scale
    # a row's images (their files: the ledger's record of each), and how the pipeline uses them
    for argument, field in input_arguments(takes, job.values).items():
        call[argument] = job.values[field].record()
    if job.values.get("ip_adapter_image") is not None and "ip_adapter_image" in takes:  # the backend encodes it
        call["ip_adapter_image"] = job.values["ip_adapter_image"].record()
    for name in ("strength", "controlnet_conditioning_scale"):
        if job.values.get(name) is not None and name in takes:
            call[name] = job.values[name]
    for name in family.takes:  # the family's own fields (true_cfg_scale...), where set
        value = job.values.get(name)
        if value is not None and name in takes and name not in ignored:
            call[name] = value
    own = family.hook("call_args")  # what this family's call needs for this job (SANA-Sprint's steps)
    if own is not None:
        call.update(own(job.model.path, job))
    timesteps = getattr(job, "timesteps", None)
    if timesteps:
        call["timesteps"] = list(timesteps)
    length = getattr(job, "max_sequence_length", None)
    if length and family.max_sequence_length and "max_sequence_length" in takes:
        call["max_sequence_length"] = int(length)
    call.update({k: v for k, v in family.fixed.items() if k in takes})
    return call


def call_kwargs(family: Family, pipe: Any, jobs: Sequence[Any], generators: list[Any]) -> dict[str, Any]:
    """The pipeline call for a batch of jobs that share settings (all with a negative prompt
    or all without): each job's call, prompts as lists; images come back as a tensor on the
    device (genbatch.backends.base.tensor_to_uint8 makes them uint8 there)."""
    takes = set(inspect.signature(pipe.__call__).parameters)
    calls = [job_call(family, takes, job) for job in jobs]
    kwargs = dict(calls[0])
    for name in ("prompt", "negative_prompt"):
        if name in kwargs:
            kwargs[name] = [call[name] for call in calls]
    kwargs = {**kwargs, "generator": generators, "output_type": "pt"}
    encode = family.hook("encode")  # a family whose own encoding would let a batch change pixels
    return encode(pipe, jobs, kwargs) if encode is not None else kwargs


def call_groups(family: Family, pipe: Any, jobs: Sequence[Any]) -> list[list[Any]]:
    """A batch's jobs as the pipeline calls that make them: with and without a negative prompt
    apart (:func:`negative_groups`), then cut where the family's encoding needs it
    (``Family.batch_parts``: CogView4 by prompt token length)."""
    parts = family.hook("batch_parts")
    groups = negative_groups(jobs)
    return [part for group in groups for part in parts(pipe, group)] if parts is not None else groups


def negative_groups(jobs: Sequence[Any]) -> list[list[Any]]:
    """One pipeline call cannot mix images with and without a negative prompt: the batch's
    jobs split in two, each in order."""
    with_ = [j for j in jobs if getattr(j, "negative_prompt", None) is not None]
    without = [j for j in jobs if getattr(j, "negative_prompt", None) is None]
    return [group for group in (with_, without) if group]


def read_defaults(path: Path) -> dict[str, Any]:
    """Steps, guidance, size and scheduler a model is meant to run at.

    ``genbatch.json`` in the folder wins; otherwise the model's family says
    (:func:`folder_defaults`: its denoiser's sample size times the VAE's
    downsampling, and the family's usual steps and guidance).
    """
    own = read_json(path / "genbatch.json")
    scheduler = read_json(path / "scheduler" / "scheduler_config.json").get("_class_name")
    defaults = {**folder_defaults(path), "scheduler": scheduler, "description": ""}
    defaults.update({k: v for k, v in own.items() if v is not None})
    if "timesteps" in own:
        train_steps = read_json(path / "scheduler" / "scheduler_config.json").get("num_train_timesteps", 1000)
        defaults["timesteps"] = read_timesteps(path / "genbatch.json", own["timesteps"], train_steps)
    return defaults


def is_xl(pipe: Any) -> bool:
    """Whether a loaded pipeline has SDXL's second text encoder (and with it SDXL's added conditioning)."""
    return getattr(pipe, "text_encoder_2", None) is not None


def family_rows() -> list[dict[str, Any]]:
    """Every family genbatch runs on torch, for ``genbatch models --families`` and the README:
    its pipelines, defaults, what a row's guidance_scale and negative_prompt mean, and the
    fields only it takes."""
    return [
        {
            "family": f.name,
            "title": f.title,
            "pipelines": list(f.pipelines),
            "steps": f.steps,
            "guidance_scale": f.guidance_scale,
            "guidance": f.guidance,
            "guidance_meaning": f.guidance_meaning,
            "negative_prompt": f.negative_meaning,
            "takes": [*(["max_sequence_length"] if f.max_sequence_length else []), *f.takes],
            "onnx": f.onnx,
            "notes": f.notes,
        }
        for f in (*FAMILIES, GENERIC)
    ]
