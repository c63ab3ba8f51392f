"""Which diffusers pipeline makes a row with images, and which of its arguments take them.

A row with an ``image`` is image-to-image, one with a ``mask_image`` too is inpainting, and a
``control_image`` adds a ControlNet: the pipeline is the one diffusers' ``AutoPipelineForImage2Image``,
``AutoPipelineForInpainting`` and ``AutoPipelineForText2Image`` (with ``controlnet=``) map the
model's own pipeline to, made with ``from_pipe`` so the weights load once. A model whose own
pipeline takes an ``image`` (an instruction-edit model: Flux Kontext, Qwen-Image-Edit) gets the
row's image itself.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any

from genbatch.pipelines.model_files import read_json

# The input fields a call takes as images, in the order its arguments are filled in (an
# ip_adapter_image goes in as its embedding: genbatch.backends.ip_adapter).
CALL_INPUTS = ("image", "mask_image", "control_image")


def input_kind(values: Any) -> str:
    """ "inpaint", "img2img" or "text" (no input image), from a job's (or row's) values."""
    if values.get("mask_image") is not None:
        return "inpaint"
    return "img2img" if values.get("image") is not None else "text"


def controlnet_of(values: Any) -> str | None:
    """The ControlNet a job runs with: its own (or --controlnet) where it has a control image."""
    return values.get("controlnet") if values.get("control_image") is not None else None


@functools.cache
def takes_image(class_name: str) -> bool:
    """Whether a pipeline class's own call takes an ``image`` (an edit model, or a task pipeline)."""
    return "image" in parameters(class_name)


@functools.cache
def parameters(class_name: str) -> frozenset[str]:
    import diffusers

    cls = getattr(diffusers, class_name, None)
    return frozenset(inspect.signature(cls.__call__).parameters) if cls is not None else frozenset()


# Task pipelines diffusers' auto pipelines map to that genbatch does not run, and why.
NOT_RUN = {
    "QwenImageEditInpaintPipeline": "makes about a megapixel whatever size is asked, not the row's size",
}


@functools.cache  # asked for every row of a manifest, of a few kinds
def pipeline_class_for(base: str, kind: str, controlnet: bool) -> str | None:
    """The diffusers pipeline class that makes a job of ``kind`` (with a ControlNet) from a model
    whose own pipeline is ``base``, as diffusers' auto pipelines map it; None where none does
    (or where genbatch does not run the one it maps to: :data:`NOT_RUN`)."""
    mapped = mapped_class(base, kind, controlnet)
    return None if mapped in NOT_RUN else mapped


def mapped_class(base: str, kind: str, controlnet: bool) -> str | None:
    """The pipeline class diffusers' auto pipelines map a model's ``base`` to for ``kind`` (with a
    ControlNet), or None (:func:`pipeline_class_for`, less what genbatch does not run)."""
    if kind == "text" and not controlnet:
        return base
    if kind == "img2img" and not controlnet and takes_image(base):
        return base  # an edit model takes the image itself
    from diffusers.pipelines import auto_pipeline as auto

    mapping = {
        "text": auto.AUTO_TEXT2IMAGE_PIPELINES_MAPPING,
        "img2img": auto.AUTO_IMAGE2IMAGE_PIPELINES_MAPPING,
        "inpaint": auto.AUTO_INPAINT_PIPELINES_MAPPING,
    }[kind]
    task = auto._get_task_class(mapping, base, throw_error_if_not_exist=False)
    if task is None:
        return None
    if controlnet:
        ending = {"text": "Pipeline", "img2img": "Img2ImgPipeline", "inpaint": "InpaintPipeline"}[kind]
        name = task.__name__.replace("ControlNet", "")
        if not name.endswith(ending):
            return None  # an edit model's own pipeline (Flux2Pipeline) has no ControlNet one
        task = auto._get_task_class(
            mapping, name.replace(ending, "ControlNet" + ending), throw_error_if_not_exist=False
        )
    return task.__name__ if task is not None else None


def input_arguments(takes: frozenset[str] | set[str], values: Any) -> dict[str, str]:
    """call argument -> the job's input field it takes: ``image``, ``mask_image``, and the control
    image as ``control_image``, or as ``image`` in a ControlNet pipeline that takes no other image."""
    found: dict[str, str] = {}
    for name in CALL_INPUTS:
        if values.get(name) is None:
            continue
        if name == "control_image" and "control_image" not in takes:
            if "image" in takes and "image" not in found:
                found["image"] = name
        elif name in takes:
            found[name] = name
    return found


def input_mode(field: str) -> str:
    """The Pillow mode a pipeline gets an input in: a mask in grey levels, the others in RGB."""
    return "L" if field == "mask_image" else "RGB"


def size_multiple(vae_factor: int, transformer: bool) -> int:
    """The multiple an input's size is rounded down to when it is the output size, as the
    pipelines round it: the VAE's downsampling, times the 2x2 patches of a transformer denoiser."""
    return vae_factor * (2 if transformer else 1)


def controlnet_folder(given: str) -> Path | None:
    """The folder of a ControlNet: a folder as given, or a hub id's snapshot in the local cache."""
    from genbatch.pipelines.hub_cache import cached_snapshot

    path = Path(given).expanduser()
    if path.is_dir():
        return path
    return cached_snapshot(given) if given.count("/") == 1 and not given.startswith((".", "/")) else None


