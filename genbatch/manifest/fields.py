"""The generation fields, each declared once.

A field is something that can differ from one image to the next: the prompt, the seed, the
size... Its row here says where it may come from (manifest columns, a run option), what
values it accepts, and what it takes part in: the job key (so "done" can be decided from
the ledger), the batch grouping (one pipeline call cannot mix it), the AUTOMATIC1111
``parameters`` text, file-name templates and the report tables. ``Row``, ``Job``, job keys,
template fields, report columns and the A1111 text are all derived from this table, so a
new field is one entry here plus its behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from genbatch.pipelines.samplers import a1111_name
from genbatch.pipelines.speed import CACHES, QUANTIZATIONS

# The upper bounds of the numeric fields: what real runs use with room to spare, and below
# where a pipeline refuses the value or runs out of memory with a traceback instead of a message.
MAX_SEED = 2**64 - 1
MAX_STEPS = 1000  # diffusers' schedulers refuse more steps than their 1000 training timesteps
MAX_GUIDANCE = 100  # A1111's CFG slider stops at 30; past ~30 images burn out
MAX_SIZE = 16384  # pixels per side (a 16384x16384 latent already needs tens of GB)
MAX_SEQUENCE_LENGTH = 4096  # T5/Gemma tokens; diffusers' pipelines take at most 512 to 3000
MAX_NUM_IMAGES = 10**9  # the hard ceiling of --max-images-per-row (default 10,000 per row)


MAX_CONTROL_SCALE = 10  # diffusers' ControlNets are trained at 1; past ~2 images fall apart
MAX_IP_ADAPTER_SCALE = 10  # IP-Adapters are trained at 1; diffusers' docs use 0.3 to 1
RESIZE_MODES = ("none", "fit", "fill")


def _input_key(value: Any) -> Any:
    """An input image's part of the job key: its sha256 (a ledger record's form carries it too)."""
    return value["sha256"] if isinstance(value, dict) else value.sha256


def _input_record(value: Any) -> Any:
    return value if isinstance(value, dict) else value.record()


def _input_text(value: Any) -> str:
    return str(value.get("path")) if isinstance(value, dict) else value.path


_INPUT: dict[str, Any] = {"to_key": _input_key, "to_record": _input_record, "to_text": _input_text}


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # how values parse: "prompt", "text", "int", "float", "name" (id, model), "lora", "choice",
    #   "scheduler", "list", "image" (a file's path)
    aliases: tuple[str, ...] = ()  # manifest column names; () = not read from a manifest
    # Kinds "int" and "float": the accepted range, lo <= value <= hi, checked wherever a value is
    # read (manifest cells, run options, --set, --vary, A1111 lines, the ledger: genbatch.store.ledger_checks).
    lo: float = 0
    hi: float | None = None
    multiple_of: int = 1
    option: str | None = None  # the run option that gives rows without a value one
    job: bool = True  # a resolved parameter of every image: ledger, PNG metadata, report
    key: bool = False  # part of the job key (a value of None is left out of it)
    group: bool = False  # jobs in one batch share the value
    template: tuple[str, ...] = ()  # names it has in --name-template
    a1111: tuple[int, str, Callable[[dict[str, Any]], str]] | None = None  # (order, label, text)
    choices: tuple[str, ...] = ()  # kind "choice": the accepted values
    off: Any = None  # a value that means "not set" (a row's "none" beats a run option, then reads as None)
    # A value that is not plain JSON (a LoRA set): its form in the job key and in the ledger,
    # and a short text for tables, grid labels and messages.
    to_key: Callable[[Any], Any] | None = None
    to_record: Callable[[Any], Any] | None = None
    to_text: Callable[[Any], str] | None = None

    @property
    def accepted(self) -> str:
        """What a valid value looks like, for messages."""
        if self.kind in ("int", "float"):
            text = "a whole number" if self.kind == "int" else "a number"
            text += (
                f" from {_number(self.lo)} to {_number(self.hi)}" if self.hi is not None else f" >= {_number(self.lo)}"
            )
            return text + (f" that is a multiple of {self.multiple_of}" if self.multiple_of > 1 else "")
        if self.kind == "scheduler":
            from genbatch.pipelines.samplers import accepted

            return accepted()
        if self.kind == "choice":
            return " or ".join(self.choices)
        if self.kind == "image":
            return "the path of an image file (PNG, JPEG, WebP...), relative to the manifest's folder, or a URL"
        if self.kind == "lora":
            return "LoRA files or ids with optional weights, e.g. style.safetensors:0.8; other:0.5 (or none)"
        return "text"

    def in_range(self, number: float) -> bool:
        """Whether a number (of this field's kind, "int" or "float") is in its declared range
        (NaN is not)."""
        if not self.lo <= number or (self.hi is not None and not number <= self.hi):
            return False
        return not (self.multiple_of > 1 and number % self.multiple_of)


FIELDS: tuple[Field, ...] = (
    Field("prompt", "prompt", ("prompt", "prompts", "text", "caption"), key=True, template=("prompt",)),
    Field("negative_prompt", "text", ("negative_prompt", "negative"), option="--negative", key=True),
    Field(
        "seed", "int", ("seed",), hi=MAX_SEED, key=True, template=("seed",), a1111=(3, "Seed", lambda p: str(p["seed"]))
    ),
    Field(
        "steps",
        "int",
        ("steps", "num_inference_steps"),
        lo=1,
        hi=MAX_STEPS,
        option="--steps",
        key=True,
        group=True,
        template=("steps",),
        a1111=(0, "Steps", lambda p: str(p["steps"])),
    ),
    Field(
        "guidance_scale",
        "float",
        ("guidance_scale", "guidance", "cfg"),
        hi=MAX_GUIDANCE,
        option="--guidance",
        key=True,
        group=True,
        template=("guidance", "guidance_scale"),
        a1111=(2, "CFG scale", lambda p: f"{p['guidance_scale']:g}"),
    ),
    Field(
        "width",
        "int",
        ("width",),
        lo=8,
        hi=MAX_SIZE,
        multiple_of=8,
        option="--width",
        key=True,
        group=True,
        template=("width",),
        a1111=(4, "Size", lambda p: f"{p['width']}x{p['height']}"),
    ),
    Field(
        "height",
        "int",
        ("height",),
        lo=8,
        hi=MAX_SIZE,
        multiple_of=8,
        option="--height",
        key=True,
        group=True,
        template=("height",),
    ),
    # A diffusers class name or an A1111 sampler name (genbatch.pipelines.samplers): a job records the
    # class here and what an A1111 name adds to it (Karras sigmas...) in scheduler_options.
    Field(
        "scheduler",
        "scheduler",
        ("scheduler", "sampler", "sampler_name"),
        option="--scheduler",
        key=True,
        group=True,
        a1111=(1, "Sampler", lambda p: a1111_name(p["scheduler"], p.get("scheduler_options"))),
    ),
    Field("scheduler_options", "text", key=True, group=True),
    # A1111's convention: 1 = the text encoder's last layer (no skip), 2 = the one before...
    Field(
        "clip_skip",
        "int",
        ("clip_skip",),
        lo=1,
        hi=12,
        option="--clip-skip",
        key=True,
        group=True,
        template=("clip_skip",),
        a1111=(7, "Clip skip", lambda p: str(p["clip_skip"])),
    ),
    # A model's own timesteps at this step count (its genbatch.json), else None.
    Field("timesteps", "list", key=True, group=True),
    # LoRA adapters and their weights (genbatch.pipelines.lora): a row's ``lora`` column, else --lora.
    Field(
        "lora",
        "lora",
        ("lora", "loras"),
        option="--lora",
        key=True,
        group=True,
        to_key=lambda v: _lora().key_form(v),
        to_record=lambda v: _lora().record_form(v),
        to_text=lambda v: _lora().text_form(v),
        off=(),
    ),
    # A1111 emphasis syntax, (word:1.3) and [word] (genbatch.pipelines.prompt_weighting); None when off.
    Field(
        "prompt_weighting",
        "choice",
        ("prompt_weighting",),
        option="--prompt-weighting",
        choices=("a1111", "off"),
        key=True,
        group=True,
        off="off",
    ),
    # T5/Gemma prompt length of SD3, Flux, PixArt and Sana (a model's genbatch.json, else the pipeline's).
    Field("max_sequence_length", "int", ("max_sequence_length",), lo=1, hi=MAX_SEQUENCE_LENGTH, key=True, group=True),
    # Qwen-Image's true classifier-free guidance: on when a negative prompt is given and this is above 1
    # (a model's genbatch.json, else the pipeline's 4.0); families that take it: Family.takes.
    Field(
        "true_cfg_scale",
        "float",
        ("true_cfg_scale", "true_cfg"),
        hi=MAX_GUIDANCE,
        key=True,
        group=True,
    ),
    # The speed options that change pixels (genbatch.pipelines.speed): a step cache through diffusers'
    # cache hooks (a row's cache column, else --cache; None when off), its threshold (first-block and
    # magcache: --cache-threshold, else the cache's default; None without one), and the denoiser's
    # weights quantized as the model loads (--quantize: one value per run, None when off).
    Field(
        "cache",
        "choice",
        ("cache",),
        option="--cache",
        choices=(*CACHES, "none"),
        key=True,
        group=True,
        off="none",
    ),
    Field("cache_threshold", "float", ("cache_threshold",), hi=1, option="--cache-threshold", key=True, group=True),
    Field(
        "quantize", "choice", option="--quantize", choices=(*QUANTIZATIONS, "none"), key=True, group=True, off="none"
    ),
    # Rows with images (genbatch.manifest.inputs): a path relative to the manifest's folder (or absolute,
    # or a URL) in the manifest; in a job, the file read and checked (InputImage), whose sha256 alone is
    # in the key (a changed file is a new job, a renamed identical one is not).
    Field("image", "image", ("image", "init_image", "input_image"), key=True, **_INPUT),
    Field("mask_image", "image", ("mask_image", "mask"), key=True, **_INPUT),
    Field("control_image", "image", ("control_image", "control"), key=True, **_INPUT),
    # A ControlNet model (a folder or a hub id in the local cache) for control_image: a row's, else --controlnet.
    Field("controlnet", "name", ("controlnet",), option="--controlnet", key=True, group=True),
    Field(
        "controlnet_conditioning_scale",
        "float",
        ("controlnet_conditioning_scale", "control_scale"),
        hi=MAX_CONTROL_SCALE,
        option="--control-scale",
        key=True,
        group=True,
    ),
    # An IP-Adapter (its weight file: a path, or a hub id's file in the local cache) that conditions
    # the image on ip_adapter_image, a row's own (a row's ip_adapter, else --ip-adapter), at
    # ip_adapter_scale (the adapter's attention scale; 1 when not given).
    Field("ip_adapter_image", "image", ("ip_adapter_image", "ip_image"), key=True, **_INPUT),
    Field("ip_adapter", "name", ("ip_adapter",), option="--ip-adapter", key=True, group=True),
    Field(
        "ip_adapter_scale",
        "float",
        ("ip_adapter_scale", "ip_scale"),
        hi=MAX_IP_ADAPTER_SCALE,
        option="--ip-adapter-scale",
        key=True,
        group=True,
    ),
    # How much of an input image is redrawn (img2img, inpainting): 0 keeps it, 1 redraws it all.
    Field(
        "strength",
        "float",
        ("strength", "denoising_strength"),
        hi=1,
        option="--strength",
        key=True,
        group=True,
        template=("strength",),
        a1111=(8, "Denoising strength", lambda p: f"{p['strength']:g}"),
    ),
    # How an input image meets a width x height of its own (genbatch.manifest.inputs.fitted): none (its
    # own size is the output size), fit (scaled to fit inside, the rest padded) or fill (scaled to cover,
    # then cropped).
    Field("resize", "choice", ("resize",), option="--resize", choices=RESIZE_MODES, key=True, group=True, off="none"),
    # The model's diffusers family (genbatch.pipelines.families); its fingerprint is already in the key.
    Field("family", "name"),
    # Also bounded per row by --max-images-per-row (genbatch.manifest.values.check_images_per_row).
    Field("num_images", "int", ("num_images", "n"), lo=1, hi=MAX_NUM_IMAGES, option="--num-images", job=False),
    Field("id", "name", ("id", "name"), job=False),
    Field("model", "name", ("model",), option="--model", job=False),
)

BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
# What a manifest row may set, and what every image resolves.
ROW_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.aliases)
JOB_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.job)
KEY_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.key)
GROUP_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.group)
# The speed options: fields that trade exactness for time (step caching, quantized weights). A
# fast image is another job than the exact one (they are in its key), and `genbatch compare`
# pairs the images of two runs by the key's fields less these (:func:`pairing_values`).
SPEED_FIELDS: tuple[str, ...] = ("cache", "cache_threshold", "quantize")
# The fields that name an image a row starts from (genbatch.manifest.inputs).
INPUT_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.kind == "image")
ALIASES: dict[str, tuple[str, ...]] = {f.name: f.aliases for f in FIELDS if f.aliases}


def _lora() -> Any:
    from genbatch.pipelines import lora

    return lora


def key_values(values: dict[str, Any]) -> dict[str, Any]:
    """The part of a job's values that goes into its key; a field that is not set (None) is
    left out, so adding a field keeps every existing key. (Tuples are written as JSON lists; a
    field with ``to_key``, a LoRA set, as that gives it.)"""
    key: dict[str, Any] = {}
    for name, convert in _KEY_FORMS:
        value = values.get(name)
        if value is not None:
            key[name] = convert(value) if convert is not None else list(value) if isinstance(value, tuple) else value
    return key


_KEY_FORMS = tuple((name, BY_NAME[name].to_key) for name in KEY_FIELDS)


def pairing_values(values: dict[str, Any]) -> dict[str, Any]:
    """:func:`key_values` less the :data:`SPEED_FIELDS`: what an image made the exact way and
    one made the fast way share when they are the same job. ``values`` may be a job's values or
    a ledger record (every field's ``to_key`` takes its recorded form too)."""
    return {name: value for name, value in key_values(values).items() if name not in SPEED_FIELDS}


def record_values(values: dict[str, Any]) -> dict[str, Any]:
    """The fields that are set, as the ledger and image metadata record them."""
    return {
        name: _as_json(name, v, BY_NAME[name].to_record if name in BY_NAME else None)
        for name, v in values.items()
        if v is not None
    }


def _as_json(name: str, value: Any, convert: Callable[[Any], Any] | None) -> Any:
    if convert is not None:
        return convert(value)
    return list(value) if isinstance(value, tuple) else value


def text_value(name: str, value: Any) -> str:
    """A field's value (as a job holds it, or as the ledger records it) as short text."""
    spec = BY_NAME.get(name)
    if value is None:
        return "none" if spec is not None and spec.to_text else ""
    if spec is not None and spec.to_text is not None:
        return spec.to_text(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def a1111_prompt(values: dict[str, Any]) -> str:
    """The prompt line of the A1111 ``parameters`` text: the prompt, then ``<lora:name:weight>``
    for each LoRA, as A1111 writes them."""
    tags = _lora().a1111_tags(values["lora"]) if values.get("lora") else ""
    return f"{values['prompt']} {tags}" if tags else values["prompt"]


def a1111_settings(values: dict[str, Any]) -> list[tuple[int, str, str]]:
    """(order, label, text) of the A1111 ``parameters`` settings line, in A1111's order."""
    declared = sorted((f.a1111 for f in FIELDS if f.a1111 and values.get(f.name) is not None), key=lambda a: a[0])
    return [(order, label, text(values)) for order, label, text in declared]


_TEMPLATE_NAMES: tuple[tuple[str, str], ...] = tuple((alias, f.name) for f in FIELDS for alias in f.template)


def template_values(values: dict[str, Any]) -> dict[str, Any]:
    """A job's values under their --name-template names."""
    return {alias: values[name] for alias, name in _TEMPLATE_NAMES if name in values}


def report_columns() -> list[str]:
    """The report tables' columns for the generation fields, in table order."""
    return list(JOB_FIELDS)


_ATTRIBUTE_FIELDS = frozenset(BY_NAME)


class Values:
    """Attribute access to a ``values`` dict of generation fields (``row.seed``, ``job.steps``);
    a field that is not in ``values`` reads as None."""

    __slots__ = ()
    values: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        if name not in _ATTRIBUTE_FIELDS:
            raise AttributeError(name)
        try:
            values = object.__getattribute__(self, "values")
        except AttributeError:  # not set yet (while unpickling)
            raise AttributeError(name) from None
        return values.get(name)


def _field_property(name: str) -> property:
    return property(lambda self: self.values.get(name), doc=f"The {name} field (None where it is not set).")


# Each field is also a property, found without the failed lookup that reaches __getattr__ (a
# tenth of the time: planning a million jobs reads a few million of them). Not ``model``: a
# Job's own ``model`` (its ModelRef) is a dataclass field, which a class attribute would give
# a default; a row's model is read through __getattr__.
for _name in BY_NAME:
    if _name != "model":
        setattr(Values, _name, _field_property(_name))