def controlnet_problem(given: str) -> str | None:
    """Why ``given`` is not a ControlNet genbatch can load (nothing is downloaded), or None."""
    folder = controlnet_folder(given)
    if folder is None:
        return f"controlnet {given}: no such folder, and no such model in the local Hugging Face cache"
    name = read_json(folder / "config.json").get("_class_name", "")
    if "ControlNet" not in str(name):
        return f"controlnet {given}: {folder / 'config.json'} is not a ControlNet's (its _class_name is {name!r})"
    return None


def inpaint_problem(model: Path) -> str | None:
    """Why a model's UNet cannot inpaint in diffusers (which takes a text-to-image UNet of 4 input
    channels, or an inpainting one of 9), or None."""
    channels = read_json(Path(model) / "unet" / "config.json").get("in_channels")
    if channels is None or channels in (4, 9):
        return None
    return (
        f"its UNet takes {channels} input channels; diffusers' inpainting takes a UNet of 4 (a text-to-image "
        "model's) or 9 (an inpainting model's)"
    )


@functools.cache
def takes_ip_adapter(class_name: str) -> bool:
    """Whether a pipeline class loads an IP-Adapter as genbatch runs it: diffusers'
    ``IPAdapterMixin``, the UNet pipelines' (SD, SDXL and their image-to-image, inpainting and
    ControlNet pipelines). Flux's and SD3's adapters load and call otherwise, and are not run."""
    import diffusers
    from diffusers.loaders import IPAdapterMixin

    cls = getattr(diffusers, class_name, None)
    return isinstance(cls, type) and issubclass(cls, IPAdapterMixin)


def ip_adapter_file(given: str) -> Path | None:
    """An IP-Adapter's weight file: a file as given, or ``owner/name/path/in/it`` in the local
    Hugging Face cache; None where neither is there."""
    from genbatch.pipelines.hub_cache import cached_snapshot

    path = Path(given).expanduser()
    if path.is_file():
        return path
    parts = given.split("/")
    if len(parts) < 3 or given.startswith((".", "/", "~")):
        return None
    snapshot = cached_snapshot("/".join(parts[:2]))
    found = snapshot.joinpath(*parts[2:]) if snapshot else None
    return found if found is not None and found.is_file() else None


def ip_adapter_encoder(weights: Path) -> Path | None:
    """The image encoder folder of an IP-Adapter: ``image_encoder/`` beside its weight file, as
    diffusers' ``load_ip_adapter`` looks for it, or h94/IP-Adapter's ``models/image_encoder``
    (the ViT-H encoder that its ``sdxl_models/*vit-h*`` adapters take); None where neither is."""
    for folder in (weights.parent / "image_encoder", weights.parent.parent / "models" / "image_encoder"):
        if (folder / "config.json").is_file():
            return folder
    return None


def ip_adapter_problem(given: str) -> str | None:
    """Why ``given`` is not an IP-Adapter genbatch can load (nothing is downloaded), or None."""
    weights = ip_adapter_file(given)
    folder = Path(given).expanduser()
    if weights is None and folder.is_dir():
        found = sorted(p.name for p in folder.glob("*.safetensors"))[:5]
        names = ", ".join(found) or "it has no .safetensors"
        return f"ip_adapter {given} is a folder: name the weight file in it ({names})"
    if weights is None:
        return f"ip_adapter {given}: no such file, and no such file in the local Hugging Face cache"
    if weights.suffix != ".safetensors":  # a .bin is a pickle, which runs code as it loads
        return f"ip_adapter {given}: genbatch loads an IP-Adapter's .safetensors file (h94/IP-Adapter has both)"
    if ip_adapter_encoder(weights) is None:
        return (
            f"ip_adapter {given}: its image encoder is not there: {weights.parent / 'image_encoder'} "
            "(a CLIP vision model's folder, as h94/IP-Adapter ships it beside the weights)"
        )
    return None


@functools.cache
def ip_adapter_width(weights: Path) -> int | None:
    """The text width an IP-Adapter's image tokens are made for (its first ``to_k_ip``'s input:
    the UNet's ``cross_attention_dim``), read from the file's header; None where it has none."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="numpy") as found:
            names = [n for n in found.keys() if n.endswith(".to_k_ip.weight")]
            return int(found.get_slice(names[0]).get_shape()[1]) if names else None
    except Exception:  # not a safetensors file: its load says why
        return None


def ip_adapter_fit_problem(given: str, model: Path) -> str | None:
    """Why the IP-Adapter ``given`` cannot load into ``model``'s UNet (made for another width of
    text, as an SDXL adapter on an SD 1.5 model), or None."""
    weights = ip_adapter_file(given)
    width = ip_adapter_width(weights) if weights else None
    takes = read_json(Path(model) / "unet" / "config.json").get("cross_attention_dim")
    if width is None or not isinstance(takes, int) or width == takes:
        return None
    return (
        f"ip_adapter {given} is made for a UNet of cross_attention_dim {width}, and this model's is {takes} "
        "(an SD 1.5 adapter takes 768, an SDXL one 2048): use the adapter made for the model's family"
    )
